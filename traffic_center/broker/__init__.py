"""The session broker: who may ask whom for which dossier, enforced on the store."""
