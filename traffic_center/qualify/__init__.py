"""Qualifying a vendor's LAS: checks run against its bron endpoint or its doel client."""
