"""run_experiment(cfg, tracker) -> RunResult: one tracked unlearning experiment, shared by run and sweep.

Order: validate everything (method, hyperparameters, splits) -> prepare models -> open the run ->
train with the shared loop (per-step metrics) -> save the model atomically -> nested evaluation
run(s). Any failure ends the run FAILED (KILLED on Ctrl-C / SIGTERM) with the reason as a tag; a non-finite
loss raises `DivergedError` after recording the step. If the tracking store stops answering mid-run,
training, the local model save and the local evaluation still finish, then `TrackingLost` says where they are.
"""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from unlearn_lab import plots
from unlearn_lab.config import to_yaml
from unlearn_lab.data.prompts import uses_chat_template
from unlearn_lab.evaluation import EvalResult, eval_data, evaluate_model, reference_entries, top_level_metrics
from unlearn_lab.methods import get_method, validate_hyperparams
from unlearn_lab.metrics import report, suite
from unlearn_lab.metrics.functions import log10_forget_quality
from unlearn_lab.models import load
from unlearn_lab.models.prepare import prepare, source_for
from unlearn_lab.plan import Plan, tracked_params
from unlearn_lab.tracking import Guarded, TrackingLost
from unlearn_lab.train import DivergedError, Settings, StepLog, fit
from unlearn_lab.unlearn import FeatureMaker, UnlearnData, resolve_layer


@dataclass(frozen=True)
class RunOptions:
    eval_every: str = "none"  # "epoch": one nested eval per epoch (step = epoch)
    progress: bool = True
    parent_run_id: str | None = None  # sweeps nest each trial under the study's run
    extra_tags: dict = field(default_factory=dict)
    on_run_started: Callable[[str], None] | None = None  # e.g. a sweep trial records its MLflow run id
    # with eval_every="epoch": (epoch, summary) -> a reason to stop training now, or None
    stop_when: Callable[[int, dict], str | None] | None = None


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
    stopped_at: int | None = None  # the epoch `stop_when` stopped training at


def version_tags() -> dict[str, str]:
    import accelerate
    import transformers

    tags = {"torch": torch.__version__, "transformers": transformers.__version__, "accelerate": accelerate.__version__}
    try:
        git = ["git", "rev-parse", "HEAD"]
        found = subprocess.run(git, cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5, check=False)
        commit = found.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    tags["git_commit"] = commit or "unknown"
    return tags


def make_accelerator(device: str = "cpu"):
    """The plan's device; bf16 autocast over fp32 master weights where the GPU has it (never on CPU: 19-36x
    slower). cpu=True on the CPU: single process normally, MULTI_CPU (gloo) under torchrun."""
    from accelerate import Accelerator

    from unlearn_lab.runtime import bf16_autocast

    return Accelerator(mixed_precision="bf16" if bf16_autocast(device) else "no", cpu=device == "cpu")


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


HEADLINE = (
    "forget_quality",
    "model_utility",
    "privleak",
    "forget_Q_A_ROUGE",
    "forget_Q_A_Prob",
    "forget_truth_ratio",
    "extraction_strength",
)


def headline(summary: dict) -> dict[str, float]:
    """The metrics copied onto the unlearning run, so the runs table compares runs without opening children;
    log10_forget_quality shows forget quality's scale (it spans 1e-239..1) in a table or a chart."""
    out = {k: float(summary[k]) for k in HEADLINE if summary.get(k) is not None}
    if "forget_quality" in out:
        out["log10_forget_quality"] = log10_forget_quality(out["forget_quality"])
    return out


def eval_params(plan: Plan, model: str) -> dict[str, object]:
    """What an evaluation run evaluated, on what, and how: its own params, so it reads without its parent."""
    d, e, ref = plan.cfg.data, plan.cfg.eval, plan.reference
    if ref is None or ref.kind == "none":
        reference = "none (" + (", ".join(ref.skipped) + " skipped)" if ref and ref.skipped else "not needed)")
    elif ref.kind == "retain logs":
        reference = f"retain logs {ref.spec}"
    else:
        reference = f"retain model {ref.spec} ({'cached' if ref.cached else 'computed by this run'}, key {ref.key})"
    return {
        "model": model,
        "data.source": d.source,
        "data.authors": "all" if d.authors is None else d.authors,
        "data.forget_split": d.forget_split,
        "data.retain_split": d.retain_split,
        "data.holdout_split": d.holdout_split,
        "data.question_key": d.question_key,
        "eval.metrics": ",".join(top_level_metrics(plan)),
        "eval.batch_size": e.batch_size,
        "eval.max_new_tokens": e.max_new_tokens,
        "eval.mink_k": e.mink_k,
        "eval.answer_length_ratio": "off" if e.answer_length_ratio is None else e.answer_length_ratio,
        "eval.dtype": plan.eval_dtype,
        "device": plan.device,
        "reference": reference,
    }


