"""aifinops: what every GPU-hour cost, who used it, and how well."""

__version__ = "0.1.0"
