"""Budgets (DESIGN §3): one shape read from YAML, the REST API and a `CostBudget` custom
resource; the period an instant falls in; which cost rows a budget's scope holds; and the
alert events a budget's status gives, each under a stable key.

Pure: time comes in as an argument, spend as cost rows already allocated."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aifinops.errors import ConfigError, UsageError

API_VERSION = "gpu-autoscaler.io/v1alpha1"
KIND = "CostBudget"
ACTIONS = ("alert", "throttle", "block")
SEVERITIES = ("info", "warning", "critical")
HUNDRED = Decimal(100)
MAX_LIMIT = Decimal(10) ** 15
DOCUMENT_KEYS = {"apiVersion", "kind", "metadata", "spec", "status"}


# the dimensions a scope may name (a scope label is one of them, by the attribution rules)
SCOPE_DIMS = ("team", "namespace", "model", "project", "cost_center", "experiment")


def label_dimensions(keys_for: Callable[[str], tuple[str, ...]]) -> dict[str, str]:
    """Label key -> the dimension it names (`team`, `ai-finops.io/team` -> team), from the
    attribution rules' `keys_for`; a scope's `labels` are read through it."""
    out: dict[str, str] = {}
    for dim in SCOPE_DIMS:
        for key in keys_for(dim):
            out.setdefault(key, dim)
    return out


class _Shape(BaseModel):
    # the custom resource's camelCase names are the shape; snake_case is read too
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Scope(_Shape):
    """What a budget covers: every field given must match (teams AND namespaces ...), any
    value within a field may (team a OR team b). No field: the whole fleet."""

    teams: list[str] = Field(default_factory=list)
    namespaces: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)
    projects: list[str] = Field(default_factory=list)
    cost_centers: list[str] = Field(default_factory=list, alias="costCenters")
    experiment_id: str | None = Field(default=None, alias="experimentID", min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)

    def is_fleet(self) -> bool:
        return not (self.teams or self.namespaces or self.models or self.projects
                    or self.cost_centers or self.experiment_id or self.labels)  # fmt: skip

    def wants(self, label_dims: Mapping[str, str]) -> dict[str, set[str]]:
        """Dimension -> the values it may take. `label_dims` maps a label key to the
        dimension that label names (from the attribution rules): `labels: {team: a}` is
        `teams: [a]`."""
        out: dict[str, set[str]] = {}

        def need(dim: str, given: Iterable[str]) -> None:
            values = set(given)
            out[dim] = out[dim] & values if dim in out else values
            if not out[dim]:
                raise ConfigError(
                    f"the scope can never match: it asks {dim} to be {sorted(values)} and "
                    "something else at once",
                    where="scope",
                    hint="a label naming a dimension is the same as that field",
                )

        for name, values in (("team", self.teams), ("namespace", self.namespaces),
                            ("model", self.models), ("project", self.projects),
                            ("cost_center", self.cost_centers)):  # fmt: skip
            if values:
                need(name, values)
        if self.experiment_id:
            need("experiment", [self.experiment_id])
        for key, value in self.labels.items():
            found = label_dims.get(key)
            if found is None:
                raise ConfigError(
                    f"scope label {key!r} names no dimension aifinops attributes cost by",
                    where="scope.labels",
                    hint="use a label key of attribution.labels (team, project, model, "
                    "environment, experiment, cost-center, owner and their ai-finops.io/ "
                    "forms), or add it there",
                )
            need(found, [value])
        return out

    def matches(self, key: Mapping[str, str | None], wants: Mapping[str, AbstractSet[str]]) -> bool:
        """Whether a cost row (its dimension values) is in scope."""
        return all(key.get(dim) in values for dim, values in wants.items())

    def words(self) -> str:
        parts = [f"{name} {', '.join(v)}" for name, v in (
            ("teams", self.teams), ("namespaces", self.namespaces), ("models", self.models),
            ("projects", self.projects), ("cost centers", self.cost_centers)) if v]  # fmt: skip
        if self.experiment_id:
            parts.append(f"experiment {self.experiment_id}")
        parts += [f"label {k}={v}" for k, v in self.labels.items()]
        return "; ".join(parts) or "the whole fleet"


class Channel(_Shape):
    """Where an alert goes: `{type: slack, config: {...}}` (checked by the channel's own
    config when the budget is applied) or `{name: ops}` for a channel named in settings."""

    type: str | None = None
    name: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one(self) -> Channel:
        if not self.type and not self.name:
            raise ValueError(
                "a channel needs a type (slack, teams, email, pagerduty, "
                "webhook, alertmanager) or the name of a configured channel"
            )
        return self

    def ident(self) -> str:
        """A stable name for deliveries: the configured name, else type and a digest."""
        if self.name and not self.type:
            return self.name
        import hashlib
        import json

        digest = hashlib.sha256(json.dumps(self.config, sort_keys=True, default=str).encode())
        return self.name or f"{self.type}-{digest.hexdigest()[:8]}"


class AlertRule(_Shape):
    name: str | None = None
    # up to 100 times the limit (DECIMAL(9, 3) in the store)
    threshold_percent: Decimal = Field(
        alias="thresholdPercent", gt=0, le=10_000, max_digits=9, decimal_places=3
    )
    severity: Literal["info", "warning", "critical"] = "warning"
    basis: Literal["actual", "forecast"] = "actual"
    channels: list[Channel] = Field(default_factory=list)

    @field_validator("channels", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    def label(self) -> str:
        return self.name or f"{self.basis}-{self.threshold_percent.normalize():f}pct"


class ThrottleConfig(_Shape):
    max_gpus: int | None = Field(default=None, alias="maxGPUs", ge=0)
    # the seed's autoscaler setting: read, not acted on (aifinops admits pods, it does
    # not scale nodes); a throttle without maxGPUs admits no new GPU pod, as `block`
    max_spot_instances: int | None = Field(default=None, alias="maxSpotInstances", ge=0)


class Enforcement(_Shape):
    action: Literal["alert", "throttle", "block"] = "alert"
    grace_period_minutes: int = Field(default=0, alias="gracePeriodMinutes", ge=0)
    throttle_config: ThrottleConfig = Field(default_factory=ThrottleConfig, alias="throttleConfig")
    mode: Literal["enforce", "warn"] = "enforce"


class BudgetSpec(_Shape):
    # a cent to a quadrillion, to the cent or finer (money is exact: decimal places bounded)
    monthly_limit: Decimal | None = Field(
        default=None, alias="monthlyLimit", ge=Decimal("0.01"), le=MAX_LIMIT, decimal_places=6
    )
    limit: Decimal | None = Field(default=None, ge=Decimal("0.01"), le=MAX_LIMIT, decimal_places=6)
    period: Literal["month", "week", "day"] = "month"
    # month: the day of the month a period starts (1-28; later days are the month's last);
    # week: the ISO weekday (1 Monday ... 7 Sunday); day: unused
    reset_day: int = Field(default=1, alias="resetDay", ge=1, le=31)
    timezone: str = "UTC"
    currency: str | None = None
    scope: Scope = Field(default_factory=Scope)
    alerts: list[AlertRule] = Field(default_factory=list)
    enforcement: Enforcement = Field(default_factory=Enforcement)
    enabled: bool = True
    description: str | None = None

    @model_validator(mode="after")
    def _limit(self) -> BudgetSpec:
        if self.monthly_limit is not None and self.limit is not None:
            raise ValueError("give monthlyLimit or limit, not both")
        if self.monthly_limit is None and self.limit is None:
            raise ValueError("a budget needs a limit (limit, or monthlyLimit)")
        if self.monthly_limit is not None and self.period != "month":
            raise ValueError("monthlyLimit is for period: month; use limit for a "
                             f"{self.period}ly budget")  # fmt: skip
        if self.period == "week" and self.reset_day > 7:
            raise ValueError("a weekly budget's resetDay is a weekday, 1 (Monday) to 7")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r} (e.g. UTC, "
                             "Europe/Berlin, America/New_York)") from None  # fmt: skip
        keys = [(a.basis, a.threshold_percent) for a in self.alerts]
        if len(set(keys)) != len(keys):
            raise ValueError("two alerts have the same threshold and basis")
        return self

    @property
    def amount(self) -> Decimal:
        return self.limit if self.limit is not None else self.monthly_limit  # type: ignore[return-value]


@dataclass(frozen=True)
class Budget:
    name: str
    spec: BudgetSpec

    def to_document(self) -> dict[str, Any]:
        """As a `CostBudget` custom resource (what `budget show` prints, the API returns)."""
        spec = self.spec.model_dump(by_alias=True, exclude_none=True, mode="json")
        return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": self.name},
                "spec": spec}  # fmt: skip


def parse_budget(doc: Any, where: str = "budget") -> Budget:
    """One budget from a document: a `CostBudget` resource (`apiVersion`, `kind`,
    `metadata.name`, `spec`) or the plain shape (`name` beside the spec's fields)."""
    if not isinstance(doc, Mapping):
        raise ConfigError("a budget must be a mapping", where=where)
    doc = dict(doc)
    if "kind" in doc or "apiVersion" in doc or "spec" in doc:
        if doc.get("kind", KIND) != KIND:
            raise ConfigError(f"kind {doc.get('kind')!r} is not {KIND}", where=where)
        if doc.get("apiVersion", API_VERSION) != API_VERSION:
            raise ConfigError(f"apiVersion {doc.get('apiVersion')!r} is not {API_VERSION}",
                              where=where)  # fmt: skip
        if extra := sorted(set(doc) - DOCUMENT_KEYS):
            raise ConfigError(f"unknown field {', '.join(map(str, extra))} in a {KIND}",
                              where=where, hint="a CostBudget has apiVersion, kind, "
                              "metadata, spec (and status)")  # fmt: skip
        meta = doc.get("metadata") or {}
        if not isinstance(meta, Mapping) or not isinstance(doc.get("spec") or {}, Mapping):
            raise ConfigError("metadata and spec must be mappings", where=where)
        name = meta.get("name")
        body = doc.get("spec") or {}
    else:
        name = doc.pop("name", None)
        body = doc
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("a budget needs a name (metadata.name, or name)", where=where)
    if not _name_ok(name):
        raise ConfigError(f"budget name {name!r} must start with a letter or digit and hold "
                          "only ASCII letters, digits, '-', '_' and '.' (128 at most)",
                          where=where)  # fmt: skip
    try:
        return Budget(name, BudgetSpec.model_validate(body))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or 'spec'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid budget {name!r}: {problems}", where=where) from None


def _name_ok(name: str) -> bool:
    """ASCII letters and digits, then those and '-', '_', '.' (it goes in URLs and keys)."""
    return bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", name))


def parse_budgets(docs: Iterable[Any], where: str = "budget") -> list[Budget]:
    """Budgets from documents; a `{budgets: [...]}` mapping or a list holds several."""
    out: list[Budget] = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if isinstance(doc, Mapping) and set(doc) == {"budgets"}:
            out += parse_budgets(doc["budgets"] or [], f"{where}: budgets")
        elif isinstance(doc, list):
            out += parse_budgets(doc, where)
        else:
            out.append(parse_budget(doc, f"{where} (document {i + 1})"))
    names = [b.name for b in out]
    if twice := sorted({n for n in names if names.count(n) > 1}):
        raise ConfigError(f"budget {', '.join(twice)} given twice", where=where)
    return out


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def in_range(at: datetime, what: str) -> datetime:
    """`at`, if a budget can be evaluated then (1970 to 2200): a period and its 28 days of
    history must fit in the calendar."""
    if not EARLIEST <= at < LATEST:
        raise UsageError(f"{at.isoformat()} is outside 1970-2200", where=what)
    return at


# -- periods ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    start: datetime  # aware, in the budget's zone
    end: datetime

    @property
    def key(self) -> str:
        return self.start.strftime("%Y-%m-%dT%H:%M%z")

    def days(self) -> list[date]:
        out, d = [], self.start.date()
        while d < self.end.date():
            out.append(d)
            d += timedelta(days=1)
        return out


def _month_start(year: int, month: int, day: int, tz: ZoneInfo) -> datetime:
    import calendar

    last = calendar.monthrange(year, month)[1]
    return datetime(year, month, min(day, last), tzinfo=tz)


def period_at(spec: BudgetSpec, at: datetime) -> Period:
    """The budget period holding the instant `at` (aware): it starts at local midnight of
    the reset day in the budget's time zone."""
    tz = ZoneInfo(spec.timezone)
    local = at.astimezone(tz)
    if spec.period == "day":
        start = datetime(local.year, local.month, local.day, tzinfo=tz)
        end_day = start.date() + timedelta(days=1)
        return Period(start, datetime(end_day.year, end_day.month, end_day.day, tzinfo=tz))
    if spec.period == "week":
        back = (local.isoweekday() - spec.reset_day) % 7
        d = local.date() - timedelta(days=back)
        start = datetime(d.year, d.month, d.day, tzinfo=tz)
        e = d + timedelta(days=7)
        return Period(start, datetime(e.year, e.month, e.day, tzinfo=tz))
    y, m = local.year, local.month
    start = _month_start(y, m, spec.reset_day, tz)
    if start > local:
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
        start = _month_start(y, m, spec.reset_day, tz)
    ny, nm = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return Period(start, _month_start(ny, nm, spec.reset_day, tz))


# -- alert events -----------------------------------------------------------------------


@dataclass(frozen=True)
class AlertEvent:
    """One thing to tell a channel: an alert fired (`fire`) or resolved (`resolve`)."""

    key: str  # stable for a budget, period, basis and threshold
    action: Literal["fire", "resolve"]
    budget: str
    alert: str
    scope: str
    threshold_percent: Decimal
    basis: str
    severity: str
    spend: Decimal
    limit: Decimal
    forecast: Decimal | None
    currency: str
    period_start: str
    period_end: str
    at: str
    top_contributors: tuple[tuple[str, Decimal], ...] = ()
    channels: tuple[Channel, ...] = field(default=(), compare=False)

    @property
    def percent(self) -> Decimal:
        """Spend (forecast for a forecast alert) as a percentage of the limit."""
        value = self.forecast if self.basis == "forecast" and self.forecast is not None \
            else self.spend  # fmt: skip
        return (value / self.limit * HUNDRED).quantize(Decimal("0.1"))

    def title(self) -> str:
        what = "forecast to reach" if self.basis == "forecast" else "reached"
        if self.action == "resolve":
            return (f"Resolved: budget {self.budget} is back under "
                    f"{self.threshold_percent.normalize():f}%")  # fmt: skip
        return (f"Budget {self.budget} {what} {self.percent:f}% of its limit "
                f"(threshold {self.threshold_percent.normalize():f}%)")  # fmt: skip

    def lines(self) -> list[str]:
        """The message in words: budget, scope, spend, limit, forecast, top contributors."""
        cur = self.currency
        out = [
            f"Scope: {self.scope}",
            f"Spend: {money_words(self.spend, cur)} of {money_words(self.limit, cur)} "
            f"({(self.spend / self.limit * HUNDRED).quantize(Decimal('0.1')):f}%)",
            "Forecast for the period: "
            + (money_words(self.forecast, cur) if self.forecast is not None else "unknown"),
            f"Period: {self.period_start} to {self.period_end}",
        ]
        if self.top_contributors:
            tops = [f"{n} {money_words(v, cur)}" for n, v in self.top_contributors]
            out.append("Top contributors: " + ", ".join(tops))
        return out

    def text(self) -> str:
        return "\n".join([self.title(), *self.lines()])

    def own_facts(self) -> list[tuple[str, str]] | None:
        """(label, value) pairs a chat card shows instead of spend against a limit; None:
        a budget's (an anomaly's alert gives its own)."""
        return None

    def own_summary(self) -> str | None:
        """The line a chat message leads with, where not a budget's threshold."""
        return None


def money_words(amount: Decimal, currency: str) -> str:
    return f"{amount.quantize(Decimal('0.01')):,f} {currency}"


def alert_key(budget: str, period: Period, rule: AlertRule) -> str:
    return f"{budget}/{period.key}/{rule.basis}/{rule.threshold_percent.normalize():f}"


def event_to_dict(event: AlertEvent) -> dict[str, Any]:
    """An event as plain JSON values (kept with its deliveries, sent by the webhook)."""
    return {
        "key": event.key, "action": event.action, "budget": event.budget,
        "alert": event.alert, "scope": event.scope,
        "threshold_percent": str(event.threshold_percent), "basis": event.basis,
        "severity": event.severity, "spend": str(event.spend), "limit": str(event.limit),
        "forecast": None if event.forecast is None else str(event.forecast),
        "currency": event.currency, "period_start": event.period_start,
        "period_end": event.period_end, "at": event.at,
        "top_contributors": [[n, str(v)] for n, v in event.top_contributors],
    }  # fmt: skip


def event_from_dict(d: Mapping[str, Any]) -> AlertEvent:
    if d.get("kind") == "anomaly":  # an anomaly's alert, queued on the same channels
        from aifinops.core.anomaly_alert import anomaly_event_from_dict

        return anomaly_event_from_dict(d)
    return AlertEvent(**event_fields(d))


def event_fields(d: Mapping[str, Any]) -> dict[str, Any]:
    """An alert event's fields read back from `event_to_dict` (channels are not kept)."""
    return dict(
        key=d["key"], action=d["action"], budget=d["budget"], alert=d["alert"],
        scope=d["scope"], threshold_percent=Decimal(d["threshold_percent"]), basis=d["basis"],
        severity=d["severity"], spend=Decimal(d["spend"]), limit=Decimal(d["limit"]),
        forecast=None if d.get("forecast") is None else Decimal(d["forecast"]),
        currency=d["currency"], period_start=d["period_start"], period_end=d["period_end"],
        at=d["at"], top_contributors=tuple((n, Decimal(v)) for n, v in d["top_contributors"]),
    )  # fmt: skip
