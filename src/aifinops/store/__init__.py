"""The store: Ibis connections, schema and migrations, queries that run in the engine."""
