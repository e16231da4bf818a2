"""Hostile and careless input to the forecast, anomalies, job counters and their config
(issue 16): each bad value refused with what and where, each odd but valid one given the
right number.

Most cases run on the forecast tests' fleet (tests/test_forecast.py: node `srv`, L4 GPUs
at $4.00 per GPU-hour, hourly samples from 1 October to 20 November 2026 12:00 UTC; team ml
is `ml/base` all along and `ml/train` until 18 November, team web is `web/batch` on
weekends; a commitment `ri-ml` on team ml from 1 December, $730 a month = $24 a day,
replacing $0.50 an hour = $12 a day of on-demand spend)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from aifinops.config import load_settings
from aifinops.core.windows import parse_duration, parse_instant
from aifinops.errors import ConfigError, UsageError
from aifinops.service import Service
from aifinops.sources.serving.inference import read_counters
from tests import test_api
from tests.conftest import HOUR, load_facts, sample
from tests.test_forecast import COMMITMENT, PRICES, fleet, pod

serve = test_api.serve  # the fixture: the app on a free loopback port


@pytest.fixture
def svc(make_service: Callable[..., Service]) -> Service:
    s = make_service({**PRICES, "forecast": {"commitments": [COMMITMENT]}})
    fleet(s)
    return s


def keyed(doc: dict[str, Any], dim: str) -> dict[str, dict[str, Any]]:
    return {s["key"][dim]: s for s in doc["scopes"]}


# -- the time and duration parsers every face shares --------------------------------------
def test_absurd_durations_and_times_are_usage_errors() -> None:
    """60,000 digits went to int() (past Python's 4,300-digit limit: a ValueError, a 500
    on the API); a date at the end of datetime's range moved past it by its UTC offset
    raised OverflowError."""
    with pytest.raises(UsageError) as e:
        parse_duration("9" * 60_000 + "d", what="--horizon")
    assert (e.value.where, e.value.message) == (
        "--horizon",
        f"--horizon {'9' * 60_000 + 'd'!r} is longer than 100 years",
    )
    assert parse_duration("0000000000000000000000007d") == parse_duration("7d")
    for text in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"):
        with pytest.raises(UsageError) as e:
            parse_instant(text, what="--at")
        assert (e.value.where, e.value.message) == ("--at", f"cannot read {text!r} as a time")


# -- forecast -----------------------------------------------------------------------------
def test_dimension_spellings_name_the_same_scopes(svc: Service) -> None:
    """`--by gpu-model` (the spelling the error's hint gives) and `--by TEAM` were read
    back under the user's spelling, found no such key and merged every scope into one."""
    by_team = keyed(svc.forecast(by=("team",), period_end=True).to_dict(), "team")
    shouty = keyed(svc.forecast(by=(" TEAM ",), period_end=True).to_dict(), "team")
    assert set(shouty) == {"ml", "web"}
    assert shouty["ml"]["periods"] == by_team["ml"]["periods"]
    assert shouty["ml"]["periods"][0]["forecast"] == "4512.00"
    doc = svc.forecast(by=("gpu-model",), period_end=True).to_dict()
    assert doc["by"] == ["gpu_model"]
    assert [s["key"] for s in doc["scopes"]] == [{"gpu_model": "NVIDIA L4"}]
    with pytest.raises(UsageError, match="a dimension is named twice"):
        svc.forecast(by=("gpu-model", "gpu_model"))


def test_by_workload_and_a_commitment_that_names_no_workload(svc: Service) -> None:
    """`--by workload` was refused as 'a dimension is named twice'. Per workload to 1
    January: ml/base $96 a day (November 1,872 + 10.5 days = 2,880; December 2,976);
    ml/train ended (November its 17 days, 1,632, and nothing more); web/batch as team web.
    The commitment on team ml names no workload, so it is a row of its own (31 days x $24
    = $744 in December; nothing of it replaced there), not added to the first workload."""
    doc = svc.forecast(by=("workload",), horizon="42d").to_dict(points=False)
    scopes = keyed(doc, "workload")
    assert set(scopes) == {"ml/base", "ml/train", "web/batch", "(commitment ri-ml)"}
    months = {w: [p["forecast"] for p in s["periods"]] for w, s in scopes.items()}
    assert months == {"ml/base": ["2880.00", "2976.00"], "ml/train": ["1632.00", "0.00"],
                      "web/batch": ["864.00", "768.00"],
                      "(commitment ri-ml)": ["0.00", "744.00"]}  # fmt: skip
    assert scopes["ml/base"]["adjustments"] == []
    assert [a["kind"] for a in scopes["(commitment ri-ml)"]["adjustments"]] == ["commitment"]
    backtest = svc.forecast_backtest(by=("workload",))
    assert {s["key"]["workload"] for s in backtest["scopes"]} == {
        "ml/base", "ml/train", "web/batch"}  # fmt: skip


def test_a_commitment_outside_the_horizon_adds_no_row(
    make_service: Callable[..., Service],
) -> None:
    """A commitment that ended before the forecast begins, on a team with no spend, used
    to add an empty row for that team."""
    old = {"name": "old", "start": "2025-01-01", "end": "2025-12-31", "monthly_fee": 100,
           "scope": {"team": "gone"}}  # fmt: skip
    s = make_service({**PRICES, "forecast": {"commitments": [old]}})
    fleet(s)
    doc = s.forecast(by=("team",), period_end=True).to_dict(points=False)
    assert set(keyed(doc, "team")) == {"ml", "web"}


def test_bad_forecast_options_say_what_and_where(svc: Service) -> None:
    """An empty --horizon or --history was read as 'the default'; an --at before the
    data gave an empty table and exit 0."""
    cases = [
        ({"horizon": ""}, "--horizon", "cannot read '' as a duration"),
        ({"history": ""}, "--history", "cannot read '' as a duration"),
        ({"horizon": "0d"}, "--horizon", "--horizon must be positive, got '0d'"),
        ({"horizon": "367d"}, "--horizon", "a horizon from 1h to 366d, not '367d'"),
        ({"history": "1s"}, "--history", "a history from 1d to 3 years, not '1s'"),
        ({"by": ("nonsense",)}, "--by", "cannot group by 'nonsense'"),
        ({"at": datetime(1900, 1, 1, tzinfo=UTC)}, "--at",
         "1900-01-01T00:00:00Z is not after the first sample (2026-10-01T00:00:00Z): "
         "there is no history to forecast from"),
        ({"at": datetime(2026, 10, 1, tzinfo=UTC)}, "--at",
         "2026-10-01T00:00:00Z is not after the first sample (2026-10-01T00:00:00Z): "
         "there is no history to forecast from"),
    ]  # fmt: skip
    for options, where, message in cases:
        with pytest.raises(UsageError) as e:
            svc.forecast(**options)
        assert (e.value.where, e.value.message) == (where, message), options
    with pytest.raises(UsageError) as e:
        svc.forecast_backtest(at=datetime(2026, 9, 1, tzinfo=UTC))
    assert e.value.where == "--at"
    with pytest.raises(UsageError) as e:  # was an empty report: no month fits in a second
        svc.forecast_backtest(history="1s")
    assert (e.value.where, e.value.message) == (
        "--history",
        "a history of at least 28d (a whole month), not '1s'",
    )
    # after the data: the newest sample, as without --at, and said
    doc = svc.forecast(by=("team",), period_end=True, at=datetime(2026, 11, 25, 13, tzinfo=UTC))
    assert doc.to_dict()["at"] == "2026-11-20T12:00:00Z"
    assert doc.notes == ["the newest sample ends 2026-11-20T12:00:00Z, 5 day(s) before --at: "
                         "the forecast starts there"]  # fmt: skip


def test_a_store_of_one_hour_is_forecast_at_that_hours_rate(
    make_service: Callable[..., Service],
) -> None:
    """One GPU held 22:00-23:00 on 20 November at $4.00 an hour: $4 spent, a rate of $96
    a day. The rate of the day in progress was taken over all 23 hours since midnight
    ($4.17 a day: November's total $45.91). November: $4 spent + the last hour of the day
    ($4) + 10 days x $96 = $968."""
    s = make_service(PRICES)
    node = {"node_id": "srv", "gpu_model": "NVIDIA L4", "gpu_count": 1, "source": "test"}
    t = int(datetime(2026, 11, 20, 22, tzinfo=UTC).timestamp() * 1000)
    load_facts(s, [node], [pod("ml", "base", "ml", 0)],
               sample(t, "srv", "GPU-0", [("ml/base", 1.0, 1.0, 0.9)], HOUR))  # fmt: skip
    doc = s.forecast(by=(), period_end=True).to_dict(points=False)
    assert doc["at"] == "2026-11-20T23:00:00Z"
    (only,) = doc["scopes"]
    assert only["method"] == "run-rate of today's hours"
    (nov,) = only["periods"]
    assert (nov["actual"], nov["forecast"]) == ("4.00", "968.00")


# -- anomalies ----------------------------------------------------------------------------
def test_empty_anomaly_windows_are_refused(svc: Service) -> None:
    for flag, options in (("--window", {"window": ""}), ("--last", {"last": " "})):
        with pytest.raises(UsageError) as e:
            svc.anomalies(**options)
        assert (e.value.where, e.value.message) == (flag, f"{flag} is empty")


# -- config -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"forecast": {"commitments": [{**COMMITMENT, "end": "2026-11-01"}]}},
         "forecast.commitments.0: Value error, ri-ml: end 2026-11-01 is not after start "
         "2026-12-01"),
        ({"forecast": {"commitments": [{**COMMITMENT, "scope": {"nonsense": "x"}}]}},
         "forecast.commitments.0.scope: Value error, unknown dimension 'nonsense'"),
        ({"forecast": {"commitments": [COMMITMENT, COMMITMENT]}},
         "forecast.commitments: Value error, commitment names must be unique: ri-ml"),
        ({"forecast": {"commitments": [{**COMMITMENT, "monthly_fee": float("nan")}]}},
         "forecast.commitments.0.monthly_fee: Input should be a finite number"),
        ({"forecast": {"metrics_by": ["nonsense"]}},
         "forecast.metrics_by: Value error, unknown dimension 'nonsense'"),
        ({"forecast": {"metrics_by": ["team", "team"]}},
         "forecast.metrics_by: Value error, a dimension is named twice: team"),
        ({"anomalies": {"sensitivity": float("nan")}},
         "anomalies.sensitivity: Input should be a finite number"),
        ({"anomalies": {"sensitivity": 0}},
         "anomalies.sensitivity: Input should be greater than 0"),
        ({"anomalies": {"by": "team,model"}},
         "anomalies.by: Value error, unknown dimension 'team,model'"),
        ({"anomalies": {"channels": ["ops"]}},
         "anomalies: Value error, channels: no channel named 'ops' under `channels:` "
         "(named: none)"),
    ],
)  # fmt: skip
def test_config_show_refuses_bad_forecast_and_anomaly_settings(
    tmp_path: Path, config: dict[str, Any], problem: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as e:
        load_settings(path, env={})
    assert e.value.where == str(path)
    assert e.value.message.startswith(f"invalid settings: {problem}")


def test_config_spellings_are_the_engines() -> None:
    from aifinops.config import Settings

    s = Settings.model_validate({
        "forecast": {"metrics_by": ["gpu-model"],
                     "commitments": [{**COMMITMENT, "scope": {"Cost-Center": "x"}}]},
        "anomalies": {"by": "gpu-model"},
    })  # fmt: skip
    assert s.forecast.metrics_by == ["gpu_model"]
    assert s.forecast.commitments[0].scope == {"cost_center": "x"}
    assert s.anomalies.by == "gpu_model"


# -- job counters -------------------------------------------------------------------------
def test_a_job_counter_past_two_to_the_53_is_skipped() -> None:
    """1.7e308 jobs twice (with a reset between) summed to infinity: a cost per job of
    0.0. Past 2^53 a float does not count in ones; such a sample is skipped and said."""
    text = (
        'job_completed_total{queue="stt"} 1.7e308\n'
        'job_processing_seconds_total{queue="stt"} 9007199254740992\n'  # 2^53: still read
        'job_completed_total{queue="tts"} 12\n'
    )
    got = read_counters(text, "w.prom")
    assert got.values == {(None, None, "stt", "processing_seconds"): 2.0**53,
                          (None, None, "tts", "jobs"): 12.0}  # fmt: skip
    assert got.problems == [
        "w.prom: skipped 1 sample(s) above 2^53, past where a counter counts exactly (line 1)"
    ]


# -- the faces: CLI and API ---------------------------------------------------------------
def test_cli_and_api_refuse_empty_and_absurd_values(
    svc: Service, tmp_path: Path, cli: Callable[..., Any], serve: Callable[..., Any]
) -> None:
    token = svc.create_token("v", "viewer")
    db = Path(svc.settings.db)
    svc.close()
    cfg = tmp_path / "cli.yaml"
    cfg.write_text(yaml.safe_dump({**PRICES, "db": str(db)}))
    run = cli("--config", str(cfg), "forecast", "--at", "", cwd=tmp_path)
    assert run.returncode == 2
    assert "--at: cannot read '' as a time" in run.stderr and "Traceback" not in run.stderr
    run = cli("--config", str(cfg), "forecast", "--by", "gpu-model", "--period-end",
              "--format", "json", cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert [s["key"] for s in json.loads(run.stdout)["scopes"]] == [{"gpu_model": "NVIDIA L4"}]

    api = serve(db, PRICES)
    cases = [
        ("/api/v1/forecast", {"horizon": "9" * 5000 + "d"}, "--horizon"),
        ("/api/v1/forecast", {"at": ""}, "at"),
        ("/api/v1/forecast", {"at": "0001-01-01T00:00:00+01:00"}, "at"),
        ("/api/v1/forecast", {"period_end": "maybe"}, "query.period_end"),
        ("/api/v1/forecast/backtest", {"at": "2026-09-01"}, "--at"),
        ("/api/v1/anomalies", {"window": "0001-01-01T00:00:00+01:00,2026-11-20"}, "--window"),
        ("/api/v1/anomalies", {"last": ""}, "--last"),
    ]
    for path, params, where in cases:
        got = api.get(path, token, **params)
        assert got.status_code == 400, (path, params, got.text)
        assert got.json()["error"]["where"] == where
