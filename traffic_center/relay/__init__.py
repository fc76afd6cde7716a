"""The streaming client to LAS endpoints: mTLS, timeouts, limits and header hygiene."""
