"""The OSO Traffic Center: authenticates school endpoints, brokers sessions, relays dossiers."""

__version__ = "0.1.0"
