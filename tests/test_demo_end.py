"""`aifinops demo --end`: the fleet ends at a given instant (or this hour) and the real H100
capture moves with it; without it the demo keeps its fixed dates. The demo config carries
two budgets, one near its limit at the demo's end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aifinops.config import load_settings
from aifinops.core.windows import to_ms
from aifinops.demo.fleet import DEMO_START
from aifinops.demo.run import DemoResult, demo_end, run_demo
from aifinops.errors import UsageError
from aifinops.service import Service

END = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
MIN = 60_000
DAY = 86_400_000


@pytest.fixture
def opened() -> Iterator[Callable[[DemoResult], Service]]:
    made: list[Service] = []

    def open_(result: DemoResult) -> Service:
        svc = Service(load_settings(Path(result.config), env={}, flags={"db": result.db}))
        made.append(svc)
        return svc

    yield open_
    for svc in made:
        svc.close()


def _capture_cost(svc: Service, start: str, end: str) -> Any:
    rows = svc.cost(window=f"{start},{end}", by=["node"]).rows
    return {r.key["node"]: (r.gpu_hours, r.total_cost) for r in rows}["h100-lab-01"]


def test_demo_end_instants() -> None:
    clock = lambda: datetime(2026, 12, 3, 4, 7, 22, tzinfo=UTC)  # noqa: E731
    assert demo_end(None, clock) is None
    assert demo_end("now", clock) == datetime(2026, 12, 3, 4, 0, tzinfo=UTC)
    assert demo_end("2026-11-30T12:00:30Z", clock) == END  # samples are whole minutes
    assert demo_end("2026-11-30T13:00:00+01:00", clock) == END
    with pytest.raises(UsageError) as err:
        demo_end("next tuesday", clock)
    assert err.value.where == "--end"


def test_demo_ends_at_the_instant_given(tmp_path: Path, opened: Any) -> None:
    result = run_demo(str(tmp_path / "end.duckdb"), days=2, end="2026-11-30T12:00:00Z")
    svc = opened(result)
    # 2 x 1,440 one-minute samples per slot, the first at END - 2 days, the last starting
    # a minute before END (it ends at END); the capture lies between
    assert svc.data_extent() == (to_ms(END) - 2 * DAY, to_ms(END) - MIN)
    assert (result.window.start, result.window.end) == (datetime(2026, 11, 28, 12, tzinfo=UTC),
                                                        END)  # fmt: skip
    # the capture (10:33:59-10:40:29 on 2026-11-23, the default demo's end 11:00) keeps its
    # place before the end: 7 days and 1 hour later; its servers' requests came with it
    units = {r.key["model"]: r.units for r in result.by_model.rows if r.units is not None}
    assert set(units) == {"gpt2-medium-randinit", "gpt2-small-randinit"}
    assert units["gpt2-medium-randinit"].requests == 385  # type: ignore[union-attr]
    moved = _capture_cost(svc, "2026-11-30T11:33:00Z", "2026-11-30T11:41:00Z")
    # the config's budgets: research's month to date at the end (the whole window: it began
    # on 11-28) is at its 80 % alert and under 100 %; product's far under
    budgets = {b["name"]: b for b in svc.settings.budgets}
    assert set(budgets) == {"research-gpu", "product-serving"}
    spend = {r.key["team"]: r.total_cost + r.idle_cost for r in result.by_team.rows}
    near = spend["research"] / Decimal(budgets["research-gpu"]["monthlyLimit"])
    assert Decimal("0.8") <= near <= Decimal("0.9"), near
    assert spend["product"] / Decimal(budgets["product-serving"]["monthlyLimit"]) < Decimal("0.1")

    default = run_demo(str(tmp_path / "fixed.duckdb"), days=1)
    fixed = opened(default)
    # the default keeps its fixed dates: from DEMO_START, and the capture where it was taken
    assert default.window.start == DEMO_START == datetime(2026, 11, 16, 11, tzinfo=UTC)
    assert fixed.data_extent()[0] == to_ms(DEMO_START)  # type: ignore[index]
    assert default.window.end == datetime(2026, 11, 17, 11, tzinfo=UTC)
    # moved by whole minutes, the capture costs exactly what it did where it was taken
    assert moved == _capture_cost(fixed, "2026-11-23T10:33:00Z", "2026-11-23T10:41:00Z")
    assert moved[0] > 0


def test_demo_flags(cli: Any, tmp_path: Path) -> None:
    out = cli("--db", "d.duckdb", "demo", "--end", "soon", cwd=tmp_path)
    assert out.returncode == 2 and "--end" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "d.duckdb").exists()  # told before anything was built
    assert cli("--db", "d.duckdb", "demo", "--days", "63", cwd=tmp_path).returncode == 2
    out = cli("--db", "d.duckdb", "demo", "--days", "1", "--end", "2026-11-30T12:00:00Z",
              cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "2026-11-29 12:00 → 2026-11-30 12:00 UTC" in out.stdout
