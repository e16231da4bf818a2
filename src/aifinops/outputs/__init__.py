"""Outputs: exports, and later notifiers, metrics and reports; they never read the store."""
