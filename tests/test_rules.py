"""`aifinops rules` (issue 14): the rule file passes `promtool check rules`, and promtool's
own rule unit tests, with series and expected alerts worked by hand, show when each fires."""

from __future__ import annotations

import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from aifinops.cli.rules import register
from aifinops.outputs.rules import BudgetThreshold, RulesConfig, alert_rules, rules_yaml
from tests.conftest import need_binary

BUDGETS: list[tuple[str, list[Any]]] = [
    ("team-research", [Decimal(80), Decimal(100), BudgetThreshold(Decimal(100), basis="forecast")]),
    ("fleet", [Decimal("95")]),
]
CONFIG = RulesConfig(
    cost_per_million_tokens={"*": Decimal(5), "llama-3-70b": Decimal("12.50")},
    cost_per_request={"*": Decimal("0.01")},
)
# labels as dcgm-exporter with pod mapping writes them (the scrape under shared/data has
# gpu, UUID, device, modelName, Hostname; the pod mapping adds pod, namespace, container)
H100 = 'modelName="NVIDIA H100 80GB HBM3",Hostname="node-a",device="nvidia{n}"'


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    need_binary("promtool")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)


def _write_rules(tmp_path: Path, config: RulesConfig = CONFIG) -> Path:
    path = tmp_path / "aifinops-rules.yml"
    path.write_text(rules_yaml(alert_rules(config, BUDGETS)), encoding="utf-8")
    return path


def _unit_test(tmp_path: Path, tests: list[dict[str, Any]]) -> None:
    rules = _write_rules(tmp_path)
    spec = tmp_path / "rules-test.yml"
    spec.write_text(yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "1m",
                                    "tests": tests}, sort_keys=False))  # fmt: skip
    out = _promtool("test", "rules", str(spec))
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_checks_the_rule_file(tmp_path: Path) -> None:
    # a scrape without honor_labels renames the exporter's pod labels
    renamed = RulesConfig.model_validate(
        {"dcgm": {"pod": "exported_pod", "namespace": "exported_namespace"}}
    )
    assert 'DCGM_FI_DEV_GPU_UTIL{exported_pod!=""}' in rules_yaml(alert_rules(renamed))
    for config in (RulesConfig(), renamed, CONFIG):
        out = _promtool("check", "rules", str(_write_rules(tmp_path, config)))
        assert out.returncode == 0, out.stdout + out.stderr
    # 2 GPU rules; 4 budget thresholds; tokens: llama-3-70b and `*`; requests: `*`
    assert "SUCCESS: 9 rules found" in out.stdout


def test_idle_rule_fires_only_for_a_held_gpu_idle_30_minutes(tmp_path: Path) -> None:
    held = f'DCGM_FI_DEV_GPU_UTIL{{gpu="0",UUID="GPU-0",{H100.format(n=0)},' \
        'namespace="ml",pod="train-0",container="main"}'  # fmt: skip
    # dcgm-exporter writes empty pod labels for a GPU no pod holds
    free = f'DCGM_FI_DEV_GPU_UTIL{{gpu="1",UUID="GPU-1",{H100.format(n=1)},' \
        'namespace="",pod="",container=""}'  # fmt: skip
    # held: busy (90 %) at minutes 0-9, idle from minute 10; `for: 30m` counts from the
    # first evaluation that saw it idle (10m), so it fires at 40m and not at 39m.
    # free: idle throughout, and never fires. A third GPU stays at 5 %: not under 5.
    at_five = f'DCGM_FI_DEV_GPU_UTIL{{gpu="2",UUID="GPU-2",{H100.format(n=2)},' \
        'namespace="ml",pod="eval-1",container="main"}'  # fmt: skip
    fired = {
        "exp_labels": {
            "severity": "warning",
            "Hostname": "node-a",
            "gpu": "0",
            "UUID": "GPU-0",
            "modelName": "NVIDIA H100 80GB HBM3",
            "namespace": "ml",
            "pod": "train-0",
        },
        "exp_annotations": {
            "summary": "GPU 0 (NVIDIA H100 80GB HBM3) on node-a is held by ml/train-0 but idle",
            "description": "Pod ml/train-0 holds GPU 0 (NVIDIA H100 80GB HBM3) on node-a, "
            "whose utilisation has stayed under 5% for 30 minutes (now 0%). The GPU is paid "
            "for and unused: release it (scale the pod down or stop the notebook) or share it.",
        },
    }
    _unit_test(tmp_path, [{
        "interval": "1m",
        "input_series": [{"series": held, "values": "90x9 0x60"},
                         {"series": free, "values": "0x70"},
                         {"series": at_five, "values": "5x70"}],
        "alert_rule_test": [
            {"eval_time": "30m", "alertname": "AifinopsGpuIdleHeld", "exp_alerts": []},
            {"eval_time": "39m", "alertname": "AifinopsGpuIdleHeld", "exp_alerts": []},
            {"eval_time": "40m", "alertname": "AifinopsGpuIdleHeld", "exp_alerts": [fired]},
            {"eval_time": "70m", "alertname": "AifinopsGpuIdleHeld", "exp_alerts": [fired]},
        ],
    }])  # fmt: skip


