"""The price rules (issue 15): spot-candidate, commitments, off-hours, cheaper-offer and
unattributed-spend. Each rule's arithmetic worked by hand in the comments, with prices read
from the bundled catalog (`src/aifinops/data/catalog.csv`); then commitments and off-hours
on the Alibaba v2023 pod trace, their evidence recomputed from the raw CSV."""

from __future__ import annotations

import csv
import itertools
import math
import statistics
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from aifinops.core.recommend.base import (
    Facts,
    GpuHolding,
    HourUse,
    Offer,
    SpendLine,
    finding_id,
)
from aifinops.core.recommend.pricing import (
    CheaperOfferConfig,
    CommitmentsConfig,
    OffHoursConfig,
    SpotConfig,
    UnattributedConfig,
    cheaper_offer,
    commitments,
    off_hours,
    spot_candidate,
    unattributed_spend,
)
from aifinops.core.recommend.pricing_offhours import off_hours_profile, window_off_hours
from tests.conftest import shared_data

CATALOG = Path(__file__).resolve().parents[1] / "src" / "aifinops" / "data" / "catalog.csv"
T0 = 1_795_392_000_000  # Monday 2026-11-23T00:00:00Z
HOUR = 3_600_000
DAY = 24 * HOUR
CENT = Decimal("0.01")


def _price(text: str) -> Decimal | None:
    return Decimal(text) if text else None


def catalog_offers(**match: str) -> list[Offer]:
    """Rows of the bundled catalog as offers (`region=""`: the region-less row). GPU-alone
    SKUs (no vCPUs: GCP's A100 component price) are not something one rents: left out."""
    with CATALOG.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if all(r[k] == v for k, v in match.items())]
    return [
        Offer(
            provider=r["provider"],
            region=r["region"],
            gpu_model=r["gpu_model"],
            gpus=int(r["gpu_count"]),
            gpu_memory_mib=0.0,
            instance_type=r["instance_type"] or None,
            on_demand=_price(r["on_demand_hourly"]),
            spot=_price(r["spot_hourly"]),
            reserved_1y=_price(r["commit_1y_hourly"]),
            reserved_3y=_price(r["commit_3y_hourly"]),
        )
        for r in rows
        if r["vcpus"]
    ]


def hours(n: int, held: float = 1.0, busy: float = 0.5, start: int = T0) -> tuple[HourUse, ...]:
    return tuple(HourUse(start + i * HOUR, held, busy, 1, 1000.0) for i in range(n))


def holding(**kw: Any) -> GpuHolding:
    base: dict[str, Any] = {
        "workload": "ml/train",
        "namespace": "ml",
        "team": "research",
        "kind": "Job",
        "node": "node-1",
        "gpu_model": "A100 40GB",
        "gpu_memory_mib": 40960.0,
        "gpus": 1.0,
        "cost_per_hour": Decimal("4.00"),
        "provider": "aws",
        "region": "us-east-1",
        "instance_type": "p4d.24xlarge",
    }
    base.update(kw)
    base.setdefault("hours", hours(30 * 24))
    return GpuHolding(**base)


def facts(holdings: list[GpuHolding], offers: list[Offer], days: float = 30) -> Facts:
    return Facts(T0, T0 + int(days * DAY), holdings=tuple(holdings), offers=tuple(offers))


def cents(x: Decimal) -> Decimal:
    return x.quantize(CENT)


# ---------------------------------------------------------------------------------------
# spot-candidate

SPOT_CASES = [
    # p4d.24xlarge, the catalog's region-less row (us-east-1 has no spot price of its own):
    # on demand 32.77/h, spot 9.83/h -> (32.77 - 9.83) / 32.77 = 22.94 / 32.77 = 70.0 % off.
    # A Job that checkpoints, held all 30 days at 4.00/h -> run-rate 4.00 x 730 = 2,920.00;
    # 2,920 x 22.94 / 32.77 = 2,044.09.
    pytest.param(
        dict(kind="Job", checkpoints=True),
        dict(instance_type="p4d.24xlarge"),
        "2044.09",
        "a job that checkpoints",
        id="p4d-checkpointing-job",
    ),
    # GCP a2-highgpu-1g, region-less row: 3.67/h on demand, 1.10/h spot -> 2.57 / 3.67 =
    # 70.03 % off. Three replicas serving at 3 x 3.673385 (us-central1's list) = 11.020155/h
    # -> 8,044.71315/month; x 2.57 / 3.67 = 5,633.49.
    pytest.param(
        dict(
            kind="Deployment",
            replicas=3,
            namespace="serving",
            cost_per_hour=Decimal("11.020155"),
            provider="gcp",
            region="us-central1",
            instance_type="a2-highgpu-1g",
        ),
        dict(instance_type="a2-highgpu-1g"),
        "5633.49",
        "replicated stateless serving",
        id="a2-replicated-serving",
    ),
    # g4dn.xlarge: 0.53/h on demand, 0.16/h spot -> 0.37 / 0.53 = 69.8 % off. A Pod in `dev`
    # held half the window (its 360 of 720 hours) at 0.53/h: run-rate 0.53 x 0.5 x 730 =
    # 193.45/month (not 386.90: it was not held all month); x 0.37 / 0.53 = 135.05.
    pytest.param(
        dict(
            kind="Pod",
            namespace="dev",
            cost_per_hour=Decimal("0.53"),
            hours=hours(360),
            instance_type="g4dn.xlarge",
            gpu_model="T4 16GB",
        ),
        dict(instance_type="g4dn.xlarge"),
        "135.05",
        "in an interruptible namespace",
        id="g4dn-dev-half-held",
    ),
]


