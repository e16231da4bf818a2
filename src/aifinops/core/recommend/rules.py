"""The built-in rules, imported so that they register (each module one family)."""

from aifinops.core.recommend import (
    pricing,  # noqa: F401  spot, commitments, off-hours, offers, unattributed
    usage,  # noqa: F401  idle-gpu, overprovisioned, rightsize, share
)
