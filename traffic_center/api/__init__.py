"""The HTTP API: the FastAPI app factory, routes, peer identity and problem+json mapping."""
