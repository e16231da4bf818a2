"""OpenCost `/allocation/compute` responses as an input: imported, attributed, prorated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aifinops.errors import InputError
from tests.conftest import Served

pytestmark = pytest.mark.engines


DATA = Path(__file__).parent / "data" / "opencost" / "allocation.json"


def _by(svc: Any, by: str = "team", **kw: Any) -> dict[str, float]:
    report = svc.cost(by=[by], source="opencost", **kw)
    return {r.key[by]: round(float(r.total_cost), 6) for r in report.rows}


def test_import_and_cost_by_team(make_service: Any) -> None:
    svc = make_service()
    (result,) = svc.ingest_opencost([str(DATA)])
    assert (result.status, result.rows, result.workloads) == ("loaded", 5, 3)  # 3 + 2 entries
    # research: trainer day 1 (72 - 2 + 1.5 + 0.5) + day 2 (72 + 1.5 + 0.5) + the notebook
    # (10; team from its namespace's labels); product: 36 + 0.4 + 0.1 (team from the
    # sanitized ai-finops.io/team label); OpenCost's own idle: 36 + 2 + 1
    assert _by(svc) == {"research": 156.0, "product": 36.5, "__idle__": 39.0}
    report = svc.cost(by=["team"], source="opencost")
    assert float(report.asset_cost) == 231.5
    assert any("(0.50) are not in these rows" in n for n in report.notes)  # PV 0.3 + net 0.2
    # half of each day: prorated by the overlap with the window
    half = _by(svc, window="2026-11-21T12:00:00Z,2026-11-22T12:00:00Z")
    assert half == {"research": 78.0, "product": 18.25, "__idle__": 19.5}
    assert _by(svc, team="research") == {"research": 156.0}
    assert _by(svc, by="workload") == {
        "ml/trainer-0": 146.0,
        "web/api-1": 36.5,
        "ml/notebook-0": 10.0,
        "__idle__": 39.0,
    }
    again = svc.ingest_opencost([str(DATA)])
    assert again[0].status == "unchanged" and svc.store.count("external_allocations") == 5


def test_import_over_http_and_replacement(make_service: Any, served: Served) -> None:
    body = DATA.read_bytes()
    served.routes["/allocation/compute"] = [(200, body)]
    svc = make_service()
    svc.ingest_opencost([served.url("/allocation/compute?window=2d&step=1d")])
    # the same allocations again with one changed number: replaced, not added
    changed = body.replace(b'"gpuCost": 10.0', b'"gpuCost": 12.0')
    served.routes["/allocation/compute"] = [(200, changed)]
    svc.ingest_opencost([served.url("/allocation/compute?window=2d&step=1d")])
    assert svc.store.count("external_allocations") == 5
    assert _by(svc)["research"] == 158.0


def test_bad_opencost_input(make_service: Any, served: Served, tmp_path: Path) -> None:
    svc = make_service()
    served.routes["/allocation/compute"] = [(200, b'{"code": 500, "message": "boom"}')]
    with pytest.raises(InputError, match="OpenCost answered code 500: boom"):
        svc.ingest_opencost([served.url("/allocation/compute")])
    cut = tmp_path / "cut.json"
    cut.write_text(DATA.read_text()[:500])
    with pytest.raises(InputError, match="not valid JSON") as info:
        svc.ingest_opencost([str(cut)])
    assert info.value.where == str(cut)
    other = tmp_path / "other.json"
    other.write_text('{"items": []}')
    with pytest.raises(InputError, match="no `data`"):
        svc.ingest_opencost([str(other)])
    assert svc.store.count("external_allocations") == 0
