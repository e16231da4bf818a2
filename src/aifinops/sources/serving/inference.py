"""Model-serving counters -> requests, prompt and generation tokens, prefill and decode time.

Servers and the series read (counters, or the `_sum`/`_count` of histograms):
- vLLM: `vllm:request_success_total` (requests), `vllm:prompt_tokens_total`,
  `vllm:generation_tokens_total`, `vllm:request_prefill_time_seconds_sum` and
  `vllm:request_decode_time_seconds_sum`; older vLLM has no prefill/decode series, so the
  time to first token sum stands for prefill and the end-to-end latency sum minus it for
  decode.
- SGLang: `sglang:num_requests_total` (else the e2e latency count), `sglang:prompt_tokens_total`,
  `sglang:generation_tokens_total`, TTFT and e2e sums as for older vLLM.
- TGI: `tgi_request_success`, `tgi_request_input_length_sum`, `tgi_request_generated_tokens_sum`,
  `tgi_batch_forward_duration_sum` with `method="prefill"` / `"decode"`.
- Triton: `nv_inference_request_success` (requests only).
- KServe: `request_predict_seconds_count` (requests only).
- Job queues (`jobs`: any worker or queue exporter): completed jobs from `job_completed_total`
  (else `jobs_completed_total`, else `job_processed_total`), processing time from
  `job_processing_seconds_total` (else the `_sum` of a `job_processing_seconds` or
  `job_duration_seconds` histogram). Failed jobs (`job_failed_total`) are not completed jobs
  and are not read.

The model comes from `model_name` (vLLM, SGLang, KServe) or `model` (Triton); TGI serves one
model, named with `--model` or the pod's `model` label. A job counter has no model: its queue
(`queue_name`, `queue`, `service` or `app`, the first present) is stored where the model goes,
so the unit-cost engine groups jobs by queue exactly as it groups tokens by model (and a
worker pod that names no model takes its queue as its model, decision 0012).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from aifinops.sources.exposition import Sample, finite, lines_named, parse

METRICS = ("requests", "prompt_tokens", "generation_tokens", "prefill_seconds", "decode_seconds",
           "jobs", "processing_seconds")  # fmt: skip
SERVERS = ("vllm", "sglang", "tgi", "triton", "kserve", "jobs")
# the labels that name a job counter's queue, in order
QUEUE_LABELS = ("queue_name", "queue", "service", "app")
# past 2^53 a float no longer counts in ones: a counter there is garbage, and summing its
# increases can reach infinity (a cost per job of 0)
MAX_COUNTER = 2.0**53


def counter_value(value: float) -> bool:
    """A counter's value that can be read: a finite number from 0 to MAX_COUNTER."""
    return finite(value) and 0 <= value <= MAX_COUNTER


# (server, series name, label filter, our metric, scale); the first match per metric wins,
# later entries are fallbacks for older servers
_MAP: list[tuple[str, str, dict[str, str], str, float]] = [
    ("vllm", "vllm:request_success_total", {}, "requests", 1.0),
    ("vllm", "vllm:prompt_tokens_total", {}, "prompt_tokens", 1.0),
    ("vllm", "vllm:generation_tokens_total", {}, "generation_tokens", 1.0),
    ("vllm", "vllm:request_prefill_time_seconds_sum", {}, "prefill_seconds", 1.0),
    ("vllm", "vllm:request_decode_time_seconds_sum", {}, "decode_seconds", 1.0),
    ("sglang", "sglang:num_requests_total", {}, "requests", 1.0),
    ("sglang", "sglang:prompt_tokens_total", {}, "prompt_tokens", 1.0),
    ("sglang", "sglang:generation_tokens_total", {}, "generation_tokens", 1.0),
    ("tgi", "tgi_request_success", {}, "requests", 1.0),
    ("tgi", "tgi_request_input_length_sum", {}, "prompt_tokens", 1.0),
    ("tgi", "tgi_request_generated_tokens_sum", {}, "generation_tokens", 1.0),
    ("tgi", "tgi_batch_forward_duration_sum", {"method": "prefill"}, "prefill_seconds", 1.0),
    ("tgi", "tgi_batch_forward_duration_sum", {"method": "decode"}, "decode_seconds", 1.0),
    ("triton", "nv_inference_request_success", {}, "requests", 1.0),
    ("kserve", "request_predict_seconds_count", {}, "requests", 1.0),
    ("jobs", "job_completed_total", {}, "jobs", 1.0),
    ("jobs", "jobs_completed_total", {}, "jobs", 1.0),
    ("jobs", "job_processed_total", {}, "jobs", 1.0),
    ("jobs", "job_processing_seconds_total", {}, "processing_seconds", 1.0),
    ("jobs", "job_processing_seconds_sum", {}, "processing_seconds", 1.0),
    ("jobs", "job_duration_seconds_sum", {}, "processing_seconds", 1.0),
]
# time to first token and end-to-end latency, for servers without prefill/decode series
_TTFT = {
    "vllm": "vllm:time_to_first_token_seconds_sum",
    "sglang": "sglang:time_to_first_token_seconds_sum",
}
_E2E = {
    "vllm": "vllm:e2e_request_latency_seconds_sum",
    "sglang": "sglang:e2e_request_latency_seconds_sum",
}
_E2E_COUNT = {"sglang": "sglang:e2e_request_latency_seconds_count"}
_PREFIX = {
    "vllm:": "vllm",
    "sglang:": "sglang",
    "tgi_": "tgi",
    "nv_inference_": "triton",
    "request_predict_seconds": "kserve",
    "job_": "jobs",
    "jobs_": "jobs",
}


