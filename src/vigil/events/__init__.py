"""Domain events: typed, versioned schemas shared by the CLI, the catalog writer and (later) the API."""
