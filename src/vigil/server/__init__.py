"""`vigil serve`: the API, the web UI and the camera supervisor in one process (see create_app)."""
