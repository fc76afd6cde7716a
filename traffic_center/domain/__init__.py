"""The OSO domain: identifiers, results, sessions, rules and errors; stdlib only."""