@pytest.mark.parametrize(("kw", "catalog", "saving", "reason"), SPOT_CASES)
def test_spot_saving_from_the_catalogs_spot_price(
    kw: dict[str, Any], catalog: dict[str, str], saving: str, reason: str
) -> None:
    h = holding(**kw)
    [f] = spot_candidate(facts([h], catalog_offers(**catalog)), SpotConfig(), T0)
    assert cents(f.monthly_saving) == Decimal(saving)
    assert f.monthly_saving <= h.monthly_cost()
    assert f.evidence["reason"] == reason
    assert f.evidence["price_region"] == "any region"
    assert f.id == finding_id("spot-candidate", f.scope)
    assert f.scope == {"team": h.team, "namespace": h.namespace, "workload": h.workload}


def test_spot_discount_and_severity_in_the_evidence() -> None:
    [f] = spot_candidate(
        facts([holding(checkpoints=True)], catalog_offers(instance_type="p4d.24xlarge")),
        SpotConfig(),
        T0,
    )
    assert f.evidence["on_demand_hourly"] == "32.77"
    assert f.evidence["spot_hourly"] == "9.83"
    assert f.evidence["discount"] == 0.7  # 22.94 / 32.77 = 0.70003
    assert f.severity == "high"  # 2,044.09 >= 1,000
    assert "70.0 % off" in f.action


@pytest.mark.parametrize(
    "kw",
    [
        pytest.param(dict(kind="StatefulSet", namespace="dev"), id="statefulset-in-dev"),
        pytest.param(dict(kind="StatefulSet", replicas=3, namespace="dev"), id="any-statefulset"),
        pytest.param(dict(kind="Notebook", namespace="dev"), id="notebook"),
        pytest.param(dict(kind="Deployment", replicas=1, namespace="prod"), id="one-replica"),
        pytest.param(dict(kind="Job", checkpoints=False), id="job-without-checkpoints"),
        pytest.param(dict(checkpoints=True, capacity="spot"), id="already-spot"),
        pytest.param(dict(checkpoints=True, capacity="reserved"), id="reserved"),
        # p5.48xlarge: the catalog has no spot price for it anywhere -> nothing to promise
        pytest.param(dict(checkpoints=True, instance_type="p5.48xlarge"), id="no-spot-price"),
        pytest.param(dict(checkpoints=True, instance_type=None), id="no-instance-type"),
    ],
)
def test_spot_never_for_stateful_or_unpriced(kw: dict[str, Any]) -> None:
    offers = catalog_offers(provider="aws")
    assert spot_candidate(facts([holding(**kw)], offers), SpotConfig(), T0) == []


def test_spot_prefers_the_regions_own_spot_price() -> None:
    # A regional row with its own spot price beats the region-less one: 30.00 vs 10.00 ->
    # 2/3 off 2,920 = 1,946.67 (the region-less 9.83 would give 2,044.09).
    regional = Offer(
        "aws",
        "us-east-1",
        "A100 40GB",
        8,
        0.0,
        "p4d.24xlarge",
        on_demand=Decimal("30.00"),
        spot=Decimal("10.00"),
    )
    offers = [*catalog_offers(instance_type="p4d.24xlarge"), regional]
    [f] = spot_candidate(facts([holding(checkpoints=True)], offers), SpotConfig(), T0)
    assert cents(f.monthly_saving) == Decimal("1946.67")
    assert f.evidence["price_region"] == "us-east-1"
    assert f.confidence == Decimal("0.8")  # a regional price: not lowered


@pytest.mark.parametrize(
    ("provider", "kind", "selector", "path"),
    [
        ("aws", "Job", {"karpenter.sh/capacity-type": "spot"}, ["spec", "template", "spec"]),
        (
            "gcp",
            "CronJob",
            {"cloud.google.com/gke-spot": "true"},
            ["spec", "jobTemplate", "spec", "template", "spec"],
        ),
        (
            "azure",
            "Deployment",
            {"kubernetes.azure.com/scalesetpriority": "spot"},
            ["spec", "template", "spec"],
        ),
    ],
)
def test_spot_patch_is_yaml_for_the_providers_spot_nodes(
    provider: str, kind: str, selector: dict[str, str], path: list[str]
) -> None:
    offer = Offer(provider, "r1", "A100 40GB", 1, 0.0, "x1", Decimal(4), Decimal(1))
    h = holding(
        provider=provider, region="r1", instance_type="x1", kind=kind, checkpoints=True, replicas=2
    )
    [f] = spot_candidate(facts([h], [offer]), SpotConfig(), T0)
    assert f.patch is not None
    spec = yaml.safe_load(f.patch)
    for key in path:
        spec = spec[key]
    assert spec["nodeSelector"] == selector
    assert ("tolerations" in spec) == (provider != "aws")


# ---------------------------------------------------------------------------------------
# commitments

# p3.16xlarge in us-east-1 from the catalog: 8 V100 16GB, 24.48/h on demand. The catalog has
# no commitment prices, so these are stated assumptions: 1 year 15.00/h, 3 years 10.00/h.
R1, R3 = Decimal("15.00"), Decimal("10.00")


def p3_offer() -> Offer:
    [row] = catalog_offers(provider="aws", region="us-east-1", instance_type="p3.16xlarge")
    assert row.on_demand == Decimal("24.48") and row.gpus == 8
    return Offer(
        row.provider,
        row.region,
        row.gpu_model,
        row.gpus,
        0.0,
        row.instance_type,
        on_demand=row.on_demand,
        reserved_1y=R1,
        reserved_3y=R3,
    )


def node(name: str, held: list[float]) -> GpuHolding:
    """A workload on p3.16xlarge holding `held[i]` GPUs in hour i."""
    return holding(
        workload=f"ml/{name}",
        gpus=8.0,
        instance_type="p3.16xlarge",
        cost_per_hour=Decimal("24.48"),
        hours=tuple(HourUse(T0 + i * HOUR, g, g / 2, 1, 0.0) for i, g in enumerate(held) if g),
    )


