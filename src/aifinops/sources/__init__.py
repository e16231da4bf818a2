"""Sources: one module per external system, each turning its input into fact tables."""