def tracked_eval(
    tracker,
    parent_id: str,
    name: str,
    params: dict,
    *,
    step: int,
    epoch: int,
    evaluate: Callable[[], EvalResult],
    task: str,
) -> EvalResult:
    """A nested run around one evaluation (so its start and end times are the evaluation's): its params, every
    TOFU metric (scalar entries and MIA AUCs) at the optimizer step its epoch ended, the epoch, the two JSON files.
    """
    run_id = tracker.start_run(name, parent_id=parent_id, tags={"kind": "eval", "task": task})
    try:
        tracker.log_params(run_id, params)
        result = evaluate()
        metrics = {**scalar_metrics(result.results), "epoch": float(epoch)}
        if result.summary.get("forget_quality") is not None:
            metrics["log10_forget_quality"] = log10_forget_quality(result.summary["forget_quality"])
        tracker.log_metrics(run_id, metrics, step=step)
        if result.out_dir is not None:
            tracker.log_artifact(run_id, str(result.out_dir / "TOFU_EVAL.json"))
            tracker.log_artifact(run_id, str(result.out_dir / "TOFU_SUMMARY.json"))
        tracker.end_run(run_id, "FINISHED")
    except KeyboardInterrupt:
        tracker.end_run(run_id, "KILLED")
        raise
    except BaseException:
        tracker.end_run(run_id, "FAILED")
        raise
    return result


def scalar_metrics(results: dict) -> dict[str, float]:
    """Every metric's agg_value (and MIA forget/holdout means) as flat MLflow metrics."""
    out: dict[str, float] = {}
    for name, entry in results.items():
        if not isinstance(entry, dict) or entry.get("agg_value") is None:
            continue
        out[name] = float(entry["agg_value"])
        for part in ("forget", "holdout"):
            if isinstance(entry.get(part), dict):
                out[f"{name}.{part}_mean"] = float(entry[part]["agg_value"])
    return out


