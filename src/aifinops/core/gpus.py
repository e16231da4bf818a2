"""GPU memory by model and MIG profile: what one GPU (or one MIG instance) holds, for the
rules that ask whether a workload's measured memory fits a smaller one."""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache

from aifinops.core.pricing import normalise_gpu_model

MIB_PER_GB = 1024  # the models' marketed "80GB" is 80 GiB of framebuffer (nominal)

# A family's memory where the model name does not say it (the smallest variant sold, so
# that a fit judged against it is never optimistic). Names that carry their memory
# ("A100-SXM4-80GB", the catalog's "A100 80GB") use what they say.
FAMILY_MEMORY_GB: dict[str, int] = {
    "GB200": 192,
    "GH200": 96,
    "B200": 192,
    "B100": 192,
    "H200": 141,
    "H100": 80,
    "H800": 80,
    "H20": 96,
    "A100": 40,
    "A800": 40,
    "A40": 48,
    "A30": 24,
    "A10G": 24,
    "A10": 24,
    "A16": 16,
    "A6000": 48,
    "A5000": 24,
    "A4000": 16,
    "L40S": 48,
    "L40": 48,
    "L4": 24,
    "T4": 16,
    "T4G": 16,
    "V100": 16,
    "P100": 16,
    "P40": 24,
    "P4": 8,
    "K80": 12,
    "M60": 8,
    "MI300X": 192,
    "MI250X": 128,
    "MI210": 64,
    "RTX4090": 24,
    "RTX3090": 24,
    "3080TI": 12,
    "RTX6000": 24,
    "RTX5000": 16,
    "RTX4000": 8,
}

# MIG: compute slices out of 7 (4 on an A30), and the memory the profile names
_MIG = re.compile(r"(?:^|mig-)(\d+)g\.(\d+)gb", re.IGNORECASE)


def gpu_memory_mib(model: str | None) -> float | None:
    """The memory of one GPU of `model` in MiB ('NVIDIA H100 80GB HBM3' -> 81920), or None
    for a model this table does not know."""
    name = normalise_gpu_model(model)
    if name is None:
        return None
    family, _, memory = name.partition(" ")
    if memory.endswith("GB") and memory[:-2].isdigit():
        return float(int(memory[:-2]) * MIB_PER_GB)
    gb = FAMILY_MEMORY_GB.get(family)
    return float(gb * MIB_PER_GB) if gb is not None else None


@lru_cache(maxsize=512)
def mig_profile(resource: str | None, model: str | None = None) -> tuple[Fraction, float] | None:
    """A MIG resource or profile ('nvidia.com/mig-1g.10gb', '3g.40gb') as (the share of the
    GPU it is, by compute slices; its memory in MiB); None for anything else."""
    found = _MIG.search(resource) if resource else None
    if found is None:
        return None
    total = 4 if model and "A30" in model.upper() else 7
    slices = min(int(found.group(1)), total)
    return Fraction(slices, total), float(int(found.group(2)) * MIB_PER_GB)
