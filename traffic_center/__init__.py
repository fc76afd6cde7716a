"""The OSO Traffic Center: authenticates school endpoints, brokers sessions, relays dossiers."""

__version__ = "0.1.0"
# What the relay calls itself to a LAS (and `qualify bron`, which calls as the relay does).
USER_AGENT = f"oso-traffic-center/{__version__}"