def test_idle_rule_waits_for_the_flag_given_minutes(tmp_path: Path) -> None:
    config = RulesConfig.model_validate({"idle_gpu": {"for_minutes": 10,
                                                      "utilization_percent": 20}})  # fmt: skip
    expr = alert_rules(config)["groups"][0]["rules"][0]
    assert expr["for"] == "10m" and expr["expr"].endswith(" < 20")


def test_temperature_rule_fires_once_per_gpu_after_5_minutes(tmp_path: Path) -> None:
    # one GPU time-sliced between two pods: two series, one device, one alert.
    # 80 °C at minutes 0-9, 90 °C from 10: above 85 from the 10m evaluation, fires at 15m
    base = f'gpu="0",UUID="GPU-0",{H100.format(n=0)}'
    _unit_test(tmp_path, [{
        "interval": "1m",
        "input_series": [
            {"series": f'DCGM_FI_DEV_GPU_TEMP{{{base},namespace="a",pod="p-1"}}',
             "values": "80x9 90x20"},
            {"series": f'DCGM_FI_DEV_GPU_TEMP{{{base},namespace="b",pod="p-2"}}',
             "values": "80x9 90x20"},
        ],
        "alert_rule_test": [
            {"eval_time": "14m", "alertname": "AifinopsGpuTemperatureHigh", "exp_alerts": []},
            {"eval_time": "15m", "alertname": "AifinopsGpuTemperatureHigh", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "Hostname": "node-a", "gpu": "0",
                               "UUID": "GPU-0", "modelName": "NVIDIA H100 80GB HBM3"},
                "exp_annotations": {
                    "summary": "GPU 0 (NVIDIA H100 80GB HBM3) on node-a is at 90 °C",
                    "description": "GPU 0 (NVIDIA H100 80GB HBM3) on node-a has been above "
                    "85 °C for 5 minutes (now 90 °C); it will throttle its clocks and slow the "
                    "work on it. Check its cooling and the node's fans.",
                },
            }]},
        ],
    }])  # fmt: skip


def test_budget_rule_fires_at_its_threshold(tmp_path: Path) -> None:
    def alert(threshold: str, basis: str, severity: str, percent: str) -> dict[str, Any]:
        forecast = basis == "forecast"
        what = "is forecast to reach" if forecast else "has reached"
        spend = "projected spend for the period" if forecast else "spend so far this period"
        return {"exp_labels": {"budget": "team-research", "threshold": threshold,
                               "basis": basis, "severity": severity},
                "exp_annotations": {
                    "summary": f"Budget team-research {what} {percent} of its limit",
                    "description": f"The {spend} of budget team-research is {percent} of its "
                    f"limit (threshold {threshold}%). See `aifinops budget status "
                    "team-research` for its spend and top contributors."}}  # fmt: skip

    _unit_test(tmp_path, [{
        "interval": "1m",
        # spend at 79 % of the limit, then 80 %; the forecast at 99 %, then 105 %; the fleet
        # budget at 90 % (its threshold is 95 %) throughout
        "input_series": [
            {"series": 'ai_finops_budget_utilization_ratio{budget="team-research"}',
             "values": "0.79 0.8 0.8"},
            {"series": 'ai_finops_budget_forecast_utilization_ratio{budget="team-research"}',
             "values": "0.99 1.05 1.05"},
            {"series": 'ai_finops_budget_utilization_ratio{budget="fleet"}',
             "values": "0.9 0.9 0.9"},
        ],
        "alert_rule_test": [
            {"eval_time": "0m", "alertname": "AifinopsBudgetThreshold", "exp_alerts": []},
            {"eval_time": "1m", "alertname": "AifinopsBudgetThreshold", "exp_alerts": [
                alert("80", "actual", "warning", "80%"),
                alert("100", "forecast", "critical", "105%"),
            ]},
        ],
    }])  # fmt: skip


