"""`report`: the leaderboard of methods from a tracking store."""

from __future__ import annotations

from typing import Any

import click

from unlearn_lab.cli.base import POSITIVE, main, tracking_option

DATES = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M"])


@main.command()
@click.option("--benchmark", default="tofu", help="The benchmark whose runs are compared.")
@click.option("--forget", default="forget10", help="The forget split whose runs are compared.")
@click.option("--study", "studies", multiple=True, help="Only runs of this sweep study (repeatable).")
@click.option("--method", "methods", multiple=True, help="Only this method (repeatable).")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Only runs with this tag (repeatable).")
@click.option("--since", type=DATES, help="Only runs started at or after (UTC).")
@click.option("--until", type=DATES, help="Only runs started before (UTC).")
@click.option("--min-seeds", type=POSITIVE, default=3, help="Seeds a setting needs to compete (confirmed).")
@click.option("--utility-ratio", type=click.FloatRange(0, 1), default=0.9, help="Rule (a): utility >= this x target's.")
@click.option(
    "--forget-threshold",
    type=click.FloatRange(0, 1, min_open=True),
    help="Rule (b): the forget metric at least this good [default: the benchmark's: TOFU forget_quality >= 0.05, "
    "MUSE forget_verbmem_ROUGE <= 0.25].",
)
@click.option(
    "--objectives",
    metavar="FORGET,UTILITY",
    help="The two axes the rules judge, as for sweep [default: the benchmark's sweep objectives].",
)
@click.option("--out", metavar="DIR", help="Output folder (default: saves/report/<benchmark>_<forget>).")
@tracking_option
def report(**given: Any) -> None:
    """Leaderboard of methods from tracked runs: per method the setting each declared rule selects (mean ± sd over
    seeds), its front's hypervolume, the search's cost; Markdown, CSV, LaTeX, HTML and a plot, logged as a run."""
    from unlearn_lab.leaderboard.command import ReportArgs, report

    report(ReportArgs(**given), say=click.echo)