@dataclass
class Counters:
    """One scrape's counters, summed per (pod, model, metric) over other labels."""

    server: str | None
    values: dict[tuple[str | None, str | None, str | None, str], float] = field(
        default_factory=dict
    )  # (namespace, pod, model, metric) -> value
    problems: list[str] = field(default_factory=list)


def detect_server(samples: list[Sample]) -> str | None:
    seen: dict[str, int] = defaultdict(int)
    for s in samples:
        for prefix, server in _PREFIX.items():
            if s.name.startswith(prefix):
                seen[server] += 1
    return max(seen, key=lambda k: seen[k]) if seen else None


def read_counters(
    text: str, where: str, server: str | None = None, model: str | None = None
) -> Counters:
    expo = parse(text, where)
    server = server or detect_server(expo.samples)
    out = Counters(server, problems=list(expo.problems))
    if server is None:
        out.problems.append(
            f"{where}: no vLLM, SGLang, TGI, Triton, KServe or job-queue series found"
        )
        return out
    by_name: dict[str, list[Sample]] = defaultdict(list)
    for s in expo.samples:
        by_name[s.name].append(s)
    raw: dict[tuple[str | None, str | None, str | None, str], float] = defaultdict(float)

    def key(s: Sample, metric: str) -> tuple[str | None, str | None, str | None, str]:
        ns, pod, name = series_key(s.labels, model, server)
        return ns, pod, name, metric

    bad: list[int] = []  # the lines of the samples skipped
    huge: list[int] = []  # the lines of the samples past MAX_COUNTER
    read: set[str] = set()  # the metrics an earlier (preferred) series name gave
    for srv, name, want, metric, scale in _MAP:
        if srv != server or metric in read:
            continue
        if srv == "jobs" and name in by_name:
            read.add(metric)  # one spelling per metric: two would count each job twice
        for s in by_name.get(name, []):
            if any(s.labels.get(k) != v for k, v in want.items()):
                continue
            if not finite(s.value) or s.value < 0:
                bad.append(s.line)
                continue
            if not counter_value(s.value):
                huge.append(s.line)
                continue
            k = key(s, metric)
            raw[k] = raw.get(k, 0.0) + s.value * scale

    def total(name: str) -> dict[tuple[str | None, str | None, str | None], float]:
        acc: dict[tuple[str | None, str | None, str | None], float] = defaultdict(float)
        for s in by_name.get(name, []):
            if counter_value(s.value):
                ns, pod, mdl, _ = key(s, "")
                acc[(ns, pod, mdl)] += s.value
        return acc

    if server in _TTFT:
        ttft, e2e = total(_TTFT[server]), total(_E2E[server])
        for scope, first in ttft.items():
            raw.setdefault((*scope, "prefill_seconds"), first)
            if scope in e2e:
                raw.setdefault((*scope, "decode_seconds"), max(e2e[scope] - first, 0.0))
    if server in _E2E_COUNT:
        for scope, n in total(_E2E_COUNT[server]).items():
            raw.setdefault((*scope, "requests"), n)
    if bad:
        out.problems.append(
            f"{where}: skipped {len(bad)} sample(s) that were NaN or negative{lines_named(bad)}"
        )
    if huge:
        out.problems.append(
            f"{where}: skipped {len(huge)} sample(s) above 2^53, past where a counter counts "
            f"exactly{lines_named(huge)}"
        )
    out.values = dict(raw)
    if not out.values:
        out.problems.append(f"{where}: {server} series found, but none of its counters")
    return out


def counter_queries() -> list[tuple[str, str, dict[str, str], str, float]]:
    """(server, series, label filter, our metric, scale) for every counter read through a
    Prometheus API (where the older servers' TTFT/e2e stand-ins are not used). A job
    metric's later spellings are fallbacks: read one only where the earlier gave nothing."""
    return list(_MAP)


def series_key(
    labels: dict[str, str], model: str | None = None, server: str | None = None
) -> tuple[str | None, str | None, str | None]:
    """(namespace, pod, model) of a counter series, scraped directly or via Prometheus; for
    a job counter the "model" is its queue (QUEUE_LABELS)."""
    ns = labels.get("exported_namespace") or labels.get("namespace")
    pod = labels.get("exported_pod") or labels.get("pod")
    if server == "jobs":
        return ns, pod, next((labels[k] for k in QUEUE_LABELS if labels.get(k)), model)
    return ns, pod, labels.get("model_name") or labels.get("model") or model
