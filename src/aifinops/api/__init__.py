"""The REST API and `/metrics` of `aifinops serve`: thin routes over the service."""
