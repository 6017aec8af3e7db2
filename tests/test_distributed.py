"""Several processes on the CPU (torchrun, gloo): what several GPUs need, without a GPU (issue 24, point 3).

Each multi-process case runs a helper script of tests/dist_scripts/ under torchrun with a hard timeout, so a
regression that deadlocks fails here instead of hanging CI. Before the fixes, RMU under DDP exited with "Expected
to have finished reduction in the prior iteration", three processes on 5 micro-batches hung, rank 1 trained on
after rank 0 stopped early (hang), and every micro-batch all-reduced its gradients. The memory-release tests run
in this process: the trained model, its optimizer and the evaluation copy are freed by reference counting alone.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from tests.conftest import TINY, make_plan

SCRIPTS = Path(__file__).resolve().parent / "dist_scripts"
TIMEOUT_S = 240  # each case takes 10-30 s on 2 busy cores; a deadlock waits here, not for gloo's 30 minutes


def torchrun(processes: int, script: str, *args: str, cwd: Path, cache: str | None = None) -> list[dict]:
    """`torchrun --standalone` (a free port: other test runs on this machine may be using the default one) of a
    helper script; returns the JSON lines its ranks wrote, rank 0's first."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    results = cwd / "results"
    results.mkdir()
    env = {**os.environ, "UNLEARN_LAB_THREADS": "1", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    env["DIST_RESULTS"] = str(results)
    if cache is not None:
        env["UNLEARN_LAB_CACHE"] = cache
    proc = subprocess.Popen(
        [*cmd, str(SCRIPTS / script), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so a hang is ended with every rank, not only torchrun
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{script} with {processes} processes hung for {TIMEOUT_S} s:\n{out[-2000:]}\n{err[-3000:]}")
    assert proc.returncode == 0, out[-2000:] + err[-4000:]
    files = sorted(results.glob("rank*.jsonl"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


# ------------------------------------------------------------------------------------- the shared loop's agreements


def test_sync_once_per_step_early_stop_and_divergence_agreed_by_every_rank(tmp_path):
    """Two processes through `fit` on a two-parameter model (tests/dist_scripts/decisions.py)."""
    rows = torchrun(2, "decisions.py", cwd=tmp_path)
    by_case = {(r["case"], r["rank"]): r for r in rows}
    assert len(by_case) == 6, rows
    for rank in (0, 1):
        # batch 1 x accumulation 3: DDP's hook fires only in the micro-batch that ends a window, never before
        assert by_case["sync", rank]["fired"] == [3, 6] and by_case["sync", rank]["steps"] == [1, 2]
        # rank 0 alone asks to stop after epoch 1 of 3: both ranks stop there (2 steps of 6)
        assert by_case["stop", rank]["steps"] == [1, 2] and by_case["stop", rank]["micro"] == 2
        # rank 1's third micro-batch is NaN (window 2): both ranks raise at step 1, before that step's update
        assert by_case["diverge", rank]["diverged"] == {"step": 1, "value": "nan"}
        assert by_case["diverge", rank]["steps"] == [1] and by_case["diverge", rank]["micro"] == 4


# ---------------------------------------------------------------------------------- runs through run_experiment


@pytest.mark.slow
def test_prepare_then_rmu_with_two_processes(prepared, tmp_path):
    """prepare under two processes builds what one process builds (rank 0 trains alone: same keys, steps and
    losses; the other rank waits), then RMU trains under DDP (its loss reads layer 0's hidden state: the later
    layers get no gradient) with a per-epoch evaluation on rank 0 while rank 1 waits at a barrier."""
    from unlearn_lab.train import Schedule

    cache = tmp_path / "cache"
    base = Path(prepared.plan.base.spec)
    shutil.copytree(base, cache / "models" / base.name)  # target and retain are built by the two processes
    sets = ["unlearn.method=RMU", "eval.metrics=forget_quality"]  # forget_quality: rank 0 computes the reference
    rows = torchrun(2, "runs.py", str(tmp_path / "saves"), "epoch", *sets, cwd=tmp_path, cache=str(cache))
    assert len(rows) == 2 and all(r["processes"] == 2 for r in rows)
    plan = make_plan(prepared.plan.cfg)
    steps = Schedule.of(20, plan.cfg.unlearn, processes=2).total_steps  # 20 rows, 10 per rank: 3 micro, 1 step
    assert all(r["steps"] == list(range(1, steps + 1)) for r in rows)
    main = next(r for r in rows if r["summary"])
    assert set(main["summary"]) == {"forget_quality"} and main["epochs_evaluated"] == [1, 2]
    for role, spec in (("target", prepared.target), ("retain", prepared.retain)):
        assert Path(main[role]).name == Path(spec).name  # the one-process cache key
        built = json.loads((Path(main[role]) / "unlearn_lab.json").read_text())
        alone = json.loads((Path(spec) / "unlearn_lab.json").read_text())
        assert built["steps"] == alone["steps"] and built["final_loss"] == pytest.approx(alone["final_loss"], 1e-4)
    assert sorted(p.name for p in (cache / "models").iterdir()) == sorted(
        Path(s).name for s in (base, prepared.target, prepared.retain)
    )  # no half-written folder left by a second writer


@pytest.mark.slow
def test_uneven_shards_with_three_processes(prepared, tmp_path):
    """20 forget rows in batches of 4 are 5 micro-batches: 2, 2 and 1 per rank dealt as batches (rank 2 reached
    the end of the epoch while the others all-reduced: a hang). Dealt as rows (padded to 21), every rank runs 2."""
    from unlearn_lab.train import Schedule

    sets = ["unlearn.method=GradAscent", "unlearn.grad_accum=1", "eval.metrics=forget_Q_A_Prob"]
    rows = torchrun(3, "runs.py", str(tmp_path / "saves"), "none", *sets, cwd=tmp_path)
    cfg = make_plan(prepared.plan.cfg).cfg
    steps = Schedule.of(20, cfg.unlearn.__class__(**{**cfg.unlearn.__dict__, "grad_accum": 1}), 3).total_steps
    assert steps == 4 and len(rows) == 3
    assert all(r["steps"] == [1, 2, 3, 4] for r in rows)
    assert sum(bool(r["summary"]) for r in rows) == 1  # rank 0 alone evaluates


# ----------------------------------------------------------------------------------------------- pieces, in-process


def test_shard_deals_padded_rows_like_distributed_sampler():
    from unlearn_lab.distributed import shard

    order = [7, 3, 9, 1, 0]
    assert shard(order, 0, 1) == order  # one process: untouched
    parts = [shard(order, r, 3) for r in range(3)]
    assert parts == [[7, 1], [3, 0], [9, 7]]  # padded with the first row, then every third from the rank
    assert {len(p) for p in [shard(list(range(n)), r, 4) for n in (1, 5, 8, 11) for r in range(4)]} <= {1, 2, 3}
    for n in (1, 2, 5, 8, 11):
        deals = [shard(list(range(n)), r, 4) for r in range(4)]
        assert len({len(d) for d in deals}) == 1 and set().union(*deals) == set(range(n))
    assert shard([], 1, 2) == []


def test_one_process_agreements_are_the_values_themselves():
    from unlearn_lab import distributed

    assert distributed.first_flagged(None, (1.0, 2.0)) == (1.0, 2.0) and distributed.first_flagged(None, None) is None
    assert distributed.main_decides(None, True) is True and distributed.processes(None) == 1
    distributed.wait_for_main(None)


def test_process_group_timeout_and_ddp_options(monkeypatch):
    from unlearn_lab import runtime

    monkeypatch.delenv("UNLEARN_LAB_DIST_TIMEOUT", raising=False)
    assert runtime.dist_timeout_s() == runtime.DIST_TIMEOUT_S >= 3600
    monkeypatch.setenv("UNLEARN_LAB_DIST_TIMEOUT", "90")
    acc = runtime.make_accelerator("cpu", find_unused=True)
    assert acc.init_handler.timeout.total_seconds() == 90 and acc.ddp_handler.find_unused_parameters
    assert acc.mixed_precision == "no"  # autocast is applied by the training code, never by wrapping forward
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert runtime.launched_processes() == 3


# ------------------------------------------------------------------------------------------------ memory release


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")  # the GPU's autocast policy on this CPU
def test_trained_model_optimizer_and_eval_copy_are_freed_without_the_cycle_collector(prepared, tmp_path, monkeypatch):
    """NPO (a frozen reference copy) with a bf16 evaluation (an evaluation copy): AdamW's state and the reference
    are gone when training returns (before saving), the evaluation copy when its evaluation returns, and the
    trained model when the run returns, all by reference counting (the cycle collector is off). The trained
    model's `forward` is its class's own, also under the bf16 policy: no autocast wrapper that evaluation copies
    would inherit (and whose bound method made a reference cycle)."""
    from unlearn_lab import evaluation, experiment, plots, runtime, train, unlearn
    from unlearn_lab.config import load_experiment
    from unlearn_lab.tracking.memory import MemoryTracker

    refs: dict[str, list[weakref.ref]] = {"model": [], "optimizer": [], "reference": [], "view": []}
    checks: dict[str, bool] = {}

    def spy(module, name, key, pick=lambda out: out):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            out = real(*args, **kwargs)
            refs[key].append(weakref.ref(pick(out)))
            return out

        monkeypatch.setattr(module, name, wrapper)

    spy(experiment.load, "load_model", "model")
    spy(train, "build_optimizer", "optimizer")
    spy(evaluation, "eval_view", "view")
    real_init = unlearn.FeatureMaker.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        refs["reference"].append(weakref.ref(self.reference))

    monkeypatch.setattr(unlearn.FeatureMaker, "__init__", init)
    real_save = experiment.save_and_log_model

    def save(plan, model, *args):
        checks["own forward"] = "forward" not in vars(model)
        checks["optimizer freed before saving"] = refs["optimizer"][0]() is None
        checks["reference freed before saving"] = refs["reference"][0]() is None
        return real_save(plan, model, *args)

    monkeypatch.setattr(experiment, "save_and_log_model", save)
    sets = [*TINY, "unlearn.method=NPO", "model.dtype=bfloat16", "eval.metrics=forget_Q_A_Prob"]
    plan = make_plan(load_experiment(None, sets), saves=tmp_path / "saves")
    # matplotlib's first import (the training curve) leaves a reference cycle through the importing frames, and so
    # through run_experiment's: a one-time artefact of that import (the cycle collector frees it), not of training
    plots.save_figure(plots.training_curve_figure([], {}, ""), tmp_path / "warm-up.png")
    # where bf16 autocast applies (a GPU with bf16), accelerate used to wrap `forward`; on this CPU torch.autocast
    # for CUDA only warns and does nothing, so the run is the CPU's, with the GPU's policy
    monkeypatch.setattr(runtime, "bf16_autocast", lambda device: True)
    gc.collect()
    gc.disable()
    try:
        experiment.run_experiment(plan, MemoryTracker(), experiment.RunOptions(progress=False), log=lambda _: None)
        alive = {key: [r() is not None for r in found] for key, found in refs.items()}
    finally:
        gc.enable()
    assert checks == dict.fromkeys(checks, True) and len(checks) == 3, checks
    assert alive == {"model": [False], "optimizer": [False], "reference": [False], "view": [False]}, alive
