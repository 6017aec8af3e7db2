"""`prepare` and `eval`: the experiment's models built, any model evaluated."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from unlearn_lab.commands.common import build_models, check, log, make_plan, on_signals, say, show
from unlearn_lab.config import ExperimentConfig, load_experiment
from unlearn_lab.errors import UsageError

if TYPE_CHECKING:
    from unlearn_lab.plan import Plan


def prepare(plan: Plan, *, dry_run: bool) -> None:
    """`prepare`: build (or find in the cache) the base, target and retain models."""
    import time

    start = time.perf_counter()
    plan = check(plan)
    show(plan, dry_run=dry_run)
    if dry_run:
        return
    on_signals()
    say("\n".join(build_models(plan)) + f" in {time.perf_counter() - start:.1f} s")


@dataclass(frozen=True)
class EvalArgs:
    """`eval`'s own options (the experiment, --set, --device and --dry-run are every command's)."""

    model_spec: str
    data_source: str | None = None
    forget_split: str | None = None
    holdout_split: str | None = None
    retain_model: str | None = None
    retain_logs: str | None = None
    no_reference: bool = False
    metrics: str | None = None
    out_dir: str | None = None
    task_name: str | None = None
    tracking_uri: str | None = None

    def __post_init__(self) -> None:
        flags = (("--retain-model", self.retain_model), ("--retain-logs", self.retain_logs))
        given = [o for o, on in (*flags, ("--no-reference", self.no_reference)) if on]
        if len(given) > 1:
            raise UsageError(
                f"give at most one of --retain-model, --retain-logs, --no-reference (got {', '.join(given)})"
            )

    def config(self, experiment: str | None, overrides: tuple[str, ...]) -> ExperimentConfig:
        pairs = (
            ("data.source", self.data_source),
            ("data.forget_split", self.forget_split),
            ("data.holdout_split", self.holdout_split),
            ("eval.metrics", self.metrics),
        )
        return load_experiment(experiment, [*overrides, *(f"{k}={v}" for k, v in pairs if v)])

    def plan(self, cfg: ExperimentConfig, device: str) -> Plan:
        """The plan, once the config is valid: a registered model (models:/...) is fetched into the cache first."""
        model = self.model_spec
        if model.startswith("models:/"):
            from unlearn_lab.models.load import cache_root
            from unlearn_lab.tracking.mlflow_tracker import fetch_registered

            model = str(fetch_registered(model, self.tracking_uri, cache_root() / "registry"))
        return make_plan(
            "eval",
            cfg,
            device=device,
            task_name=self.task_name,
            evaluated=model,
            retain_model=self.retain_model,
            retain_logs=self.retain_logs,
            no_reference=self.no_reference,
        )


def evaluate(plan: Plan, args: EvalArgs, *, dry_run: bool) -> None:
    """`eval`: check (a malformed or mismatched --retain-logs too), then prepare what the plan lists, the reference,
    then the evaluated model on the plan's device and eval dtype; prints the summary table."""
    from unlearn_lab.evaluation import check_reference, eval_data, evaluate_model, load_for_eval, reference_entries
    from unlearn_lab.metrics.report import read_json, table

    out_dir = Path(args.out_dir) if args.out_dir else plan.eval_dir
    logs = (("retain logs", args.retain_logs),) if args.retain_logs else ()
    plan = check(plan, extra_files=logs, outputs=(("the evaluation", out_dir),))
    if args.retain_logs:
        check_reference(read_json(args.retain_logs), plan, args.retain_logs)
    show(plan, dry_run=dry_run)
    if dry_run:
        return
    on_signals()
    build_models(plan)
    data = eval_data(plan)
    reference = reference_entries(plan, data, log=log)
    assert plan.evaluated is not None  # an eval plan always names its model
    model, tokenizer = load_for_eval(plan, plan.evaluated.spec)
    result = evaluate_model(plan, model, tokenizer, reference=reference, data=data, out_dir=out_dir, log=log)
    say(table(result.summary))
    bench = plan.benchmark
    say(f"wrote {result.out_dir}/{bench.eval_file} and {bench.summary_file} ({result.seconds:.1f} s)")
