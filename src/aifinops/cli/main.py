"""The `aifinops` command: thin commands over the service; errors handled in one place."""

from __future__ import annotations

import os
import sys
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from aifinops.core.model import IdlePolicy, SharedGpuPolicy
from aifinops.errors import AifinopsError, UsageError

if TYPE_CHECKING:
    from aifinops.config import Settings
    from aifinops.service import IngestResult, Service

# Plain help and usage errors (click's), not Rich's panels: rendering help through
# `typer.rich_utils` imports Rich's markdown and panels, a third of a second on every --help
PLAIN = None

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=PLAIN,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="FinOps for AI infrastructure: what every GPU-hour cost, who used it, and how well.",
)
ingest_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=PLAIN,
    help="Load telemetry and inventory into the store.",
)
config_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=PLAIN, help="Show the settings in force."
)
sources_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=PLAIN,
    help="The sources `collect` runs, and their health.",
)
app.add_typer(ingest_app, name="ingest")
app.add_typer(config_app, name="config")
app.add_typer(sources_app, name="sources")
bills_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=PLAIN,
    help="Bills: FOCUS cost lines and what they add up to.",
)
app.add_typer(bills_app, name="bills")
tags_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=PLAIN, help="Tag compliance of the bills."
)
app.add_typer(tags_app, name="tags")
export_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=PLAIN, help="Exports for finance: FOCUS chargeback."
)
app.add_typer(export_app, name="export")
prices_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=PLAIN,
    help="The GPU price catalog, and what is unpriced.",
)
app.add_typer(prices_app, name="prices")
store_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=PLAIN, help="The store: sizes, retention, repairs."
)
app.add_typer(store_app, name="store")
token_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=PLAIN, help="API tokens for `aifinops serve`."
)
app.add_typer(token_app, name="token")


def _budget_app() -> typer.Typer:
    from aifinops.cli import budget

    budget._hooks.update(service=lambda ro=False: _service(read_only=ro),
                         console=lambda stderr=False: _console(stderr),
                         emit=lambda data, fmt, **v: _emit(data, fmt, **v))  # fmt: skip
    return budget.budget_app


app.add_typer(_budget_app(), name="budget")


def _optimize_app() -> typer.Typer:
    from aifinops.cli import optimize

    optimize._hooks.update(service=lambda ro=False: _service(read_only=ro),
                           console=lambda stderr=False: _console(stderr),
                           emit=lambda data, fmt, **v: _emit(data, fmt, **v))  # fmt: skip
    return optimize.optimize_app


app.add_typer(_optimize_app(), name="optimize")


def _anomalies_app() -> typer.Typer:
    from aifinops.cli import anomalies

    anomalies._hooks.update(service=lambda ro=False: _service(read_only=ro),
                            console=lambda stderr=False: _console(stderr),
                            emit=lambda data, fmt, **v: _emit(data, fmt, **v))  # fmt: skip
    return anomalies.anomalies_app


app.add_typer(_anomalies_app(), name="anomalies")


def _forecast_app() -> typer.Typer:
    from aifinops.cli import forecast

    forecast._hooks.update(service=lambda ro=False: _service(read_only=ro),
                           emit=lambda data, fmt, **v: _emit(data, fmt, **v))  # fmt: skip
    return forecast.forecast_app


app.add_typer(_forecast_app(), name="forecast")


def _report_command() -> None:
    from aifinops.cli import report

    report._hooks.update(service=lambda ro=False: _service(read_only=ro),
                         console=lambda stderr=False: _console(stderr))  # fmt: skip
    app.command("report")(report.report)


_report_command()


def _rule_thresholds() -> list[tuple[str, list[Any]]]:
    from aifinops.outputs.rules import BudgetThreshold

    return [(b.name, [BudgetThreshold(a.threshold_percent, a.severity, a.basis)
                      for a in b.spec.alerts])
            for b, _ in _service(read_only=True).budget_list() if b.spec.enabled]  # fmt: skip


def _rules_command() -> None:
    from aifinops.cli import rules

    rules.register(app, _rule_thresholds, lambda: _settings().rules)


_rules_command()


class Format(StrEnum):
    """The --format names: one per renderer in cli/render.py (RENDERERS)."""

    table = "table"
    detailed = "detailed"
    json = "json"
    csv = "csv"


class Unit(StrEnum):
    tokens = "tokens"
    requests = "requests"
    jobs = "jobs"
    minutes = "minutes"


class Server(StrEnum):
    vllm = "vllm"
    sglang = "sglang"
    tgi = "tgi"
    triton = "triton"
    kserve = "kserve"
    jobs = "jobs"


