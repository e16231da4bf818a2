"""`aifinops budget ...` and `serve --tls-cert` as a user runs them (issue 14).

The store is test_budgets' November fleet (team ml: $96 a day, $288 more on 15-16 Nov);
at 21 Nov 00:00 team ml has spent $2,496 of the $3,000 budget (83.2 %)."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from aifinops.service import Service
from tests.conftest import Served, free_port, need_binary
from tests.test_budgets import PRICES, november

AT = "2026-11-21T00:00:00Z"


def test_budget_commands(
    cli: Any,
    make_service: Callable[..., Service],
    served: Served,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    svc = make_service(PRICES, name="s.duckdb")
    november(svc)
    svc.close()
    served.routes["/hook"] = [(200, b"ok")]
    monkeypatch.setenv("HOOK_SECRET", "whsec-0123456789abcdef")
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                **PRICES,
                "channels": {
                    "ops": {
                        "type": "webhook",
                        "config": {"url": served.url("/hook"), "secret_env": "HOOK_SECRET"},
                    }
                },
            }
        )
    )
    budgets = tmp_path / "b.yaml"
    budgets.write_text(
        "apiVersion: gpu-autoscaler.io/v1alpha1\nkind: CostBudget\nmetadata: {name: ml}\n"
        "spec:\n  monthlyLimit: 3000\n  scope: {teams: [ml]}\n"
        "  alerts:\n  - {thresholdPercent: 80, channels: [ops]}\n"
        "---\nname: web\nlimit: 500\nperiod: week\nscope: {namespaces: [web]}\n"
    )
    base = ("--db", str(tmp_path / "s.duckdb"), "--config", str(config))
    done = cli(*base, "budget", "apply", str(budgets), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["budget ml: created", "budget web: created"]
    listed = cli(*base, "budget", "list", "--format", "json", cwd=tmp_path)
    assert [(b["name"], b["limit"], b["period"]) for b in json.loads(listed.stdout)] == [
        ("ml", "3000", "month"),
        ("web", "500", "week"),
    ]
    shown = yaml.safe_load(cli(*base, "budget", "show", "ml", cwd=tmp_path).stdout)
    assert shown["kind"] == "CostBudget" and shown["spec"]["monthlyLimit"] == "3000"
    status = cli(*base, "budget", "status", "ml", "--at", AT, "--format", "json", cwd=tmp_path)
    (ml,) = json.loads(status.stdout)
    assert (ml["currentSpend"], ml["percentageUsed"], ml["budgetStatus"]) == (
        "2496.00",
        "83.20",
        "warning",
    )
    table = cli(*base, "budget", "status", "--at", AT, cwd=tmp_path)
    assert "2496.00" in table.stdout and "web" in table.stdout
    # --dry-run: what would be sent, and nothing kept or sent
    dry = cli(*base, "budget", "check", "--dry-run", "--at", AT, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "would fire: Budget ml reached 83.2% of its limit (threshold 80%)" in dry.stdout
    assert f"-> ops POST {served.url('/hook')}" in dry.stdout
    assert "Spend: 2,496.00 USD of 3,000.00 USD (83.2%)" in dry.stdout
    assert served.bodies == []
    # for real: fired, delivered once; a second check fires nothing
    real = cli(*base, "budget", "check", "--at", AT, cwd=tmp_path)
    assert "fire: Budget ml reached 83.2%" in real.stdout and "ops: fire" in real.stdout
    assert len(served.bodies) == 1 and json.loads(served.bodies[0][1])["budget"] == "ml"
    again = cli(*base, "budget", "check", "--at", AT, cwd=tmp_path)
    assert "no alert fired or resolved" in again.stdout and len(served.bodies) == 1
    gone = cli(*base, "budget", "delete", "web", cwd=tmp_path)
    assert gone.returncode == 0
    missing = cli(*base, "budget", "show", "web", cwd=tmp_path)
    assert missing.returncode == 2 and "no budget named 'web'" in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nlimit: 10\nalerts: [{thresholdPercent: 80, channels: "
        "[{type: slack, config: {webhook_url: 'https://hooks.slack.com/T/B/x'}}]}]\n"
    )
    twice = tmp_path / "twice.yaml"
    twice.write_text("name: x\nlimit: 10\nlimit: 99999\n")
    dup = cli(*base, "budget", "apply", str(twice), cwd=tmp_path)
    assert dup.returncode == 2 and "the key 'limit' is given twice" in dup.stderr
    refused = cli(*base, "budget", "apply", str(bad), cwd=tmp_path)
    assert refused.returncode == 2 and "webhook_url_env" in refused.stderr
    assert "hooks.slack.com/T/B/x" not in refused.stderr


def test_serve_over_tls(tmp_path: Path) -> None:
    need_binary("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    trust = ssl.create_default_context(cafile=str(cert))
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aifinops",
            "--db",
            str(tmp_path / "t.duckdb"),
            "serve",
            "--port",
            str(port),
            "--no-jobs",
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                got = httpx.get(f"https://127.0.0.1:{port}/health", verify=trust, timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)
        assert got.json()["status"] == "ok"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)  # plain HTTP is refused
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