def test_commitments_steady_two_with_a_third_every_other_hour() -> None:
    # 720 hours: two instances always (16 GPUs), a third in the even hours -> demand 2 or 3.
    # p10 = 2 -> commit 2; coverage 1,440 / (1,440 + 360) = 80 %; used every hour (100 %).
    # 1 year:  2 x (24.48 - 15.00) x 730 = 13,840.80; 3 years: 2 x 14.48 x 730 = 21,140.80.
    # Break-even utilisation 15.00 / 24.48 = 0.612745 and 10.00 / 24.48 = 0.408497.
    hs = [
        node("a", [8.0] * 720),
        node("b", [8.0] * 720),
        node("c", [8.0 if i % 2 == 0 else 0.0 for i in range(720)]),
    ]
    [f] = commitments(facts(hs, [p3_offer()]), CommitmentsConfig(), T0)
    ev = f.evidence
    assert (ev["baseline"], ev["committed"], ev["coverage"], ev["utilisation"]) == (2, 2, 0.8, 1)
    by_term = {o["term"]: o for o in ev["options"]}
    assert cents(Decimal(by_term["1y"]["monthly_saving"])) == Decimal("13840.80")
    assert cents(Decimal(by_term["3y"]["monthly_saving"])) == Decimal("21140.80")
    assert by_term["1y"]["break_even_utilisation"] == 0.612745
    assert by_term["3y"]["break_even_utilisation"] == 0.408497
    assert cents(f.monthly_saving) == Decimal("21140.80") and ev["term"] == "3y"
    assert ev["falling"] is False and f.confidence == Decimal("0.8")
    # never above the on-demand run-rate of the demand: 2.5 x 24.48 x 730 = 44,676.00
    assert f.monthly_saving <= Decimal(ev["monthly_on_demand_run_rate"]) == Decimal("44676")
    assert f.scope == {"provider": "aws", "region": "us-east-1", "instance_type": "p3.16xlarge"}


def test_commitments_unused_hours_cost_their_on_demand_saving() -> None:
    # Two instances except a 48-hour outage (days 10-11) -> p10 of 720 hours: position
    # 719 x 0.1 = 71.9 among the sorted values, past the 48 zeros -> 2; commit 2.
    # Used 672 x 2 = 1,344 of 1,440 committed instance-hours (93.3 %); unused per month:
    # 96 / 720 x 730 = 97.33 instance-hours, each an on-demand hour not saved: x 24.48 =
    # 2,382.72. 1 year: 13,840.80 - 2,382.72 = 11,458.08; 3 years: 21,140.80 - 2,382.72 =
    # 18,758.08. Coverage: every demand hour is covered (100 %).
    held = [0.0 if 240 <= i < 288 else 8.0 for i in range(720)]
    [f] = commitments(
        facts([node("a", held), node("b", held)], [p3_offer()]), CommitmentsConfig(), T0
    )
    by_term = {o["term"]: o for o in f.evidence["options"]}
    assert cents(Decimal(by_term["1y"]["monthly_saving"])) == Decimal("11458.08")
    assert cents(f.monthly_saving) == Decimal("18758.08")
    assert f.evidence["coverage"] == 1.0
    assert f.evidence["utilisation"] == pytest.approx(1344 / 1440, abs=1e-6)


def test_commitments_falling_demand_prefers_one_year_and_lowers_confidence() -> None:
    # 4 instances the first 15 days, 3 the last 15 -> p10 = 3, commit 3, always used.
    # First week mean 4, last week 3: fell 25 % > 10 % -> falling; the finding's term is 1 year:
    # 3 x (24.48 - 15.00) x 730 = 20,761.20 (3 years would be 3 x 14.48 x 730 = 31,711.20).
    hs = [node(str(i), [8.0] * 720) for i in range(3)] + [node("x", [8.0] * 360)]
    [f] = commitments(facts(hs, [p3_offer()]), CommitmentsConfig(), T0)
    assert f.evidence["falling"] is True
    assert (f.evidence["first_week_mean"], f.evidence["last_week_mean"]) == (4, 3)
    assert f.evidence["term"] == "1y" and cents(f.monthly_saving) == Decimal("20761.20")
    assert f.confidence == Decimal("0.5") and "fell 25 %" in f.action


@pytest.mark.parametrize(
    ("days", "held", "offer_kw", "why"),
    [
        (29, [8.0] * 720, {}, "under 30 days of history"),
        (30, [4.0] * 720, {}, "half an instance: floor(0.5) = 0 to commit"),
        (30, [8.0] * 720, {"reserved_1y": None, "reserved_3y": None}, "no commitment price"),
        # one instance in 72 of 720 hours: p10 falls among the 648 zeros -> nothing to commit
        (30, [8.0 if i < 72 else 0.0 for i in range(720)], {}, "baseline zero"),
    ],
)
def test_commitments_not_offered(
    days: int, held: list[float], offer_kw: dict[str, Any], why: str
) -> None:
    base = p3_offer()
    offer = Offer(**{**base.__dict__, **offer_kw})
    assert commitments(facts([node("a", held)], [offer], days=days), CommitmentsConfig(), T0) == []


def test_commitments_never_for_a_commitment_that_loses() -> None:
    # Baseline at the median (percentile 50): one instance in 361 of 720 hours -> p50 = 1,
    # commit 1, used 361 / 720 = 50.1 % of its hours. 3 years at 23.00 vs 24.48 breaks even
    # at 23 / 24.48 = 94 %: 1 x 1.48 x 730 - (359 / 720 x 730) x 24.48 = 1,080.40 - 8,910.38
    # = -7,829.98 a month -> no finding.
    held = [8.0 if i < 361 else 0.0 for i in range(720)]
    offer = Offer(**{**p3_offer().__dict__, "reserved_1y": None, "reserved_3y": Decimal(23)})
    cfg = CommitmentsConfig(percentile=50)
    assert commitments(facts([node("a", held)], [offer]), cfg, T0) == []


# ---------------------------------------------------------------------------------------
# off-hours