class _State:
    """This invocation's global options, its root context, and the service it opened."""

    db: str | None = None
    config: Path | None = None
    root: typer.Context | None = None
    service: Service | None = None
    server: str | None = None  # a running `aifinops serve` to ask instead of the store


state = _State()


@app.callback()
def _global(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="The store: a DuckDB file (default ./aifinops.duckdb) or a PostgreSQL URL "
            "(postgresql://USER@HOST/DB[?schema=NAME]); or $AIFINOPS_DB.",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Config file (YAML): prices, attribution, allocation."),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            help="Ask a running `aifinops serve` at this URL (or $AIFINOPS_SERVER) instead of "
            "reading the store: `cost`. Token from $AIFINOPS_TOKEN.",
        ),
    ] = None,
) -> None:
    state.db, state.config, state.root, state.service = db, config, ctx, None
    state.server = server


def _settings() -> Settings:
    from aifinops.config import load_settings

    return load_settings(state.config, flags={"db": state.db})


def _service(read_only: bool = False) -> Service:
    """This invocation's service, opened on first use. The root context holds it as a
    resource (`with_resource` enters it) and closes it when the command ends, whether the
    command returned or raised: the one place the CLI closes a service. A command that only
    reads asks for it `read_only`: the store is opened read-only, so it runs while `collect`
    writes and on a read-only file."""
    from aifinops.service import Service

    if state.service is None:
        if state.root is None:
            raise RuntimeError("_service() outside a command")
        service = Service(_settings(), read_only=read_only)
        state.service = state.root.with_resource(service)
    return state.service


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = 160  # pipes and CI logs: don't squeeze tables to 80 columns
    return console


def _emit(data: Any, fmt: Format, **view: Any) -> None:
    """Write a command's result to stdout in the format asked for (see cli/render.py)."""
    from aifinops.cli import render

    render.emit(data, fmt, _console(), **view)


def _amount(text: str, where: str) -> Decimal:
    """A sum of money from the command line: a plain decimal number, 0 to 10^15."""
    from decimal import InvalidOperation

    try:
        value = Decimal(text.strip().replace(",", "").replace("_", "x"))
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or not 0 <= value <= Decimal("1e15"):
        raise UsageError(f"{text!r} is not an amount of money from 0 to 10^15", where=where,
                         hint="e.g. 20000 or 12500.50")  # fmt: skip
    return value


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


# -- ingest -------------------------------------------------------------------------------


@ingest_app.command("nvidia-smi")
def ingest_nvidia_smi(
    path: Annotated[Path, typer.Argument(help="Directory of nvidia-smi logs (or one log file).")],
    owners: Annotated[
        Path | None, typer.Option(help="Process-owner CSV: pid,workload,labels[,host,start,end].")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Host name for these logs (default: the directory name).")
    ] = None,
    timezone: Annotated[
        str, typer.Option(help="Time zone nvidia-smi printed its timestamps in.")
    ] = "UTC",
) -> None:
    """Load nvidia-smi --query-gpu/--query-compute-apps CSV, pmon, dmon and -q -x logs."""
    _report_ingest([_service().ingest_nvidia_smi(path, owners, host, timezone)])


@ingest_app.command("kubernetes")
def ingest_kubernetes(
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help="kubectl get nodes,pods,namespaces -A -o json|yaml output, or Node YAML. "
            "None: read the API."
        ),
    ] = None,
    kubeconfig: Annotated[
        str | None, typer.Option(help="Kubeconfig for the API (default ~/.kube/config).")
    ] = None,
    context: Annotated[str | None, typer.Option(help="Kubeconfig context.")] = None,
    in_cluster: Annotated[
        bool, typer.Option("--in-cluster", help="Use the pod's service account.")
    ] = False,
    watch: Annotated[
        float, typer.Option(help="After listing, follow changes for this many seconds.")
    ] = 0.0,
) -> None:
    """Load nodes, pods and namespaces: from files, or from the Kubernetes API."""
    svc = _service()
    if files:
        _report_ingest(svc.ingest_kubernetes(files))
    else:
        _report_ingest(
            [
                svc.ingest_kubernetes_api(
                    kubeconfig=kubeconfig,
                    context=context,
                    in_cluster=in_cluster,
                    watch_seconds=watch,
                )
            ]
        )


@ingest_app.command("dcgm")
def ingest_dcgm(
    sources: Annotated[
        list[str], typer.Argument(help="dcgm-exporter /metrics scrapes: files or http(s) URLs.")
    ],
    at: Annotated[
        str | None,
        typer.Option(
            help="When the scrape was taken (ISO 8601), for samples without timestamps. "
            "Default: the file's modification time, or now for a URL."
        ),
    ] = None,
    interval: Annotated[
        str, typer.Option(help="Time each scrape stands for (the exporter's interval).")
    ] = "30s",
    host: Annotated[
        str | None, typer.Option(help="Host for series without a Hostname label.")
    ] = None,
) -> None:
    """Load NVIDIA dcgm-exporter scrapes: GPU usage, pods, MIG instances and energy."""
    _report_ingest(_service().ingest_dcgm(sources, at=at, interval=interval, host=host))


