"""One settings object: defaults < config file < environment < flags.

Environment: `AIFINOPS_DB` for the store, `AIFINOPS__SECTION__KEY` for anything else
(e.g. `AIFINOPS__ALLOCATION__IDLE=weighted`).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from aifinops.core.admission import AdmissionConfig
from aifinops.core.attribution import (
    DEFAULT_LABEL_KEYS,
    DEFAULT_SHARED_NAMESPACES,
    AttributionRules,
)
from aifinops.core.model import IdlePolicy, SharedGpuPolicy
from aifinops.core.pricing import (
    DEFAULT_CPU_CORE_HOURLY,
    DEFAULT_RAM_GIB_HOURLY,
    Discount,
    NodeRule,
    OnPremModel,
    PriceOverrides,
    SplitRates,
)
from aifinops.errors import ConfigError
from aifinops.outputs.rules import RulesConfig
from aifinops.sources.base import SourceConfig

DEFAULT_DB = "aifinops.duckdb"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeLabelPrice(_Strict):
    """Nodes with this label value cost `node_hourly` (the node) and/or `gpu_hourly` (each
    GPU), e.g. a reserved pool: `{label: acme.io/pool, value: reserved, node_hourly: 20}`."""

    label: str
    value: str
    node_hourly: Decimal | None = None
    gpu_hourly: Decimal | None = None
    region: str | None = None


class DiscountConfig(_Strict):
    """`percent` off catalog prices of a provider / instance type / GPU model (or all)."""

    percent: Decimal = Field(ge=0, le=100)
    provider: str | None = None
    instance_type: str | None = None
    gpu_model: str | None = None


class OnPremConfig(_Strict):
    """An owned GPU server: `{gpu_model: H100, purchase_price: 250000, gpus: 8, years: 4,
    residual_percent: 10, power_price_kwh: 0.12, pue: 1.4, rated_watts: 700,
    overhead_percent: 15}` (or `node: NAME` / `label: key=value` instead of `gpu_model`)."""

    purchase_price: Decimal = Field(ge=0)
    gpus: int = Field(ge=1)
    years: Decimal = Field(default=Decimal(4), gt=0)
    residual_percent: Decimal = Field(default=Decimal(0), ge=0, le=100)
    power_price_kwh: Decimal = Field(default=Decimal(0), ge=0)
    pue: Decimal = Field(default=Decimal(1), ge=1)
    rated_watts: Decimal = Field(default=Decimal(0), ge=0)
    overhead_percent: Decimal = Field(default=Decimal(0), ge=0)
    node: str | None = None
    gpu_model: str | None = None
    label: str | None = None

    def model(self) -> OnPremModel:
        return OnPremModel(**self.model_dump())


class PriceApiConfig(_Strict):
    """Cloud price APIs to ask (and cache for `ttl`); the bundled catalog is the fallback."""

    providers: list[str] = Field(default_factory=list)  # aws, azure, gcp
    ttl: str = "1h"
    azure_url: str = "https://prices.azure.com/api/retail/prices"
    azure_region: str | None = None
    gcp_url: str = "https://cloudbilling.googleapis.com/v1/services/6F81-5844-456A/skus"
    gcp_api_key: str | None = None
    aws_region: str = "us-east-1"

    @field_validator("providers")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - {"aws", "azure", "gcp"})
        if unknown:
            raise ValueError(f"unknown price API {', '.join(unknown)}; known: aws, azure, gcp")
        return value


class PricesConfig(_Strict):
    """Price overrides: USD per GPU-hour by GPU model, per node-hour by instance type."""

    gpu_models: dict[str, Decimal] = Field(default_factory=dict)
    instance_types: dict[str, Decimal] = Field(default_factory=dict)
    cpu_core_hourly: Decimal = DEFAULT_CPU_CORE_HOURLY
    ram_gib_hourly: Decimal = DEFAULT_RAM_GIB_HOURLY
    nodes: dict[str, Decimal] = Field(default_factory=dict)  # node name -> $/node-hour
    node_labels: list[NodeLabelPrice] = Field(default_factory=list)
    discounts: list[DiscountConfig] = Field(default_factory=list)
    custom_pricing_csv: str | None = None  # OpenCost's custom pricing CSV
    # price lists of one's own (catalog.csv's columns: negotiated, reserved, committed
    # prices), used before the bundled catalog
    catalog_files: list[str] = Field(default_factory=list)
    on_prem: list[OnPremConfig] = Field(default_factory=list)
    api: PriceApiConfig = Field(default_factory=PriceApiConfig)

    @field_validator("gpu_models", "instance_types")
    @classmethod
    def _non_negative(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for key, price in value.items():
            if price < 0:
                raise ValueError(f"price for {key!r} is negative")
        return value

    def overrides(
        self,
        extra_rules: tuple[NodeRule, ...] = (),
        measured_watts: Mapping[str, Decimal] | None = None,
    ) -> PriceOverrides:
        rules = [NodeRule("name", name, node_hourly=price) for name, price in self.nodes.items()]
        rules += [
            NodeRule(
                f"label:{r.label}",
                r.value,
                node_hourly=r.node_hourly,
                gpu_hourly=r.gpu_hourly,
                region=r.region,
            )
            for r in self.node_labels
        ]
        return PriceOverrides(
            instance_types=dict(self.instance_types),
            gpu_models=dict(self.gpu_models),
            node_rules=tuple(rules) + extra_rules,
            discounts=tuple(
                Discount(d.percent, d.provider, d.instance_type, d.gpu_model)
                for d in self.discounts
            ),
            on_prem=tuple(m.model() for m in self.on_prem),
            measured_watts=dict(measured_watts or {}),
        )

    def rates(self) -> SplitRates:
        return SplitRates(self.cpu_core_hourly, self.ram_gib_hourly)


class AttributionConfig(_Strict):
    """Which label keys name each dimension (first set wins), and namespace rules."""

    labels: dict[str, list[str]] = Field(default_factory=dict)
    namespace_teams: dict[str, str] = Field(default_factory=dict)
    shared_namespaces: list[str] = Field(default_factory=lambda: list(DEFAULT_SHARED_NAMESPACES))

    def rules(self) -> AttributionRules:
        keys = dict(DEFAULT_LABEL_KEYS)
        for dim, names in self.labels.items():
            keys[dim.replace("-", "_")] = tuple(names)
        return AttributionRules(
            label_keys=keys,
            namespace_teams=dict(self.namespace_teams),
            shared_namespaces=tuple(self.shared_namespaces),
        )


class AllocationConfig(_Strict):
    idle: IdlePolicy = IdlePolicy.SEPARATE
    shared_gpu: SharedGpuPolicy = SharedGpuPolicy.REQUEST
    # the step caps and shared idle are worked per: a duration, or `auto` (1h; 1d for a
    # window over 31 days with whole-day ends, read from the daily roll-up)
    step: str = "auto"

    @field_validator("step")
    @classmethod
    def _step(cls, value: str) -> str:
        if value.strip().lower() == "auto":
            return "auto"
        if _seconds(value, " (or auto)") < 60:
            raise ValueError(f"{value!r}: at least a minute")
        return value


class BillsConfig(_Strict):
    required_tags: list[str] = Field(
        default_factory=lambda: ["team", "project", "environment", "cost_center", "owner"]
    )


class ExportConfig(_Strict):
    """How the FOCUS chargeback export names its issuer (the platform team)."""

    billing_account_id: str = "aifinops"
    billing_account_name: str = "aifinops chargeback"


class AlertsConfig(_Strict):
    """How budget alerts are delivered: a failed delivery is retried, backing off from
    `retry_initial` to at most `retry_max` between tries, until it is delivered."""

    retry_initial: str = "30s"
    retry_max: str = "1h"
    timeout: float = Field(default=10.0, gt=0)
    # `serve` checks budgets after every change of the data, and at least this often
    check_every: str = "5m"


class ServerConfig(_Strict):
    """`aifinops serve` beside other replicas on one PostgreSQL store: one replica at a time
    runs the periodic jobs, by holding a lease in the store for `lease_seconds` that it
    renews each tick and before each job; when its holder dies, another replica takes the
    lease once it runs out (decision 0021). A single job that runs longer than this can
    overlap with the next holder's jobs (their writes are idempotent and alerts are sent
    once), so it is above the longest collection pass or rule run."""

    lease_seconds: float = Field(default=60.0, ge=1.0)


def _seconds(value: str, alternative: str) -> float:
    """A setting's duration in seconds; a ValueError naming what else it may be."""
    from aifinops.core.windows import parse_duration
    from aifinops.errors import UsageError

    try:
        return parse_duration(value).total_seconds()
    except UsageError as error:
        raise ValueError(f"{error}{alternative}") from None


