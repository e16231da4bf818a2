"""Read commands through a running `aifinops serve` (`--server URL`, or $AIFINOPS_SERVER):
the answer comes from the server's warm process and its answer cache, and the store file is
not opened here, so a read takes a fraction of a second instead of loading the query
engine. The token, where the server needs one, comes from $AIFINOPS_TOKEN."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from aifinops.core.model import CostReport
from aifinops.errors import AifinopsError, StoreError, UsageError

PAGE = 10_000


def get(server: str, path: str, params: dict[str, Any]) -> Any:
    """GET `path` on the server as JSON; the server's error envelope as our error."""
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    if urllib.parse.urlsplit(server).scheme not in ("http", "https"):
        raise UsageError(f"{server!r} is not an http(s) URL", where="--server",
                         hint="e.g. --server http://127.0.0.1:8080")  # fmt: skip
    url = f"{server.rstrip('/')}{path}?{query}"
    headers = {"Accept": "application/json"}
    if token := os.environ.get("AIFINOPS_TOKEN"):
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=600
        ) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise _from_envelope(error, server) from None
    except (urllib.error.URLError, OSError) as error:
        raise StoreError(
            f"cannot reach the server: {getattr(error, 'reason', error)}",
            where=server,
            hint="is `aifinops serve` running there? (or drop "
            "--server / AIFINOPS_SERVER to read the store file)",
        ) from None


def cost(server: str, **params: Any) -> CostReport:
    """`cost` as the server answers it, every page."""
    rows: list[dict[str, Any]] = []
    while True:
        page = get(server, "/api/v1/cost", {**params, "limit": PAGE, "offset": len(rows)})
        rows += page["items"]
        if len(rows) >= page["total"] or not page["items"]:
            break
    page["rows"] = rows
    return CostReport.from_dict(page)


def roi(server: str, investment: str | None) -> Any:
    """`cost --roi` as the server answers it."""
    from aifinops.cli.render import RoiDoc

    params = {} if investment is None else {"investment": investment}
    return RoiDoc(get(server, "/api/v1/roi", params))


def _from_envelope(error: urllib.error.HTTPError, server: str) -> AifinopsError:
    try:
        body = json.loads(error.read())["error"]
    except (ValueError, KeyError, TypeError):
        return StoreError(f"the server answered HTTP {error.code}", where=server)
    kind = UsageError if error.code in (400, 401, 403, 404) else StoreError
    return kind(
        body.get("message") or f"HTTP {error.code}", where=body.get("where"), hint=body.get("hint")
    )
