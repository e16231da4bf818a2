"""Inventory: Kubernetes (dumps and the API), Slurm accounting, process owners, OpenCost."""
