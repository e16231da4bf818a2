"""Budgets: apply and list them, work out each one's status from the allocation, check
its alerts (each fires once per threshold per period, persisted), deliver them to their
channels with retries, and give the admission webhook its in-memory state.

A check writes (alert states, deliveries queued); a delivery run sends what is due over
the network and then writes the outcome, so a slow channel never holds the store."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aifinops.app.context import AppContext
from aifinops.app.costs import CostQuery, Costs
from aifinops.core.attribution import resolve_dimensions
from aifinops.core.budget_status import (
    HISTORY_DAYS,
    BudgetStatus,
    alert_events,
    project,
)
from aifinops.core.budgets import (
    SCOPE_DIMS,
    AlertEvent,
    Budget,
    Channel,
    Period,
    event_from_dict,
    event_to_dict,
    label_dimensions,
    parse_budgets,
    period_at,
)
from aifinops.core.model import BUCKETS
from aifinops.core.windows import iso_z, parse_duration, to_ms
from aifinops.errors import ConfigError, NotFoundError, UsageError
from aifinops.store import bills as stored_bills
from aifinops.store import budgets as stored

if TYPE_CHECKING:
    from aifinops.app.bills import Bills
    from aifinops.core.admission import AdmissionState

# the dimensions a status breaks spend down by
BREAKDOWN_DIMS = ("team", "model", "node")


@dataclass(frozen=True)
class Spent:
    """One row of a period's spend: its key, the amount counted (billed where the bill
    covers its node), and the same at list price."""

    key: dict[str, str]
    amount: Decimal
    listed: Decimal


@dataclass(frozen=True)
class Applied:
    name: str
    outcome: str  # created, updated, unchanged


@dataclass
class CheckResult:
    at: datetime
    statuses: list[BudgetStatus]
    events: list[AlertEvent]
    queued: int = 0
    outgoing: list[dict[str, Any]] = field(default_factory=list)  # --dry-run: what we'd send
    notes: list[str] = field(default_factory=list)
    # (status, its events, when it was first over its limit) for each budget to write
    pending: list[tuple[BudgetStatus, list[AlertEvent], int | None]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "budgets": [s.to_dict() for s in self.statuses],
            "events": [event_to_dict(e) for e in self.events],
            "queued": self.queued,
            "outgoing": self.outgoing,
            "notes": self.notes,
        }


class Budgets:
    def __init__(self, ctx: AppContext, costs: Costs, bills: Bills | None = None):
        self.ctx, self.costs, self.bills = ctx, costs, bills

    # -- the budgets themselves ---------------------------------------------------------
    def declared(self) -> list[Budget]:
        """The budgets in the config file (read-only here: change them in the file)."""
        return parse_budgets(self.ctx.settings.budgets, "budgets (config file)")

    def all(self) -> list[tuple[Budget, str]]:
        """Every budget and where it comes from (`config` or `store`), by name."""
        out = [(b, "config") for b in self.declared()]
        for name, spec, _, _ in stored.budgets(self.ctx.store):
            out.append((parse_budgets([{"name": name, **json.loads(spec)}], name)[0], "store"))
        return sorted(out, key=lambda p: p[0].name)

    def get(self, name: str) -> tuple[Budget, str]:
        for budget, origin in self.all():
            if budget.name == name:
                return budget, origin
        raise NotFoundError(f"no budget named {name!r}", where="budget",
                         hint="aifinops budget list shows them")  # fmt: skip

    def apply(self, docs: Iterable[Any], where: str = "budget") -> list[Applied]:
        """Create or replace budgets from documents (a CostBudget resource, the plain
        shape, or a list): all are checked before any is stored."""
        budgets = parse_budgets(docs, where)
        if not budgets:
            raise UsageError("no budget in the input", where=where)
        declared = {b.name for b in self.declared()}
        label_dims = self._label_dims()
        for b in budgets:
            try:  # a label no dimension reads, a scope that cannot match: refused now
                b.spec.scope.wants(label_dims)
            except ConfigError as error:
                raise ConfigError(f"budget {b.name!r}: {error.message}", where=where,
                                  hint=error.hint) from None  # fmt: skip
            currency = self.ctx.settings.currency
            if b.spec.currency not in (None, currency):
                raise ConfigError(
                    f"budget {b.name!r} is in {b.spec.currency}, the costs in {currency}",
                    where=where,
                    hint=f"give its limit in {currency} (settings: currency)",
                )
            if b.name in declared:
                raise UsageError(f"budget {b.name!r} is declared in the config file",
                                 where=where, hint="change it there")  # fmt: skip
            for rule in b.spec.alerts:
                for ch in rule.channels:
                    at = f"{where}: {b.name}: alert {rule.label()}"
                    self.channel(ch, at)
                    if ch.type is not None and (ref := _secret_reference(ch.config)):
                        # the server's environment and files are its operator's: a budget
                        # applied over the CLI or API must not send them anywhere it likes
                        raise ConfigError(
                            f"an applied budget's channel may not read a secret ({ref})",
                            where=at, hint="declare the channel under `channels:` in the "
                            "config file, with its secret, and name it here")  # fmt: skip
        existing = {name: spec for name, spec, _, _ in stored.budgets(self.ctx.store)}
        out = []
        at_ms = self.ctx.now_ms()
        with self.ctx.store.transaction():
            for b in budgets:
                spec = json.dumps(b.to_document()["spec"], sort_keys=True)
                if existing.get(b.name) == spec:
                    out.append(Applied(b.name, "unchanged"))
                    continue
                new = stored.put_budget(self.ctx.store, b.name, spec, at_ms)
                out.append(Applied(b.name, "created" if new else "updated"))
        return out

    def delete(self, name: str) -> None:
        _, origin = self.get(name)
        if origin == "config":
            raise UsageError(f"budget {name!r} is declared in the config file", where="budget",
                             hint="remove it there")  # fmt: skip
        at = self.ctx.clock()
        with self.ctx.store.transaction():
            for e in self._ended(name, None, at):
                self._record(e, "", to_ms(at))
            stored.delete_budget(self.ctx.store, name)

    def channel(self, ch: Channel, where: str) -> tuple[str, Any]:
        """A budget's channel as (stable id, typed config): inline, or named in settings."""
        from aifinops.outputs import notify

        if ch.type is None:
            named = self.ctx.settings.channels.get(ch.name or "")
            if named is None:
                raise ConfigError(
                    f"no channel named {ch.name!r} in the config", where=where,
                    hint="name one under `channels:` or give type and config")  # fmt: skip
            kind, config = named.get("type"), named.get("config", {})
            if not isinstance(kind, str):
                raise ConfigError(f"channel {ch.name!r} needs a type", where="channels")
            return ch.ident(), notify.channel_config(kind, config, f"channels: {ch.name}")
        return ch.ident(), notify.channel_config(ch.type, ch.config, where)

    # -- status -------------------------------------------------------------------------
    def statuses(self, at: datetime | None = None,
                 names: Sequence[str] | None = None) -> list[BudgetStatus]:  # fmt: skip
        at = at or self.ctx.clock()
        chosen = [b for b, _ in self.all() if names is None or b.name in names]
        if names is not None:
            for n in set(names) - {b.name for b in chosen}:
                self.get(n)  # raises: no such budget
        label_dims = self._label_dims()
        by_period: dict[tuple[datetime, datetime], list[Budget]] = defaultdict(list)
        for b in chosen:
            p = period_at(b.spec, at)
            by_period[(p.start, p.end)].append(b)
        out = []
        for (start, end), group in by_period.items():
            period = Period(start, end)
            daily, whole, basis = self._spend(period, at, group, label_dims)
            for b in group:
                out.append(self._status(b, period, at, daily, whole, basis, label_dims))
        return sorted(out, key=lambda s: s.budget.name)

    def _label_dims(self) -> dict[str, str]:
        return label_dimensions(self.ctx.settings.attribution.rules().keys_for)

    def _spend(
        self, period: Period, at: datetime, group: list[Budget], label_dims: dict[str, str]
    ) -> tuple[list[Any], list[Spent], str]:
        """The allocation behind a group of budgets sharing a period: per local day from
        HISTORY_DAYS before the period (the projection's history), and the period so far
        by workload (the breakdown and contributors), reconciled to the bill where bills
        are in the store (each node's rows scaled to its billed EffectiveCost; nodes the
        bill does not cover stay at list price)."""
        dims = tuple(SCOPE_DIMS)
        history_start = period.start - timedelta(days=HISTORY_DAYS)
        end = max(at, history_start + timedelta(minutes=1))
        daily = self.costs.cost(
            CostQuery(window=f"{history_start.isoformat()},{end.isoformat()}", step="1d", by=dims)
        )
        if at <= period.start:
            return daily.rows, [], "allocation at list prices"
        span = f"{period.start.isoformat()},{at.isoformat()}"
        by = (*dims, "node", "workload")
        whole = self.costs.cost(CostQuery(window=span, by=by))
        listed = [Spent(r.key, r.total_cost + r.idle_cost, r.total_cost + r.idle_cost)
                  for r in whole.rows]  # fmt: skip
        if self.bills is None or not stored_bills.has_bills(self.ctx.store):
            return daily.rows, listed, "allocation at list prices (no bill in the store)"
        report = self.bills.reconcile(window=span, by=by)
        covered = sum(1 for n in report.nodes if n.billed_cost is not None)
        if not covered:
            return daily.rows, listed, "allocation at list prices (no node in the bill)"
        rows = [Spent(r.key, r.billed_cost, r.list_cost) for r in report.rows]
        basis = (f"allocation reconciled to the bill ({covered} of {len(report.nodes)} "
                 "node(s) billed; the others at list price)")  # fmt: skip
        return daily.rows, rows, basis

    def _status(
        self, b: Budget, period: Period, at: datetime, daily_rows: list[Any],
        whole_rows: list[Spent], basis: str, label_dims: dict[str, str],
    ) -> BudgetStatus:  # fmt: skip
        wants = b.spec.scope.wants(label_dims)
        tz = period.start.tzinfo
        spend = listed = Decimal(0)
        parts: dict[str, dict[str, Decimal]] = {d: defaultdict(Decimal) for d in BREAKDOWN_DIMS}
        workloads: dict[str, Decimal] = defaultdict(Decimal)
        for r in whole_rows:
            if not b.spec.scope.matches(r.key, wants):
                continue
            spend += r.amount
            listed += r.listed
            for d in BREAKDOWN_DIMS:
                parts[d][r.key[d]] += r.amount
            if r.key["workload"] not in BUCKETS:
                workloads[r.key["workload"]] += r.amount
        # the daily history is at list price: scaled by the period's billed-to-list ratio
        scale = spend / listed if listed else Decimal(1)
        daily: dict[date, Decimal] = defaultdict(Decimal)
        for r in daily_rows:
            if b.spec.scope.matches(r.key, wants) and r.start:
                day = datetime.fromisoformat(r.start.replace("Z", "+00:00")).astimezone(tz)
                daily[day.date()] += (r.total_cost + r.idle_cost) * scale
        top = tuple(sorted(workloads.items(), key=lambda kv: (-kv[1], kv[0]))[:3])
        breakdown = {d: sorted(v.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
                     for d, v in parts.items()}  # fmt: skip
        limit = b.spec.amount
        projection = project(daily, period, at, spend, limit)
        exceeded = stored.exceeded_since(self.ctx.store, b.name, period.key)
        since = datetime.fromtimestamp(exceeded / 1000, tz=at.tzinfo) if exceeded else None
        if since is None and spend >= limit:
            since = at  # first seen now (a check records it)
        fired = tuple(a["key"] for a in stored.alerts(self.ctx.store, b.name, period.key)
                      if a["state"] == "firing")  # fmt: skip
        return BudgetStatus(b, period, at, spend, projection, since if spend >= limit else None,
                            fired, breakdown, top, basis, b.spec.currency or
                            self.ctx.settings.currency)  # fmt: skip

    # -- checks and deliveries ----------------------------------------------------------
    def check(
        self, at: datetime | None = None, *, dry_run: bool = False, record: bool = True
    ) -> CheckResult:
        """Every budget's status at `at`; alerts newly over (or back under) their threshold
        become events: recorded and queued for their channels, or with `dry_run` only
        shown, with what each channel would be sent. `record=False` leaves the writing to
        a later `record` (the server checks on its read-only store, and writes only when
        something changed)."""
        now = self.ctx.clock()
        at = at or now
        if record and not dry_run and at > now + timedelta(minutes=5):
            raise UsageError(
                f"a check as of {iso_z(at)} is in the future: it would record alerts that "
                "have not happened", where="--at", hint="add --dry-run to see it")  # fmt: skip
        statuses = self.statuses(at)
        result = CheckResult(at, statuses, [])
        for status in statuses:
            states = {a["key"]: a["state"]
                      for a in stored.alerts(self.ctx.store, status.budget.name,
                                             status.period.key)}  # fmt: skip
            events = alert_events(status, states, iso_z(at) or "")
            name, key = status.budget.name, status.period.key
            last = stored.last_check(self.ctx.store, name, key)
            if last is not None and last > to_ms(at):
                # a replay behind the last recorded check: shown, never recorded (an earlier
                # instant would resolve what a later one fired)
                result.notes.append(f"budget {name} was checked at {iso_z(last)}, after this "
                                    "instant: nothing is recorded or sent for it")  # fmt: skip
                continue
            events += self._ended(name, key, at)
            result.events += events
            before = stored.exceeded_since(self.ctx.store, name, key)
            after = to_ms(status.exceeded_since) if status.exceeded_since else None
            if events or before != after:
                result.pending.append((status, events, after))
            if dry_run and events:
                from aifinops.outputs import notify

                for e in events:
                    for ch in e.channels:
                        ident, cfg = self.channel(ch, f"budget {e.budget}")
                        sent = notify.outgoing(cfg, e)
                        result.outgoing.append({"key": e.key, "action": e.action,
                                                "channel": ident, **_plain(sent)})  # fmt: skip
        if record and not dry_run:
            self.record(result)
        return result

    def _ended(self, budget: str, period: str | None, at: datetime) -> list[AlertEvent]:
        """Resolve events for a budget's alerts still firing in a period other than
        `period` (it ended: a PagerDuty incident, an Alertmanager alert must not stay open
        for good), or in any period where `period` is None (the budget was deleted); sent
        to the channels their firing went to."""
        out = []
        for a in stored.firing(self.ctx.store, budget):
            if a["period"] == period or not a["event"]:
                continue
            fired = event_from_dict(json.loads(a["event"]))
            channels = tuple(Channel.model_validate(json.loads(spec))
                             for spec in stored.fired_to(self.ctx.store, a["key"]))  # fmt: skip
            out.append(replace(fired, action="resolve", at=iso_z(at) or "", channels=channels))
        return out

    def record(self, result: CheckResult) -> None:
        """Write what a check found: each period's first time over the limit, the alerts
        that fired or resolved, and their deliveries queued (each once)."""
        at_ms = to_ms(result.at)
        with self.ctx.store.transaction():
            for status, events, exceeded in result.pending:
                stored.set_exceeded(self.ctx.store, status.budget.name, status.period.key,
                                    exceeded, at_ms)  # fmt: skip
                for e in events:
                    result.queued += self._record(e, status.period.key, at_ms)

    def _record(self, e: AlertEvent, period: str, at_ms: int) -> int:
        """Record one event and queue it for its channels, where this check is the one that
        changed the alert's state: of two checks racing (two replicas, `budget check` beside
        a server) the one whose insert or update lost queues nothing (decision 0021)."""
        if e.action == "fire":
            changed = stored.fire(self.ctx.store, {
                "key": e.key, "budget": e.budget, "period": period,
                "alert": e.alert, "basis": e.basis, "threshold": e.threshold_percent,
                "severity": e.severity, "state": "firing", "fired_ms": at_ms,
                "resolved_ms": None, "spend": e.spend, "event": json.dumps(event_to_dict(e)),
            })  # fmt: skip
        else:
            changed = stored.resolve(self.ctx.store, e.key, at_ms)
        if not changed:
            return 0
        queued = 0
        for ch in e.channels:
            ident, _ = self.channel(ch, f"budget {e.budget}")
            spec = json.dumps(ch.model_dump(exclude_none=True), sort_keys=True)
            queued += stored.add_delivery(self.ctx.store, e.key, e.action, ident, spec,
                                          json.dumps(event_to_dict(e)), at_ms)  # fmt: skip
        return queued

    def due(self, now: datetime | None = None) -> list[dict[str, Any]]:
        now = now or self.ctx.clock()
        return stored.deliveries(self.ctx.store, due_ms=to_ms(now))

    def claim(self, due: list[dict[str, Any]],
              now: datetime | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """The due deliveries this sender claimed (`stored.claim`), in one transaction: only
        these are sent, so a delivery read as due by two senders goes out once. The claim
        lasts as long as sending them all may take (each try is bounded by
        `alerts.timeout`) and a minute more; a sender that dies meanwhile leaves them due
        again after it."""
        if not due:
            return []
        now_ms = to_ms(now or self.ctx.clock())
        until_ms = now_ms + int((len(due) * self.ctx.settings.alerts.timeout + 60) * 1000)
        with self.ctx.store.transaction():
            won = [d for d in due if stored.claim(self.ctx.store, d, until_ms)]
        return [{**d, "next_ms": until_ms} for d in won]

    def send(self, due: list[dict[str, Any]],
             env: Any = None) -> list[tuple[dict[str, Any], str | None]]:  # fmt: skip
        """Send each due delivery (no store use: the network may be slow); each outcome is
        None (delivered) or the error, for `record_sent`. A dead channel fails alone."""
        import os

        out: list[tuple[dict[str, Any], str | None]] = []
        if not due:
            return out
        from aifinops.outputs import notify

        for d in due:
            try:
                ch = Channel.model_validate(json.loads(d["spec"]))
                _, cfg = self.channel(ch, f"delivery {d['key']}")
                event = event_from_dict(json.loads(d["event"]))
                notify.deliver(cfg, event, env=env or os.environ,
                               timeout=self.ctx.settings.alerts.timeout)  # fmt: skip
                out.append((d, None))
            except (notify.DeliveryError, ConfigError) as error:
                out.append((d, str(error)))
        return out

    def record_sent(self, outcomes: list[tuple[dict[str, Any], str | None]],
                    now: datetime | None = None) -> None:  # fmt: skip
        now_ms = to_ms(now or self.ctx.clock())
        cfg = self.ctx.settings.alerts
        first = parse_duration(cfg.retry_initial, what="alerts.retry_initial").total_seconds()
        most = parse_duration(cfg.retry_max, what="alerts.retry_max").total_seconds()
        with self.ctx.store.transaction():
            for d, error in outcomes:
                if error is None:
                    stored.delivered(self.ctx.store, d["key"], d["action"], d["channel"], now_ms)
                else:
                    wait = min(most, first * 2 ** int(d["attempts"]))
                    stored.failed(self.ctx.store, d["key"], d["action"], d["channel"], error,
                                  now_ms + int(wait * 1000))  # fmt: skip

    def alerts(self, name: str | None = None) -> list[dict[str, Any]]:
        rows = stored.alerts(self.ctx.store, name)
        for r in rows:
            r["threshold"] = str(r["threshold"])
            r["spend"] = None if r["spend"] is None else str(r["spend"])
            r["fired_at"] = iso_z(r.pop("fired_ms"))
            r["resolved_at"] = iso_z(r.pop("resolved_ms")) if r["resolved_ms"] else None
            r.pop("event", None)
        return rows

    def deliveries(self) -> list[dict[str, Any]]:
        rows = stored.deliveries(self.ctx.store)
        return [{"key": r["key"], "action": r["action"], "channel": r["channel"],
                 "attempts": r["attempts"], "delivered_at": iso_z(r["delivered_ms"]),
                 "next_attempt_at": None if r["delivered_ms"] else iso_z(r["next_ms"]),
                 "last_error": r["last_error"]} for r in rows]  # fmt: skip

    # -- enforcement --------------------------------------------------------------------
    def admission_state(self, statuses: list[BudgetStatus], at: datetime) -> AdmissionState:
        """The gates the admission webhook answers from: each enabled budget under
        throttle or block, with the GPUs its scope's running pods hold now."""
        from aifinops.core.admission import AdmissionState, Gate

        label_dims = self._label_dims()
        rules = self.ctx.settings.attribution.rules()
        running = stored.running_workloads(self.ctx.store, to_ms(at))
        pods = [({**resolve_dimensions(rules, w["namespace"], w["labels"],
                                       w["namespace_labels"]), "namespace": w["namespace"]},
                 w["gpus"]) for w in running]  # fmt: skip
        gates = []
        for s in statuses:
            spec = s.budget.spec
            if not spec.enabled or spec.enforcement.action == "alert":
                continue
            wants = spec.scope.wants(label_dims)
            held = sum(g for dims, g in pods if spec.scope.matches(dims, wants))
            gates.append(Gate(
                budget=s.budget.name, wants={k: frozenset(v) for k, v in wants.items()},
                action=spec.enforcement.action, mode=spec.enforcement.mode,
                active=s.enforcement_active, spend=s.spend.quantize(Decimal("0.01")),
                limit=s.limit, currency=s.currency,
                max_gpus=spec.enforcement.throttle_config.max_gpus, running_gpus=int(held),
            ))  # fmt: skip
        counted = stored.newest_workload_start(self.ctx.store, to_ms(at))
        return AdmissionState(tuple(gates), to_ms(at), counted)


def _secret_reference(config: Any, path: str = "config") -> str | None:
    """The first place a channel config reads the environment or a file (`*_env`,
    `*_file`, `env:NAME`, `file:PATH`, `{env: NAME}`), if any."""
    if isinstance(config, dict):
        for key, value in config.items():
            if str(key).endswith(("_env", "_file")) or key in ("env", "file"):
                return f"{path}.{key}"
            if found := _secret_reference(value, f"{path}.{key}"):
                return found
    elif isinstance(config, list):
        for i, value in enumerate(config):
            if found := _secret_reference(value, f"{path}[{i}]"):
                return found
    elif isinstance(config, str) and config.strip().startswith(("env:", "file:")):
        return path
    return None


def _plain(sent: Any) -> dict[str, Any]:
    return {"type": sent.channel, "method": sent.method, "target": sent.target,
            "headers": dict(sent.headers), "body": sent.body}  # fmt: skip
