"""No finding saves more than its scope costs (issue 15): every rule, no minimum (of
saving or of hours), over the demo's synthetic week (38 nodes of five providers,
on-demand and spot, Jobs, Deployments, notebooks, fractional and MIG requests) and over
the facts tests' fleet (memory readings, MIG): each finding's monthly saving is at most
the monthly run-rate of what its scope's holdings cost in the window — that cost summed
here from the facts' holdings (cost per held hour x held hours), not from the rule's own
arithmetic. A commitment's scope is its pool of instances; `unattributed-spend` saves
nothing by itself."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from aifinops.app.recommend import Recommend
from aifinops.core.recommend.base import RULES, run_rules
from aifinops.core.roi import holding_cost, run_rate, scope_matches
from aifinops.core.windows import Window, from_ms
from aifinops.demo.fleet import DEMO_START, demo_fleet
from aifinops.service import Service
from tests import test_recommend_facts
from tests.conftest import HOUR, T0

fleet = test_recommend_facts.fleet  # the fixture

CENT = Decimal("0.01")


def test_savings_never_exceed_the_scopes_cost(make_service: Callable[..., Service]) -> None:
    from datetime import timedelta

    svc = make_service()
    svc.load_fleet(demo_fleet(seed=7, days=7, start=DEMO_START), 7)
    rules = bounded(svc, Window(DEMO_START, DEMO_START + timedelta(days=7)))
    assert {"cheaper-offer", "idle-gpu", "spot-candidate"} <= rules


def test_savings_never_exceed_the_scopes_cost_with_memory(fleet: Service) -> None:
    """The facts tests' fleet (memory readings, MIG, replicas, a checkpointing Job):
    the usage rules too."""
    rules = bounded(fleet, Window(from_ms(T0), from_ms(T0 + 2 * HOUR)))
    assert {"idle-gpu", "rightsize-gpu"} <= rules, rules


def bounded(svc: Service, window: Window) -> set[str]:
    """Every finding of every rule (no minimum) within its scope's cost; the rules that
    found something."""
    from aifinops.core.recommend import rules as _builtins  # noqa: F401  (registers them)

    facts = Recommend(svc.ctx, svc.costs, svc.prices).facts(window)
    configs = {name: {"min_monthly_saving": 0, **({"min_hours": 0} if "min_hours" in
                                                   model.model_fields else {})}
               for name, (model, _) in RULES.items()}  # fmt: skip
    found = run_rules(facts, window.end_ms, configs)
    span = window.end_ms - window.start_ms
    for f in found:
        if f.rule == "unattributed-spend":
            assert f.monthly_saving == 0
            continue
        held = [h for h in facts.holdings if scope_matches(f.scope, h)]
        assert held, f"{f.id}: its scope {dict(f.scope)} matches no holding"
        cost = run_rate(sum((holding_cost(h) for h in held), Decimal(0)), span)
        assert f.monthly_saving >= 0, f.id
        assert f.monthly_saving <= cost + CENT, (f.id, f.monthly_saving, cost)
    return {f.rule for f in found}
