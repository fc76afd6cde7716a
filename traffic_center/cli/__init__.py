"""The `traffic-center` command: a thin shell over the admin library and the server."""