@ingest_app.command("prometheus")
def ingest_prometheus(
    url: Annotated[
        str, typer.Option(help="Base URL of the Prometheus HTTP API (or Thanos, Mimir).")
    ],
    window: Annotated[str, typer.Option(help="START,END in ISO 8601 (UTC unless stated).")],
    step: Annotated[
        str, typer.Option(help="Resolution; each step takes the last sample within it.")
    ] = "1m",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each request.")] = 30.0,
) -> None:
    """Pull dcgm-exporter and kube-state-metrics series over a window, in chunks."""
    _report_ingest([_service().ingest_prometheus(url, window=window, step=step, timeout=timeout)])


@ingest_app.command("slurm")
def ingest_slurm(
    files: Annotated[list[Path], typer.Argument(help="sacct --json or sacct --parsable2 output.")],
    timezone: Annotated[
        str, typer.Option(help="Time zone of --parsable2 Start/End (the cluster's).")
    ] = "UTC",
) -> None:
    """Load Slurm accounting: jobs, steps, users, accounts (-> team), GPUs from AllocTRES."""
    _report_ingest(_service().ingest_slurm(files, timezone))


@ingest_app.command("inference")
def ingest_inference(
    sources: Annotated[list[str], typer.Argument(help="Model-server /metrics: files or URLs.")],
    server: Annotated[
        Server | None, typer.Option(help="The server (default: recognised from the series).")
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(help="When the scrape was taken (default: file time, or now for a URL)."),
    ] = None,
    pod: Annotated[
        str | None, typer.Option(help="namespace/pod the scrape came from, if not in its labels.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model name for servers whose series name none (TGI).")
    ] = None,
) -> None:
    """Load vLLM, SGLang, TGI, Triton, KServe or job-queue counters: requests, tokens, serving
    time, jobs and their processing time."""
    _report_ingest(
        _service().ingest_inference(
            sources, server=server.value if server else None, at=at, pod=pod, model=model
        )
    )


def _ingest_bills(
    kind: str, files: list[Path], options: dict[str, Any] | None = None, replace: bool = False
) -> None:
    from rich.progress import Progress

    with Progress(console=_console(stderr=True), transient=True) as bar:
        task = bar.add_task("cost lines", total=None)

        def progress(what: str, done: int, total: int) -> None:
            bar.update(task, completed=done, description=f"{what}: {done:,}")

        _report_ingest(
            _service().ingest_bills(
                kind, files, options=options, progress=progress, replace=replace
            )
        )


_BILL_FILES = "Files of one delivery (CSV, gzipped CSV or Parquet); parts of one period together."
PadOption = Annotated[
    bool,
    typer.Option(
        "--pad-short-rows",
        help="Read lines with fewer fields than the header with the missing trailing fields "
        "empty (exports that drop them), instead of skipping them as cut short.",
    ),
]


def _pad(pad: bool) -> dict[str, Any]:
    return {"pad_short_rows": True} if pad else {}


@ingest_app.command("focus")
def ingest_focus(
    files: Annotated[list[Path], typer.Argument(help="FOCUS 1.0-1.3 datasets, CSV or Parquet.")],
    pad: PadOption = False,
) -> None:
    """Load FOCUS cost and usage datasets (a re-delivered billing period replaces the old)."""
    _ingest_bills("focus", files, _pad(pad))


@ingest_app.command("cur")
def ingest_cur(
    files: Annotated[list[Path], typer.Argument(help=_BILL_FILES)],
    pad: PadOption = False,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Replace the billing periods these files carry, even where their line ids "
            "cannot tell a restatement from another part of the stored delivery.",
        ),
    ] = False,
) -> None:
    """Load AWS Cost and Usage Reports, legacy (lineItem/...) or CUR 2.0 (line_item_...).
    Parts of one delivery may come one command at a time: they add up (by their line ids,
    or the CUR manifest beside them)."""
    _ingest_bills("cur", files, _pad(pad), replace)


class AzureDataset(StrEnum):
    actual = "actual"
    amortized = "amortized"


