"""Serving counters: the real vLLM scrape, each server's names, resets, cost per token."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from aifinops.core.windows import from_ms
from aifinops.demo.capture import CAPTURE_HOST, owners_from_events
from aifinops.errors import InputError, UsageError
from aifinops.sources.serving.inference import read_counters
from tests.conftest import H100

DATA = Path(__file__).parent / "data" / "metrics"
PRICES = {"prices": {"gpu_models": {"NVIDIA H100 80GB HBM3": 4.00}}}


def test_real_vllm_scrape_older_names() -> None:
    got = read_counters((DATA / "vllm_metrics.txt").read_text(), "vllm")
    assert got.server == "vllm" and got.problems == []
    m = "facebook/opt-125m"
    # read off the file: success 1 (finished_reason=length), prompt 5, generation 7,
    # TTFT sum 0.31326723098754883 s, e2e latency sum 0.5034303665161133 s
    assert got.values[(None, None, m, "requests")] == 1.0
    assert got.values[(None, None, m, "prompt_tokens")] == 5.0
    assert got.values[(None, None, m, "generation_tokens")] == 7.0
    assert got.values[(None, None, m, "prefill_seconds")] == 0.31326723098754883
    assert got.values[(None, None, m, "decode_seconds")] == pytest.approx(
        0.5034303665161133 - 0.31326723098754883
    )


@pytest.mark.parametrize(
    ("text", "server", "expected"),
    [
        (
            'vllm:request_success_total{model_name="m",finished_reason="stop"} 3\n'
            'vllm:request_success_total{model_name="m",finished_reason="length"} 2\n'
            'vllm:prompt_tokens_total{model_name="m"} 100\n'
            'vllm:generation_tokens_total{model_name="m"} 40\n'
            'vllm:request_prefill_time_seconds_sum{model_name="m"} 1.5\n'
            'vllm:request_decode_time_seconds_sum{model_name="m"} 4.5\n',
            "vllm",
            {"requests": 5, "prompt_tokens": 100, "generation_tokens": 40,
             "prefill_seconds": 1.5, "decode_seconds": 4.5},
        ),
        (
            'sglang:prompt_tokens_total{model_name="m"} 10\n'
            'sglang:generation_tokens_total{model_name="m"} 20\n'
            'sglang:e2e_request_latency_seconds_count{model_name="m"} 4\n'
            'sglang:e2e_request_latency_seconds_sum{model_name="m"} 8\n'
            'sglang:time_to_first_token_seconds_sum{model_name="m"} 2\n',
            "sglang",
            {"requests": 4, "prompt_tokens": 10, "generation_tokens": 20,
             "prefill_seconds": 2, "decode_seconds": 6},
        ),
        (
            "tgi_request_success 7\n"
            "tgi_request_input_length_sum 70\n"
            "tgi_request_generated_tokens_sum 140\n"
            'tgi_batch_forward_duration_sum{method="prefill"} 0.5\n'
            'tgi_batch_forward_duration_sum{method="decode"} 2.5\n',
            "tgi",
            {"requests": 7, "prompt_tokens": 70, "generation_tokens": 140,
             "prefill_seconds": 0.5, "decode_seconds": 2.5},
        ),
        (
            'nv_inference_request_success{model="m",version="1"} 9\n'
            'nv_inference_request_failure{model="m",version="1"} 1\n',
            "triton",
            {"requests": 9},
        ),
        (
            'request_predict_seconds_count{model_name="m"} 11\n'
            'request_predict_seconds_sum{model_name="m"} 3.3\n',
            "kserve",
            {"requests": 11},
        ),
    ],
)  # fmt: skip
def test_each_server(text: str, server: str, expected: dict[str, float]) -> None:
    got = read_counters(text, server, model="m")
    assert got.server == server
    assert {k[3]: v for k, v in got.values.items()} == expected
    assert {k[2] for k in got.values} == {"m"}


def _vllm_scrape(model: str, n: int, prompt: int, gen: int) -> str:
    return (
        f'vllm:request_success_total{{model_name="{model}",finished_reason="stop"}} {n}\n'
        f'vllm:prompt_tokens_total{{model_name="{model}"}} {prompt}\n'
        f'vllm:generation_tokens_total{{model_name="{model}"}} {gen}\n'
    )


def _at(ts: float) -> str:
    return from_ms(int(ts * 1000)).isoformat()


def test_cost_per_token_on_the_h100_capture(make_service: Any, tmp_path: Path) -> None:
    svc = make_service(PRICES)
    events = [json.loads(x) for x in (H100 / "workload_events.jsonl").read_text().splitlines()]
    svc.ingest_nvidia_smi(
        H100, host=CAPTURE_HOST, owners=owners_from_events(H100 / "workload_events.jsonl", "lab")
    )
    # the serving pods' vLLM-style counters, built from the true request log: zero when the
    # worker starts, then every 20 s and at its end, the totals of the requests finished
    truth: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for pod in ("llm-serve-7d9f4", "chat-api-5c6d8"):
        start = next(e["ts"] for e in events if e["event"] == "worker_start" and e["pod"] == pod)
        end = next(e["ts"] for e in events if e["event"] == "worker_end" and e["pod"] == pod)
        reqs = [e for e in events if e["event"] == "request" and e["pod"] == pod]
        model = reqs[0]["model"]
        times = [start + 20 * i for i in range(int((end - start) // 20) + 1)] + [end]
        for i, t in enumerate(times):
            done = [r for r in reqs if r["end"] <= t]
            path = tmp_path / f"{pod}-{i}.prom"
            n, p, g = (
                len(done),
                sum(r["prompt_tokens"] for r in done),
                sum(r["completion_tokens"] for r in done),
            )
            path.write_text(_vllm_scrape(model, n, p, g))
            svc.ingest_inference([str(path)], at=_at(t), pod=f"lab/{pod}")
        truth[model] = [
            truth[model][0] + len(reqs),
            truth[model][1] + sum(r["prompt_tokens"] for r in reqs),
            truth[model][2] + sum(r["completion_tokens"] for r in reqs),
        ]
    assert truth["gpt2-medium-randinit"] == [385, 78694, 43226]  # read off the log
    window = f"{_at(events[0]['ts'] - 60)},{_at(events[-1]['ts'] + 60)}"
    report = svc.cost(window=window, by=["model"], unit="tokens")
    rows = {r.key["model"]: r for r in report.rows if r.units is not None}
    assert set(rows) == {"gpt2-medium-randinit", "gpt2-small-randinit"}
    for model, (n, prompt, gen) in truth.items():
        row = rows[model]
        assert (row.units.requests, row.units.prompt_tokens, row.units.generation_tokens) == (
            n,
            prompt,
            gen,
        )
        costs = row.units.costs(row.total_cost, row.gpu_hours)
        assert costs["cost_per_1m_tokens"] == pytest.approx(
            float(row.total_cost) / (prompt + gen) * 1e6
        )
        assert costs["cost_per_request"] == pytest.approx(float(row.total_cost) / n)
        assert costs["cost_per_1m_prompt_tokens"] is None  # no prefill/decode time given
    # the model's cost is what its pods (serving and training alike) held, at $4/h
    medium = rows["gpt2-medium-randinit"]
    assert float(medium.total_cost) == pytest.approx(float(medium.gpu_hours) * 4.0)
    as_json = report.to_dict()["rows"]
    assert any(r.get("units", {}).get("requests") == 385 for r in as_json)


def test_counter_resets_and_baseline(make_service: Any, tmp_path: Path) -> None:
    svc = make_service()
    t0 = 1_795_428_000  # 2026-11-23T10:00:00Z
    for i, value in enumerate([40, 100, 30, 50]):  # the server restarted after 100
        path = tmp_path / f"s{i}.prom"
        path.write_text(f'vllm:prompt_tokens_total{{model_name="m"}} {value}\n')
        svc.ingest_inference([str(path)], at=_at(t0 + 60 * i), pod="ns/p")
    from aifinops.store.units import counter_increases

    # the first sample (40) is the baseline: +60, then a reset (+30), then +20
    got = counter_increases(svc.store, t0 * 1000, (t0 + 240) * 1000).to_pylist()
    assert got == [{"model": "m", "metric": "prompt_tokens", "increase": 110.0}]
    # a window that starts after the reset counts only what lies in it
    got = counter_increases(svc.store, (t0 + 150) * 1000, (t0 + 240) * 1000).to_pylist()
    assert got == [{"model": "m", "metric": "prompt_tokens", "increase": 20.0}]


def test_bad_inference_input(make_service: Any, tmp_path: Path) -> None:
    svc = make_service()
    path = tmp_path / "dcgm.prom"
    path.write_text((DATA / "dcgm_metrics.txt").read_text())
    with pytest.raises(InputError, match="no serving counters") as info:
        svc.ingest_inference([str(path)])
    assert info.value.where == str(path)
    with pytest.raises(UsageError, match="unit costs are per model"):
        svc.cost(window="2026-11-23T00:00:00Z,2026-11-23T01:00:00Z", by=["team"], unit="tokens")
    with pytest.raises(UsageError, match="unknown server"):
        svc.ingest_inference([str(path)], server="ollama")
    nan = tmp_path / "nan.prom"
    nan.write_text(
        'vllm:prompt_tokens_total{model_name="m"} NaN\n'
        'vllm:generation_tokens_total{model_name="m"} 5\n'
    )
    (result,) = svc.ingest_inference([str(nan)], pod="ns/p")
    assert any("skipped 1 sample(s) that were NaN or negative" in n for n in result.notes)
    assert svc.store.raw("SELECT metric, value FROM serving_counters") == [
        ("generation_tokens", 5.0)
    ]
