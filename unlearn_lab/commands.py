"""What each command does once click has parsed it: resolve the plan, show it, check it, then run the stages.

Order for every command: plan (no weights) -> print it -> preflight (every missing piece at once, exit 2) ->
`--dry-run` stops here -> threads -> tracking store (run) -> prepare -> the command's stages.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace

from unlearn_lab import plan as planning
from unlearn_lab.config import ExperimentConfig
from unlearn_lab.plan import Plan

Log = Callable[[str], None]


def make_plan(command: str, cfg: ExperimentConfig, *, device: str | None, workers: int = 1, **kw) -> Plan:
    from unlearn_lab.runtime import choose_device, thread_count

    return planning.resolve(command, cfg, device=choose_device(device), threads=thread_count(workers), **kw)


def tokenizer_notes(plan: Plan) -> tuple[str, ...]:
    """How prompts will look for this tokenizer (no chat template -> the plain format; no pad token -> eos),
    said once, before anything runs. A tokenizer that is not there yet (built by prepare) is the embedded one."""
    from unlearn_lab.data.prompts import uses_chat_template
    from unlearn_lab.models import load

    spec = plan.tokenizer
    built = [m for m in (plan.target, plan.retain) if m.spec == spec and m.origin == "built here"]
    if built and not built[0].cached:
        return ()
    try:
        tok = load.load_tokenizer(spec, trust_remote_code=plan.cfg.model.trust_remote_code, pad_fallback=False)
        chat = uses_chat_template(tok, plan.cfg.prompt)
    except Exception:  # noqa: BLE001 - reported by the preflight or the loader
        return ()
    notes = []
    if not chat:
        notes.append("prompt format: plain 'Question: ...\\nAnswer: ...' (the tokenizer has no chat template)")
    if tok.pad_token_id is None:
        notes.append(f"padding with eos {tok.eos_token!r} (the tokenizer has no pad token)")
    return tuple(notes)


def check(plan: Plan, *, log: Log, extra_files: tuple[tuple[str, str], ...] = ()) -> Plan:
    """Everything the plan needs is reachable (all missing pieces at once, one error, before anything is opened
    or loaded); returns the plan with its tokenizer notes. The caller runs its own checks, then `show`s it."""
    from unlearn_lab import preflight

    checked = preflight.check(plan, extra_files=extra_files)
    if checked.offline:
        log("the hub is not reachable; everything needed is in the local cache: loading offline")
        preflight.go_offline()
    return replace(plan, notes=plan.notes + tokenizer_notes(plan))


def show(plan: Plan, *, dry_run: bool, log: Log, echo: Log) -> None:
    """The plan on stdout for --dry-run, else on the log; under torchrun / accelerate launch rank 0 speaks."""
    if int(os.environ.get("RANK", "0")) == 0:
        (echo if dry_run else log)(plan.describe())


def prepare(plan: Plan, log: Log) -> list[str]:
    from unlearn_lab.models.prepare import prepare as build
    from unlearn_lab.runtime import configure_threads

    configure_threads(threads=plan.threads)
    built = build(plan, log=log).built
    return [
        f"target: {plan.target.spec}",
        f"retain: {plan.retain.spec}",
        f"prepare: {'built ' + ', '.join(built) if built else 'all cached'}",
    ]


def evaluate(plan: Plan, out_dir: str | None, log: Log):
    """`eval`: prepare what the plan lists, the reference, then the evaluated model (device, eval dtype)."""
    from unlearn_lab.evaluation import eval_data, evaluate_model, load_for_eval, reference_entries
    from unlearn_lab.models.prepare import prepare as build
    from unlearn_lab.runtime import configure_threads

    configure_threads(threads=plan.threads)
    build(plan, log=log)
    data = eval_data(plan)
    reference = reference_entries(plan, data, log=log)
    model, tokenizer = load_for_eval(plan, plan.evaluated.spec)
    return evaluate_model(
        plan, model, tokenizer, reference=reference, data=data, out_dir=out_dir or plan.eval_dir, log=log
    )


def run(plan: Plan, tracking_uri: str | None, eval_every: str, log: Log):
    """`run`: the tracking store (checked before anything trains; only rank 0 tracks), then run_experiment."""
    from unlearn_lab.experiment import RunOptions, run_experiment
    from unlearn_lab.runtime import configure_threads
    from unlearn_lab.tracking.memory import MemoryTracker
    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker

    main_process = int(os.environ.get("RANK", "0")) == 0  # under `accelerate launch`, only rank 0 tracks
    tracker = MlflowTracker(tracking_uri) if main_process else MemoryTracker()
    configure_threads(threads=plan.threads)
    result = run_experiment(plan, tracker, RunOptions(eval_every=eval_every), log=log)
    return result, tracker, main_process
