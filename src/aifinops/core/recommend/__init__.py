"""Recommendations (issue 15): rules that read facts the engine prepares and say what to
change, what it saves per month, how sure we are, and how to do it.

Pure: each rule is a function of immutable inputs (`Facts`) and its own typed config,
registered under a stable kebab-case name (`@rule("idle-gpu", IdleGpuConfig)`); time comes
in as an argument. The engine (store/, app/) prepares the facts; this package never reads
the store. A finding's saving is a month of run-rate (`MONTH_HOURS` hours), never the
look-back window's total multiplied up."""

from aifinops.core.recommend.base import (
    MONTH_HOURS,
    RULES,
    Facts,
    Finding,
    GpuHolding,
    HourUse,
    Offer,
    RuleConfig,
    SpendLine,
    finding_id,
    percentile,
    rule,
    run_rules,
    severity_of,
    total_saving,
)

__all__ = [
    "MONTH_HOURS",
    "RULES",
    "Facts",
    "Finding",
    "GpuHolding",
    "HourUse",
    "Offer",
    "RuleConfig",
    "SpendLine",
    "finding_id",
    "percentile",
    "rule",
    "run_rules",
    "severity_of",
    "total_saving",
]