def test_unit_cost_rules_keep_a_named_model_out_of_the_wildcard(tmp_path: Path) -> None:
    # llama-3-70b at 10 per 1M tokens is under its own 12.50 (and out of `*`'s 5);
    # mistral-7b at 6 is over `*`'s 5; the rule waits its default 15 minutes
    _unit_test(tmp_path, [{
        "interval": "1m",
        "input_series": [
            {"series": 'ai_finops_cost_per_1m_tokens{model="llama-3-70b"}', "values": "10x20"},
            {"series": 'ai_finops_cost_per_1m_tokens{model="mistral-7b"}', "values": "6x20"},
        ],
        "alert_rule_test": [
            {"eval_time": "14m", "alertname": "AifinopsCostPerMillionTokens", "exp_alerts": []},
            {"eval_time": "15m", "alertname": "AifinopsCostPerMillionTokens", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "limit": "5", "model": "mistral-7b"},
                "exp_annotations": {
                    "summary": "Model mistral-7b costs 6.00 per 1M tokens",
                    "description": "Serving model mistral-7b cost 6.00 per 1M tokens over the "
                    "newest 24 hours of data, above the limit of 5. See `aifinops cost --by "
                    "model --unit tokens` for its GPU-hours.",
                },
            }]},
        ],
    }])  # fmt: skip


def test_every_rule_has_severity_and_templated_annotations() -> None:
    doc = alert_rules(CONFIG, BUDGETS)
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert len(rules) == 9
    for rule in rules:
        assert rule["labels"]["severity"] in ("info", "warning", "critical")
        assert set(rule["annotations"]) == {"summary", "description"}
        assert "{{ $labels." in rule["annotations"]["summary"]
        assert "{{ $value" in rule["annotations"]["description"]
    # no alert names a job: there is no per-job cost series to alert on
    assert {r["alert"] for r in rules} == {
        "AifinopsGpuIdleHeld", "AifinopsGpuTemperatureHigh", "AifinopsBudgetThreshold",
        "AifinopsCostPerMillionTokens", "AifinopsCostPerRequest"}  # fmt: skip
    with pytest.raises(ValueError):
        RulesConfig.model_validate({"idle_gpu": {"minutes": 5}})  # extra keys are refused


def test_rules_command(tmp_path: Path) -> None:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        pass

    register(app, lambda: [("team-research", [Decimal(80)])])
    runner = CliRunner()
    out = runner.invoke(app, ["rules", "--idle-minutes", "45", "--idle-util", "2.5"])
    assert out.exit_code == 0, out.output
    rules = {r["alert"]: r for g in yaml.safe_load(out.stdout)["groups"] for r in g["rules"]}
    assert rules["AifinopsGpuIdleHeld"]["for"] == "45m"
    assert rules["AifinopsGpuIdleHeld"]["expr"].endswith(" < 2.5")
    assert rules["AifinopsBudgetThreshold"]["expr"] == (
        'ai_finops_budget_utilization_ratio{budget="team-research"} >= 0.8'
    )
    target = tmp_path / "out" / "rules.yml"
    out = runner.invoke(app, ["rules", "--output", str(target)])
    assert out.exit_code == 0 and "promtool check rules" in out.stderr
    checked = _promtool("check", "rules", str(target))
    assert checked.returncode == 0, checked.stdout + checked.stderr
