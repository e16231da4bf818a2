"""The demo: a seeded synthetic fleet and the bundled real H100 capture (not sources of facts)."""
