"""Durable state: registry, certificate inventory, sessions, rate limits; SQLite or PostgreSQL."""
