"""`off-hours`: dev, staging and notebook workloads that hold GPUs idle at night and on
weekends, and the schedule that turns them off.

Per holding in a namespace like `namespaces_like` (a `-`/`_`/`.`-separated part of its
name is one of them, or its plural), or of a kind in `kinds` (Notebook):
  1. Off-hours, in the configured time zone: weekdays from `off_hour` to `on_hour`, all
     of Saturday and Sunday, and the configured holidays.
  2. Of its off-hours in the window where it held GPUs, the share whose busy share
     (busy_gpus / held_gpus) was under `idle_share`; fewer than `min_off_hours` such hours
     seen, or under `min_idle_off_hours` (80 %) of them idle -> no finding. Idle as much
     in working hours too -> no finding either: it is idle, not off-hours (`idle-gpu`
     removes it, and two findings would count its night twice).
  3. The schedule's share of a month: (5 x (24 - (off_hour - on_hour)) + 48) / 168, plus
     the weekday holidays of the coming year (from `now`) x (off_hour - on_hour) / 8760.
  4. saving = cost per hour held x the share of the window's off-hours it held x that share
     x MONTH_HOURS: for a workload held around the clock, its run-rate x the schedule's
     share; never more than it now spends in those hours.
The schedule is given as a Cloud-Custodian-style `offhour`/`onhour` spec and, for kinds
with a switch in `_SWITCHES`, as a pair of Kubernetes CronJobs (with the RBAC they need)
that turn it off at `off_hour` and back on at `on_hour` on weekdays that are not holidays."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from aifinops.core.recommend.base import (
    MONTH_HOURS,
    Facts,
    Finding,
    GpuHolding,
    RuleConfig,
    finding_id,
    rule,
    severity_of,
)
from aifinops.core.recommend.pricing_common import (
    HOUR_MS,
    YamlValue,
    dec,
    monthly_run_rate,
    to_yaml,
    workload_name,
    workload_scope,
)

YEAR_HOURS = 8760


class OffHoursConfig(RuleConfig):
    namespaces_like: list[str] = Field(
        default_factory=lambda: ["dev", "staging", "notebook", "sandbox"]
    )
    kinds: list[str] = Field(default_factory=lambda: ["Notebook"])
    timezone: str = "UTC"
    idle_share: float = Field(default=0.05, ge=0, le=1)
    min_idle_off_hours: float = Field(default=0.8, gt=0, le=1)
    min_off_hours: int = Field(default=24, ge=1)
    off_hour: int = Field(default=20, ge=1, le=23)
    on_hour: int = Field(default=8, ge=0, le=22)
    holidays: list[date] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (an IANA name: Europe/Paris)") from exc
        return value

    @model_validator(mode="after")
    def _day_before_night(self) -> OffHoursConfig:
        if self.on_hour >= self.off_hour:
            raise ValueError("on_hour must come before off_hour (08 -> 20)")
        return self


@dataclass(frozen=True)
class OffHoursProfile:
    """How a holding used its off-hours (and, to compare, its working hours) in the window."""

    off_hours: int  # off-hours in which it held GPUs
    idle_off_hours: int  # of those, the ones busy under the idle share
    held_share: float  # the share of the window's off-hours it held (in held-hours)
    on_hours: int = 0  # working hours in which it held GPUs
    idle_on_hours: int = 0

    @property
    def idle_share(self) -> float:
        return self.idle_off_hours / self.off_hours if self.off_hours else 0.0

    @property
    def idle_on_share(self) -> float:
        return self.idle_on_hours / self.on_hours if self.on_hours else 0.0


def is_off_hour(start_ms: int, zone: ZoneInfo, cfg: OffHoursConfig) -> bool:
    local = datetime.fromtimestamp(start_ms / 1000, UTC).astimezone(zone)
    return (local.weekday() >= 5 or local.date() in cfg.holidays
            or not cfg.on_hour <= local.hour < cfg.off_hour)  # fmt: skip


def window_off_hours(facts: Facts, cfg: OffHoursConfig) -> int:
    """The off-hours in the window [start, end), hour by hour from its start."""
    zone = ZoneInfo(cfg.timezone)
    return sum(is_off_hour(t, zone, cfg) for t in range(facts.start_ms, facts.end_ms, HOUR_MS))


def off_hours_profile(holding: GpuHolding, cfg: OffHoursConfig, window_off: int) -> OffHoursProfile:
    zone = ZoneInfo(cfg.timezone)
    count = {True: 0, False: 0}  # by is-off-hour
    idle = {True: 0, False: 0}
    held = 0.0
    for use in holding.hours:
        if use.held_gpus <= 0:
            continue
        off = is_off_hour(use.start_ms, zone, cfg)
        count[off] += 1
        idle[off] += use.busy_gpus / use.held_gpus < cfg.idle_share
        if off:
            held += min(1.0, use.held_gpus / holding.gpus) if holding.gpus else 0.0
    held_share = min(1.0, held / window_off) if window_off else 0.0
    return OffHoursProfile(count[True], idle[True], held_share, count[False], idle[False])


def schedule_share(cfg: OffHoursConfig, now_ms: int) -> tuple[Decimal, int]:
    """The share of the time the schedule keeps it off, and the weekday holidays of the
    coming year it counts."""
    day_hours = cfg.off_hour - cfg.on_hour
    today = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(ZoneInfo(cfg.timezone)).date()
    coming = [d for d in set(cfg.holidays)
              if today <= d < today + timedelta(days=365) and d.weekday() < 5]  # fmt: skip
    week = Decimal(5 * (24 - day_hours) + 48) / 168
    return week + Decimal(len(coming) * day_hours) / YEAR_HOURS, len(coming)


def _like(namespace: str, words: list[str]) -> bool:
    parts = re.split(r"[-_.]", namespace)
    return any(p == w or p == w + "s" for p in parts for w in words)


@rule("off-hours", OffHoursConfig)
def off_hours(facts: Facts, cfg: OffHoursConfig, now_ms: int) -> list[Finding]:
    share, holidays = schedule_share(cfg, now_ms)
    window_off = window_off_hours(facts, cfg)
    out = []
    for h in facts.holdings:
        if not (_like(h.namespace, cfg.namespaces_like) or h.kind in cfg.kinds):
            continue
        p = off_hours_profile(h, cfg, window_off)
        if p.off_hours < cfg.min_off_hours or p.idle_share < cfg.min_idle_off_hours:
            continue
        if p.on_hours and p.idle_on_share >= cfg.min_idle_off_hours:
            continue  # idle in working hours too: idle-gpu's finding, not a schedule's
        run_rate = monthly_run_rate(h, facts)
        saving = min(run_rate, h.cost_per_hour * dec(p.held_share) * share * MONTH_HOURS)
        scope = workload_scope(h)
        spec = custodian_schedule(cfg)
        out.append(Finding(
            id=finding_id("off-hours", scope), rule="off-hours",
            severity=severity_of(saving), scope=scope,
            evidence={
                "kind": h.kind, "timezone": cfg.timezone, "idle_threshold": cfg.idle_share,
                "off_hours_held": p.off_hours, "idle_off_hours": p.idle_off_hours,
                "idle_off_hours_share": round(p.idle_share, 6),
                "off_hours_held_share": round(p.held_share, 6),
                "on_hours_held": p.on_hours, "idle_on_hours_share": round(p.idle_on_share, 6),
                "schedule_share": float(round(share, 6)), "weekday_holidays": holidays,
                "monthly_run_rate": str(run_rate), "schedule": spec,
                "window": {"start_ms": facts.start_ms, "end_ms": facts.end_ms},
            },
            monthly_saving=saving,
            confidence=Decimal("0.9") if facts.hours >= 2 * 168 else Decimal("0.6"),
            action=(f"Turn {h.workload} off from {cfg.off_hour:02d}:00 to {cfg.on_hour:02d}:00 "
                    f"({cfg.timezone}) on weekdays, at weekends and on holidays: "
                    f"{100 * p.idle_share:.0f} % of the {p.off_hours} off-hours it held GPUs "
                    f"were idle (under {100 * cfg.idle_share:.0f} % busy)."),
            patch=_patch(h, cfg, spec),
        ))  # fmt: skip
    return out


def custodian_schedule(cfg: OffHoursConfig) -> dict[str, YamlValue]:
    holidays: list[YamlValue] = [d.isoformat() for d in sorted(cfg.holidays)]
    return {
        "offhour": {"tz": cfg.timezone, "default_hour": cfg.off_hour, "weekends": True,
                    "holidays": holidays},
        "onhour": {"tz": cfg.timezone, "default_hour": cfg.on_hour, "weekends": True,
                   "holidays": holidays},
    }  # fmt: skip


# How to turn a kind off and on, and what the CronJobs' role must be allowed to touch.
Switch = Callable[[str, int], tuple[list[str], list[str]]]
_SWITCHES: dict[str, tuple[Switch, dict[str, YamlValue]]] = {
    "Deployment": (
        lambda name, n: (["kubectl", "scale", f"deployment/{name}", "--replicas=0"],
                         ["kubectl", "scale", f"deployment/{name}", f"--replicas={n}"]),
        {"apiGroups": ["apps"], "resources": ["deployments", "deployments/scale"]},
    ),
    "StatefulSet": (
        lambda name, n: (["kubectl", "scale", f"statefulset/{name}", "--replicas=0"],
                         ["kubectl", "scale", f"statefulset/{name}", f"--replicas={n}"]),
        {"apiGroups": ["apps"], "resources": ["statefulsets", "statefulsets/scale"]},
    ),
    "Notebook": (  # Kubeflow stops a notebook by an annotation
        lambda name, n: (["kubectl", "annotate", f"notebook/{name}",
                          "kubeflow-resource-stopped=true", "--overwrite"],
                         ["kubectl", "annotate", f"notebook/{name}",
                          "kubeflow-resource-stopped-"]),
        {"apiGroups": ["kubeflow.org"], "resources": ["notebooks"]},
    ),
}  # fmt: skip


def _patch(h: GpuHolding, cfg: OffHoursConfig, spec: dict[str, YamlValue]) -> str:
    custodian = to_yaml(spec)
    switch = _SWITCHES.get(h.kind)
    if switch is None:  # no kubectl switch for a bare Pod or a Job: the spec alone
        return custodian + "\n"
    commands, resources = switch
    name, ns = workload_name(h), h.namespace
    down, up = commands(name, max(1, h.replicas))
    account = f"{name}-offhours"
    days = "|".join(d.isoformat() for d in sorted(cfg.holidays))
    skip = f'case "$(date +%F)" in {days}) echo holiday; exit 0;; esac; ' if days else ""
    docs: list[dict[str, YamlValue]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": account, "namespace": ns}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": account, "namespace": ns},
         "rules": [{**resources, "resourceNames": [name],
                    "verbs": ["get", "patch", "update"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": account, "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
         "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}]},
        _cronjob(f"{name}-off", ns, account, f"0 {cfg.off_hour} * * 1-5", cfg.timezone,
                 " ".join([*down, "-n", ns])),
        _cronjob(f"{name}-on", ns, account, f"0 {cfg.on_hour} * * 1-5", cfg.timezone,
                 skip + " ".join([*up, "-n", ns])),
    ]  # fmt: skip
    head = "".join(f"# {line}\n" for line in custodian.splitlines())
    return ("# the schedule, Cloud Custodian style:\n" + head
            + "\n---\n".join(to_yaml(d) for d in docs) + "\n")  # fmt: skip


def _cronjob(name: str, ns: str, account: str, schedule: str, tz: str,
             command: str) -> dict[str, YamlValue]:  # fmt: skip
    container: dict[str, YamlValue] = {
        "name": "switch", "image": "bitnami/kubectl", "env": [{"name": "TZ", "value": tz}],
        "command": ["/bin/sh", "-c", command],
    }  # fmt: skip
    return {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"schedule": schedule, "timeZone": tz, "concurrencyPolicy": "Forbid",
                 "jobTemplate": {"spec": {"template": {"spec": {
                     "serviceAccountName": account, "restartPolicy": "OnFailure",
                     "containers": [container]}}}}},
    }  # fmt: skip