def _duration_within(value: str, most_s: int, most: str) -> str:
    """A duration of settings: from an hour to `most_s` seconds (`most` in words)."""
    from aifinops.core.windows import parse_duration
    from aifinops.errors import UsageError

    try:
        seconds = parse_duration(value).total_seconds()
    except UsageError as error:
        raise ValueError(str(error)) from None
    except OverflowError:
        seconds = float("inf")
    if seconds < 3600:
        raise ValueError(f"{value!r}: at least an hour")
    if seconds > most_s:
        raise ValueError(f"{value!r}: at most {most}")
    return value


class RoiConfig(_Strict):
    """How applied recommendations are measured and what they repay: each is measured over
    `measure` before it was applied and the same after; `investment` (one-off) and
    `monthly_cost` (running) are what the payback is counted against."""

    measure: str = "7d"
    # amounts of money: up to 10^15, as `?investment=` takes (beyond, cents overflow)
    investment: Decimal = Field(default=Decimal(0), ge=0, le=Decimal("1e15"))
    monthly_cost: Decimal = Field(default=Decimal(0), ge=0, le=Decimal("1e15"))
    # `serve` runs the recommendation rules over the last `last` this often
    every: str = "1h"
    last: str = "7d"

    @field_validator("measure", "every", "last")
    @classmethod
    def _duration(cls, value: str) -> str:
        """From an hour to a year (longer would reach before the epoch, or past what a
        date can hold)."""
        return _duration_within(value, 366 * 86400, "a year (366d)")


