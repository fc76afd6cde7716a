"""The relayed exchanges: documentRequest (the dossier) and the notification, end to end."""