def run_experiment(plan: Plan, tracker, opts: RunOptions, log=print) -> RunResult:
    started = time.perf_counter()
    cfg = plan.cfg
    u = cfg.unlearn
    spec = get_method(u.method)
    hp = validate_hyperparams(spec, u.method_args)
    suite.parse_metrics(cfg.eval.metrics)
    prepare(plan, log=log)
    source = source_for(cfg)
    forget, retain = source.load(cfg.data.forget_split), source.load(cfg.data.retain_split)
    idk = source.load("idk") if spec.needs_alternate else None
    data_eval = eval_data(plan)
    task = plan.task_name

    tags = {
        "method": u.method,
        "forget_split": cfg.data.forget_split,
        "retain_split": cfg.data.retain_split,
        "model": plan.target.spec,
        "config_hash": plan.config_hash,
        "data": source.name,
        "device": plan.device,
        "eval_dtype": plan.eval_dtype,
        "train_precision": plan.train_precision,
        "task": task,
        **version_tags(),
        **opts.extra_tags,
    }
    tracker = Guarded(tracker, log)  # a store lost mid-run: the run still finishes locally, then TrackingLost
    run_id = tracker.start_run(
        tracker.unique_name(plan.run_name) or plan.run_name, tags=tags, parent_id=opts.parent_run_id
    )
    if tracker.lost:
        raise TrackingLost(f"tracking store unreachable when starting the run ({tracker.lost}); nothing was trained")
    try:
        if opts.on_run_started is not None:
            opts.on_run_started(run_id)
        tracker.log_text(run_id, to_yaml(cfg), "config.yaml")
        # training keeps fp32 master weights; evaluations score the model in plan.eval_dtype
        model = load.load_model(plan.target.spec, dtype="float32", trust_remote_code=cfg.model.trust_remote_code)
        tokenizer = load.load_tokenizer(plan.tokenizer, trust_remote_code=cfg.model.trust_remote_code)
        hp = resolve_layer(hp, model.config.num_hidden_layers)
        tracker.log_params(run_id, tracked_params(plan, hp, chat_template=uses_chat_template(tokenizer, cfg.prompt)))
        data = UnlearnData.build(tokenizer, cfg.prompt, forget, retain, idk)
        accelerator = make_accelerator(plan.device)
        model.to(accelerator.device)
        reference = (
            reference_entries(plan, data_eval, log=log, progress=opts.progress) if accelerator.is_main_process else None
        )
        features = FeatureMaker(model, spec, hp)
        generator = torch.Generator().manual_seed(u.seed)
        state = (
            spec.init_state(hp, hidden_size=model.config.hidden_size, generator=generator) if spec.init_state else {}
        )

        def loss_fn(m, batch, epoch):
            nonlocal state
            with accelerator.autocast():
                out = spec.loss(features(m, batch), state, **hp)
            if spec.update_state is not None:
                state = spec.update_state(state, out, hp, epoch=epoch)
            return out

        def epoch_batches(epoch):
            batches = data.epoch_batches(u.batch_size, generator, spec)
            return itertools.islice(batches, accelerator.process_index, None, accelerator.num_processes)

        steps: list[StepLog] = []
        pending: list[tuple[int, dict]] = []
        epoch_summaries: dict[int, dict] = {}
        last_eval: dict = {}  # the latest per-epoch evaluation and the step it was made at
        evaluated_at: dict[int, dict] = {}  # optimizer step -> summary of the evaluation made there
        stopped: dict = {}

        def on_step(entry: StepLog):
            steps.append(entry)
            pending.append((entry.step, _step_metrics(entry)))

        def on_epoch_end(epoch: int, step: int):
            tracker.log_metric_history(run_id, pending)
            pending.clear()
            if opts.eval_every == "epoch" and accelerator.is_main_process:
                model.eval()
                last = epoch == u.epochs
                label = str(plan.save_dir.resolve()) if last else f"{plan.run_name} after epoch {epoch} (in memory)"
                result = tracked_eval(
                    tracker,
                    run_id,
                    "eval-final" if last else f"eval-ep{epoch}",
                    eval_params(plan, label),
                    step=step,
                    epoch=epoch,
                    task=task,
                    evaluate=lambda: evaluate_model(
                        plan,
                        accelerator.unwrap_model(model),
                        tokenizer,
                        reference=reference,
                        data=data_eval,
                        progress=False,
                        out_dir=plan.save_dir / f"checkpoint-{step}" / "evals",
                    ),
                )
                epoch_summaries[epoch] = result.summary
                evaluated_at[step] = result.summary
                last_eval.update(result=result, step=step)
                model.train()
                reason = opts.stop_when(epoch, result.summary) if opts.stop_when else None
                if not (last or reason):  # the final evaluation's headline is logged with the saved model
                    tracker.log_metrics(run_id, headline(result.summary), step=step)
                if reason:
                    stopped.update(epoch=epoch)
                    tracker.set_tags(run_id, {"stopped_early": f"epoch {epoch}: {reason}"})
                    return True
            return False

        settings = Settings(
            lr=u.lr,
            epochs=u.epochs,
            batch_size=u.batch_size,
            grad_accum=u.grad_accum,
            weight_decay=u.weight_decay,
            warmup_epochs=u.warmup_epochs,
            max_grad_norm=u.max_grad_norm,
            seed=u.seed,
            schedule_epochs=u.schedule_epochs,
            gradient_checkpointing=u.gradient_checkpointing,
        )
        train_start = time.perf_counter()
        try:
            fit(
                model,
                settings=settings,
                n_items=len(forget),
                epoch_batches=epoch_batches,
                loss_fn=loss_fn,
                accelerator=accelerator,
                on_step=on_step,
                on_epoch_end=on_epoch_end,
                progress=opts.progress,
                desc=f"{u.method}",
            )
        except DivergedError as exc:  # record the steps done; the handler below sets the failure reason
            tracker.log_metric_history(run_id, pending)
            tracker.set_tags(run_id, {"failed_step": str(exc.step)})
            raise
        train_seconds = time.perf_counter() - train_start
        accelerator.wait_for_everyone()
        if not accelerator.is_main_process:  # `accelerate launch`: only the main process saves and evaluates
            tracker.end_run(run_id, "FINISHED")
            return RunResult(
                run_id, {}, Path(), Path(), steps, epoch_summaries, train_seconds, time.perf_counter() - started
            )
        model = accelerator.unwrap_model(model)
        model_dir = load.save_model(model, tokenizer, plan.save_dir)
        model_id = tracker.log_model(run_id, model, tokenizer, model_dir)
        eval_dir = plan.eval_dir
        final_step = steps[-1].step if steps else 0
        if last_eval and last_eval["step"] == final_step:  # the last evaluated epoch's model is the final model
            result = last_eval["result"]
            report.write_reports(eval_dir, result.results, result.summary)
            result = dataclasses.replace(result, out_dir=eval_dir)
        else:
            result = tracked_eval(
                tracker,
                run_id,
                "eval-final",
                eval_params(plan, str(model_dir.resolve())),
                step=final_step,
                epoch=stopped.get("epoch", u.epochs),
                task=task,
                evaluate=lambda: evaluate_model(
                    plan,
                    model,
                    tokenizer,
                    reference=reference,
                    data=data_eval,
                    out_dir=eval_dir,
                    progress=opts.progress,
                    log=log,
                ),
            )
        # the final scores, on the run and on its logged model
        tracker.log_metrics(run_id, {**headline(result.summary), **result.summary}, step=final_step, model_id=model_id)
        evaluated_at[final_step] = result.summary
        curve = plots.training_curve_figure(
            [(s.step, s.loss) for s in steps], evaluated_at, f"{plan.run_name} ({plan.task_name})"
        )
        tracker.log_artifact(run_id, str(plots.save_figure(curve, eval_dir / "training_curve.png")))
        tracker.set_tags(run_id, {"train_seconds": f"{train_seconds:.1f}"})
        tracker.end_run(run_id, "FINISHED")
        if tracker.lost:
            raise TrackingLost(
                f"tracking store lost during the run ({tracker.lost}); the run finished locally: "
                f"model {model_dir}, evaluation {eval_dir}; MLflow run {run_id} is incomplete"
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
        eval_dir,
        steps,
        epoch_summaries,
        train_seconds,
        time.perf_counter() - started,
        stopped.get("epoch"),
    )
