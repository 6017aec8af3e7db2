"""run_experiment(plan, tracker, opts) -> RunResult: one tracked unlearning experiment, shared by run and sweep.

A short sequence of named stages, each a plain function of the plan and what the stage before produced:
load_inputs (validate the method, hyperparameters and metrics; prepare the models; read the splits) ->
open_run -> start_session (model, tokenizer, batches, accelerator, retain reference) -> train (the shared loop;
per-step metrics; per-epoch evaluations or the collapse check) -> save_and_log_model -> evaluate_final ->
report (headline metrics, training curve). Any failure ends the run FAILED (KILLED on Ctrl-C / SIGTERM) with the
reason as a tag; a non-finite loss raises `DivergedError` after recording the step. If the tracking store stops
answering mid-run, training, the local model save and the local evaluation still finish, then `TrackingLost`
says where they are.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unlearn_lab import distributed, plots
from unlearn_lab.benchmarks import check_method
from unlearn_lab.config import to_yaml
from unlearn_lab.data.prompts import uses_chat_template
from unlearn_lab.evaluation import (
    EvalResult,
    eval_data,
    evaluate_model,
    reference_entries,
    utility_upper_bound,
)
from unlearn_lab.methods import MethodSpec, get_method, method_origin, validate_hyperparams
from unlearn_lab.metrics import report
from unlearn_lab.models import load
from unlearn_lab.models.prepare import prepare
from unlearn_lab.plan import Plan, tracked_params
from unlearn_lab.records import eval_params, headline, tracked_eval, version_tags
from unlearn_lab.runtime import autocast, make_accelerator
from unlearn_lab.tracking import Guarded, TrackingLost
from unlearn_lab.train import DivergedError, StepLog, fit
from unlearn_lab.unlearn import FeatureMaker, UnlearnData, resolve_layer


@dataclass(frozen=True)
class RunOptions:
    eval_every: str = "none"  # "epoch": one nested eval per epoch (step = epoch)
    progress: bool = True
    parent_run_id: str | None = None  # sweeps nest each trial under the study's run
    extra_tags: dict = field(default_factory=dict)
    on_run_started: Callable[[str], None] | None = None  # e.g. a sweep trial records its MLflow run id
    # Stop training after an epoch whose model_utility is below this (a collapsed model: more epochs are wasted).
    # With eval_every="epoch" the epoch's evaluation decides; otherwise an upper bound on model_utility from its
    # six scoring-only components (no generation) after every epoch but the last. The run then ends with the
    # evaluation of the model as it is at that epoch, and RunResult.stopped_at / stop_reason say so.
    collapse_utility: float | None = None
    # the metric the collapse floor reads (None: the benchmark's utility objective; a sweep passes its own)
    collapse_metric: str | None = None


@dataclass(frozen=True)
class RunResult:
    run_id: str
    summary: dict  # top-level metrics of the final evaluation
    model_dir: Path
    eval_dir: Path
    steps: list[StepLog]
    epoch_summaries: dict[int, dict]
    train_seconds: float
    seconds: float
    stopped_at: int | None = None  # the epoch training stopped at because utility collapsed
    stop_reason: str | None = None


def _step_metrics(log: StepLog) -> dict[str, float]:
    values = {
        "loss": log.loss,
        "forget_loss": log.forget_loss,
        "retain_loss": log.retain_loss,
        "grad_norm": log.grad_norm,
        "learning_rate": log.learning_rate,
        "epoch": log.epoch,
        **log.extra,
    }
    return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class Inputs:
    """What every stage reads, validated and loaded before any run is opened."""

    spec: MethodSpec
    hyperparams: dict
    data_eval: Any  # the benchmark's evaluation records
    source_name: str


class Shared:
    """What the runs of one setting share whatever their seed: the checked inputs, the tokenizer, the benchmark's
    encoded unlearning items and the retain reference (computed by the first run that needs it, on the main process
    only). A repeated run builds it once and hands it to every seed's run_experiment; a single run builds its own.
    Everything here is built before a run opens, so a method the benchmark cannot serve (IdkDPO without "I don't
    know" answers) is one line and no run."""

    def __init__(self, plan: Plan, inputs: Inputs, tokenizer: Any, data: UnlearnData):
        self.plan, self.inputs, self.tokenizer, self.data = plan, inputs, tokenizer, data
        self._reference: dict | None = None
        self._has_reference = False

    @classmethod
    def load(cls, plan: Plan, log) -> Shared:
        inputs = load_inputs(plan, log)
        cfg = plan.cfg
        tokenizer = load.load_tokenizer(plan.tokenizer, trust_remote_code=cfg.model.trust_remote_code)
        data = plan.benchmark.unlearn_data(cfg, plan.source, tokenizer, inputs.spec)
        return cls(plan, inputs, tokenizer, data)

    def reference(self, *, log, progress: bool) -> dict | None:
        """The retain reference of this setting's plan (read from its cache or logs, or computed now), once."""
        if not self._has_reference:
            self._reference = reference_entries(self.plan, self.inputs.data_eval, log=log, progress=progress)
            self._has_reference = True
        return self._reference


@dataclass
class Session:
    """The model being unlearned and what trains and evaluates it (one per run)."""

    model: torch.nn.Module
    tokenizer: Any
    data: UnlearnData
    accelerator: Any
    reference: dict | None
    hyperparams: dict
    data_eval: Any  # the benchmark's evaluation records

    def evaluate(self, plan: Plan, model: Any, out_dir: Path, *, progress: bool = False, log: Any = None) -> EvalResult:
        """The suite on `model` (this session's model, or its unwrapped view) against this session's reference."""
        return evaluate_model(
            plan,
            model,
            self.tokenizer,
            reference=self.reference,
            data=self.data_eval,
            out_dir=out_dir,
            progress=progress,
            log=log,
        )


@dataclass
class Training:
    """What the training stage produced: every step, the per-epoch evaluations, where it stopped and why."""

    steps: list[StepLog] = field(default_factory=list)
    epoch_summaries: dict[int, dict] = field(default_factory=dict)
    evaluated_at: dict[int, dict] = field(default_factory=dict)  # optimizer step -> summary of the eval made there
    last_eval: tuple[int, EvalResult] | None = None  # the latest per-epoch evaluation and its step
    stopped_at: int | None = None
    stop_reason: str | None = None
    seconds: float = 0.0


def run_experiment(plan: Plan, tracker, opts: RunOptions, log=print, shared: Shared | None = None) -> RunResult:
    """One seeded run of the plan. `shared`: the inputs, tokenizer and reference of this setting, when several
    seeds of it run in one process (repeated.run_repeated); built here otherwise."""
    started = time.perf_counter()
    shared = shared or Shared.load(plan, log)
    tracker = Guarded(tracker, log)  # a store lost mid-run: the run still finishes locally, then TrackingLost
    run_id = open_run(plan, tracker, shared.inputs, opts)
    try:
        session = start_session(plan, tracker, run_id, shared, opts, log)
        training = train(plan, session, shared.inputs.spec, tracker, run_id, opts)
        if not session.accelerator.is_main_process:  # `accelerate launch`: only the main process saves and evaluates
            tracker.end_run(run_id, "FINISHED")
            distributed.wait_for_main(session.accelerator)  # a next seed's run starts on every rank together
            return RunResult(
                run_id,
                {},
                Path(),
                Path(),
                training.steps,
                training.epoch_summaries,
                training.seconds,
                time.perf_counter() - started,
            )
        model = session.accelerator.unwrap_model(session.model)
        model_dir, model_id = save_and_log_model(plan, model, session.tokenizer, tracker, run_id)
        result = evaluate_final(plan, model, session, training, tracker, run_id, model_dir, opts, log)
        report_run(plan, training, result, tracker, run_id, model_id)
        distributed.wait_for_main(session.accelerator)
        if tracker.lost:
            raise TrackingLost(
                f"tracking store lost during the run ({tracker.lost}); the run finished locally: "
                f"model {model_dir}, evaluation {plan.eval_dir}; MLflow run {run_id} is incomplete"
            )
    except TrackingLost:
        raise
    except KeyboardInterrupt:
        tracker.end_run(run_id, "KILLED")
        raise
    except BaseException as exc:
        tracker.set_tags(run_id, {"failure": str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__})
        tracker.end_run(run_id, "FAILED")
        raise
    return RunResult(
        run_id,
        result.summary,
        model_dir,
        plan.eval_dir,
        training.steps,
        training.epoch_summaries,
        training.seconds,
        time.perf_counter() - started,
        training.stopped_at,
        training.stop_reason,
    )


def load_inputs(plan: Plan, log) -> Inputs:
    """Everything checked (method, hyperparameters, metrics) and every model prepared before a run opens."""
    cfg = plan.cfg
    spec = get_method(cfg.unlearn.method)
    hyperparams = validate_hyperparams(spec, cfg.unlearn.method_args)
    plan.benchmark.metrics(cfg.eval.metrics)
    check_method(plan.benchmark, spec)
    prepare(plan, log=log)
    if "layer" in hyperparams:  # RMU: a layer of this model (its config only: no weights read)
        config = load.model_config(plan.target.spec, trust_remote_code=cfg.model.trust_remote_code)
        hyperparams = resolve_layer(hyperparams, config.num_hidden_layers)
    return Inputs(spec, hyperparams, eval_data(plan), plan.source.name)


def open_run(plan: Plan, tracker: Guarded, inputs: Inputs, opts: RunOptions) -> str:
    cfg = plan.cfg
    tags = {
        "method": cfg.unlearn.method,
        "benchmark": cfg.benchmark,
        "forget_split": cfg.data.forget_split,
        "retain_split": str(cfg.data.retain_split),
        "model": plan.target.spec,
        "config_hash": plan.config_hash,
        "data": inputs.source_name,
        "device": plan.device,
        "eval_dtype": plan.eval_dtype,
        "train_precision": plan.train_precision,
        "task": plan.task_name,
        **version_tags(),
        **opts.extra_tags,
    }
    origin = method_origin(cfg.unlearn.method)
    if origin != "built-in":  # a plugin's method: which distribution and version (or module) it came from
        tags["plugin"] = origin
    run_id = tracker.start_run(
        tracker.unique_name(plan.run_name) or plan.run_name, tags=tags, parent_id=opts.parent_run_id
    )
    if tracker.lost:
        raise TrackingLost(f"tracking store unreachable when starting the run ({tracker.lost}); nothing was trained")
    if opts.on_run_started is not None:
        opts.on_run_started(run_id)
    return run_id


def start_session(plan: Plan, tracker: Guarded, run_id: str, shared: Shared, opts: RunOptions, log) -> Session:
    """The target model in fp32 master weights on the plan's device, its batches, the retain reference; the
    resolved config and params logged."""
    cfg, inputs, tokenizer = plan.cfg, shared.inputs, shared.tokenizer
    tracker.log_text(run_id, to_yaml(cfg), "config.yaml")
    model = load.load_model(plan.target.spec, dtype="float32", trust_remote_code=cfg.model.trust_remote_code)
    hyperparams = inputs.hyperparams
    chat = uses_chat_template(tokenizer, cfg.prompt)
    tracker.log_params(run_id, tracked_params(plan, hyperparams, chat_template=chat))
    # RMU's loss reads a hidden state: the layers after it get no gradient, which DDP must be told to expect
    accelerator = make_accelerator(plan.device, find_unused=inputs.spec.needs_hidden)
    model.to(accelerator.device)
    reference = shared.reference(log=log, progress=opts.progress) if accelerator.is_main_process else None
    distributed.wait_for_main(accelerator)  # the others wait here while the main process computes the reference
    return Session(model, tokenizer, shared.data, accelerator, reference, hyperparams, inputs.data_eval)


class MethodLoss:
    """(model, batch, epoch) -> the method's LossOutput, carrying the method's state (PDU's dual variable)
    from one step to the next. The forward passes and the loss run under `runtime.autocast(device)` (bf16 on a
    GPU that has it), applied here rather than by wrapping the model, so the trained model stays a plain model."""

    def __init__(self, spec: MethodSpec, hyperparams: dict, model: Any, device: str, seed: int):
        self.spec, self.hyperparams, self.device = spec, hyperparams, device
        self.features = FeatureMaker(model, spec, hyperparams)
        self.generator = torch.Generator().manual_seed(seed)
        init = spec.init_state
        self.state = init(hyperparams, hidden_size=model.config.hidden_size, generator=self.generator) if init else {}

    def __call__(self, model, batch, epoch: float):
        with autocast(self.device):
            out = self.spec.loss(self.features(model, batch), self.state, **self.hyperparams)
        if self.spec.update_state is not None:
            self.state = self.spec.update_state(self.state, out, self.hyperparams, epoch=epoch)
        return out


class EpochMonitor:
    """The training loop's callbacks: per-step metrics (sent once per epoch), then after each epoch either a
    tracked evaluation (eval_every="epoch") or the collapse check; returns True to stop training."""

    def __init__(self, plan: Plan, session: Session, tracker: Guarded, run_id: str, opts: RunOptions):
        self.plan, self.session, self.tracker, self.run_id, self.opts = plan, session, tracker, run_id, opts
        self.training = Training()
        self.pending: list[tuple[int, dict]] = []

    def on_step(self, entry: StepLog) -> None:
        self.training.steps.append(entry)
        self.pending.append((entry.step, _step_metrics(entry)))

    def flush(self) -> None:
        self.tracker.log_metric_history(self.run_id, self.pending)
        self.pending.clear()

    def on_epoch_end(self, epoch: int, step: int) -> bool:
        self.flush()
        if not self.session.accelerator.is_main_process:  # the main process decides; fit tells every rank
            return False
        if self.opts.eval_every == "epoch":
            reason = self._evaluate_epoch(epoch, step)
        elif self.opts.collapse_utility is not None and epoch < self.plan.cfg.unlearn.epochs:
            reason = self._collapse_check()
        else:
            reason = None
        if reason:
            self.training.stopped_at, self.training.stop_reason = epoch, reason
            self.tracker.set_tags(self.run_id, {"stopped_early": f"epoch {epoch}: {reason}"})
        return reason is not None

    def _evaluate_epoch(self, epoch: int, step: int) -> str | None:
        plan, session, model = self.plan, self.session, self.session.model
        model.eval()
        last = epoch == plan.cfg.unlearn.epochs
        label = str(plan.save_dir.resolve()) if last else f"{plan.run_name} after epoch {epoch} (in memory)"
        view = session.accelerator.unwrap_model(model)
        bench = plan.benchmark
        result = tracked_eval(
            self.tracker,
            self.run_id,
            "eval-final" if last else f"eval-ep{epoch}",
            eval_params(plan, label),
            step=step,
            epoch=epoch,
            task=plan.task_name,
            evaluate=lambda: session.evaluate(plan, view, plan.save_dir / f"checkpoint-{step}" / "evals"),
            files=(bench.eval_file, bench.summary_file),
        )
        model.train()
        self.training.epoch_summaries[epoch] = result.summary
        self.training.evaluated_at[step] = result.summary
        self.training.last_eval = (step, result)
        floor, name = self.opts.collapse_utility, self.opts.collapse_metric or bench.objectives[1].metric
        utility = result.summary.get(name)
        reason = None
        if floor is not None and utility is not None and utility < floor:
            reason = f"utility collapsed ({name} {utility:.3g} < {floor:g})"
        if not (last or reason):  # the final evaluation's headline is logged with the saved model
            self.tracker.log_metrics(self.run_id, headline(result.summary, bench), step=step)
        return reason

    def _collapse_check(self) -> str | None:
        """Stop when the utility metric must be below the floor: the benchmark's cheap upper bound of it is (TOFU:
        model_utility from its scoring-only parts). A benchmark without such a bound, or a sweep whose utility is
        another metric, never stops here."""
        name = self.plan.benchmark.objectives[1].metric
        if self.opts.collapse_metric not in (None, name):
            return None
        model = self.session.model
        model.eval()
        view = self.session.accelerator.unwrap_model(model)
        bound = utility_upper_bound(self.plan, view, self.session.tokenizer, self.session.data_eval)
        model.train()
        floor = self.opts.collapse_utility or 0.0
        if bound is not None and bound < floor:
            return f"utility collapsed ({name} <= {bound:.3g} < {floor:g})"
        return None


def train(plan: Plan, session: Session, spec: MethodSpec, tracker: Guarded, run_id: str, opts: RunOptions) -> Training:
    """The shared loop over the forget set (with retain / alternate partners as the method needs).

    unlearn.seed decides every random choice of the run: the method's generator draws the data order, the retain
    partners, the "I don't know" answers and RMU's direction; torch's global generator, seeded here too, drives
    dropout and anything else a model or library draws from it (docs/seeds.md)."""
    u = plan.cfg.unlearn
    torch.manual_seed(u.seed)
    loss = MethodLoss(spec, session.hyperparams, session.model, plan.device, u.seed)
    monitor = EpochMonitor(plan, session, tracker, run_id, opts)
    acc = session.accelerator

    def epoch_batches(epoch: int):  # this process's share of the epoch's rows (every rank draws the same order)
        return session.data.epoch_batches(u.batch_size, loss.generator, spec, acc.process_index, acc.num_processes)

    start = time.perf_counter()
    try:
        fit(
            session.model,
            settings=u,
            schedule_epochs=u.schedule_epochs,
            n_items=len(session.data.forget),
            epoch_batches=epoch_batches,
            loss_fn=loss,
            accelerator=acc,
            on_step=monitor.on_step,
            on_epoch_end=monitor.on_epoch_end,
            progress=opts.progress,
            desc=u.method,
        )
    except DivergedError as exc:  # record the steps done; run_experiment sets the failure reason
        monitor.flush()
        tracker.set_tags(run_id, {"failed_step": str(exc.step)})
        raise
    monitor.training.seconds = time.perf_counter() - start
    acc.wait_for_everyone()
    return monitor.training


def save_and_log_model(plan: Plan, model, tokenizer, tracker: Guarded, run_id: str) -> tuple[Path, str | None]:
    """The unlearned model saved atomically to the plan's folder, then logged as an MLflow model."""
    model_dir = load.save_model(model, tokenizer, plan.save_dir)
    return model_dir, tracker.log_model(run_id, model, tokenizer, model_dir)


def evaluate_final(
    plan: Plan,
    model,
    session: Session,
    training: Training,
    tracker: Guarded,
    run_id: str,
    model_dir: Path,
    opts: RunOptions,
    log,
) -> EvalResult:
    """The saved model's evaluation: the last per-epoch one when it evaluated this very model, else a new one."""
    final_step = training.steps[-1].step if training.steps else 0
    bench = plan.benchmark
    if training.last_eval is not None and training.last_eval[0] == final_step:
        result = training.last_eval[1]
        report.write_reports(plan.eval_dir, result.results, result.summary, names=(bench.eval_file, bench.summary_file))
        return dataclasses.replace(result, out_dir=plan.eval_dir)
    return tracked_eval(
        tracker,
        run_id,
        "eval-final",
        eval_params(plan, str(model_dir.resolve())),
        step=final_step,
        epoch=training.stopped_at or plan.cfg.unlearn.epochs,
        task=plan.task_name,
        evaluate=lambda: session.evaluate(plan, model, plan.eval_dir, progress=opts.progress, log=log),
        files=(bench.eval_file, bench.summary_file),
    )


def report_run(
    plan: Plan, training: Training, result: EvalResult, tracker: Guarded, run_id: str, model_id: str | None
) -> None:
    """The final scores on the run and on its logged model, the training curve, the run FINISHED."""
    final_step = training.steps[-1].step if training.steps else 0
    bench = plan.benchmark
    metrics = {**headline(result.summary, bench), **result.summary}
    tracker.log_metrics(run_id, metrics, step=final_step, model_id=model_id)
    evaluated = {**training.evaluated_at, final_step: result.summary}
    first, second = ((o.metric, o.log) for o in bench.objectives)
    curve = plots.training_curve_figure(
        [(s.step, s.loss) for s in training.steps], evaluated, f"{plan.run_name} ({plan.task_name})", first, second
    )
    tracker.log_artifact(run_id, str(plots.save_figure(curve, plan.eval_dir / "training_curve.png")))
    tracker.set_tags(run_id, {"train_seconds": f"{training.seconds:.1f}"})
    tracker.end_run(run_id, "FINISHED")
