"""Metrics and logging: built around injected registries, configured once."""