WEEK = 168


def dev_hours(
    weeks: int, busy_day: float, busy_night: float = 0.0, start_hour: int = 8, end_hour: int = 20
) -> tuple[HourUse, ...]:
    """One GPU held around the clock from Monday T0; busy `busy_day` on weekdays between
    start_hour and end_hour UTC, `busy_night` otherwise."""
    out = []
    for i in range(weeks * WEEK):
        day, hour = divmod(i, 24)
        working = day % 7 < 5 and start_hour <= hour < end_hour
        out.append(HourUse(T0 + i * HOUR, 1.0, busy_day if working else busy_night, 1, 0.0))
    return tuple(out)


def dev(**kw: Any) -> GpuHolding:
    base = dict(
        workload="team-a-dev/api",
        namespace="team-a-dev",
        kind="Deployment",
        cost_per_hour=Decimal("2.00"),
        hours=dev_hours(2, 0.6),
    )
    return holding(**{**base, **kw})


def test_off_hours_saving_is_the_schedules_share_of_the_run_rate() -> None:
    # Two whole weeks from Monday: 2 x (5 x 12 + 48) = 216 off-hours held, all idle (0 %
    # busy) -> idle share 1.0 >= 0.8. Schedule: 108 of 168 hours a week = 0.642857.
    # Run-rate 2.00 x 730 = 1,460.00; x 108 / 168 = 938.57.
    h = dev()
    [f] = off_hours(facts([h], [], days=14), OffHoursConfig(), T0)
    ev = f.evidence
    assert (ev["off_hours_held"], ev["idle_off_hours"], ev["idle_off_hours_share"]) == (216, 216, 1)
    assert ev["schedule_share"] == pytest.approx(108 / 168, abs=1e-6)
    assert cents(f.monthly_saving) == Decimal("938.57")
    assert f.severity == "medium" and f.confidence == Decimal("0.9")
    assert ev["schedule"] == {
        "offhour": {"tz": "UTC", "default_hour": 20, "weekends": True, "holidays": []},
        "onhour": {"tz": "UTC", "default_hour": 8, "weekends": True, "holidays": []},
    }


def test_off_hours_holidays_add_their_working_hours() -> None:
    # Holidays 2026-12-25 (a Friday) and 2026-12-26 (a Saturday, off anyway): one weekday
    # holiday in the coming year adds 12 hours of 8,760: 1,460 x 12 / 8,760 = 2.00 more ->
    # 938.57 + 2.00 = 940.57. A holiday already past (2026-01-01) counts nothing.
    cfg = OffHoursConfig(holidays=["2026-12-25", "2026-12-26", "2026-01-01"])
    [f] = off_hours(facts([dev()], [], days=14), cfg, T0)
    assert f.evidence["weekday_holidays"] == 1
    assert cents(f.monthly_saving) == Decimal("940.57")
    assert f.evidence["schedule"]["offhour"]["holidays"] == [
        "2026-01-01",
        "2026-12-25",
        "2026-12-26",
    ]
    docs = list(yaml.safe_load_all(f.patch or ""))
    on = next(d for d in docs if d["metadata"]["name"] == "api-on")
    command = on["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "2026-12-25" in command[-1] and "exit 0" in command[-1]


def test_off_hours_cronjob_pair_scales_to_zero_and_back() -> None:
    [f] = off_hours(facts([dev(replicas=2)], [], days=14), OffHoursConfig(), T0)
    assert f.patch is not None and f.patch.startswith("# the schedule, Cloud Custodian style:")
    docs = {d["kind"] + "/" + d["metadata"]["name"]: d for d in yaml.safe_load_all(f.patch)}
    assert set(docs) == {
        "ServiceAccount/api-offhours",
        "Role/api-offhours",
        "RoleBinding/api-offhours",
        "CronJob/api-off",
        "CronJob/api-on",
    }

    def run(name: str) -> tuple[str, str]:
        spec = docs[f"CronJob/{name}"]["spec"]
        command = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
        return spec["schedule"], command[-1]

    assert run("api-off") == (
        "0 20 * * 1-5",
        "kubectl scale deployment/api --replicas=0 -n team-a-dev",
    )
    assert run("api-on") == (
        "0 8 * * 1-5",
        "kubectl scale deployment/api --replicas=2 -n team-a-dev",
    )
    assert docs["Role/api-offhours"]["rules"][0]["resources"] == [
        "deployments",
        "deployments/scale",
    ]


def test_off_hours_time_zone_moves_the_night() -> None:
    # Busy 07:00-19:00 UTC on weekdays = 08:00-20:00 in Paris (UTC+1 in November).
    # In Paris time every one of the 216 off-hours is idle; in UTC the 07:00 hour of each
    # of the 10 weekdays is off and busy -> 206 / 216 = 95.4 % idle (still a schedule).
    h = dev(hours=dev_hours(2, 0.6, start_hour=7, end_hour=19))
    [paris] = off_hours(facts([h], [], days=14), OffHoursConfig(timezone="Europe/Paris"), T0)
    [utc] = off_hours(facts([h], [], days=14), OffHoursConfig(), T0)
    assert (paris.evidence["off_hours_held"], paris.evidence["idle_off_hours"]) == (216, 216)
    assert (utc.evidence["off_hours_held"], utc.evidence["idle_off_hours"]) == (216, 206)


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        (dict(hours=dev_hours(2, 0.6, busy_night=0.2)), "busy at night"),
        (dict(hours=dev_hours(2, 0.0)), "idle in working hours too: idle-gpu's finding"),
        (dict(namespace="prod", workload="prod/api"), "not a dev namespace"),
        (dict(namespace="devops", workload="devops/api"), "devops is not dev"),
        # held only in working hours (already off at night): no off-hours held
        (dict(hours=tuple(u for u in dev_hours(2, 0.6) if u.busy_gpus)), "already off"),
    ],
)
def test_off_hours_not_offered(kw: dict[str, Any], why: str) -> None:
    assert off_hours(facts([dev(**kw)], [], days=14), OffHoursConfig(), T0) == []


