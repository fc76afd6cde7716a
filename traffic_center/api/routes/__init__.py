"""Route modules: each handler parses, makes one call, and returns."""
