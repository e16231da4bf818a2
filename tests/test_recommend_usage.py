"""The usage rules (issue 15): `idle-gpu`, `overprovisioned-gpus`, `rightsize-gpu`,
`share-gpu`.

Table cases whose savings are worked on paper in the comments; then the real H100 capture
and the Alibaba GenAI per-pod traces, whose holdings are built here from the raw files and
whose expected numbers are recomputed from those files (csv + statistics), never read back
from the code under test.
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from aifinops.core.recommend import usage, usage_rightsize, usage_share
from aifinops.core.recommend.base import (
    RULES,
    Facts,
    Finding,
    GpuHolding,
    HourUse,
    Offer,
    finding_id,
)
from aifinops.core.recommend.usage import IdleGpuConfig, OverprovisionedGpusConfig
from aifinops.core.recommend.usage_rightsize import MIG_GPUS, RightsizeGpuConfig, mig_gpu
from aifinops.core.recommend.usage_share import ShareGpuConfig
from tests.conftest import H100, H100_NS, H100_PRICE, HOUR, T0, nvidia_smi_time, shared_data

NOW = T0 + 48 * HOUR
H100_MODEL = "NVIDIA H100 80GB HBM3"
A100_MODEL = "NVIDIA A100-SXM4-80GB"


def hours(
    busy: Sequence[float], memory: float = 0.0, held: float = 1.0, peaks: Sequence[int] = ()
) -> tuple[HourUse, ...]:
    """One hour per busy share (of the held GPUs), from T0; `peaks` the GPUs busy at once."""
    return tuple(
        HourUse(
            start_ms=T0 + i * HOUR,
            held_gpus=held,
            busy_gpus=b * held,
            peak_gpus=peaks[i] if peaks else int(b > 0.01),
            memory_mib=memory,
        )
        for i, b in enumerate(busy)
    )


def holding(name: str, use: tuple[HourUse, ...], **kw: Any) -> GpuHolding:
    base: dict[str, Any] = {
        "workload": f"ml/{name}", "namespace": "ml", "team": "research", "kind": "Deployment",
        "node": "n1", "gpu_model": H100_MODEL, "gpu_memory_mib": 81559.0, "gpus": 1.0,
        "cost_per_hour": Decimal("4.00"), "hours": use,
    }  # fmt: skip
    return GpuHolding(**(base | kw))


def facts(*held: GpuHolding, offers: Sequence[Offer] = (), n_hours: int = 24) -> Facts:
    return Facts(T0, T0 + n_hours * HOUR, holdings=held, offers=tuple(offers))


def by_workload(found: list[Finding]) -> dict[str, Finding]:
    return {f.scope["workload"]: f for f in found}


def check_finding(f: Finding, *held: GpuHolding) -> None:
    """What every finding owes: a stable id, money in cents never above what the scope
    costs a month, a confidence in [0, 1], a patch that is YAML."""
    assert f.id == finding_id(f.rule, f.scope)
    assert f.scope.keys() == {"team", "namespace", "workload", "node"}
    assert Decimal(0) <= f.monthly_saving <= sum(h.monthly_cost() for h in held)
    assert f.monthly_saving == f.monthly_saving.quantize(Decimal("0.01"))
    assert Decimal(0) <= f.confidence <= 1
    assert f.evidence["window_start"] and f.evidence["window_end"]
    if f.patch is not None:
        assert all(isinstance(d, dict) for d in yaml.safe_load_all(f.patch))
    f.to_dict()


# -- idle-gpu -----------------------------------------------------------------------------

IDLE_CASES = [
    # 12 h at 0.3 % busy holding 30,822 MiB (30.1 GiB): p95 0.003 < 0.05. Its run-rate: $4/h
    # held 12 of the window's 24 h, x 730 = $1,460/month, all of it saved; confidence 12/24 =
    # 0.50; a Deployment: replicas 0.
    ("idle deployment", holding("nb", hours([0.003] * 12, memory=30822)), {}, "1460.00", "0.50"),
    # 24 h, 22 at 0 % and 2 at 50 %: mean 1/24 = 4.2 % (under 5 %) but p95 over 24 values is
    # at rank 23 x 0.95 = 21.85, between 0 and 0.5: 0.425. Busy twice a day: not idle.
    ("busy two hours a day", holding("cron", hours([0.0] * 22 + [0.5] * 2)), {}, None, None),
    # 3 held hours < min_hours 4: too little to say.
    ("too short", holding("short", hours([0.0] * 3)), {}, None, None),
    # ... unless the config asks for less: 3 h >= 2 h. $4/h x 3/24 x 730 = $365; confidence
    # 3/24 = 0.125 -> 0.12 (rounded half to even).
    ("short, min_hours 2", holding("short", hours([0.0] * 3)), {"min_hours": 2}, "365.00",
     "0.12"),
    # Half of each of 10 hours held (held_gpus 0.5): 5 held hours >= 4; busy 0.01 GPU of the
    # 0.5 held: share 0.02 < 0.05. A Job at $0.10/h held 5 of 24 h: 0.10 x 5/24 x 730 =
    # $15.2083 -> $15.21, low; confidence 5/24 = 0.21; no patch (a Job's pods cannot be
    # scaled: delete it).
    ("half-held job", holding("etl", hours([0.02] * 10, held=0.5), kind="Job",
     cost_per_hour=Decimal("0.10")), {}, "15.21", "0.21"),
    # 4 % busy at p95 but the threshold is 3 %: not idle.
    ("under a lower threshold", holding("svc", hours([0.04] * 8)), {"busy_threshold": 0.03},
     None, None),
]  # fmt: skip


@pytest.mark.parametrize(("case", "held", "cfg", "saving", "conf"), IDLE_CASES,
                         ids=[c[0] for c in IDLE_CASES])  # fmt: skip
def test_idle_gpu(
    case: str, held: GpuHolding, cfg: dict[str, Any], saving: str | None, conf: str | None
) -> None:
    found = usage.idle_gpu(facts(held), IdleGpuConfig(**cfg), NOW)
    if saving is None:
        assert found == []
        return
    (f,) = found
    check_finding(f, held)
    assert f.rule == "idle-gpu"
    assert f.monthly_saving == Decimal(saving)
    assert f.confidence == Decimal(conf or "")
    assert f.evidence["percentile"] == 95
    assert f.evidence["busy_share"] < (cfg.get("busy_threshold", 0.05))
    assert f.evidence["window_start"] == "2026-11-23T00:00:00Z"
    if held.kind == "Deployment":
        assert yaml.safe_load(f.patch or "") == {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": held.workload.split("/")[1], "namespace": "ml"},
            "spec": {"replicas": 0},
        }  # fmt: skip
    else:
        assert f.patch is None


def test_idle_gpu_evidence_and_action_name_the_memory_held() -> None:
    held = holding("nb", hours([0.003] * 12, memory=30822))
    (f,) = usage.idle_gpu(facts(held), IdleGpuConfig(), NOW)
    assert f.severity == "high"  # $2,920 >= $1,000
    assert f.evidence["peak_memory_mib"] == 30822
    assert f.evidence["held_hours"] == 12
    assert f.evidence["mean_busy_share"] == 0.003
    assert f.action == (
        f"ml/nb (Deployment) holds 1 GPU ({H100_MODEL}) and 30.1 GiB of GPU memory at 0.3 % "
        "busy (p95) over 12 hours: stop it or scale it to zero"
    )
    # the same scope gives the same id on every run (a dismissal sticks)
    again = usage.idle_gpu(facts(held, n_hours=48), IdleGpuConfig(), NOW + HOUR)
    assert again[0].id == f.id


# -- overprovisioned-gpus -------------------------------------------------------------------

OVER_CASES = [
    # $3 per GPU-hour throughout. 4 GPUs at $12/h ($8,760/month); hourly peaks 20 x 1 and
    # 4 x 2: p99 at rank 23 x 0.99 = 22.77 lies between two 2s -> 2. k = 2 < 4: saves
    # 2/4 x 8,760 = $4,380.
    ("needs 2 of 4", {"gpus": 4.0, "peaks": [1] * 20 + [2] * 4}, {}, 2, "4380.00"),
    # the same with one GPU of headroom: k = 3, saves 1/4 x 8,760 = $2,190.
    ("headroom 1", {"gpus": 4.0, "peaks": [1] * 20 + [2] * 4}, {"headroom_gpus": 1}, 3,
     "2190.00"),
    # peaks 23 x 1 and one 3: p99 = 1 + (3 - 1) x 0.77 = 2.54, rounded up to 3; saves 1/4.
    ("a fractional percentile rounds up", {"gpus": 4.0, "peaks": [1] * 23 + [3]}, {}, 3,
     "2190.00"),
    # 8 GPUs per replica, 2 replicas, 16 x $3 = $48/h ($35,040/month): at most 6 busy
    # across both -> 3 per replica; saves (8 - 3)/8 x 35,040 = $21,900.
    ("replicas", {"gpus": 8.0, "replicas": 2, "peaks": [6] * 24}, {}, 3, "21900.00"),
    # never busy: still at least 1 GPU (idle-gpu is the rule for none). 2 GPUs at $6/h
    # ($4,380/month): saves 1/2 x 4,380 = $2,190.
    ("idle keeps one", {"gpus": 2.0, "peaks": [0] * 24}, {}, 1, "2190.00"),
    # uses both of its 2 GPUs: nothing to say; one GPU: never a case.
    ("uses all", {"gpus": 2.0, "peaks": [2] * 24}, {}, None, None),
    ("one GPU", {"gpus": 1.0, "peaks": [1] * 24}, {}, None, None),
]  # fmt: skip


@pytest.mark.parametrize(("case", "shape", "cfg", "k", "saving"), OVER_CASES,
                         ids=[c[0] for c in OVER_CASES])  # fmt: skip
def test_overprovisioned_gpus(
    case: str, shape: dict[str, Any], cfg: dict[str, Any], k: int | None, saving: str | None
) -> None:
    gpus, replicas, peaks = shape["gpus"], shape.get("replicas", 1), shape["peaks"]
    cost = Decimal(3) * Decimal(str(gpus)) * replicas  # $3 per GPU-hour
    held = holding("train", hours([0.5] * len(peaks), held=gpus * replicas, peaks=peaks),
                   gpus=gpus, replicas=replicas, cost_per_hour=cost)  # fmt: skip
    found = usage.overprovisioned_gpus(facts(held), OverprovisionedGpusConfig(**cfg), NOW)
    if k is None:
        assert found == []
        return
    (f,) = found
    check_finding(f, held)
    assert (f.evidence["gpus_requested"], f.evidence["gpus_needed"]) == (gpus, k)
    assert f.monthly_saving == Decimal(saving or "")
    patch = yaml.safe_load(f.patch or "")
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    assert container == {
        "name": "train",
        "resources": {"limits": {"nvidia.com/gpu": k}, "requests": {"nvidia.com/gpu": k}},
    }


def test_overprovisioned_job_patch_is_for_its_next_run() -> None:
    held = holding("train", hours([0.5] * 24, held=4, peaks=[1] * 24), gpus=4.0, kind="Job")
    (f,) = usage.overprovisioned_gpus(facts(held), OverprovisionedGpusConfig(), NOW)
    assert f.patch and f.patch.startswith("# a Job's pod template cannot change in place")
    assert yaml.safe_load(f.patch)["apiVersion"] == "batch/v1"


# -- rightsize-gpu --------------------------------------------------------------------------

RIGHTSIZE_CASES = [
    # H100 80GB, 8,000 MiB and 10 % busy. Need 8,000 x 1.2 = 9,600 MiB (9.38 GiB) and 0.12
    # of the GPU = 0.84 of 7 slices -> 1 slice. 1g.10gb holds 9.75 GiB, takes max(1/7, 1/8)
    # = 1/7: saves 6/7 x $2,920 = $2,502.857 -> $2,502.86.
    ("1g.10gb", {"memory": 8000, "busy": 0.10}, "1g.10gb", "2502.86"),
    # 12,000 MiB -> 14,400 MiB (14.06 GiB) needs a 20 GB profile: 1g.20gb takes
    # max(1/7, 2/8) = 1/4, less than 2g.20gb's 2/7: saves 3/4 x 2,920 = $2,190.
    ("1g.20gb", {"memory": 12000, "busy": 0.10}, "1g.20gb", "2190.00"),
    # 30 % busy -> 0.36 x 7 = 2.52 -> 3 slices; 3g.40gb takes max(3/7, 4/8) = 1/2 (4g.40gb
    # takes 4/7): saves 1/2 x 2,920 = $1,460.
    ("3g.40gb", {"memory": 5000, "busy": 0.30}, "3g.40gb", "1460.00"),
    # A30 (4 compute slices, 24 GB) at $1/h ($730): 4,000 MiB -> 4,800 MiB (4.69 GiB <=
    # 5.81); 20 % -> 0.24 x 4 = 0.96 -> 1 slice: 1g.6gb takes 1/4, saves 3/4 x 730 = $547.50.
    ("A30 1g.6gb", {"memory": 4000, "busy": 0.20, "gpu_model": "NVIDIA A30",
                    "gpu_memory_mib": 24576.0, "cost_per_hour": Decimal("1.00")},
     "1g.6gb", "547.50"),
    # A100 40GB: 15,000 MiB -> 18,000 MiB (17.58 GiB): 1g.10gb and 2g.10gb are too small;
    # 3g.20gb (19.62 GiB) takes max(3/7, 4/8) = 1/2 -> $1,460.
    ("A100 40GB 3g.20gb", {"memory": 15000, "busy": 0.05, "gpu_model": "NVIDIA A100-SXM4-40GB",
                           "gpu_memory_mib": 40960.0}, "3g.20gb", "1460.00"),
    # 70 % busy -> 0.84 x 7 = 5.88 -> 6 slices: only 7g.80gb, the whole GPU: nothing.
    ("busy", {"memory": 5000, "busy": 0.70}, None, None),
    # 70,000 MiB -> 84,000 MiB: more than any profile: nothing.
    ("big", {"memory": 70000, "busy": 0.05}, None, None),
    # two GPUs: not this rule's case.
    ("two GPUs", {"memory": 5000, "busy": 0.05, "gpus": 2.0}, None, None),
    # already a MIG instance.
    ("already MIG", {"memory": 5000, "busy": 0.05,
                     "gpu_model": "NVIDIA H100 80GB HBM3 MIG 3g.40gb"}, None, None),
]  # fmt: skip


@pytest.mark.parametrize(("case", "shape", "profile", "saving"), RIGHTSIZE_CASES,
                         ids=[c[0] for c in RIGHTSIZE_CASES])  # fmt: skip
def test_rightsize_gpu_mig(
    case: str, shape: dict[str, Any], profile: str | None, saving: str | None
) -> None:
    kw = {k: v for k, v in shape.items() if k not in ("memory", "busy")}
    held = holding("svc", hours([shape["busy"]] * 24, memory=shape["memory"]), **kw)
    found = usage_rightsize_run(held)
    if profile is None:
        assert found == []
        return
    (f,) = found
    check_finding(f, held)
    assert f.evidence["mig_profile"] == profile
    assert f.monthly_saving == Decimal(saving or "")
    assert f.confidence == Decimal("0.70")  # 24 h -> 1, x 0.7: realised when slices are reused
    node, workload = yaml.safe_load_all(f.patch or "")
    assert node["metadata"]["labels"] == {"nvidia.com/mig.config": f"all-{profile}"}
    limits = workload["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"nvidia.com/gpu": None, f"nvidia.com/mig-{profile}": 1}


def usage_rightsize_run(*held: GpuHolding, offers: Sequence[Offer] = ()) -> list[Finding]:
    return usage_rightsize.rightsize_gpu(facts(*held, offers=offers), RightsizeGpuConfig(), NOW)


def test_rightsize_gpu_cheaper_model_from_the_catalog() -> None:
    # An L40S (no MIG) at $1.80/h using 18,000 MiB at 40 %: needs 21,600 MiB.
    # - g6.xlarge, one L4 (23,034 MiB) at $0.80/h: $0.80 per GPU-hour, fits;
    # - g6.12xlarge, four L4 at $4.00/h: $1.00 per GPU-hour, fits but dearer;
    # - g4dn.xlarge, one T4 (15,360 MiB) at $0.53: too small;
    # - an L4 in another region at $0.50: not the same region.
    # Saving (1.80 - 0.80) x 1 GPU x 730 = $730.00; confidence 1 x 0.6 (a slower GPU).
    held = holding("svc", hours([0.4] * 24, memory=18000), gpu_model="NVIDIA L40S",
                   gpu_memory_mib=46068.0, cost_per_hour=Decimal("1.80"), provider="aws",
                   region="us-east-1", instance_type="g6e.xlarge")  # fmt: skip
    offers = [
        Offer("aws", "us-east-1", "NVIDIA L4", 1, 23034, "g6.xlarge", Decimal("0.80")),
        Offer("aws", "us-east-1", "NVIDIA L4", 4, 23034, "g6.12xlarge", Decimal("4.00")),
        Offer("aws", "us-east-1", "NVIDIA T4", 1, 15360, "g4dn.xlarge", Decimal("0.53")),
        Offer("aws", "eu-west-1", "NVIDIA L4", 1, 23034, "g6.xlarge", Decimal("0.50")),
        Offer("aws", "us-east-1", "NVIDIA L40S", 1, 46068, "g6e.xlarge", Decimal("1.80")),
    ]
    (f,) = usage_rightsize_run(held, offers=offers)
    check_finding(f, held)
    assert f.monthly_saving == Decimal("730.00")
    assert f.confidence == Decimal("0.60")
    assert f.evidence["offer_instance_type"] == "g6.xlarge"
    assert f.evidence["offer_price_per_gpu_hour"] == "0.8000"
    assert f.evidence["memory_need_mib"] == 21600
    spec = yaml.safe_load(f.patch or "")["spec"]["template"]["spec"]
    assert spec == {"nodeSelector": {"node.kubernetes.io/instance-type": "g6.xlarge"}}
    # spot capacity, no catalog or a busier workload (0.9 x 1.2 > 1 GPU): no offer
    spot = GpuHolding(**(vars(held) | {"capacity": "spot"}))
    assert usage_rightsize_run(spot, offers=offers) == []
    assert usage_rightsize_run(held) == []
    busy = GpuHolding(**(vars(held) | {"hours": hours([0.9] * 24, memory=18000)}))
    assert usage_rightsize_run(busy, offers=offers) == []


def test_mig_table_is_nvidias() -> None:
    # A100 and H100 have 7 compute slices and 8 memory slices, the A30 4 and 4; a profile's
    # GiB is under its name's GB and its memory slices in proportion
    for gpu in MIG_GPUS.values():
        assert (gpu.compute_slices, gpu.memory_units) in ((7, 8), (4, 4))
        for p in gpu.profiles:
            nominal = float(p.name.split(".")[1].removesuffix("gb"))
            assert nominal * 0.9 < p.memory_gib < nominal
            assert p.slices == int(p.name.split("g.")[0])
    assert mig_gpu(H100_MODEL, 81559)[0] == "H100-80GB"  # type: ignore[index]
    assert mig_gpu("NVIDIA A100 80GB PCIe", 81920)[0] == "A100-80GB"  # type: ignore[index]
    assert mig_gpu("NVIDIA A100-SXM4-40GB", 40960)[0] == "A100-40GB"  # type: ignore[index]
    assert mig_gpu("NVIDIA H100 NVL", 95830) is None
    assert mig_gpu("NVIDIA RTX A3000", 6144) is None
    assert mig_gpu("NVIDIA L4", 23034) is None


# -- share-gpu ------------------------------------------------------------------------------


def server(name: str, busy: Sequence[float], memory: float, cost: str, **kw: Any) -> GpuHolding:
    a100 = {"serving": True, "gpu_model": A100_MODEL, "gpu_memory_mib": 81920.0}
    return holding(name, hours(busy, memory=memory), cost_per_hour=Decimal(cost), **(a100 | kw))


def test_share_gpu_packs_largest_first() -> None:
    # Four servers on A100 80GB, flat over 24 h (memory limit 81,920 / 1.1 = 74,472.7 MiB,
    # never binding here). Sizes busy / 0.8: A .625, D .5, C .3125, B .25.
    # A opens bin 1; D: A + D = 0.9 > 0.8, opens bin 2; C: A + C = 0.75 joins bin 1;
    # B: bin 1 would be 0.95, bin 2 D + B = 0.6 fits. Two bins of two, each frees one GPU:
    # {A, C}: the cheaper, C at $3/h: $2,190; {B, D}: B at $2/h: $1,460.
    held = [server("a", [0.5] * 24, 10000, "4"), server("b", [0.2] * 24, 8000, "2"),
            server("c", [0.25] * 24, 9000, "3"), server("d", [0.4] * 24, 12000, "4")]  # fmt: skip
    found = usage_share.share_gpu(facts(*held), ShareGpuConfig(), NOW)
    got = {f.scope["workload"]: f for f in found}
    assert set(got) == {"ml/a,ml/c", "ml/b,ml/d"}
    ac, bd = got["ml/a,ml/c"], got["ml/b,ml/d"]
    assert (ac.monthly_saving, bd.monthly_saving) == (Decimal("2190.00"), Decimal("1460.00"))
    assert ac.evidence["combined_busy_share"] == 0.75
    assert ac.evidence["combined_peak_memory_mib"] == 19000
    assert bd.evidence["combined_busy_share"] == 0.6
    assert ac.evidence["gpus_freed"] == 1
    assert ac.confidence == Decimal("0.80")  # 24 h -> 1, x 0.8 for the latency risk
    assert "latency" in ac.action and "latency" in ac.evidence["risk"]
    for f in found:
        check_finding(f, *[h for h in held if h.workload in f.evidence["workloads"]])
    cm, node = yaml.safe_load_all(ac.patch or "")
    plugin = yaml.safe_load(cm["data"]["share-2"])
    assert plugin["sharing"]["timeSlicing"]["resources"] == [
        {"name": "nvidia.com/gpu", "replicas": 2}
    ]
    assert node["metadata"]["labels"] == {"nvidia.com/device-plugin.config": "share-2"}


def test_share_gpu_adds_busy_hour_by_hour() -> None:
    # X is 70 % busy by day and 10 % by night, Y the other way round: each p95 is 0.7, so
    # summing percentiles (1.4) would refuse them, but hour by hour they add to 0.8 <= 0.8.
    # Frees one GPU: the cheaper, Y at $1.50/h: $1,095.
    x = server("x", [0.7] * 12 + [0.1] * 12, 20000, "2.00")
    y = server("y", [0.1] * 12 + [0.7] * 12, 20000, "1.50")
    (f,) = usage_share.share_gpu(facts(x, y), ShareGpuConfig(), NOW)
    assert f.monthly_saving == Decimal("1095.00")
    assert f.evidence["combined_busy_share"] == 0.8
    assert [m["busy_share"] for m in f.evidence["members"]] == [0.7, 0.7]
    # a lower ceiling refuses them
    assert usage_share.share_gpu(facts(x, y), ShareGpuConfig(max_busy=0.75), NOW) == []


def test_share_gpu_refuses_what_does_not_fit_or_qualify() -> None:
    # 40,000 + 40,000 = 80,000 MiB > 74,472.7: memory refuses the pair
    big = [server("p", [0.1] * 24, 40000, "4"), server("q", [0.1] * 24, 40000, "4")]
    # not a server, two GPUs, another GPU model: none is a candidate with `s`
    s = server("s", [0.1] * 24, 1000, "4")
    others = [
        holding("t", hours([0.1] * 24, memory=1000), gpu_model=A100_MODEL),
        server("u", [0.1] * 24, 1000, "4", gpus=2.0),
        server("v", [0.1] * 24, 1000, "4", gpu_model="NVIDIA L4"),
    ]
    assert usage_share.share_gpu(facts(*big), ShareGpuConfig(), NOW) == []
    assert usage_share.share_gpu(facts(s, *others), ShareGpuConfig(), NOW) == []


def test_unmeasured_memory_is_never_taken_for_a_fit() -> None:
    # the engine writes NaN for memory no sample measured: idle-gpu still sees the idle
    # GPU (and says nothing of memory); rightsize and share cannot judge a fit without it
    nan = float("nan")
    idle = holding("nb", hours([0.0] * 12, memory=nan))
    (f,) = usage.idle_gpu(facts(idle), IdleGpuConfig(), NOW)
    assert f.evidence["peak_memory_mib"] is None
    assert f.action.startswith(f"ml/nb (Deployment) holds 1 GPU ({H100_MODEL}) at 0.0 % busy")
    assert usage_rightsize_run(idle) == []
    servers = [server(n, [0.1] * 24, nan, "4") for n in ("a", "b")]
    assert usage_share.share_gpu(facts(*servers), ShareGpuConfig(), NOW) == []
    # the GPU's memory unknown: no limit to fit under
    unknown = [server(n, [0.1] * 24, 1000, "4", gpu_memory_mib=nan) for n in ("a", "b")]
    assert usage_share.share_gpu(facts(*unknown), ShareGpuConfig(), NOW) == []
    # one hour unmeasured among measured ones counts at the server's peak
    gaps = [server(n, [0.1] * 24, 30000, "4") for n in ("a", "b")]
    last = HourUse(T0 + 23 * HOUR, 1.0, 0.1, 1, nan)
    gappy = GpuHolding(**(vars(gaps[0]) | {"hours": (*gaps[0].hours[:23], last)}))
    (shared,) = usage_share.share_gpu(facts(gappy, gaps[1]), ShareGpuConfig(), NOW)
    assert shared.evidence["combined_peak_memory_mib"] == 60000


# -- the registry ---------------------------------------------------------------------------


def test_the_four_rules_register_with_their_configs() -> None:
    assert RULES["idle-gpu"][0] is IdleGpuConfig
    assert RULES["overprovisioned-gpus"][0] is OverprovisionedGpusConfig
    assert RULES["rightsize-gpu"][0] is RightsizeGpuConfig
    assert RULES["share-gpu"][0] is ShareGpuConfig
    with pytest.raises(ValidationError):
        IdleGpuConfig(busy_threshold=2)
    with pytest.raises(ValidationError):
        ShareGpuConfig(max_bussy=0.5)  # type: ignore[call-arg]


def test_run_rules_runs_them() -> None:
    from aifinops.core.recommend.base import run_rules

    held = holding("nb", hours([0.003] * 12, memory=30822))
    names = ["idle-gpu", "overprovisioned-gpus", "rightsize-gpu", "share-gpu"]
    found = run_rules(facts(held), NOW, names=names)
    assert [f.rule for f in found] == ["idle-gpu", "rightsize-gpu"]


# -- the real H100 capture ------------------------------------------------------------------


def capture_holdings(
    events: list[dict[str, Any]], devices: list[dict[str, Any]]
) -> tuple[Facts, dict[str, GpuHolding]]:
    """The capture's workloads as holdings, from the raw files: each one-second
    compute-apps snapshot a pid is in is a second it held the GPU, with the memory it
    used; its busy share that second is the device's utilization.gpu when it was alone
    on the GPU, its pmon SM % when it shared it (a second pmon missed is left out). The
    seconds of each clock hour are rolled into one HourUse."""
    util: dict[int, float] = {}
    for d in devices:
        util.setdefault(int(d["ts"]), d["util"])
    memory: dict[int, dict[int, float]] = defaultdict(dict)  # second -> pid -> MiB
    with (H100 / "nvidia_smi_compute_apps.csv").open(newline="") as fh:
        for row in list(csv.reader(fh, skipinitialspace=True))[1:]:
            memory[int(nvidia_smi_time(row[0]))][int(row[2])] = float(row[4].split()[0])
    sm: dict[tuple[int, int], float] = {}
    for line in (H100 / "nvidia_smi_pmon.txt").read_text().splitlines():
        cells = line.split()
        if line.startswith("#") or len(cells) < 6 or cells[3] == "-":
            continue
        second = int(nvidia_smi_time(f"{cells[0][:4]}/{cells[0][4:6]}/{cells[0][6:]} {cells[1]}.0"))
        sm[(second, int(cells[3]))] = 0.0 if cells[5] == "-" else float(cells[5])
    seconds: dict[int, list[tuple[int, float, float | None]]] = defaultdict(list)
    for second, pids in sorted(memory.items()):
        for pid, mib in pids.items():
            busy = util.get(second) if len(pids) == 1 else sm.get((second, pid))
            seconds[pid].append((second, mib, busy))
    kinds = {"inference": "Deployment", "inference_light": "Deployment", "training": "Job",
             "training_small": "Job", "notebook": "Notebook"}  # fmt: skip
    out = {}
    for e in (e for e in events if e["event"] == "worker_start"):
        rows = seconds[e["pid"]]
        by_hour: dict[int, list[tuple[int, float, float | None]]] = defaultdict(list)
        for sample in rows:
            by_hour[sample[0] // 3600 * 3600 * 1000].append(sample)
        use = []
        for start, part in sorted(by_hour.items()):
            readings = [b for _, _, b in part if b is not None]
            held = len(part) / 3600  # GPU-hours held in the hour
            use.append(HourUse(start, held, held * statistics.fmean(readings) / 100,
                               int(max(readings) > 1), max(m for _, m, _ in part)))  # fmt: skip
        out[e["pod"]] = GpuHolding(
            workload=f"{H100_NS}/{e['pod']}", namespace=H100_NS, team=e["team"],
            kind=kinds[e["kind"]], node="h100-lab-01", gpu_model=devices[0]["name"],
            gpu_memory_mib=81559.0, gpus=1.0, cost_per_hour=Decimal(str(H100_PRICE)),
            hours=tuple(use), serving=e["kind"].startswith("inference"),
        )  # fmt: skip
    phases = [e["ts"] for e in events if e["event"] in ("phase_start", "capture_end")]
    start, end = int(min(phases)) * 1000, (int(max(phases)) + 1) * 1000
    return Facts(start, end, holdings=tuple(out.values())), out


def test_h100_capture(
    h100_events: list[dict[str, Any]], h100_devices: list[dict[str, Any]]
) -> None:
    """The raw numbers, read off the files (and checked below):
    - jupyter-alice-0 (pid 896): in 50 one-second snapshots, 10:38:09-10:38:58; at most
      31,450 MiB (30.7 GiB); utilization.gpu 0 % in every one of those seconds.
    - llm-serve-7d9f4 (pid 732): 102 snapshots, 10:34:47-10:36:28, alone on the GPU;
      utilization.gpu sums to 1,777 %-seconds: 17.42 % busy; at most 2,260 MiB.
    - chat-api-5c6d8 (937) and finetune-lora-1 (938) shared it 10:39:13-10:40:14, 62
      snapshots each; pmon SM % over the 58 seconds it logged: 797 (13.74 %) and 696 (12 %);
      at most 1,398 and 3,642 MiB.
    - pretrain-job-0 (817): 82 s at 7,913 %-seconds, 96.5 % busy; at most 17,118 MiB.
    The whole capture is 10:33:59-10:40:31, inside one clock hour: each workload has one
    HourUse, and the p95 over one hour is that hour's share.

    idle-gpu: the notebook held the GPU 50 s = 0.0139 h. The default min_hours (4) is for
    a fleet watched for days; 0.01 h (36 s) lets this 6-minute capture count while still
    asking for most of the notebook's 50 s. Busy 0 < 0.05: idle. The window is the capture,
    10:33:59 to 10:40:32, 393 s: the notebook's run-rate is $4/h x 50/393 x 730 = $371.50,
    all of it saved; confidence min(1, 0.0139 / 24) = 0.0006 -> 0.00 (50 s is thin evidence).
    Each saving below is a share of the workload's run-rate, $4/h x held s / 393 s x 730.
    rightsize-gpu on H100 80GB (1g.10gb 9.75 GiB, 1g.20gb/2g.20gb 19.62, 3g.40gb/4g.40gb
    39.50):
    - llm-serve: memory 2,260 x 1.2 = 2,712 MiB (2.65 GiB) fits 1g.10gb, but compute
      0.1742 x 1.2 = 0.2091 of the GPU = 1.46 of 7 slices -> 2: 2g.20gb, which takes
      max(2/7, 2/8) = 2/7; saves 5/7 x (4 x 102/393 x 730 = $757.86) = $541.33.
    - chat-api: 0.1374 x 1.2 x 7 = 1.15 -> 2 slices: 2g.20gb, 5/7 x $460.66 = $329.04.
    - finetune-lora-1: 0.12 x 1.2 x 7 = 1.008 -> 2 slices: 2g.20gb, $329.04 (62 s too).
    - notebook: 31,450 x 1.2 = 37,740 MiB (36.86 GiB) -> 3g.40gb, max(3/7, 4/8) = 1/2:
      1/2 x $371.50 = $185.75.
    - pretrain: 0.965 x 1.2 > 1 GPU: no MIG profile, no catalog: nothing.
    share-gpu: the two model servers (llm-serve, chat-api) add to 0.1742 + 0.1374 = 0.3116
    <= 0.8 busy and 2,260 + 1,398 = 3,658 MiB <= 81,559 / 1.1 = 74,144.5: one GPU freed,
    the cheaper of their run-rates: chat-api's $460.66 (62 s) below llm-serve's $757.86."""
    f, held = capture_holdings(h100_events, h100_devices)
    # the raw numbers of the docstring
    pods = ("jupyter-alice-0", "llm-serve-7d9f4", "chat-api-5c6d8", "finetune-lora-1")
    nb, serve, chat, tune = (held[pod].hours[0] for pod in pods)
    assert (round(nb.held_gpus * 3600), nb.busy_gpus, nb.memory_mib) == (50, 0.0, 31450)
    assert round(serve.held_gpus * 3600) == 102 and serve.memory_mib == 2260
    assert serve.busy_gpus / serve.held_gpus == pytest.approx(1777 / 102 / 100)
    assert chat.busy_gpus / chat.held_gpus == pytest.approx(797 / 58 / 100)
    assert tune.busy_gpus / tune.held_gpus == pytest.approx(696 / 58 / 100)

    idle = usage.idle_gpu(f, IdleGpuConfig(min_hours=0.01), NOW)
    assert [x.scope["workload"] for x in idle] == ["lab/jupyter-alice-0"]
    (i,) = idle
    check_finding(i, held["jupyter-alice-0"])
    assert i.evidence["peak_memory_mib"] == 31450
    assert i.evidence["busy_share"] == 0 and i.evidence["held_hours"] == round(50 / 3600, 4)
    assert i.monthly_saving == Decimal("371.50") and i.confidence == Decimal("0.00")
    assert i.action == (
        f"lab/jupyter-alice-0 (Notebook) holds 1 GPU ({H100_MODEL}) and 30.7 GiB of GPU "
        "memory at 0.0 % busy (p95) over 1 minute: stop it or scale it to zero"
    )
    assert i.patch is None  # a notebook: words only
    assert i.evidence["window_start"] == "2026-11-23T10:33:59Z"
    # with the default min_hours the capture is too short to call anything idle
    assert usage.idle_gpu(f, IdleGpuConfig(), NOW) == []

    sized = by_workload(usage_rightsize.rightsize_gpu(f, RightsizeGpuConfig(), NOW))
    assert {w: (x.evidence["mig_profile"], x.monthly_saving) for w, x in sized.items()} == {
        "lab/llm-serve-7d9f4": ("2g.20gb", Decimal("541.33")),
        "lab/chat-api-5c6d8": ("2g.20gb", Decimal("329.04")),
        "lab/finetune-lora-1": ("2g.20gb", Decimal("329.04")),
        "lab/jupyter-alice-0": ("3g.40gb", Decimal("185.75")),
    }
    s = sized["lab/llm-serve-7d9f4"]
    check_finding(s, held["llm-serve-7d9f4"])
    assert s.evidence["memory_mib"] == 2260 and s.evidence["memory_need_mib"] == 2712
    assert s.evidence["profile_slices"] == 2 and s.evidence["gpu_share"] == "2/7"
    assert s.evidence["profile_memory_gib"] * 1024 >= 2260 * 1.2  # the profile holds its peak

    (shared,) = usage_share.share_gpu(f, ShareGpuConfig(), NOW)
    assert shared.evidence["workloads"] == ["lab/chat-api-5c6d8", "lab/llm-serve-7d9f4"]
    assert shared.evidence["combined_busy_share"] == round(1777 / 102 / 100 + 797 / 58 / 100, 4)
    assert shared.evidence["combined_peak_memory_mib"] == 2260 + 1398
    assert shared.monthly_saving == Decimal("460.66")
    assert usage.overprovisioned_gpus(f, OverprovisionedGpusConfig(), NOW) == []


# -- the Alibaba GenAI per-pod traces -------------------------------------------------------

GENAI = "cluster-traces/v2026-genai"
# six pods of the 143: two that sat idle all day (~18 GiB held, ~0 % duty) and four serving
# at p95 13-15 % with 32-34 GiB each (by the 10-character prefix of their hashed IP)
GENAI_PODS = ("87b9247bea", "673d368759", "dfe00e9813", "4679f355d4", "1b93d19ce2", "318c38ff6e")
# The trace names no GPU model; peaks up to 47 GiB elsewhere in it need a GPU of 48 GB or
# more: taken as an A100 80GB (81,920 MiB) at a round $2.00/h, the same for every pod.
GENAI_COST = Decimal("2.00")


@pytest.fixture(scope="module")
def genai_raw() -> dict[str, dict[str, list[tuple[float, float]]]]:
    """{"duty"|"memory": {pod prefix: [(timestamp s, value)]}} for GENAI_PODS, straight
    from the two CSVs (duty cycle in %, memory in bytes)."""
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for kind, name in (("duty", "pod_gpu_duty_cycle_anon.csv"),
                       ("memory", "pod_gpu_memory_used_bytes_anon.csv")):  # fmt: skip
        rows: dict[str, list[tuple[float, float]]] = defaultdict(list)
        with shared_data(f"{GENAI}/{name}").open(newline="") as fh:
            for r in csv.DictReader(fh):
                pod = r["container_ip"][:10]
                if pod in GENAI_PODS:
                    rows[pod].append((float(r["timestamp_anon"]), float(r["value"])))
        out[kind] = dict(rows)
    return out


def genai_hourly(raw: dict[str, dict[str, list[tuple[float, float]]]], pod: str
                 ) -> tuple[dict[int, float], dict[int, float]]:  # fmt: skip
    """A pod's mean duty (as a share) and peak memory (MiB) per clock hour."""
    duty: dict[int, list[float]] = defaultdict(list)
    memory: dict[int, list[float]] = defaultdict(list)
    for ts, v in raw["duty"][pod]:
        duty[int(ts // 3600)].append(v / 100)
    for ts, v in raw["memory"][pod]:
        memory[int(ts // 3600)].append(v / 2**20)
    return ({h: statistics.fmean(v) for h, v in duty.items()},
            {h: max(memory.get(h, [0.0])) for h in duty})  # fmt: skip


def p(values: Sequence[float], q: int) -> float:
    """The q-th percentile by the statistics module (linear, inclusive: numpy's default)."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def test_genai_traces(genai_raw: dict[str, dict[str, list[tuple[float, float]]]]) -> None:
    held: list[GpuHolding] = []
    for pod in GENAI_PODS:
        # a pod holds its GPU in every hour it was sampled (every 57 s)
        busy, peak = genai_hourly(genai_raw, pod)
        use = tuple(HourUse(h * HOUR, 1.0, busy[h], int(busy[h] > 0.01), peak[h])
                    for h in sorted(busy))  # fmt: skip
        held.append(GpuHolding(
            workload=f"genai/{pod}", namespace="genai", team="genai", kind="Deployment",
            node=f"node-{pod[:4]}", gpu_model=A100_MODEL, gpu_memory_mib=81920.0, gpus=1.0,
            cost_per_hour=GENAI_COST, hours=use, serving=True,
        ))  # fmt: skip
    ts = [t for rows in genai_raw["duty"].values() for t, _ in rows]
    f = Facts(int(min(ts) // 3600) * HOUR, (int(max(ts) // 3600) + 1) * HOUR, tuple(held))

    # each expected number straight from the CSV rows, by csv + statistics
    def stats(pod: str) -> dict[str, float]:
        samples: dict[int, list[float]] = defaultdict(list)
        for t, v in genai_raw["duty"][pod]:
            samples[int(t // 3600)].append(v)
        hourly = [statistics.fmean(v) / 100 for v in samples.values()]
        return {"p95": p(hourly, 95), "mean": statistics.fmean(hourly), "hours": len(samples),
                "memory": max(v for _, v in genai_raw["memory"][pod]) / 2**20}  # fmt: skip

    idle = by_workload(usage.idle_gpu(f, IdleGpuConfig(), NOW))
    assert set(idle) == {"genai/87b9247bea", "genai/673d368759"}
    for w, x in idle.items():
        want = stats(w.split("/")[1])
        check_finding(x, *held)
        assert x.evidence["busy_share"] == pytest.approx(want["p95"], abs=1e-4)
        assert x.evidence["mean_busy_share"] == pytest.approx(want["mean"], abs=1e-4)
        assert x.evidence["held_hours"] == want["hours"] == 24
        assert x.evidence["peak_memory_mib"] == pytest.approx(want["memory"], abs=0.06)
        assert x.monthly_saving == GENAI_COST * 730
    for pod in GENAI_PODS[2:]:  # the serving four are busy enough
        assert stats(pod)["p95"] >= 0.05

    # Bins by hand: memory decides. The serving four peak at 34,376, 33,772, 33,759 and
    # 33,171 MiB (dfe0, 318c, 1b93, 4679, largest first): any two fit under 81,920 / 1.1 =
    # 74,472.7 MiB, any three do not; the idle two peak at 17,848 and 19,274 MiB, too much
    # beside a serving pair (>= 66,000 + 17,848). First fit, largest first: {dfe0, 318c},
    # {1b93, 4679}, {673d, 87b9}: three GPUs freed, 3 x $2 x 730 = $4,380.
    shared = usage_share.share_gpu(f, ShareGpuConfig(), NOW)
    assert sorted(x.evidence["workloads"] for x in shared) == [
        ["genai/1b93d19ce2", "genai/4679f355d4"],
        ["genai/318c38ff6e", "genai/dfe00e9813"],
        ["genai/673d368759", "genai/87b9247bea"],
    ]
    assert sum(x.monthly_saving for x in shared) == Decimal("4380.00")
    for x in shared:
        check_finding(x, *held)
        pods = [w.split("/")[1] for w in x.evidence["workloads"]]
        # combine hour by hour from the raw rows: the sum of the members' mean duty and of
        # their peak memory in each hour any of them was sampled
        duty: dict[int, list[float]] = defaultdict(list)
        memory: dict[int, float] = defaultdict(float)
        for pod in pods:
            per_hour: dict[int, list[float]] = defaultdict(list)
            for t, v in genai_raw["duty"][pod]:
                per_hour[int(t // 3600)].append(v)
            for h, vals in per_hour.items():
                duty[h].append(statistics.fmean(vals) / 100)
            peaks: dict[int, float] = defaultdict(float)
            for t, v in genai_raw["memory"][pod]:
                if int(t // 3600) in per_hour:
                    peaks[int(t // 3600)] = max(peaks[int(t // 3600)], v / 2**20)
            for h, m in peaks.items():
                memory[h] += m
        combined = p([sum(v) for v in duty.values()], 95)
        assert x.evidence["combined_busy_share"] == pytest.approx(combined, abs=1e-4)
        most = max(memory.values())
        assert x.evidence["combined_peak_memory_mib"] == pytest.approx(most, abs=0.06)
        assert combined <= 0.8 and most <= 81920 / 1.1
        for m in x.evidence["members"]:
            want = stats(m["workload"].split("/")[1])
            assert m["busy_share"] == pytest.approx(want["p95"], abs=1e-4)
            assert m["peak_memory_mib"] == pytest.approx(want["memory"], abs=0.06)
        k = len(pods)
        assert x.evidence["gpus_freed"] == k - 1
        assert x.monthly_saving == (k - 1) * GENAI_COST * 730