@ingest_app.command("azure")
def ingest_azure(
    files: Annotated[list[Path], typer.Argument(help=_BILL_FILES)],
    dataset: Annotated[
        AzureDataset, typer.Option(help="actual (invoiced) or amortized cost export.")
    ] = AzureDataset.actual,
    currency: Annotated[
        str | None, typer.Option(help="The costs' currency, for exports without a currency column.")
    ] = None,
    pad: PadOption = False,
) -> None:
    """Load Azure EA / MCA / pay-as-you-go cost exports (any header spelling)."""
    options = {"dataset": dataset.value} | ({"currency": currency} if currency else {})
    options |= _pad(pad)
    _ingest_bills("azure", files, options)


@ingest_app.command("oci")
def ingest_oci(
    files: Annotated[list[Path], typer.Argument(help=_BILL_FILES)], pad: PadOption = False
) -> None:
    """Load Oracle Cloud cost reports (reports/cost-csv)."""
    _ingest_bills("oci", files, _pad(pad))


@bills_app.command("summary")
def bills_summary(
    by: Annotated[
        str,
        typer.Option(
            help="Group by, comma-separated: provider, service, account, sub_account, currency, "
            "day, category, charge_category, resource."
        ),
    ] = "provider",
    window: Annotated[str | None, typer.Option(help="START,END of charge periods.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
) -> None:
    """Billed, effective and list cost, per currency (never summed across currencies)."""
    rows = _service(read_only=True).bills_summary(by=_split(by), window=window)
    for r in rows:
        r.pop("_billed", None)
    flat = [{**r["key"], **{k: v for k, v in r.items() if k != "key"}} for r in rows]
    cols = tuple(dict.fromkeys([*(k for r in rows for k in r["key"]), "billed_cost",
                                "effective_cost", "list_cost", "currency"]))  # fmt: skip
    _emit(flat, fmt, title="Bills", columns=cols, doc={"rows": rows})


@tags_app.command("report")
def tags_report(
    tag: Annotated[
        list[str] | None, typer.Option(help="Required tags (default: bills.required_tags).")
    ] = None,
    window: Annotated[str | None, typer.Option(help="START,END of charge periods.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
) -> None:
    """Share of billed cost carrying the required tags, and the largest untagged resources."""
    report = _service(read_only=True).tags_report(required=tag, window=window)
    required = ", ".join(report["required_tags"])
    shares = []
    for c in report["currencies"]:
        share = "–" if c["tagged_share"] is None else f"{c['tagged_share']:.1%}"
        each = "; ".join(f"{t} {'–' if v is None else f'{v:.1%}'}" for t, v in c["by_tag"].items())
        shares.append(f"{c['currency']}: {share} of {c['billed_cost']:,.2f} billed carries "
                      f"all of {required}" + (f" (each tag: {each})" if each else ""))  # fmt: skip
    _emit(report["largest_untagged"], fmt, title="Largest untagged resources",
          columns=("resource_id", "provider", "service", "billed_cost", "currency"),
          doc=report, summary=shares)  # fmt: skip


@export_app.command("focus")
def export_focus(
    output: Annotated[Path, typer.Option("-o", "--output", help="FILE.csv or FILE.parquet.")],
    window: Annotated[str | None, typer.Option(help="START,END (UTC, half-open).")] = None,
    last: Annotated[str | None, typer.Option(help="A span up to the newest sample: 7d.")] = None,
    step: Annotated[str, typer.Option(help="One line per workload and step.")] = "1h",
) -> None:
    """The allocated chargeback, per workload and step, as a FOCUS 1.2 dataset."""
    done = _service(read_only=True).export_focus(output, window=window, last=last, step=step)
    _console().print(
        f"{done['rows']:,} lines, {done['billed_cost']:,.2f} {done['currency']} "
        f"({done['window'][0]} to {done['window'][1]}) -> {done['path']}"
    )


@export_app.command("chargeback")
def export_chargeback(
    month: Annotated[str, typer.Option(help="The calendar month, YYYY-MM (UTC).")],
    by: Annotated[str, typer.Option(help="Dimensions, comma-separated.")] = "team",
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="CSV file (default: stdout).")
    ] = None,
) -> None:
    """A month's chargeback per team (or other dimensions) as a plain CSV for finance."""
    from aifinops.outputs.chargeback import chargeback_csv

    rows = _service(read_only=True).export_chargeback(output, month=month, by=_split(by))
    if output is None:
        sys.stdout.write(chargeback_csv(rows))
    else:
        _console().print(f"{len(rows) - 1} rows and a total -> {output}")


@ingest_app.command("opencost")
def ingest_opencost(
    sources: Annotated[
        list[str], typer.Argument(help="OpenCost /allocation/compute responses: files or URLs.")
    ],
) -> None:
    """Import OpenCost allocations (then: aifinops cost --source opencost)."""
    _report_ingest(_service().ingest_opencost(sources))


def _report_ingest(results: list[IngestResult]) -> None:
    out, err = _console(), _console(stderr=True)
    for r in results:
        what = f"{r.rows} rows" if r.status == "loaded" else "nothing new"
        where = f" for host {r.node}" if r.node else ""
        out.print(
            f"{r.source}: {r.path}{where}: {r.status}, {what}"
            + (f", {r.workloads} workloads" if r.workloads else "")
        )
        for note in r.notes:
            err.print(f"  note: {note}")


# -- collect ------------------------------------------------------------------------------


@app.command()
def collect(
    once: Annotated[bool, typer.Option("--once", help="Run every source once, now.")] = False,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: run on).")
    ] = None,
    source: Annotated[
        list[str] | None, typer.Option(help="Only these configured sources (by name).")
    ] = None,
) -> None:
    """Run the sources of the config file on their intervals, from their checkpoints."""
    out = _console()

    def show(name: str, run: Any) -> None:
        what = f"{run.rows} rows" if run.status == "ok" else run.status
        line = f"{name} ({run.kind}): {what}"
        out.print(line + (f" — {run.error}" if run.error else ""))

    runs = _service().collect(once=once, seconds=duration, only=source, report=show)
    if any(r.error for r in runs) and once:
        raise typer.Exit(code=3)