def test_off_hours_notebook_kind_anywhere() -> None:
    # A Notebook in `research` is a candidate by its kind; Kubeflow's stop annotation.
    h = dev(kind="Notebook", namespace="research", workload="research/nb-alice")
    [f] = off_hours(facts([h], [], days=14), OffHoursConfig(), T0)
    assert "kubectl annotate notebook/nb-alice kubeflow-resource-stopped=true" in (f.patch or "")


def test_off_hours_config_refuses_an_unknown_zone() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        OffHoursConfig(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="on_hour"):
        OffHoursConfig(on_hour=21)
    assert OffHoursConfig(holidays=["2026-12-25"]).holidays == [date(2026, 12, 25)]


# ---------------------------------------------------------------------------------------
# cheaper-offer

A100_OFFERS = catalog_offers(gpu_model="A100 40GB")


def test_cheaper_offer_names_the_cheapest_same_gpu_elsewhere() -> None:
    # A p4d.24xlarge Job in eu-west-1 at the catalog's 35.39655/h: 35.39655 / 8 = 4.42456875
    # per GPU-hour. Cheapest A100 40GB in the catalog elsewhere: Jarvislabs' 1 x A100 at
    # 1.10/h (Lambda's is also 1.10: the provider name breaks the tie). A100 80GB offers
    # (Dataoorts 0.55) are another GPU.
    # (4.42456875 - 1.10) x 8 x 730 = 19,415.48 (75.1 % off), = its run-rate x 0.7514.
    h = holding(
        region="eu-west-1", gpus=8.0, cost_per_hour=Decimal("35.39655"), hours=hours(720, held=8.0)
    )
    [f] = cheaper_offer(facts([h], A100_OFFERS), CheaperOfferConfig(), T0)
    assert f.evidence["offer"] == {
        "provider": "jarvislabs",
        "region": "any region",
        "instance_type": None,
        "gpus": 1,
        "on_demand_hourly": "1.1",
    }
    assert cents(f.monthly_saving) == Decimal("19415.48")
    assert f.evidence["discount"] == 0.7514
    assert f.monthly_saving <= h.monthly_cost()
    assert f.patch is None  # no instance type or region to select: the action says where


