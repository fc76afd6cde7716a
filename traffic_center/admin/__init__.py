"""Administrative operations behind the CLI: certificates and the registry, as a library."""