@sources_app.command("list")
def sources_list() -> None:
    """The kinds of source aifinops reads, and what each needs in the config file."""
    from rich.table import Table

    from aifinops.service import source_kinds

    table = Table(title="Source kinds (config file: sources: [{name, kind, ...}])")
    for head in ("kind", "mode", "needs", "default interval", "what"):
        table.add_column(head)
    for k in source_kinds():
        table.add_row(k.name, k.mode, ", ".join(k.needs) or "–", k.default_interval, k.description)
    _console().print(table)


@sources_app.command("status")
def sources_status(
    fmt: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
) -> None:
    """Each configured source: last run, last success, checkpoint, errors."""
    cols = ("name", "kind", "state", "last_run", "last_ok", "checkpoint", "runs", "failures",
            "rows", "last_error")  # fmt: skip
    _emit(_service(read_only=True).sources_status(), fmt, title="Sources", columns=cols)


# -- prices -------------------------------------------------------------------------------
_OFFER_COLUMNS = (
    "provider",
    "region",
    "instance_type",
    "gpu_model",
    "gpu_count",
    "on_demand_hourly",
    "spot_hourly",
    "per_gpu_hourly",
    "source",
    "as_of",
)


@prices_app.command("show")
def prices_show(
    gpu: Annotated[
        str | None, typer.Option(help="GPU model (any spelling: H100, A100 80GB).")
    ] = None,
    instance_type: Annotated[
        str | None, typer.Option(help="Instance type, e.g. g5.xlarge.")
    ] = None,
    provider: Annotated[str | None, typer.Option(help="aws, azure, gcp, oci, lambda, ...")] = None,
    region: Annotated[str | None, typer.Option(help="Region, where the catalog has one.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
) -> None:
    """Catalog offers: hourly prices on-demand and spot, per GPU, with source and date."""
    rows = _service(read_only=True).price_offers(
        gpu=gpu, instance_type=instance_type, provider=provider, region=region
    )
    _emit(rows, fmt, title=f"{len(rows)} offers", columns=_OFFER_COLUMNS)


@prices_app.command("compare")
def prices_compare(
    gpu: Annotated[str, typer.Option(help="GPU model to compare offers of.")],
    spot: Annotated[bool, typer.Option("--spot", help="Compare spot prices.")] = False,
    fmt: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
) -> None:
    """Offers of one GPU model, cheapest per GPU-hour first."""
    rows = _service(read_only=True).price_offers(gpu=gpu, spot=spot)
    kind = "spot" if spot else "on-demand"
    title = f"{gpu}: {len(rows)} {kind} offers, cheapest per GPU-hour first"
    _emit(rows, fmt, title=title, columns=_OFFER_COLUMNS)


@prices_app.command("refresh")
def prices_refresh(
    provider: Annotated[
        list[str] | None, typer.Option(help="aws, azure or gcp (default: prices.api.providers).")
    ] = None,
) -> None:
    """Ask the cloud price APIs again (the cache otherwise lasts prices.api.ttl)."""
    results = _service().refresh_prices(provider)
    if not results:
        _console(stderr=True).print("no price APIs configured (prices.api.providers)")
    _report_ingest(results)
    if any(r.status == "failed" for r in results):
        raise typer.Exit(code=3)


@prices_app.command("missing")
def prices_missing(
    fmt: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
) -> None:
    """Instance types and GPU models in the store that no price covers, with the config line
    that would price them (their cost is in __unpriced__ until then)."""
    rows = _service(read_only=True).missing_prices()
    _emit(rows, fmt, title=f"{len(rows)} price(s) missing",
          columns=("instance_type", "gpu_model", "nodes", "reason", "config"))  # fmt: skip


@app.command()
def energy(
    window: Annotated[str | None, typer.Option(help="START,END in ISO 8601.")] = None,
    last: Annotated[str | None, typer.Option(help="Window ending now, e.g. 24h.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
) -> None:
    """Energy per node from the GPUs' energy counters, and its power cost where an on-prem
    model prices power."""
    rows = _service(read_only=True).energy(window=window, last=last)
    _emit(rows, fmt, title="GPU energy", columns=("node", "gpus", "energy_kwh", "power_cost"))


# -- agent --------------------------------------------------------------------------------


@app.command()
def agent(
    spool: Annotated[
        Path, typer.Option(help="Directory for records not yet stored (kept across restarts).")
    ] = Path("aifinops-spool"),
    host: Annotated[str | None, typer.Option(help="Node name (default: the hostname).")] = None,
    interval: Annotated[str, typer.Option(help="Sampling interval.")] = "1s",
    server: Annotated[
        str | None, typer.Option(help="POST segments to this aifinops server instead of --db.")
    ] = None,
    replay: Annotated[
        Path | None, typer.Option(help="Play back a recorded NVML stream instead of sampling.")
    ] = None,
    ticks: Annotated[int | None, typer.Option(help="Stop after this many samples.")] = None,
    user_team: Annotated[
        list[str] | None, typer.Option(help="USER=TEAM for processes outside pods and jobs.")
    ] = None,
) -> None:
    """The node agent: sample every GPU through NVML, tie processes to pods, Slurm jobs or
    users, buffer on disk, and store (or post) the samples."""
    teams = dict(x.split("=", 1) for x in user_team or [] if "=" in x)
    stats = _service().agent(
        spool=spool,
        host=host,
        interval=interval,
        replay=replay,
        ticks=ticks,
        server=server,
        user_teams=teams,
        sleep=replay is None,
    )
    _console(stderr=True).print(
        f"agent: {stats.ticks} ticks, {stats.records} GPU records, {stats.shipped} segments stored"
        + (f", {len(stats.failures)} failed (kept in {spool})" if stats.failures else "")
    )


# -- cost ---------------------------------------------------------------------------------


@app.command()
def cost(
    by: Annotated[
        str,
        typer.Option(
            help="Group by, comma-separated: team, project, model, environment, experiment, "
            "cost-center, owner, namespace, workload, node, gpu-model, provider, region, "
            "instance-type."
        ),
    ] = "team",
    team: Annotated[str | None, typer.Option(help="Only this team's rows.")] = None,
    last: Annotated[str | None, typer.Option(help="Window ending now, e.g. 24h, 7d, 30d.")] = None,
    window: Annotated[
        str | None,
        typer.Option(
            help="START,END in ISO 8601 (UTC unless stated). Default: the 7 days up to the "
            "newest sample."
        ),
    ] = None,
    step: Annotated[
        str | None,
        typer.Option(help="Report per step (e.g. 1h, 1d); idle is shared out per node and step."),
    ] = None,
    idle: Annotated[
        IdlePolicy | None,
        typer.Option(help="Idle cost: separate (__idle__), weighted, or even."),
    ] = None,
    shared_gpu: Annotated[
        SharedGpuPolicy | None,
        typer.Option("--shared-gpu", help="Shared GPUs split by request share or measured usage."),
    ] = None,
    unit: Annotated[
        Unit | None,
        typer.Option(
            help="With --by model: cost per 1M tokens or per request (DESIGN 2.10); "
            "jobs / minutes: cost per job or per processing minute, by team, "
            "queue (--by model), workload and the like."
        ),
    ] = None,
    source: Annotated[
        str,
        typer.Option(help="telemetry (the engine) or opencost (imported OpenCost allocations)."),
    ] = "telemetry",
    reconciled: Annotated[
        bool,
        typer.Option(
            "--reconciled",
            help="Scale each node to its billed EffectiveCost (from ingested bills) and show "
            "list price, billed cost and the difference; other billed spend by category.",
        ),
    ] = False,
    roi: Annotated[
        bool,
        typer.Option(
            "--roi",
            help="What applied recommendations saved (measured before and after, confirmed "
            "by the bill where it covers them), by category, with the payback.",
        ),
    ] = False,
    investment: Annotated[
        str | None,
        typer.Option(help="With --roi: the investment to pay back (default: roi.investment)."),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """What GPU nodes cost, attributed to teams, projects, models and workloads."""
    report: Any
    if investment is not None and not roi:
        raise UsageError("--investment goes with --roi", where="--investment")
    if roi:
        given = [n for n, v in (("--step", step), ("--unit", unit), ("--team", team),
                                ("--window", window), ("--last", last), ("--idle", idle),
                                ("--shared-gpu", shared_gpu), ("--reconciled", reconciled),
                                ("--by", by != "team"), ("--source", source != "telemetry"))
                 if v]  # fmt: skip
        if given:
            raise UsageError(f"{', '.join(given)} cannot go with --roi",
                             hint="--roi measures each applied finding over roi.measure "
                             "before and after it was applied")  # fmt: skip
        amount = None if investment is None else _amount(investment, "--investment")
        if server := state.server or os.environ.get("AIFINOPS_SERVER"):
            from aifinops.cli import remote

            _emit(remote.roi(server, None if amount is None else str(amount)), fmt)
            return
        _emit(_service(read_only=True).roi(investment=amount), fmt)
        return
    if reconciled:
        given = [n for n, v in (("--step", step), ("--unit", unit), ("--team", team)) if v]
        if source != "telemetry":
            given.append("--source")
        if given:
            raise UsageError(f"{', '.join(given)} cannot go with --reconciled")
        report = _service(read_only=True).reconcile(
            window=window, last=last, by=by.split(","), idle=idle, shared_gpu=shared_gpu
        )
    elif server := state.server or os.environ.get("AIFINOPS_SERVER"):
        from aifinops.cli import remote

        report = remote.cost(server, window=window, last=last, step=step, by=by, team=team,
                             idle=idle.value if idle else None, unit=unit.value if unit else None,
                             shared_gpu=shared_gpu.value if shared_gpu else None,
                             source=source)  # fmt: skip
    else:
        report = _service(read_only=True).cost(
            window=window,
            last=last,
            step=step,
            by=by.split(","),
            idle=idle,
            shared_gpu=shared_gpu,
            team=team,
            unit=unit.value if unit else None,
            source=source,
        )
    _emit(report, fmt)


@store_app.command("repair")
def store_repair(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what is wrong, change nothing.")
    ] = False,
) -> None:
    """Find and fix what an older version let into the store: cost lines whose amounts no
    sum can hold, and a presence roll-up out of step with its samples."""
    out = _console()
    for r in _service().repair_store(dry_run=dry_run):
        done = "found" if dry_run else f"found, {r.fixed} fixed"
        out.print(f"{r.what}: {r.found} {done}", markup=False)
        for example in r.examples:
            out.print(f"  e.g. {example}", markup=False)


@store_app.command("copy")
def store_copy(
    source: Annotated[
        str, typer.Option("--from", help="The store to copy: a DuckDB file or postgresql://...")
    ],
    target: Annotated[
        str, typer.Option("--to", help="A new, empty store: a DuckDB file or postgresql://...")
    ],
    fmt: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
) -> None:
    """Copy a whole store into a new one: from DuckDB to PostgreSQL (or back), every
    table, in one transaction on the target."""
    from aifinops.core.store_url import redact
    from aifinops.service import Service

    err = _console(stderr=True)
    with err.status("copying…") as status:
        copied = Service.copy_store(
            source, target, lambda table, rows: status.update(f"copying {table}: {rows:,} rows")
        )
    rows = [{"table": c.table, "rows": c.rows} for c in copied]
    total = sum(c.rows for c in copied)
    _emit(rows, fmt, title="Copied", columns=("table", "rows"),
          doc={"from": redact(source), "to": redact(target), "tables": rows, "rows": total},
          summary=[f"{total:,} rows in {len(rows)} tables copied to {redact(target)}"])  # fmt: skip


_STATS_COLUMNS = ("table", "rows", "bytes", "first", "last", "horizon", "removable")


@store_app.command("stats")
def store_stats(
    fmt: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
) -> None:
    """Rows and size per table, the span of its rows, and how many rows retention would
    remove now (retention.samples, .hourly, .daily)."""
    stats = _service(read_only=True).store_stats()
    keep = stats["retention"]
    summary = [f"retention: samples {keep['samples']}, hourly {keep['hourly']}, "
               f"daily {keep['daily']} (now {stats['now']})"]  # fmt: skip
    _emit(stats["tables"], fmt, title="Store", columns=_STATS_COLUMNS, doc=stats,
          summary=summary)  # fmt: skip


@store_app.command("compact")
def store_compact(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be removed, change nothing.")
    ] = False,
    fmt: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
) -> None:
    """Apply retention: delete raw samples past retention.samples where their hourly
    roll-up holds them, hourly roll-ups past retention.hourly where the daily holds them,
    daily ones past retention.daily; merge the roll-ups' rows; give the space back."""
    done = _service().compact_store(dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    summary = [f"{verb} {done['removed']} row(s), merged {done['merged']} roll-up row(s)"]
    _emit(done["tables"], fmt, title="Compaction" + (" (dry run)" if dry_run else ""),
          columns=("table", "horizon", "removed", "merged"), doc=done,
          summary=summary)  # fmt: skip


# -- demo ---------------------------------------------------------------------------------


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the synthetic fleet.")] = 42,
    days: Annotated[int, typer.Option(help="Days of synthetic history.", min=1, max=62)] = 7,
    end: Annotated[
        str | None,
        typer.Option(
            help="End the history here: `now` (this hour) or an ISO 8601 time. "
            "Default: the fixed week to 2026-11-23 11:00 UTC."
        ),
    ] = None,
) -> None:
    """Build a demo store (a mixed fleet plus a real H100 capture) and show what it cost."""
    from aifinops.cli import render
    from aifinops.demo.run import demo_end, run_demo

    demo_end(end)  # a bad --end is told before anything is built
    out = _console()
    db = state.db or "aifinops-demo.duckdb"
    with out.status("building the demo store…") as status:
        result = run_demo(
            db,
            seed=seed,
            days=days,
            progress=lambda what, i, n: status.update(f"generating {what}: {i}/{n} GPUs"),
            end=end,
        )
    render.demo(result, out)


# -- the server ---------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    jobs: Annotated[
        bool,
        typer.Option(
            "--jobs/--no-jobs",
            help="Run the periodic jobs: collect (the configured "
            "sources), budget checks, alert deliveries, recommendations, anomalies, the "
            "forecast's projection.",
        ),
    ] = True,
    metrics_cache: Annotated[
        float, typer.Option(help="Seconds a /metrics answer is kept before the store is read.")
    ] = 10.0,
    tls_cert: Annotated[
        Path | None, typer.Option(help="PEM certificate: serve HTTPS (the webhook needs it).")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
) -> None:
    """Run the REST API, /metrics, the admission webhook and the periodic jobs (collect,
    budget checks, alert deliveries, recommendations, anomalies, the forecast's projection)
    in one process."""
    import uvicorn

    from aifinops.api.app import create_app

    if (tls_cert is None) != (tls_key is None):
        raise UsageError("give --tls-cert and --tls-key together", where="--tls-cert/--tls-key")
    for path in (tls_cert, tls_key):
        if path is not None and not path.is_file():
            raise UsageError("no such file", where=str(path))
    app_ = create_app(_settings(), jobs=jobs, metrics_ttl=metrics_cache)
    err = _console(stderr=True)
    scheme = "https" if tls_cert else "http"
    err.print(f"aifinops serve: {scheme}://{host}:{port} (API docs at /docs)", markup=False)
    if not app_.state.server.has_tokens():
        err.print("no API token exists: reads are open and writes are refused; create one "
                  "with: aifinops token create --name NAME --role admin", markup=False)  # fmt: skip
    tls = {"ssl_certfile": str(tls_cert), "ssl_keyfile": str(tls_key)} if tls_cert else {}
    uvicorn.run(app_, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30,
                **tls)  # type: ignore[arg-type]  # fmt: skip


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Who or what the token is for.")],
    role: Annotated[str, typer.Option(help="viewer (reads) or admin (reads and writes).")],
) -> None:
    """Create an API token: printed once, stored only as a hash."""
    token = _service().create_token(name, role)
    _console().print(token, markup=False)
    _console(stderr=True).print(
        f"token {name!r} ({role}) created; it is shown once: keep it in a secret store",
        markup=False,
    )


@token_app.command("list")
def token_list(
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """The tokens' names, roles and dates (never the tokens)."""
    rows = _service(read_only=True).tokens()
    _emit(rows, fmt, title="API tokens", columns=("name", "role", "created", "revoked"))


@token_app.command("revoke")
def token_revoke(name: Annotated[str, typer.Argument(help="The token's name.")]) -> None:
    """Revoke a token: the server refuses it from its next request."""
    _service().revoke_token(name)
    _console().print(f"token {name!r} revoked", markup=False)


@config_app.command("show")
def config_show() -> None:
    """Print the settings in force (defaults < file < environment < flags)."""
    _console().print_json(_settings().model_dump_json())


def main() -> None:
    try:
        app()
    except AifinopsError as exc:
        err = _console(stderr=True)
        where = f"{exc.where}: " if exc.where else ""
        err.print(f"[bold red]error:[/] {where}{exc.message}", markup=True)
        if exc.hint:
            err.print(f"  hint: {exc.hint}")
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