def test_cheaper_offer_within_chosen_providers() -> None:
    # Only AWS and GCP: the p4d rows of AWS elsewhere (us-west-2 4.096575 per GPU) lose to
    # GCP's a2-megagpu-16g region-less row, 55.68 / 16 = 3.48 per GPU-hour.
    # (4.42456875 - 3.48) x 8 x 730 = 5,516.28 (21.3 % off).
    h = holding(
        region="eu-west-1", gpus=8.0, cost_per_hour=Decimal("35.39655"), hours=hours(720, held=8.0)
    )
    cfg = CheaperOfferConfig(providers=["aws", "gcp"])
    [f] = cheaper_offer(facts([h], A100_OFFERS), cfg, T0)
    assert f.evidence["offer"]["instance_type"] == "a2-megagpu-16g"
    assert cents(f.monthly_saving) == Decimal("5516.28")
    spec = yaml.safe_load(f.patch or "")["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"node.kubernetes.io/instance-type": "a2-megagpu-16g"}


def test_cheaper_offer_half_held_saves_half() -> None:
    # Held 360 of 720 hours: (4.42456875 - 3.48) x 8 x 730 x 0.5 = 2,758.14.
    h = holding(
        region="eu-west-1", gpus=8.0, cost_per_hour=Decimal("35.39655"), hours=hours(360, held=8.0)
    )
    cfg = CheaperOfferConfig(providers=["aws", "gcp"])
    [f] = cheaper_offer(facts([h], A100_OFFERS), cfg, T0)
    assert cents(f.monthly_saving) == Decimal("2758.14")


@pytest.mark.parametrize(
    ("kw", "cfg"),
    [
        (dict(kind="Deployment"), {}),  # serving is not movable batch work
        (dict(capacity="on-prem"), {}),  # owned GPUs: moving frees nothing
        # us-west-2's p4d at 32.7726/h: 8 x 4.096575 vs 4.42456875 is 7.4 % off < 10 %
        (
            dict(
                region="eu-west-1",
                cost_per_hour=Decimal("35.39655"),
                gpus=8.0,
                hours=hours(720, held=8.0),
            ),
            {"providers": ["aws"]},
        ),
        (dict(gpu_model="B200"), {}),  # nobody in the catalog offers it
    ],
)
def test_cheaper_offer_not_offered(kw: dict[str, Any], cfg: dict[str, Any]) -> None:
    h = holding(**kw)
    assert cheaper_offer(facts([h], A100_OFFERS), CheaperOfferConfig(**cfg), T0) == []


# One finding per team's Jobs in one place (a Job is one run; the runs of a namespace on
# one GPU model in one provider and region move together). Offers: AWS and GCP only, so
# the cheapest A100 40GB elsewhere is GCP's a2-megagpu-16g at 55.68 / 16 = 3.48 per
# GPU-hour. The window is 720 hours; each run's saving, to the cent:
#   ml/train-001: 8 GPUs at 35.39655/h (4.42456875 per GPU-hour), held 360 h (0.5):
#                 (4.42456875 - 3.48) x 8 x 730 x 0.5 = 2,758.14075 -> 2,758.14
#   ml/train-002: 1 GPU at 4.80/h, held 72 h (0.1): (4.80 - 3.48) x 730 x 0.1 = 96.36
#   ml/train-003: 1 GPU at 4.00/h, held 18 h (0.025): (4.00 - 3.48) x 730 x 0.025 = 9.49
#                 (under the minimum of 10 alone; it counts in its group)
#   ml-dev/sweep: 1 GPU at 4.00/h, held 36 h (0.05): 0.52 x 730 x 0.05 = 18.98
#   ml/spot-004:  1 GPU at 3.60/h on spot: 1 - 3.48 / 3.60 = 3.3 % off < 10 %: left out
# The three ml runs: 2,758.14 + 96.36 + 9.49 = 2,863.99 (their run-rates: 35.39655 x 0.5
# x 730 = 12,919.74 + 4.80 x 0.1 x 730 = 350.40 + 4.00 x 0.025 x 730 = 73.00 = 13,343.14).
AWS_GCP: dict[str, Any] = {"providers": ["aws", "gcp"]}
EU = {"region": "eu-west-1"}
RUN1 = dict(workload="ml/train-001", gpus=8.0, cost_per_hour=Decimal("35.39655"),
            hours=hours(360, held=8.0), **EU)  # fmt: skip
RUN2 = dict(workload="ml/train-002", cost_per_hour=Decimal("4.80"), hours=hours(72), **EU)
RUN3 = dict(workload="ml/train-003", cost_per_hour=Decimal("4.00"), hours=hours(18), **EU)
SWEEP = dict(workload="ml-dev/sweep", namespace="ml-dev", cost_per_hour=Decimal("4.00"),
             hours=hours(36), **EU)  # fmt: skip
SPOT = dict(workload="ml/spot-004", capacity="spot", cost_per_hour=Decimal("3.60"),
            hours=hours(100), **EU)  # fmt: skip
ML_RUNS = ["ml/train-001", "ml/train-002", "ml/train-003"]

GROUP_CASES = [
    pytest.param([RUN1, RUN2, RUN3], [("ml", ML_RUNS, "2863.99")], id="three-runs-one-finding"),
    pytest.param(
        [RUN3, RUN1, SWEEP, RUN2],
        [("ml", ML_RUNS, "2863.99"), ("ml-dev", ["ml-dev/sweep"], "18.98")],
        id="one-per-namespace",
    ),
    pytest.param([RUN2, SPOT], [("ml", ["ml/train-002"], "96.36")], id="not-cheap-enough-out"),
    # on-prem (moving frees nothing), a node of no provider (owned or unknown: the demo's
    # DGX priced per GPU-hour) and a Deployment (not movable) stay out of the group
    pytest.param(
        [
            RUN2,
            {**RUN3, "capacity": "on-prem"},
            {**RUN3, "provider": None, "region": None},
            {**RUN3, "kind": "Deployment"},
        ],
        [("ml", ["ml/train-002"], "96.36")],
        id="not-movable-out",
    ),
    # the same namespace in another region is another place: two findings
    pytest.param(
        [RUN2, {**RUN3, "region": "us-west-2"}],
        [("ml", ["ml/train-002"], "96.36"), ("ml", ["ml/train-003"], "9.49")],
        id="one-per-region",
    ),
]


@pytest.mark.parametrize(("runs", "expected"), GROUP_CASES)
def test_cheaper_offer_one_finding_per_teams_jobs_in_one_place(
    runs: list[dict[str, Any]], expected: list[tuple[str, list[str], str]]
) -> None:
    found = cheaper_offer(facts([holding(**r) for r in runs], A100_OFFERS),
                          CheaperOfferConfig(**AWS_GCP), T0)  # fmt: skip
    got = sorted(found, key=lambda f: (f.scope["namespace"], f.scope["region"]))
    assert [(f.scope["namespace"], sorted(m["workload"] for m in f.evidence["members"]),
             str(f.monthly_saving)) for f in got] == expected  # fmt: skip
    for f in got:  # the sum of the members' savings, each at most its run-rate
        members = f.evidence["members"]
        assert f.monthly_saving == sum(Decimal(m["monthly_saving"]) for m in members)
        assert all(Decimal(m["monthly_saving"]) <= Decimal(m["monthly_run_rate"])
                   for m in members)  # fmt: skip
        assert f.evidence["workloads"] == len(members)


def test_cheaper_offer_group_evidence() -> None:
    # cost per GPU-hour of the group = (35.39655 x 0.5 + 4.80 x 0.1 + 4.00 x 0.025) /
    # (8 x 0.5 + 1 x 0.1 + 1 x 0.025) = 18.278275 / 4.125 = 4.431097; discount 1 - 3.48 /
    # 4.431097 = 0.2146; mean GPUs held 4.125
    [f] = cheaper_offer(facts([holding(**r) for r in (RUN1, RUN2, RUN3)], A100_OFFERS),
                        CheaperOfferConfig(**AWS_GCP), T0)  # fmt: skip
    ev = f.evidence
    assert (ev["cost_per_gpu_hour"], ev["offer_per_gpu_hour"], ev["discount"]) == (
        "4.431097", "3.48", 0.2146)  # fmt: skip
    assert (ev["mean_gpus_held"], ev["monthly_run_rate"]) == (4.125, "13343.14")
    assert [m["monthly_saving"] for m in ev["members"]] == ["2758.14", "96.36", "9.49"]
    assert f.scope == {
        "team": "research",
        "namespace": "ml",
        "kind": "Job",
        "provider": "aws",
        "region": "eu-west-1",
        "gpu_model": "A100 40GB",
    }
    assert f.severity == "high"  # 2,863.99 >= 1,000
    assert "the 3 Jobs of ml" in f.action
    patch = f.patch or ""
    assert "Job train-001, train-002, train-003 (namespace ml)" in patch.splitlines()[0]
    spec = yaml.safe_load(patch)["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"node.kubernetes.io/instance-type": "a2-megagpu-16g"}


def test_cheaper_offer_keeps_its_id_as_runs_come_and_go() -> None:
    # last week's runs and this week's are other Jobs; the finding is the same one
    cfg = CheaperOfferConfig(**AWS_GCP)
    [a] = cheaper_offer(facts([holding(**RUN1), holding(**RUN2)], A100_OFFERS), cfg, T0)
    [b] = cheaper_offer(facts([holding(**RUN3)], A100_OFFERS), cfg, T0)
    assert a.id == b.id == finding_id("cheaper-offer", a.scope)


def test_run_rules_applies_the_minimum_to_the_group() -> None:
    from aifinops.core.recommend.base import run_rules

    def found(runs: list[dict[str, Any]], minimum: int | None = None) -> list[str]:
        cfg: dict[str, Any] = dict(AWS_GCP)
        if minimum is not None:
            cfg["min_monthly_saving"] = minimum
        f0 = facts([holding(**r) for r in runs], A100_OFFERS)
        return [str(f.monthly_saving)
                for f in run_rules(f0, T0, {"cheaper-offer": cfg}, ["cheaper-offer"])]  # fmt: skip

    assert found([RUN3]) == []  # 9.49 alone: under the default 10
    assert found([RUN3], minimum=0) == ["9.49"]
    assert found([RUN2, RUN3]) == ["105.85"]  # 96.36 + 9.49 in one group
    assert found([RUN2, RUN3], minimum=200) == []  # the group's saving is judged


# ---------------------------------------------------------------------------------------
# unattributed-spend


def spend(*costs: str) -> tuple[SpendLine, ...]:
    return tuple(
        SpendLine({"namespace": f"ns{i}", "workload": f"ns{i}/pod-{i}"}, Decimal(c))
        for i, c in enumerate(costs)
    )


@pytest.mark.parametrize(
    ("costs", "total", "severity"),
    [
        # 60 + 30 + 20 + 10 + 5 + 3 = 128 of 1,000 = 12.8 % > 5 % -> medium (10-25 %)
        (("60", "30", "20", "10", "5", "3"), "1000", "medium"),
        # 300 of 1,000 = 30 % -> high (>= 25 %)
        (("300",), "1000", "high"),
        # 60 of 1,000 = 6 % -> low (just above 5 %)
        (("60",), "1000", "low"),
    ],
)
def test_unattributed_share_and_offenders(
    costs: tuple[str, ...], total: str, severity: str
) -> None:
    f0 = Facts(T0, T0 + 30 * DAY, spend=spend(*costs), total_spend=Decimal(total))
    [f] = unattributed_spend(f0, UnattributedConfig(), T0)
    assert f.severity == severity
    assert f.monthly_saving == 0
    assert f.evidence["share"] == float(sum(map(Decimal, costs)) / Decimal(total))
    offenders = f.evidence["offenders"]
    assert [o["cost"] for o in offenders] == sorted(costs, key=Decimal, reverse=True)[:5]
    assert offenders[0]["key"] == {"namespace": "ns0", "workload": "ns0/pod-0"}
    assert yaml.safe_load_all(f.patch or "")
    assert list(yaml.safe_load_all(f.patch or "")) == [
        {"metadata": {"labels": {"team": "<owner>"}}}
    ]
    assert "kubectl -n ns0 label pod pod-0 team=<owner>" in (f.patch or "")


def test_unattributed_under_the_share_or_without_a_total() -> None:
    # 50 of 1,000 = 5.0 %: not above max_share
    assert (
        unattributed_spend(
            Facts(T0, T0 + DAY, spend=spend("50"), total_spend=Decimal(1000)),
            UnattributedConfig(),
            T0,
        )
        == []
    )
    assert (
        unattributed_spend(Facts(T0, T0 + DAY, spend=spend("50")), UnattributedConfig(), T0) == []
    )


def test_run_rules_keeps_the_zero_saving_finding() -> None:
    from aifinops.core.recommend.base import run_rules

    f0 = Facts(T0, T0 + DAY, spend=spend("300"), total_spend=Decimal(1000))
    [f] = run_rules(f0, T0, names=["unattributed-spend"])
    assert f.rule == "unattributed-spend"
    # while other rules keep the default minimum of 10 a month
    assert (
        run_rules(
            f0, T0, {"unattributed-spend": {"min_monthly_saving": 1}}, names=["unattributed-spend"]
        )
        == []
    )


# ---------------------------------------------------------------------------------------
# the Alibaba v2023 pod trace (Weng et al., ATC '23): commitments and off-hours
#
# Pods with GPU requests and their scheduled/deletion seconds. No pod deleted before day
# 115.3 is in the trace, so the window is days 116-149 (33 days, 792 hours), where it is
# complete. Its seconds are read as Unix seconds (day 0 a Thursday), which puts the two days
# of the week with the fewest pod creations on Saturday and Sunday.

TRACE = "cluster-traces/v2023/csv/openb_pod_list_default.csv"
W0, W1 = 116 * 86_400, 149 * 86_400


def trace_pods() -> list[dict[str, str]]:
    with shared_data(TRACE).open(newline="") as f:
        return [r for r in csv.DictReader(f) if int(r["num_gpu"]) > 0 and r["scheduled_time"]]


def pod_gpus(r: dict[str, str]) -> float:
    return int(r["num_gpu"]) * int(r["gpu_milli"]) / 1000  # gpu_milli: the shared fraction


def trace_holdings(pods: list[dict[str, str]], **kw: Any) -> list[GpuHolding]:
    """One holding per pod: in each hour of the window, its GPUs x the hour's share alive."""
    out = []
    for r in pods:
        s, e, g = max(int(r["scheduled_time"]), W0), min(int(r["deletion_time"]), W1), pod_gpus(r)
        uses = []
        for hour in range(s // 3600, math.ceil(e / 3600)):
            alive = min(e, (hour + 1) * 3600) - max(s, hour * 3600)
            if alive > 0:
                uses.append(HourUse(hour * HOUR, g * alive / 3600, 0.0, 0, 0.0))
        if uses:
            out.append(
                holding(
                    workload=f"alibaba/{r['name']}",
                    namespace="alibaba",
                    gpus=g,
                    gpu_model="V100 16GB",
                    cost_per_hour=Decimal("3.06") * Decimal(g),
                    instance_type="p3.16xlarge",
                    hours=tuple(uses),
                    **kw,
                )
            )
    return out


def hourly_gpus_by_sweep(pods: list[dict[str, str]]) -> list[float]:
    """GPUs held per hour of the window, recomputed another way: a sweep over the pods'
    start and end events, integrating the level between events and hour boundaries."""
    events: dict[int, float] = defaultdict(float)
    for r in pods:
        s, e = max(int(r["scheduled_time"]), W0), min(int(r["deletion_time"]), W1)
        if e > s:
            events[s] += pod_gpus(r)
            events[e] -= pod_gpus(r)
    points = sorted(set(events) | set(range(W0, W1 + 1, 3600)))
    level, seconds = 0.0, [0.0] * ((W1 - W0) // 3600)
    for a, b in itertools.pairwise(points):
        level += events.get(a, 0.0)
        if a >= W0 and b <= W1:
            seconds[(a - W0) // 3600] += level * (b - a)
    return [s / 3600 for s in seconds]


@pytest.fixture(scope="module")
def pods() -> list[dict[str, str]]:
    return trace_pods()


def test_trace_commitments_evidence_matches_the_raw_csv(pods: list[dict[str, str]]) -> None:
    f0 = Facts(W0 * 1000, W1 * 1000, holdings=tuple(trace_holdings(pods)), offers=(p3_offer(),))
    [f] = commitments(f0, CommitmentsConfig(), W0 * 1000)
    ev = f.evidence
    demand = [g / 8 for g in hourly_gpus_by_sweep(pods)]  # p3.16xlarge: 8 GPUs
    assert len(demand) == ev["window"]["hours"] == 792
    baseline = statistics.quantiles(demand, n=100, method="inclusive")[9]  # p10
    committed = math.floor(baseline)
    covered = sum(min(d, committed) for d in demand)
    assert ev["baseline"] == pytest.approx(baseline, abs=1e-5)
    assert ev["committed"] == committed
    assert ev["coverage"] == pytest.approx(covered / sum(demand), abs=1e-5)
    assert ev["utilisation"] == pytest.approx(covered / (792 * committed), abs=1e-5)
    assert ev["mean_demand"] == pytest.approx(statistics.fmean(demand), abs=1e-5)
    first, last = statistics.fmean(demand[:168]), statistics.fmean(demand[-168:])
    assert ev["first_week_mean"] == pytest.approx(first, abs=1e-5)
    assert ev["last_week_mean"] == pytest.approx(last, abs=1e-5)
    assert ev["falling"] is ((first - last) / first > 0.1)
    unused = (792 * committed - covered) / 792 * 730
    saving = committed * (24.48 - 10.00) * 730 - unused * 24.48  # 3 years, R3
    assert float(f.monthly_saving) == pytest.approx(saving, abs=0.01)
    assert f.monthly_saving <= Decimal(ev["monthly_on_demand_run_rate"])


def test_trace_off_hours_of_the_best_effort_pool(pods: list[dict[str, str]]) -> None:
    # The trace's best-effort (BE) pods, the cluster's opportunistic work, as a sandbox pool
    # of one p3.16xlarge node (8 GPUs) held around the clock: busy = the BE pods' GPUs that
    # hour. The trace has no utilisation, so a pod alive is counted busy.
    be = [r for r in pods if r["qos"] == "BE"]
    busy = hourly_gpus_by_sweep(be)
    pool = holding(
        workload="sandbox/be-pool",
        namespace="sandbox",
        kind="Deployment",
        gpus=8.0,
        cost_per_hour=Decimal("24.48"),
        hours=tuple(HourUse(W0 * 1000 + i * HOUR, 8.0, b, 0, 0.0) for i, b in enumerate(busy)),
    )
    f0 = Facts(W0 * 1000, W1 * 1000, holdings=(pool,))
    cfg = OffHoursConfig()
    # off-hours recomputed from the clock: weekends, and weekdays before 08:00 / from 20:00
    off = [
        i
        for i in range(792)
        if ((W0 // 3600 + i) // 24 + 3) % 7 >= 5  # 1970-01-01: Thu
        or not 8 <= (W0 // 3600 + i) % 24 < 20
    ]
    idle = [i for i in off if busy[i] / 8 < 0.05]
    profile = off_hours_profile(pool, cfg, window_off_hours(f0, cfg))
    assert (profile.off_hours, profile.idle_off_hours) == (len(off), len(idle))
    on = [i for i in range(792) if i not in set(off)]
    assert (profile.on_hours, profile.idle_on_hours) == (
        len(on),
        sum(busy[i] / 8 < 0.05 for i in on),
    )
    # 94 of 492 off-hours idle (19 %): Alibaba's best-effort work runs around the clock,
    # far from the 80 % a schedule needs -> no finding
    assert len(idle) / len(off) < 0.8
    assert off_hours(f0, cfg, W1 * 1000) == []


def test_unattributed_bill_lines_are_tagged_in_the_account() -> None:
    # An untagged bill line of 90 and an unallocated namespace row of 10: 100 of 800 = 12.5 %
    lines = (
        SpendLine({"resource": "i-0abc (p4d.24xlarge)"}, Decimal(90), source="bill"),
        SpendLine({"namespace": "kube-system"}, Decimal(10)),
    )
    f0 = Facts(T0, T0 + DAY, spend=lines, total_spend=Decimal(800))
    [f] = unattributed_spend(f0, UnattributedConfig(label="cost-center"), T0)
    assert f.evidence["share"] == 0.125 and f.severity == "medium"
    assert f.patch is not None
    assert "# tag i-0abc (p4d.24xlarge) with cost-center=<owner> in the cloud account" in f.patch
    assert "# kubectl label namespace kube-system cost-center=<owner>" in f.patch
    assert "i-0abc (p4d.24xlarge) first" in f.action
