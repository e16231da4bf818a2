"""`aifinops rules`: Prometheus alerting rules for idle held GPUs, hot GPUs, budgets and unit
costs, printed as a rule file (outputs/rules.py makes it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from aifinops.outputs.rules import BudgetThreshold, RulesConfig

GetBudgets = Callable[[], Sequence[tuple[str, Sequence["Decimal | BudgetThreshold"]]]]


def register(
    app: typer.Typer,
    get_budgets: GetBudgets,
    get_config: Callable[[], RulesConfig] | None = None,
) -> None:
    """Add `rules` to `app`. `get_budgets` gives each budget's name and alert thresholds
    (percent, or `BudgetThreshold` with its severity and basis); `get_config` the rules'
    settings (default: RulesConfig's defaults), which the flags override."""

    @app.command("rules")
    def rules(
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="Write the rule file here.")
        ] = None,
        idle_minutes: Annotated[
            int | None,
            typer.Option(min=1, help="Minutes a held GPU must stay idle (default 30)."),
        ] = None,
        idle_util: Annotated[
            float | None,
            typer.Option(
                min=0.0, max=100.0, help="Utilisation (%) under which a GPU is idle (default 5)."
            ),
        ] = None,
    ) -> None:
        """Prometheus alerting rules: idle GPUs a pod holds, hot GPUs, every budget's
        thresholds and unit-cost limits. Check them with `promtool check rules FILE`."""
        from aifinops.errors import UsageError, cannot_write
        from aifinops.outputs.rules import RulesConfig, alert_rules, rules_yaml

        config = get_config() if get_config else RulesConfig()
        idle = config.idle_gpu.model_copy(update={
            k: v for k, v in (("for_minutes", idle_minutes), ("utilization_percent", idle_util))
            if v is not None})  # fmt: skip
        if idle.utilization_percent <= 0:
            raise UsageError("--idle-util must be above 0", where="--idle-util",
                             hint="a GPU is idle under this utilisation, e.g. 5")  # fmt: skip
        config = config.model_copy(update={"idle_gpu": idle})
        text = rules_yaml(alert_rules(config, get_budgets()))
        if output is None:
            typer.echo(text, nl=False)
            return
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text, encoding="utf-8")
        except OSError as error:
            raise cannot_write(output, error) from error
        typer.echo(f"wrote {output}; check it with: promtool check rules {output}", err=True)
