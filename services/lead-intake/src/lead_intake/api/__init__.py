"""lead-intake's HTTP API, one router per resource."""