class CommitmentConfig(_Strict):
    """A committed purchase the forecast adds from its start: its fee a month, less the
    on-demand spend it replaces (an amount an hour), on the scope it names
    (`{team: ml}`; empty: the whole)."""

    name: str = Field(min_length=1, max_length=200)
    start: date
    end: date | None = None
    monthly_fee: Decimal = Field(ge=0, le=Decimal("1e12"))
    replaces_hourly: Decimal = Field(default=Decimal(0), ge=0, le=Decimal("1e9"))
    scope: dict[str, str] = Field(default_factory=dict)

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: dict[str, str]) -> dict[str, str]:
        return {d: v for d, v in zip(_dimensions(list(value)), value.values(), strict=True)}

    @model_validator(mode="after")
    def _period(self) -> CommitmentConfig:
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"{self.name}: end {self.end} is not after start {self.start}")
        return self


def _dimensions(names: list[str]) -> list[str]:
    """Dimension names as the cost engine spells them ('gpu-model' -> 'gpu_model'), each
    one known and named once: a typo is found by `config show`, not by the first run."""
    from aifinops.core.model import ALL_DIMENSIONS, normalise_dimension

    out = [normalise_dimension(n) for n in names]
    for n in out:
        if n not in ALL_DIMENSIONS:
            raise ValueError(f"unknown dimension {n!r}; known: {', '.join(ALL_DIMENSIONS)}")
    twice = sorted({n for n in out if out.count(n) > 1})
    if twice:
        raise ValueError(f"a dimension is named twice: {', '.join(twice)}")
    return out


