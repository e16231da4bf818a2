"""Forecasts (issue 16) on a generated fleet whose future is known by hand.

The fleet: node `srv`, four L4 GPUs at $4.00 per GPU-hour, one-hour samples from
1 October 2026 00:00 to 20 November 2026 12:00 UTC (a Friday) — the newest sample, where
every forecast begins.
- `ml/base` holds GPU-0 throughout: $96 a day, $4 an hour.
- `ml/train` holds GPU-1 from 10 October to 18 November 00:00: $96 a day, then it ends.
- `web/batch` holds GPU-2 on Saturdays and Sundays only: $96 on each weekend day.

So, worked out by hand:
- team ml, November so far: base 19.5 days x $96 = $1,872, train 17 days x $96 = $1,632:
  $3,504. The train ended (39 days held, none since 17 November), so it is taken out of
  the history: the rest of November is base alone, 10.5 days x $96 = $1,008, the month
  $4,512; December 31 x $96 = $2,976. Without the known end the history's last days would
  carry $192 a day on.
- team web, November so far: weekend days 1, 7, 8, 14, 15 = 5 x $96 = $480; the rest:
  21, 22, 28, 29 = $384; the month $864. December's weekend days: 5, 6, 12, 13, 19, 20,
  26, 27 = 8 x $96 = $768. A pure weekly pattern: the seasonal naive forecast is exact,
  its backtest error nil, so its intervals have no width.
- a commitment from 1 December on team ml, $730 a month ($24 a day: 730 x 12 / 365) that
  replaces $0.50 an hour of on-demand ($12 a day): December $2,976 + 31 x $12 = $3,348.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aifinops.service import Service
from tests import test_api
from tests.conftest import HOUR, load_facts, sample
from tests.test_budgets import hours, ms

pytestmark = pytest.mark.engines


OCT1 = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 11, 20, 12, tzinfo=UTC)
PRICES: dict[str, Any] = {"prices": {"gpu_models": {"L4": 4.00}}}
COMMITMENT = {"name": "ri-ml", "start": "2026-12-01", "monthly_fee": 730,
              "replaces_hourly": 0.5, "scope": {"team": "ml"}}  # fmt: skip


def pod(ns: str, name: str, team: str, gpu: int) -> dict[str, Any]:
    return {"workload_id": f"{ns}/{name}", "kind": "pod", "namespace": ns, "name": name,
            "node_id": "srv", "gpu_request": 1, "gpu_resource": "nvidia.com/gpu",
            "labels": {"team": team}, "start_ms": ms(OCT1), "end_ms": None,
            "source": "test"}  # fmt: skip


def fleet(svc: Service) -> None:
    node = {"node_id": "srv", "gpu_model": "NVIDIA L4", "gpu_count": 4, "provider": "aws",
            "resource_id": "i-0srv", "source": "test"}  # fmt: skip
    train_end = datetime(2026, 11, 18, tzinfo=UTC)
    rows = []
    for t in hours(OCT1, END):
        at = datetime.fromtimestamp(t / 1000, tz=UTC)
        held = [("GPU-0", "ml/base")]
        if datetime(2026, 10, 10, tzinfo=UTC) <= at < train_end:
            held.append(("GPU-1", "ml/train"))
        if at.weekday() >= 5:
            held.append(("GPU-2", "web/batch"))
        for gpu, w in held:
            rows += sample(t, "srv", gpu, [(w, 1.0, 1.0, 0.9)], HOUR)
    load_facts(svc, [node], [pod("ml", "base", "ml", 0), pod("ml", "train", "ml", 1),
                             pod("web", "batch", "web", 2)], rows)  # fmt: skip


@pytest.fixture
def svc(make_service: Callable[..., Service]) -> Service:
    s = make_service({**PRICES, "forecast": {"commitments": [COMMITMENT]}})
    fleet(s)
    return s


def by_team(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["key"]["team"]: s for s in doc["scopes"]}


def test_month_end_with_an_ended_workload_and_a_weekly_pattern(svc: Service) -> None:
    doc = svc.forecast(by=("team",), period_end=True).to_dict()
    assert doc["at"] == "2026-11-20T12:00:00Z"  # the newest sample, not the clock
    assert (doc["from"], doc["to"], doc["step"]) == (
        "2026-11-20T00:00:00Z",
        "2026-12-01T00:00:00Z",
        "1d",
    )
    teams = by_team(doc)
    ml, web = teams["ml"], teams["web"]
    (nov,) = ml["periods"]
    assert (nov["actual"], nov["forecast"]) == ("3504.00", "4512.00")
    assert nov["interval80"] == nov["interval95"] == ["4512.00", "4512.00"]
    assert nov["complete"] is True
    assert ml["adjustments"][0] == {"kind": "workload ended", "workload": "ml/train",
                                    "last_spend": "2026-11-17T00:00:00Z",
                                    "removed_per_day": "96.00"}  # fmt: skip
    assert ml["note"] is None and ml["history_steps"] == 50  # 1 Oct .. 19 Nov
    (nov,) = web["periods"]
    assert (nov["actual"], nov["forecast"]) == ("480.00", "864.00")
    assert nov["interval95"] == ["864.00", "864.00"]
    assert web["method"] == "seasonal naive"
    # the days ahead: Saturday 21 and Sunday 22 at $96, Monday 23 nothing
    points = {p["start"][:10]: p["mean"] for p in web["points"]}
    assert (points["2026-11-21"], points["2026-11-22"], points["2026-11-23"]) == (
        "96.00",
        "96.00",
        "0.00",
    )
    # the whole fleet's own forecast (not a sum of intervals): 3504 + 480 and the rest
    (nov,) = doc["total"]["periods"]
    assert nov["actual"] == "3984.00"


def test_the_period_resets_and_a_commitment_is_added_once(svc: Service) -> None:
    """A horizon to 1 January: December starts from nothing; the commitment's net $12 a
    day lands on team ml only, and once in the whole fleet's forecast."""
    doc = svc.forecast(by=("team",), horizon="42d").to_dict(points=False)
    assert doc["to"] == "2027-01-01T00:00:00Z"
    teams = by_team(doc)
    nov, dec = teams["ml"]["periods"]
    assert nov["forecast"] == "4512.00" and nov["complete"] is True
    assert (dec["start"], dec["actual"], dec["forecast"]) == (
        "2026-12-01T00:00:00Z",
        "0.00",
        "3348.00",
    )
    assert dec["complete"] is True
    assert {a["kind"] for a in teams["ml"]["adjustments"]} == {"workload ended", "commitment"}
    _, dec = teams["web"]["periods"]
    assert dec["forecast"] == "768.00"
    _, dec = doc["total"]["periods"]
    assert Decimal(dec["forecast"]) == Decimal("3348.00") + Decimal("768.00")


