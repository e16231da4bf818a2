"""Prometheus alerting rules made from config (`aifinops rules`): a rule file document.

Three groups, each rule with a `severity` label and `summary`/`description` annotations
that Prometheus fills in from the alert's labels and value:

- `aifinops-gpu`, over dcgm-exporter's series:
  `AifinopsGpuIdleHeld` — a GPU that a pod holds (dcgm-exporter's pod mapping gives the
  series a non-empty `pod`, and `namespace`, `container`) whose utilisation stayed under
  a threshold for a while. An unallocated GPU (`pod=""`) is idle capacity, not waste a
  team can act on, so it never fires this (the seed's `avg by (node, gpu)
  (DCGM_FI_DEV_GPU_UTIL) < 20` did). `AifinopsGpuTemperatureHigh` — a GPU running hot,
  whoever holds it (the pod labels are aggregated away, so a shared GPU alerts once).
  The label names are dcgm-exporter's (`Hostname`, `gpu`, `UUID`, `modelName`, `pod`,
  `namespace`); where a scrape renamed the pod labels (`exported_pod`), set them in `dcgm`.
- `aifinops-budgets`, over aifinops' own `/metrics`: `AifinopsBudgetThreshold`, one rule
  per budget and threshold, on `ai_finops_budget_utilization_ratio{budget}` (spend so far
  over the limit) or, for a forecast threshold, `ai_finops_budget_forecast_utilization_ratio`
  (projected period spend over the limit). The seed's `sum(ai_finops_team_cost_daily) >
  1000` summed every team against one figure and named no budget; these replace it.
- `aifinops-unit-costs`: `AifinopsCostPerMillionTokens` and `AifinopsCostPerRequest` on
  `ai_finops_cost_per_1m_tokens{model}` and `ai_finops_cost_per_request{model}`, a limit per
  model, `*` for every model not named. There is no per-job rule: aifinops exports no
  per-job cost series yet (jobs are unbounded label values, which `/metrics` keeps out).

Pure: config and budgets in, a mapping out; `rules_yaml` writes it as YAML.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["info", "warning", "critical"]
HUNDRED = Decimal(100)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DcgmLabels(_Strict):
    """dcgm-exporter's label names (a scrape without `honor_labels` may rename the pod's
    to `exported_pod` / `exported_namespace`)."""

    host: str = "Hostname"
    gpu: str = "gpu"
    uuid: str = "UUID"
    model: str = "modelName"
    pod: str = "pod"
    namespace: str = "namespace"


class IdleGpuRule(_Strict):
    enabled: bool = True
    utilization_percent: float = Field(default=5.0, gt=0, le=100)
    for_minutes: int = Field(default=30, ge=1)
    severity: Severity = "warning"


class TemperatureRule(_Strict):
    enabled: bool = True
    celsius: float = Field(default=85.0, gt=0)
    for_minutes: int = Field(default=5, ge=0)
    severity: Severity = "warning"


class RulesConfig(_Strict):
    """What `aifinops rules` generates."""

    dcgm: DcgmLabels = Field(default_factory=DcgmLabels)
    idle_gpu: IdleGpuRule = Field(default_factory=IdleGpuRule)
    gpu_temperature: TemperatureRule = Field(default_factory=TemperatureRule)
    # a budget's ratio only grows within its period: no `for` needed to ride out flapping
    budget_for_minutes: int = Field(default=0, ge=0)
    # limits in the store's currency; a model name, or `*` for every model not named
    cost_per_million_tokens: dict[str, Decimal] = Field(default_factory=dict)
    cost_per_request: dict[str, Decimal] = Field(default_factory=dict)
    unit_cost_for_minutes: int = Field(default=15, ge=0)
    unit_cost_severity: Severity = "warning"


class BudgetThreshold(NamedTuple):
    """One alert threshold of a budget, as a percentage of its limit."""

    percent: Decimal
    severity: Severity | None = None  # None: critical at 100 % or more, else warning
    basis: Literal["actual", "forecast"] = "actual"


BudgetThresholds = Sequence[tuple[str, Sequence[Decimal | BudgetThreshold]]]


def alert_rules(config: RulesConfig, budgets: BudgetThresholds = ()) -> dict[str, Any]:
    """The rule file: `{groups: [...]}`. `budgets` is (budget name, its thresholds): a
    bare percentage is an `actual` threshold."""
    groups = [
        {"name": "aifinops-gpu", "rules": _gpu_rules(config)},
        {"name": "aifinops-budgets", "rules": _budget_rules(config, budgets)},
        {"name": "aifinops-unit-costs", "rules": _unit_cost_rules(config)},
    ]
    return {"groups": [g for g in groups if g["rules"]]}


def rules_yaml(document: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(document, sort_keys=False, width=1000, allow_unicode=True)


# -- the rules --------------------------------------------------------------------------


def _gpu_rules(config: RulesConfig) -> list[dict[str, Any]]:
    lab, out = config.dcgm, []
    device = [lab.host, lab.gpu, lab.uuid, lab.model]
    where = f"GPU {_v(lab.gpu)} ({_v(lab.model)}) on {_v(lab.host)}"
    idle = config.idle_gpu
    if idle.enabled:
        by = ", ".join([*device, lab.namespace, lab.pod])
        # max over duplicate series (two scrapes of one exporter): idle only if none is busy
        expr = (f'max by ({by}) (DCGM_FI_DEV_GPU_UTIL{{{lab.pod}!=""}}) '
                f"< {_num(idle.utilization_percent)}")  # fmt: skip
        out.append(_rule(
            "AifinopsGpuIdleHeld", expr, idle.for_minutes, {"severity": idle.severity},
            summary=f"{where} is held by {_v(lab.namespace)}/{_v(lab.pod)} but idle",
            description=(
                f"Pod {_v(lab.namespace)}/{_v(lab.pod)} holds {where}, whose utilisation has "
                f"stayed under {_num(idle.utilization_percent)}% for {idle.for_minutes} "
                "minutes (now {{ $value }}%). The GPU is paid for and unused: release it "
                "(scale the pod down or stop the notebook) or share it."),
        ))  # fmt: skip
    hot = config.gpu_temperature
    if hot.enabled:
        expr = f"max by ({', '.join(device)}) (DCGM_FI_DEV_GPU_TEMP) > {_num(hot.celsius)}"
        out.append(_rule(
            "AifinopsGpuTemperatureHigh", expr, hot.for_minutes, {"severity": hot.severity},
            summary=f"{where} is at {{{{ $value }}}} °C",
            description=(
                f"{where} has been above {_num(hot.celsius)} °C for {hot.for_minutes} minutes "
                "(now {{ $value }} °C); it will throttle its clocks and slow the work on it. "
                "Check its cooling and the node's fans."),
        ))  # fmt: skip
    return out


def _budget_rules(config: RulesConfig, budgets: BudgetThresholds) -> list[dict[str, Any]]:
    out = []
    for name, thresholds in budgets:
        for given in thresholds:
            t = given if isinstance(given, BudgetThreshold) else BudgetThreshold(given)
            percent = Decimal(t.percent)
            severity = t.severity or ("critical" if percent >= HUNDRED else "warning")
            forecast = t.basis == "forecast"
            metric = ("ai_finops_budget_forecast_utilization_ratio" if forecast
                      else "ai_finops_budget_utilization_ratio")  # fmt: skip
            pct = f"{percent.normalize():f}"
            expr = f"{metric}{{budget={_quote(name)}}} >= {_dec(percent / HUNDRED)}"
            labels = {"budget": name, "threshold": pct, "basis": t.basis, "severity": severity}
            what = "is forecast to reach" if forecast else "has reached"
            spend = "projected spend for the period" if forecast else "spend so far this period"
            out.append(_rule(
                "AifinopsBudgetThreshold", expr, config.budget_for_minutes, labels,
                summary=f"Budget {_v('budget')} {what} {{{{ $value | humanizePercentage }}}} "
                        "of its limit",
                description=(f"The {spend} of budget {_v('budget')} is {{{{ $value | "
                             f"humanizePercentage }}}} of its limit (threshold {pct}%). See "
                             f"`aifinops budget status {name}` for its spend and top "
                             "contributors."),
            ))  # fmt: skip
    return out


def _unit_cost_rules(config: RulesConfig) -> list[dict[str, Any]]:
    out = []
    for alert, metric, limits, unit, digits in (
        ("AifinopsCostPerMillionTokens", "ai_finops_cost_per_1m_tokens",
         config.cost_per_million_tokens, "1M tokens", 2),
        ("AifinopsCostPerRequest", "ai_finops_cost_per_request", config.cost_per_request,
         "request", 6),
    ):  # fmt: skip
        value = f'{{{{ $value | printf "%.{digits}f" }}}}'
        named = sorted(m for m in limits if m != "*")
        for model in [*named, "*"] if "*" in limits else named:
            if model == "*":
                # every model without a limit of its own
                pick = f'{{model!~"{_regex(named)}"}}' if named else ""
            else:
                pick = f"{{model={_quote(model)}}}"
            limit = _dec(limits[model])
            out.append(_rule(
                alert, f"{metric}{pick} > {limit}", config.unit_cost_for_minutes,
                {"severity": config.unit_cost_severity, "limit": limit},
                summary=f"Model {_v('model')} costs {value} per {unit}",
                description=(f"Serving model {_v('model')} cost {value} per {unit} over the "
                             f"newest 24 hours of data, above the limit of {limit}. See "
                             "`aifinops cost --by model --unit tokens` for its GPU-hours."),
            ))  # fmt: skip
    return out


# -- helpers ----------------------------------------------------------------------------


def _rule(alert: str, expr: str, for_minutes: int, labels: dict[str, str], *, summary: str,
          description: str) -> dict[str, Any]:  # fmt: skip
    rule: dict[str, Any] = {"alert": alert, "expr": expr}
    if for_minutes:
        rule["for"] = f"{for_minutes}m"
    rule["labels"] = labels
    rule["annotations"] = {"summary": summary, "description": description}
    return rule


def _v(label: str) -> str:
    """A label's value in an annotation template."""
    return f"{{{{ $labels.{label} }}}}"


def _num(value: float) -> str:
    return f"{value:g}"


def _dec(value: Decimal) -> str:
    return f"{Decimal(value).normalize():f}"


def _quote(value: str) -> str:
    """A PromQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _regex(values: Sequence[str]) -> str:
    """An RE2 alternation of literal values, as the inside of a PromQL string."""
    body = "|".join("".join("\\" + c if c in _RE2_SPECIAL else c for c in v) for v in values)
    return body.replace("\\", "\\\\").replace('"', '\\"')


_RE2_SPECIAL = set("\\.+*?()|[]{}^$")