class ForecastConfig(_Strict):
    """Forecasts: how far ahead by default, how much history they rest on, when a workload
    that stopped is taken out of its history, what committed purchases are coming, and
    what `/metrics` projects (`ai_finops_monthly_cost_projection` by `metrics_by`)."""

    horizon: str = "30d"
    history: str = "90d"
    ended_min_days: int = Field(default=7, ge=1, le=366)
    commitments: list[CommitmentConfig] = Field(default_factory=list)
    metrics_by: list[str] = Field(default_factory=lambda: ["team"])
    # `serve` refreshes the projection this often
    every: str = "1h"

    @field_validator("metrics_by")
    @classmethod
    def _metrics_by(cls, value: list[str]) -> list[str]:
        return _dimensions(value)

    @field_validator("commitments")
    @classmethod
    def _names(cls, value: list[CommitmentConfig]) -> list[CommitmentConfig]:
        names = [c.name for c in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:  # each is added once: the same purchase twice would count its fee twice
            raise ValueError(f"commitment names must be unique: {', '.join(twice)}")
        return value

    @field_validator("horizon", "history", "every")
    @classmethod
    def _duration(cls, value: str) -> str:
        return _duration_within(value, 3 * 366 * 86400, "three years")


class AnomaliesConfig(_Strict):
    """Anomalies (`aifinops anomalies`, `/api/v1/anomalies`): a step is anomalous when it
    leaves its band by more than `sensitivity` robust standard deviations, by at least
    `min_amount` of its metric (a mapping by metric: spend, gpu_hours, cost_per_1m_tokens,
    idle_share, billed; those not given keep their defaults) and by `min_relative` of what
    was expected. `serve` checks the last `last` each `every` and alerts once per anomaly to
    the `channels` named under `channels:`; `metrics` are scoped by `by`, except `billed`
    (the stored bills), by `bills_by` (provider, account, sub_account or service)."""

    sensitivity: float = Field(default=4.0, gt=0, le=100, allow_inf_nan=False)
    min_amount: dict[str, Decimal] = Field(default_factory=dict)
    min_relative: Decimal = Field(default=Decimal("0.2"), ge=0, le=100)
    channels: list[str] = Field(default_factory=list)
    metrics: list[str] = Field(default_factory=lambda: ["spend"])
    by: str = "team"
    bills_by: str = "provider"
    every: str = "1h"
    last: str = "7d"

    @field_validator("min_amount")
    @classmethod
    def _amounts(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        from aifinops.core.anomaly import MIN_AMOUNT

        for name, amount in value.items():
            if name not in MIN_AMOUNT:
                raise ValueError(f"unknown metric {name!r}; known: {', '.join(MIN_AMOUNT)}")
            if not amount.is_finite() or amount < 0:
                raise ValueError(f"{name}: a non-negative amount")
        return {**MIN_AMOUNT, **value}

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: list[str]) -> list[str]:
        from aifinops.core.anomaly import METRICS

        for name in value:
            if name not in METRICS:
                raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
        return value

    @field_validator("bills_by")
    @classmethod
    def _bills_by(cls, value: str) -> str:
        from aifinops.core.anomaly import BILL_SCOPES

        if value not in BILL_SCOPES:
            raise ValueError(f"unknown bill dimension {value!r}; known: {', '.join(BILL_SCOPES)}")
        return value

    @field_validator("every", "last")
    @classmethod
    def _duration(cls, value: str) -> str:
        return RoiConfig._duration(value)

    @field_validator("by")
    @classmethod
    def _by(cls, value: str) -> str:
        from aifinops.core.anomaly import BILL_SCOPES
        from aifinops.core.model import normalise_dimension

        if normalise_dimension(value) in BILL_SCOPES:  # the bills' own, for `billed`
            return normalise_dimension(value)
        (dim,) = _dimensions([value])
        return dim


class RetentionConfig(_Strict):
    """How long the store keeps each grain of the GPU samples (docs/retention.md): raw
    samples, then their hourly roll-ups, then the daily ones; `forever` keeps them all.
    Each is deleted only where the next coarser roll-up holds it (`aifinops store compact`,
    and `serve` every `every`)."""

    samples: str = "30d"
    hourly: str = "400d"
    daily: str = "forever"
    every: str = "1h"

    @field_validator("samples", "hourly", "daily")
    @classmethod
    def _kept(cls, value: str) -> str:
        """A duration of a day or more (the daily roll-up is deleted by whole days), or
        `forever`."""
        if value == FOREVER:
            return value
        if _seconds(value, f"; or `{FOREVER}` to keep them all") < 86400:
            raise ValueError(f"{value!r}: at least a day (1d), or `{FOREVER}`")
        return value

    @field_validator("every")
    @classmethod
    def _every(cls, value: str) -> str:
        return _duration_within(value, 7 * 86400, "a week (7d)")

    @model_validator(mode="after")
    def _ordered(self) -> RetentionConfig:
        """Each grain is kept at least as long as the finer one: a coarser roll-up deleted
        first would leave an aligned window reading a table with its start gone."""
        kept = [self.kept_ms(name) for name in ("samples", "hourly", "daily")]
        for (finer, a), (coarser, b) in itertools.pairwise(
            zip(("samples", "hourly", "daily"), kept, strict=True)
        ):
            if b is not None and (a is None or a > b):
                raise ValueError(
                    f"retention.{coarser} ({getattr(self, coarser)}) is shorter than "
                    f"retention.{finer} ({getattr(self, finer)}): keep each roll-up at "
                    "least as long as the grain below it"
                )
        return self

    def kept_ms(self, name: str) -> int | None:
        """How long `name` (samples, hourly, daily) is kept, in ms; None: forever."""
        value = getattr(self, name)
        if value == FOREVER:
            return None
        from aifinops.core.windows import parse_duration

        return int(parse_duration(value).total_seconds() * 1000)


FOREVER = "forever"


class Settings(_Strict):
    db: str = DEFAULT_DB
    currency: str = "USD"
    prices: PricesConfig = Field(default_factory=PricesConfig)
    attribution: AttributionConfig = Field(default_factory=AttributionConfig)
    allocation: AllocationConfig = Field(default_factory=AllocationConfig)
    sources: list[SerializeAsAny[SourceConfig]] = Field(default_factory=list)
    bills: BillsConfig = Field(default_factory=BillsConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    # budgets declared here (the shape of core/budgets.py); `budget apply` and the API keep
    # theirs in the store
    budgets: list[dict[str, Any]] = Field(default_factory=list)
    # named alert channels (`{type: slack, config: {...}}`) that budgets refer to by name
    channels: dict[str, dict[str, Any]] = Field(default_factory=dict)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    # the admission webhook (`/api/v1/admission`): warn or enforce, fail open or closed
    admission: AdmissionConfig = Field(default_factory=AdmissionConfig)
    # recommendation rules' configs by name (`idle-gpu: {busy_threshold: 0.05}`), checked
    # by each rule's own model when the rules run
    recommendations: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # applied recommendations' measurement, the payback's investment, the serve job
    roi: RoiConfig = Field(default_factory=RoiConfig)
    # forecasts: horizon, history, known future changes, the projection on /metrics
    forecast: ForecastConfig = Field(default_factory=ForecastConfig)
    # anomalies: the band, the least jump, the serve job and its channels
    anomalies: AnomaliesConfig = Field(default_factory=AnomaliesConfig)
    # how long raw samples and their hourly and daily roll-ups are kept
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    # what `aifinops rules` generates (idle held GPUs, temperature, unit-cost limits)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    # `serve`'s replicas: the lease that lets one of them at a time run the jobs
    server: ServerConfig = Field(default_factory=ServerConfig)

    @field_validator("recommendations")
    @classmethod
    def _rules(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Each rule's config checked against its model at load (a typo is found by
        `config show`, not by the first run)."""
        from pydantic import ValidationError

        from aifinops.core.recommend import RULES
        from aifinops.core.recommend import rules as _builtins  # noqa: F401  (registers them)

        for name, cfg in value.items():
            if name not in RULES:
                raise ValueError(f"unknown recommendation rule {name!r}; known: "
                                 f"{', '.join(sorted(RULES))}")  # fmt: skip
            if not isinstance(cfg, dict):
                raise ValueError(f"{name}: a mapping of its settings, not {cfg!r}")
            try:
                RULES[name][0].model_validate(cfg)
            except ValidationError as error:
                why = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                for e in error.errors())  # fmt: skip
                raise ValueError(f"{name}: {why}") from None
        return value

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from aifinops.core.budgets import parse_budgets

        try:
            parse_budgets(value, "budgets")  # each one checked as `budget apply` would
        except ConfigError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("anomalies")
    @classmethod
    def _anomaly_channels(cls, value: AnomaliesConfig, info: ValidationInfo) -> AnomaliesConfig:
        """Each of `anomalies.channels` named under `channels:` (else the check fails at
        its first anomaly, in the server's log)."""
        named = info.data.get("channels") or {}
        missing = [n for n in value.channels if n not in named]
        if missing:
            raise ValueError(
                f"channels: no channel named {', '.join(map(repr, missing))} under "
                f"`channels:` (named: {', '.join(named) or 'none'})"
            )
        return value

    @model_validator(mode="after")
    def _budget_scopes(self) -> Settings:
        """Each declared budget's scope read through the attribution rules in force: a
        label naming no dimension is an error here, not at every check."""
        from aifinops.core.budgets import label_dimensions, parse_budgets

        dims = label_dimensions(self.attribution.rules().keys_for)
        for b in parse_budgets(self.budgets, "budgets"):
            try:
                b.spec.scope.wants(dims)
            except ConfigError as error:
                raise ValueError(f"budget {b.name!r}: {error.message}") from None
        return self

    @field_validator("sources", mode="before")
    @classmethod
    def _typed(cls, value: Any) -> list[SourceConfig]:
        """Each source validated by its kind's own config (the union chosen by `kind:`)."""
        from aifinops.sources.registry import parse_configs

        if not value:
            return []
        items = [v.model_dump() if isinstance(v, SourceConfig) else v for v in value]
        configs = parse_configs(items)
        names = [s.name for s in configs]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"source names must be unique: {', '.join(twice)}")
        unnamed = [s.kind for s in configs if not s.name]
        if unnamed:
            raise ValueError(f"every source needs a name ({', '.join(unnamed)})")
        return configs


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML says keys are
    unique; the plain loader keeps the last one silently: `limit: 10` then `limit: 99999`)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def yaml_documents(text: str) -> list[Any]:
    """Every document of a YAML text (budget files, request bodies): safe, keys unique."""
    return list(yaml.load_all(text, Loader=_StrictLoader))


def _config_text(data: bytes) -> str:
    """The config file's text: UTF-8 (a BOM is fine) or UTF-16 with a BOM, as YAML allows;
    else Windows-1252 (Latin-1), as editors on Windows save it, so a team name with an
    umlaut reads as written instead of failing."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:  # the five bytes cp1252 leaves undefined
            return data.decode("latin-1")


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if config_file is not None:
        path = Path(config_file)
        try:
            docs = yaml_documents(_config_text(path.read_bytes()))
            if len(docs) > 1:
                raise ConfigError("the config file holds several YAML documents", where=str(path))
            loaded = (docs[0] if docs else None) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read the config file: {exc}", where=str(path)) from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"not valid YAML: {exc}", where=str(path)) from exc
        if not isinstance(loaded, dict):
            raise ConfigError("the config file must hold a mapping", where=str(path))
        data = loaded
    if env.get("AIFINOPS_DB"):
        data["db"] = env["AIFINOPS_DB"]
    for key, value in env.items():
        if key.startswith("AIFINOPS__"):
            path_parts = [p.lower() for p in key[len("AIFINOPS__") :].split("__") if p]
            cursor = data
            for part in path_parts[:-1]:
                cursor = cursor.setdefault(part, {})
            cursor[path_parts[-1]] = value
    for key, value in (flags or {}).items():
        if value is not None:
            data[key] = value
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"invalid settings: {problems}",
            where=str(config_file) if config_file else "environment",
        ) from exc
