"""The audit trail: every exchange and administrative action, hash-chained, fail-closed."""
