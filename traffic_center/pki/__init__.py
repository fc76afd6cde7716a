"""The Traffic Center's certificate authority: issuing, profiles, revocation lists."""
