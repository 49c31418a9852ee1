"""Protocol clients: one per API, each turning a request into a `RequestRecord` over a Transport."""
