"""The model servers' `/metrics` as a source: counters per pod and model at an instant."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, Literal

from aifinops.errors import InputError, UsageError
from aifinops.sources.base import Facts, ReadContext, Reading, SourceConfig, register
from aifinops.sources.inputs import read_scrape, text_digest
from aifinops.sources.serving import inference


class InferenceConfig(SourceConfig):
    kind: Literal["inference"] = "inference"
    url: str  # a model server's /metrics URL or a saved scrape
    server: str | None = None  # vllm | sglang | tgi | triton | kserve | jobs (default: recognised)
    pod: str | None = None  # namespace/pod the scrape came from, if not in its labels
    model: str | None = None  # the model of a server whose series name none (TGI)


@register
class InferenceSource:
    kind: ClassVar[str] = "inference"
    mode: ClassVar[str] = "instant"
    description: ClassVar[str] = (
        "vLLM, SGLang, TGI, Triton, KServe or job-queue /metrics: requests, tokens, jobs"
    )
    default_interval: ClassVar[str] = "1m"
    config: ClassVar[type[SourceConfig]] = InferenceConfig

    def read(self, config: InferenceConfig, ctx: ReadContext) -> Iterator[Reading]:
        server, pod, model, src = config.server, config.pod, config.model, config.url
        if server is not None and server not in inference.SERVERS:
            raise UsageError(
                f"unknown server {server!r}", where="--server", hint=", ".join(inference.SERVERS)
            )
        text, at_ms = read_scrape(src, ctx.at_ms, ctx.now_ms)

        def parts() -> Iterator[Facts]:
            counters = inference.read_counters(text, src, server, model)
            if not counters.values:
                raise InputError(
                    "no serving counters in this scrape",
                    where=src,
                    hint="; ".join(counters.problems[-2:]) or None,
                )
            rows = [
                {"ts_ms": at_ms, "workload_id": f"{ns}/{name}" if ns and name else pod,
                 "server": counters.server, "model": mdl, "metric": metric, "value": value,
                 "source": src}
                for (ns, name, mdl, metric), value in sorted(
                    counters.values.items(), key=lambda kv: tuple(str(x) for x in kv[0]))
            ]  # fmt: skip
            models = ", ".join(sorted({str(r["model"]) for r in rows}))
            yield Facts(counters=rows, rows=len(rows),
                        notes=[*counters.problems, f"{counters.server}: {models}"])  # fmt: skip

        digest = text_digest(f"inference|{at_ms}|{server}|{pod}|{model}|", text)
        yield Reading(self.kind, src, parts(), digest, "this scrape was", window=(at_ms, at_ms))