def test_a_short_horizon_is_hourly(svc: Service) -> None:
    """One day ahead, per hour: team ml's base at $4 an hour (the train long gone)."""
    doc = svc.forecast(by=("team",), horizon="1d").to_dict()
    assert doc["step"] == "1h"
    assert (doc["from"], doc["to"]) == ("2026-11-20T12:00:00Z", "2026-11-21T12:00:00Z")
    ml = by_team(doc)["ml"]
    assert len(ml["points"]) == 24
    assert {p["mean"] for p in ml["points"]} == {"4.00"}
    (nov,) = ml["periods"]
    assert (nov["actual"], nov["forecast"], nov["complete"]) == ("3504.00", "3600.00", False)


def test_bad_requests_say_what_and_where(svc: Service) -> None:
    from aifinops.errors import UsageError

    with pytest.raises(UsageError, match="not both"):
        svc.forecast(horizon="30d", period_end=True)
    with pytest.raises(UsageError) as e:
        svc.forecast(horizon="400d")
    assert e.value.where == "--horizon"
    with pytest.raises(UsageError):
        svc.forecast(by=("no-such-dimension",))


def test_budget_projection_comes_from_the_forecast(svc: Service) -> None:
    """A budget on team web: its projected period spend is the forecast's $864."""
    svc.apply_budgets([{"name": "web", "limit": 1000, "scope": {"teams": ["web"]}}])
    (status,) = svc.budget_statuses(END)
    p = status.to_dict()["projectedPeriodSpend"]
    assert (p["method"], p["amount"], p["interval95"]) == (
        "seasonal naive",
        "864.00",
        ["864.00", "864.00"],
    )


