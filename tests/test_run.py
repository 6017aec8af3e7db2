"""The tracked run: MLflow structure, failure handling, gradient accumulation, CLI bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from tests.conftest import TINY, evaluate, make_plan
from unlearn_lab.config import load_experiment


@pytest.fixture(scope="module")
def mlflow_run(tiny_cfg, prepared, tmp_path_factory):
    """One GradAscent run on the tiny world against a temporary SQLite store."""
    from unlearn_lab.experiment import RunOptions, run_experiment
    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker

    root = tmp_path_factory.mktemp("mlflow")
    tracker = MlflowTracker(f"sqlite:///{root}/mlflow.db")
    cfg = load_experiment(None, [*TINY, "unlearn.lr=1e-3"])
    plan = make_plan(cfg, "run", task_name="ga_tiny", saves=root / "saves")
    return tracker, run_experiment(plan, tracker, RunOptions(progress=False, eval_every="epoch"), log=lambda _: None)


def test_mlflow_structure(mlflow_run):
    from unlearn_lab.metrics.suite import DEFAULT_METRICS

    tracker, result = mlflow_run
    client = tracker.client
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "ga_tiny"
    assert run.data.params["unlearn.method"] == "GradAscent" and run.data.params["unlearn.lr"] == "0.001"
    assert {"method", "forget_split", "model", "config_hash", "git_commit", "torch", "transformers"} <= set(
        run.data.tags
    )
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config.yaml", "training_curve.png"} <= artifacts
    loss = client.get_metric_history(result.run_id, "loss")
    # 20 forget rows, batch 4 x accum 2 -> floor(5 / 2) = 2 steps per epoch, 2 epochs
    assert [m.step for m in loss] == [1, 2, 3, 4]
    assert all(m.value < 0 for m in loss)  # gradient ascent: the logged loss is -NLL
    for name in ("forget_loss", "grad_norm", "learning_rate", "epoch"):
        assert len(client.get_metric_history(result.run_id, name)) == 4, name
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'")
    # one per epoch; the last epoch's evaluation is the final model's
    assert sorted(c.info.run_name for c in children) == ["eval-ep1", "eval-final"]
    final = next(c for c in children if c.info.run_name == "eval-final")
    assert set(DEFAULT_METRICS) <= set(final.data.metrics)
    assert {"retain_Q_A_Prob", "ra_Truth_Ratio", "wf_Q_A_ROUGE", "mia_min_k"} <= set(final.data.metrics)
    assert {a.path for a in client.list_artifacts(final.info.run_id)} == {"TOFU_EVAL.json", "TOFU_SUMMARY.json"}
    saved = json.loads((result.eval_dir / "TOFU_SUMMARY.json").read_text())
    assert saved == pytest.approx(result.summary)


def test_the_model_is_an_mlflow_model_linked_to_its_run_and_scores(mlflow_run, tmp_path):
    """A LoggedModel (Models tab) whose source is the run, carrying the final scores, loadable back through
    MLflow's transformers flavour with the saved folder's exact weights."""
    import mlflow.artifacts
    import mlflow.transformers
    import torch
    from safetensors.torch import load_file

    tracker, result = mlflow_run
    client = tracker.client
    model_id = client.get_run(result.run_id).data.tags["model_id"]
    logged = client.get_logged_model(model_id)
    assert logged.source_run_id == result.run_id and str(logged.status).endswith("READY")
    linked = {m.key: m.value for m in logged.metrics or []}
    assert linked["forget_quality"] == pytest.approx(result.summary["forget_quality"])
    assert linked["model_utility"] == pytest.approx(result.summary["model_utility"])
    listed = client.search_logged_models([tracker.experiment_id])
    assert model_id in {m.model_id for m in listed}
    assert [o.model_id for o in client.get_run(result.run_id).outputs.model_outputs] == [model_id]
    local = mlflow.artifacts.download_artifacts(artifact_uri=logged.artifact_location, dst_path=str(tmp_path))
    pipe = mlflow.transformers.load_model(local)
    saved = load_file(str(result.model_dir / "model.safetensors"))
    loaded = pipe.model.state_dict()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_one_step_axis_and_headline_metrics_on_the_run(mlflow_run):
    """Evaluations are logged at the optimizer step where their epoch ended (2 steps per epoch: 2 and 4), with the
    epoch as a metric; the run itself carries the headline metrics on the same axis as its loss."""
    import math

    tracker, result = mlflow_run
    client = tracker.client
    children = {
        c.info.run_name: c
        for c in client.search_runs(
            [client.get_run(result.run_id).info.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'"
        )
    }
    for name, step, epoch in (("eval-ep1", 2, 1), ("eval-final", 4, 2)):
        run_id = children[name].info.run_id
        assert [m.step for m in client.get_metric_history(run_id, "forget_quality")] == [step]
        assert [(m.step, m.value) for m in client.get_metric_history(run_id, "epoch")] == [(step, epoch)]
    parent_fq = client.get_metric_history(result.run_id, "forget_quality")
    assert [m.step for m in parent_fq] == [2, 4]
    assert parent_fq[-1].value == pytest.approx(result.summary["forget_quality"])
    log10 = client.get_metric_history(result.run_id, "log10_forget_quality")
    assert log10[-1].value == pytest.approx(math.log10(result.summary["forget_quality"]))
    final = client.get_run(result.run_id).data.metrics
    for name in ("model_utility", "privleak", "forget_Q_A_ROUGE", "forget_truth_ratio", "extraction_strength"):
        assert final[name] == pytest.approx(result.summary[name]), name
    assert max(m.step for m in client.get_metric_history(result.run_id, "loss")) == 4


def test_params_are_the_values_used_and_eval_runs_have_their_own(mlflow_run, tiny_cfg):
    from unlearn_lab.metrics.suite import parse_metrics

    tracker, result = mlflow_run
    client = tracker.client
    run = client.get_run(result.run_id)
    params = run.data.params
    assert "None" not in params.values(), {k: v for k, v in params.items() if v == "None"}
    plan = make_plan(load_experiment(None, [*TINY, "unlearn.lr=1e-3"]), "run", task_name="ga_tiny")
    assert params["model.target"] == plan.target.spec and params["model.retain"] == plan.retain.spec
    assert params["data.retain_split"] == "retain90" and params["unlearn.schedule_epochs"] == "2"
    assert params["prompt.chat_template"] == "True"  # the embedded tokenizer has a Llama-3-style template
    assert params["unlearn.max_grad_norm"] == "off (no clipping)" and params["device"] == "cpu"
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'")
    for child in children:
        p = child.data.params
        assert p["data.forget_split"] == "forget10" and p["data.holdout_split"] == "holdout10"
        assert p["eval.metrics"].split(",") == list(parse_metrics("default"))
        assert p["eval.max_new_tokens"] == "8" and p["eval.dtype"] == "float32"
        assert p["reference"].startswith("retain model ")
        # the run spans the evaluation itself (seconds on the tiny world), inside its parent's time
        assert child.info.end_time - child.info.start_time > 200, child.info.run_name
        assert run.info.start_time <= child.info.start_time and child.info.end_time <= run.info.end_time
    final = next(c for c in children if c.info.run_name == "eval-final")
    assert final.data.params["model"] == str(result.model_dir.resolve())


def test_experiment_opens_in_the_training_view_and_names_are_unique(mlflow_run):
    tracker, _result = mlflow_run
    experiment = tracker.client.get_experiment(tracker.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "finetuning"
    assert "log10_forget_quality" in experiment.tags["mlflow.note.content"]
    assert tracker.unique_name("ga_tiny") == "ga_tiny-2"  # the module's run holds "ga_tiny"
    assert tracker.unique_name("never-used") == "never-used"


def test_training_curve_shares_the_step_axis():
    from unlearn_lab.plots import training_curve_figure

    steps = [(1, -0.5), (2, -1.0), (3, -2.0), (4, -4.0)]
    evals = {2: {"forget_quality": 1e-10, "model_utility": 0.9}, 4: {"forget_quality": 0.2, "model_utility": 0.5}}
    fig = training_curve_figure(steps, evals, "GA")
    loss_ax, eval_ax, utility_ax = fig.axes
    assert list(loss_ax.get_lines()[0].get_xdata()) == [1, 2, 3, 4]
    assert eval_ax.get_yscale() == "log" and list(eval_ax.get_lines()[0].get_ydata()) == [1e-10, 0.2]
    assert list(eval_ax.get_lines()[0].get_xdata()) == [2, 4] and eval_ax.get_xlim() == loss_ax.get_xlim()
    assert list(utility_ax.get_lines()[0].get_ydata()) == [0.9, 0.5]


def test_default_run_names():
    from unlearn_lab.plan import default_run_name, lr_text

    assert [lr_text(x) for x in (1e-5, 2.5e-4, 0.001, 3e-06, 1.0)] == ["1e-5", "2.5e-4", "1e-3", "3e-6", "1e0"]
    cfg = load_experiment(None, [*TINY, "unlearn.lr=2.5e-4", "unlearn.method=NPO"])
    assert make_plan(cfg, "run").run_name == "NPO-forget10-lr2.5e-4-ep2"
    assert make_plan(cfg, "run", task_name="mine").run_name == "mine"
    assert default_run_name(cfg, prefix="t7-") == "t7-NPO-lr2.5e-4-ep2"


def test_run_names_stay_unique_in_memory():
    from unlearn_lab.tracking.memory import MemoryTracker

    tracker = MemoryTracker()
    names = []
    for _ in range(3):
        names.append(tracker.unique_name("GA-forget10-lr1e-5-ep5"))
        tracker.start_run(names[-1])
    assert names == ["GA-forget10-lr1e-5-ep5", "GA-forget10-lr1e-5-ep5-2", "GA-forget10-lr1e-5-ep5-3"]


def test_forget_probability_drops(mlflow_run, tiny_cfg, prepared):
    """Gradient ascent at lr 1e-3 lowers the forget answer probability of the target model."""
    cfg = load_experiment(None, [*TINY, "eval.metrics=forget_Q_A_Prob"])
    before = evaluate(cfg, "target").summary["forget_Q_A_Prob"]
    assert mlflow_run[1].summary["forget_Q_A_Prob"] < before


def test_diverging_loss_fails_the_run(tiny_cfg, prepared, tmp_path, monkeypatch):
    from unlearn_lab import experiment
    from unlearn_lab.methods import METHODS, LossOutput
    from unlearn_lab.tracking.memory import MemoryTracker
    from unlearn_lab.train import DivergedError

    calls = {"n": 0}
    real = METHODS["GradAscent"]

    def exploding(features, state, **hp):
        calls["n"] += 1
        out = real.loss(features, state, **hp)
        if calls["n"] >= 3:  # the 3rd micro-batch = the first micro-batch of optimizer step 2
            return LossOutput(out.loss * float("nan"), out.forget_loss, None)
        return out

    monkeypatch.setattr(experiment, "get_method", lambda name: dataclasses.replace(real, loss=exploding))
    tracker = MemoryTracker()
    with pytest.raises(DivergedError) as info:
        experiment.run_experiment(
            make_plan(tiny_cfg, "run", task_name="boom", saves=tmp_path),
            tracker,
            experiment.RunOptions(progress=False),
            log=lambda _: None,
        )
    run = next(iter(tracker.runs.values()))
    assert run.status == "FAILED" and info.value.step == 1
    assert run.tags["failed_step"] == "1" and "diverged" in run.tags["failure"]
    assert [s for s, _ in run.metrics["loss"]] == [1]  # the completed step was recorded
    assert not (tmp_path / "unlearn" / "boom").exists()


def test_gradient_accumulation_equivalence(prepared):
    """Batch 8 x accum 1 and batch 2 x accum 4 give the same update when every item has the same token count.

    Each micro-batch loss is its own token mean; with equal counts the mean of four means equals the
    mean over all 8 items, so the accumulated gradient (loss / accum summed) is identical."""
    from unlearn_lab.config import TrainingConfig
    from unlearn_lab.data.prompts import Encoded, collate
    from unlearn_lab.models import load
    from unlearn_lab.train import fit

    gen = torch.Generator().manual_seed(0)
    items = [Encoded(ids, [-100] * 4 + ids[4:], 4) for ids in torch.randint(5, 300, (8, 12), generator=gen).tolist()]
    params = {}
    for batch, accum in ((8, 1), (2, 4)):
        model = load.load_model(prepared.target)
        settings = TrainingConfig(
            lr=1e-3,
            epochs=1,
            batch_size=batch,
            grad_accum=accum,
            weight_decay=0.0,
            warmup_epochs=0.0,
            max_grad_norm=None,
            seed=0,
        )
        batches = lambda epoch, b=batch: [collate(items[i : i + b], 0) for i in range(0, 8, b)]
        fit(model, settings=settings, n_items=8, epoch_batches=batches, loss_fn=lambda m, b, e: m(**b), progress=False)
        params[(batch, accum)] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.allclose(params[(8, 1)], params[(2, 4)], atol=1e-6)


def test_schedule_matches_reference_arithmetic():
    """forget10 (400 rows), 4 per device x 4 accum x 2 GPUs: 50 micro-batches -> 12 steps/epoch, 120, warm-up 12."""
    from unlearn_lab.config import TrainingConfig
    from unlearn_lab.train import Schedule, lr_factor

    s = TrainingConfig(
        lr=1e-5, epochs=10, batch_size=4, grad_accum=4, weight_decay=0.01, warmup_epochs=1.0, max_grad_norm=None, seed=0
    )
    sched = Schedule.of(400, s, processes=2)
    assert (sched.steps_per_epoch, sched.total_steps, sched.warmup_steps) == (12, 120, 12)
    assert Schedule.of(40, s, processes=2).total_steps == 10  # forget01
    assert lr_factor(0, 12, 120) == 0.0 and lr_factor(6, 12, 120) == 0.5 and lr_factor(66, 12, 120) == 0.5
    assert lr_factor(120, 12, 120) == 0.0


def test_torchrun_two_processes_shard_and_track_once(prepared, tmp_path):
    """Two CPU processes (torchrun, gloo): micro-batches are sharded (20 rows / (2 per process x 2) = 5 steps
    per epoch instead of 10), and only rank 0 creates MLflow runs, saves and evaluates."""
    from mlflow.tracking import MlflowClient

    sets = [x for item in [*TINY, "unlearn.batch_size=2", "unlearn.grad_accum=1"] for x in ("--set", item)]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "-m",
        "unlearn_lab.cli",
        "run",
        "--method",
        "GradDiff",
        *sets,
    ]
    env = {**os.environ, "UNLEARN_LAB_THREADS": "1", "MLFLOW_TRACKING_URI": ""}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.count("MLflow run id:") == 1
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("unlearn-lab").experiment_id])
    top = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(top) == 1 and len(runs) == 2 and top[0].info.status == "FINISHED"
    assert len(client.get_metric_history(top[0].info.run_id, "loss")) == 10  # 2 epochs x 5 steps


def test_a_model_the_flavour_cannot_package_is_kept_as_a_folder(tmp_path, monkeypatch):
    """MLflow's transformers flavour failing (an architecture it does not know) must not fail the run."""
    import mlflow.transformers

    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker

    def refuse(**kwargs):
        raise ValueError("unsupported model\nmore detail")

    monkeypatch.setattr(mlflow.transformers, "save_model", refuse)
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "config.json").write_text("{}")
    tracker = MlflowTracker(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = tracker.start_run("r")

    class Config:
        name_or_path = ""

    model = type("M", (), {"config": Config()})()
    assert tracker.log_model(run_id, model, None, saved) is None
    run = tracker.client.get_run(run_id)
    assert run.data.tags["model_logging"].endswith("failed: unsupported model)")
    assert [a.path for a in tracker.client.list_artifacts(run_id, "model")] == ["model/config.json"]


def test_utility_bound_is_an_upper_bound_of_model_utility():
    """model_utility is the harmonic mean of nine parts; with the three ROUGE parts unknown (each <= 1), the bound
    n / (sum 1/x_known + 3) is never below the true value and equals it when every ROUGE is 1."""
    import random

    from unlearn_lab.metrics.functions import MODEL_UTILITY_COMPONENTS, model_utility, utility_bound

    rng = random.Random(0)
    known = [c for c in MODEL_UTILITY_COMPONENTS if not c.endswith("_ROUGE")]
    for _ in range(200):
        parts = {c: rng.uniform(1e-4, 1.0) for c in MODEL_UTILITY_COMPONENTS}
        bound = utility_bound({c: parts[c] for c in known})
        assert model_utility(parts) <= bound + 1e-12
        assert model_utility({**parts, **{c: 1.0 for c in parts if c.endswith("_ROUGE")}}) == pytest.approx(bound)
    # by hand: six parts of 0.5 -> 9 / (6 x 2 + 3) = 0.6; a zero part -> 0
    assert utility_bound(dict.fromkeys(known, 0.5)) == pytest.approx(0.6)
    assert utility_bound({**dict.fromkeys(known, 0.5), known[0]: 0.0}) == 0.0


@pytest.mark.parametrize("eval_every", ["none", "epoch"])
def test_a_collapsed_run_stops_after_the_epoch_and_ends_with_its_evaluation(tiny_cfg, prepared, tmp_path, eval_every):
    """collapse_utility above any reachable utility: training stops after epoch 1 of 2 (half the steps), the run
    says why, and its final evaluation is of the model at epoch 1 (epoch metric 1, at the last step)."""
    from unlearn_lab.experiment import RunOptions, run_experiment
    from unlearn_lab.tracking.memory import MemoryTracker

    tracker = MemoryTracker()
    plan = make_plan(tiny_cfg, "run", task_name=f"collapse-{eval_every}", saves=tmp_path)
    opts = RunOptions(progress=False, eval_every=eval_every, collapse_utility=1.01)
    result = run_experiment(plan, tracker, opts, log=lambda _: None)
    full = plan.steps["unlearn"]
    assert result.stopped_at == 1 and "utility collapsed" in (result.stop_reason or "")
    assert len(result.steps) == full // 2 and result.steps[-1].epoch == 1.0
    run = tracker.runs[result.run_id]
    assert run.status == "FINISHED" and run.tags["stopped_early"].startswith("epoch 1: utility collapsed")
    evals = [r for r in tracker.runs.values() if r.parent_id == result.run_id]
    final = next(r for r in evals if r.name in ("eval-final", "eval-ep1"))
    assert final.metrics["epoch"] == [(full // 2, 1.0)]
    assert (result.eval_dir / "TOFU_EVAL.json").is_file()
    if eval_every == "none":  # the bound needs no generation: the only evaluation is the final one
        assert [r.name for r in evals] == ["eval-final"]


def test_a_healthy_run_is_not_stopped(tiny_cfg, prepared, tmp_path):
    from unlearn_lab.experiment import RunOptions, run_experiment
    from unlearn_lab.tracking.memory import MemoryTracker

    plan = make_plan(tiny_cfg, "run", task_name="healthy", saves=tmp_path)
    result = run_experiment(plan, MemoryTracker(), RunOptions(progress=False, collapse_utility=0.0), log=print)
    assert result.stopped_at is None and len(result.steps) == plan.steps["unlearn"]


@pytest.mark.parametrize("tty", [False, True])
def test_progress_bar_only_on_a_terminal(monkeypatch, tty):
    """A training bar is drawn on a terminal; a log file (stderr not a TTY) gets none, and TQDM_DISABLE=1 turns
    it off on a terminal too."""
    import io

    from unlearn_lab.config import TrainingConfig
    from unlearn_lab.train import fit

    class Stream(io.StringIO):
        def isatty(self):
            return tty

    settings = TrainingConfig(
        lr=1e-3, epochs=1, batch_size=1, grad_accum=1, weight_decay=0.0, warmup_epochs=0.0, max_grad_norm=None, seed=0
    )

    def loss_fn(m, b, e):
        return SimpleNamespace(loss=m(b).pow(2).mean())

    def bar_drawn(env_disable: str | None) -> bool:
        stream = Stream()
        monkeypatch.setattr(sys, "stderr", stream)
        if env_disable is None:
            monkeypatch.delenv("TQDM_DISABLE", raising=False)
        else:
            monkeypatch.setenv("TQDM_DISABLE", env_disable)
        batches = [torch.ones(1, 2)] * 2
        fit(torch.nn.Linear(2, 1), settings=settings, n_items=2, epoch_batches=lambda e: batches, loss_fn=loss_fn)
        return "it/s" in stream.getvalue()

    assert bar_drawn(None) is tty
    assert bar_drawn("1") is False
