"""Prices: the bundled catalog, OpenCost custom pricing, cloud price APIs."""