serve = test_api.serve  # the fixture: the app on a free loopback port


def test_cli_api_and_metrics(
    make_service: Callable[..., Service], tmp_path: Path, serve: Callable[..., Any],
    cli: Callable[..., Any],
) -> None:  # fmt: skip
    import yaml

    config = {**PRICES, "forecast": {"commitments": [COMMITMENT]}}
    svc = make_service(config)
    fleet(svc)
    token = svc.create_token("viewer", "viewer")
    db = svc.settings.db
    svc.close()
    cfg = tmp_path / "cli.yaml"
    cfg.write_text(yaml.safe_dump({**config, "db": str(db)}))
    run = cli("--config", str(cfg), "forecast", "--period-end", "--format", "json",
              cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert by_team(json.loads(run.stdout))["ml"]["periods"][0]["forecast"] == "4512.00"
    table = cli("--config", str(cfg), "forecast", "--period-end", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "4512.00" in table.stdout and "seasonal naive" in table.stdout
    bad = cli("--config", str(cfg), "forecast", "--horizon", "soon", cwd=tmp_path)
    assert bad.returncode != 0 and "--horizon" in bad.stderr

    running = serve(db, config, jobs=True)
    got = running.get("/api/v1/forecast?by=team&period_end=true", token).json()
    assert by_team(got)["web"]["periods"][0]["forecast"] == "864.00"
    import time

    deadline = time.monotonic() + 60
    while True:
        metrics = running.get("/metrics", token).text
        if "ai_finops_monthly_cost_projection{" in metrics or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert 'ai_finops_monthly_cost_projection{currency="USD",team="ml"} 4512.0' in metrics
    assert 'ai_finops_monthly_cost_projection{currency="USD",team="web"} 864.0' in metrics


def test_backtest_on_the_stores_history(svc: Service) -> None:
    """October is the one complete month (the data begin on 1 October). Team web's
    weekend days in October: 3, 4, 10, 11, 17, 18, 24, 25, 31: $864.
    - Day 7 (1-7 October, $192 spent; 7 days, too few for a model): the run-rate, as the
      baseline: 192 / 7 x 31 = $850.29, off by 13.71 / 864 = 1.59 %.
    - Day 14 (exactly two weeks: the run-rate with weekday seasonality, Saturday's and
      Sunday's factor 3.5, the rest 0) and day 21 (a model chosen on 7 origins: the
      seasonal naive forecast is exact): both exact, where the run-rate baseline is still
      $850.29 (384 / 14 x 31 and 576 / 21 x 31), 1.59 % off."""
    doc = svc.forecast_backtest(by=("team",))
    web = next(s for s in doc["scopes"] if s["key"] == {"team": "web"})
    at = web["checkpoints"]
    assert web["cases"] == 3
    assert (at[7]["mape"], at[7]["baseline_mape"]) == (1.59, 1.59)
    assert (at[14]["mape"], at[14]["baseline_mape"]) == (0.0, 1.59)
    assert (at[21]["mape"], at[21]["baseline_mape"]) == (0.0, 1.59)
    assert (web["coverage80"], web["coverage95"]) == (100.0, 100.0)
    assert doc["notes"] == []
