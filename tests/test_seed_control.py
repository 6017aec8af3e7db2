"""One seed decides a run: the same unlearn.seed reproduces a run bit for bit, another seed changes it, and each
random source the seed covers is shown to follow it (data order, retain partners, "I don't know" answers, RMU's
direction, dropout through torch's global generator). A repeated run (`run --seeds`) on the tiny world: one parent,
a nested run per seed, and aggregates equal to an independent computation over the seeds' own summaries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import TINY, make_plan
from unlearn_lab.config import load_experiment
from unlearn_lab.experiment import RunOptions, run_experiment
from unlearn_lab.tracking.memory import MemoryTracker

RUN = [*TINY, "unlearn.epochs=1", "unlearn.lr=1e-3", "unlearn.grad_accum=1", "eval.metrics=forget_Q_A_Prob"]


def one_run(tmp_path: Path, method: str, seed: int, *sets: str, task: str | None = None) -> tuple[list[float], dict]:
    """(every step's loss, the saved weights) of one run."""
    cfg = load_experiment(None, [*RUN, f"unlearn.method={method}", f"unlearn.seed={seed}", *sets])
    plan = make_plan(cfg, task_name=task or f"{method}-{seed}-{len(list(tmp_path.iterdir()))}", saves=tmp_path)
    result = run_experiment(plan, MemoryTracker(), RunOptions(progress=False), log=lambda _: None)
    return [s.loss for s in result.steps], load_file(str(result.model_dir / "model.safetensors"))


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_same_seed_reproduces_a_run_bit_for_bit_and_another_seed_does_not(tmp_path, prepared):
    """GradDiff draws the forget order and each forget row's retain partner from the seed. Between the two runs of
    seed 3, torch's global generator is disturbed: the run seeds it itself, so nothing changes."""
    losses, weights = one_run(tmp_path, "GradDiff", 3)
    torch.manual_seed(12345)
    torch.rand(7)
    again_losses, again_weights = one_run(tmp_path, "GradDiff", 3)
    assert losses == again_losses and same(weights, again_weights)
    other_losses, other_weights = one_run(tmp_path, "GradDiff", 4)
    assert other_losses != losses and not same(weights, other_weights)


def batches(method: str, seed: int) -> list[dict]:
    """One epoch's micro-batches of the tiny world's forget set (the method decides which partners are drawn)."""
    from unlearn_lab.benchmarks.tofu import TOFU
    from unlearn_lab.data.tofu import SyntheticSource
    from unlearn_lab.methods import get_method

    cfg = load_experiment(None, RUN)
    source = SyntheticSource(10, seed=0)
    from unlearn_lab.models import tiny

    world = source.world
    texts = [qa["question"] + " " + qa["answer"] for a in world["authors"] for qa in a]
    tokenizer = tiny.train_tokenizer(texts + tiny.template_corpus("You are a helpful assistant.", "10 Apr 2025"), 300)
    spec = get_method(method)
    data = TOFU.unlearn_data(TOFU.resolve(cfg), source, tokenizer, spec)  # forget10, retain90, idk for IdkDPO
    return list(data.epoch_batches(4, torch.Generator().manual_seed(seed), spec))


@pytest.mark.parametrize("part", ["forget", "retain", "alternate"])
def test_the_seed_decides_order_partners_and_idk_answers(part):
    """The forget order (every method), the retain partners (GradDiff) and the "I don't know" answers (IdkDPO) are
    drawn from the run's generator: equal for equal seeds, different for another seed."""
    method = "IdkDPO"  # needs retain partners and idk answers
    ids = lambda seed: [b[part]["input_ids"].tolist() for b in batches(method, seed)]
    assert ids(0) == ids(0) and ids(0) != ids(1)


def test_the_seed_decides_rmus_direction():
    from unlearn_lab.methods import get_method

    init = get_method("RMU").init_state
    assert init is not None
    draw = lambda seed: init({}, hidden_size=16, generator=torch.Generator().manual_seed(seed))["control_vector"]
    assert torch.equal(draw(5), draw(5)) and not torch.equal(draw(5), draw(6))
    assert float(draw(5).norm()) == pytest.approx(1.0)


@pytest.mark.slow
def test_the_seed_decides_dropout(tmp_path, prepared):
    """A target with attention dropout 0.5. Dropout is random (two forward passes in train mode under different
    states of torch's global generator differ), yet two runs of seed 1 give the same weights although the global
    generator was used in between: the run seeds it (train() calls torch.manual_seed(unlearn.seed))."""
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "dropout-target"
    shutil.copytree(prepared.target, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "attention_dropout": 0.5}))
    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").train()
    ids = torch.arange(1, 30)[None]
    torch.manual_seed(0)
    a = model(input_ids=ids).logits
    torch.manual_seed(1)
    assert not torch.equal(a, model(input_ids=ids).logits)  # dropout draws from the global generator
    _, first = one_run(tmp_path, "GradAscent", 1, f"model.target={folder}")
    torch.manual_seed(999)
    torch.rand(11)
    _, again = one_run(tmp_path, "GradAscent", 1, f"model.target={folder}")
    assert same(first, again)


@pytest.mark.slow
def test_a_repeated_run_is_one_parent_with_a_run_per_seed(tmp_path, prepared):
    """`run --seeds 0,1,2` in process: a parent run (kind repeated, no model) with three nested runs, each a full
    run with its own nested evaluation; the parent's aggregates equal numpy's over the seeds' own summaries
    (forget_quality on log10, sd with n - 1); SEEDS_SUMMARY.json holds the per-seed values; the shared retain
    reference is computed once."""
    from unlearn_lab.repeated import run_repeated

    cfg = load_experiment(None, [*TINY, "unlearn.epochs=1", "eval.metrics=forget_quality,model_utility,privleak"])
    plan = make_plan(cfg, saves=tmp_path, seeds=(0, 1, 2))
    tracker = MemoryTracker()
    messages: list[str] = []
    result = run_repeated(plan, tracker, RunOptions(progress=False), log=messages.append)
    parent = tracker.runs[result.run_id]
    assert parent.tags["kind"] == "repeated" and parent.tags["seeds"] == "0,1,2" and parent.status == "FINISHED"
    assert parent.params["unlearn.seed"] == "0,1,2" and "model_id" not in parent.tags
    children = tracker.children(result.run_id)
    assert [tracker.runs[c].tags["seed"] for c in children] == ["0", "1", "2"]
    for child, seed in zip(children, (0, 1, 2), strict=True):
        run = tracker.runs[child]
        assert run.params["unlearn.seed"] == seed and run.name.endswith(f"-seed{seed}")
        assert [tracker.runs[e].name for e in tracker.children(child)] == ["eval-final"]
    summaries = [r.summary for r in result.runs]
    logged = {k: v[-1][1] for k, v in parent.metrics.items()}
    fq = np.log10([s["forget_quality"] for s in summaries])
    mu = np.array([s["model_utility"] for s in summaries])
    assert logged["log10_forget_quality.mean"] == pytest.approx(fq.mean())
    assert logged["log10_forget_quality.sd"] == pytest.approx(fq.std(ddof=1))
    assert logged["forget_quality"] == pytest.approx(10 ** fq.mean())
    assert logged["model_utility.sd"] == pytest.approx(mu.std(ddof=1), abs=1e-12)
    assert (logged["model_utility.min"], logged["model_utility.max"]) == (mu.min(), mu.max())
    stored = json.loads(result.summary_path.read_text())
    assert stored["seeds"] == [0, 1, 2] and set(stored["per_seed"]) == {"0", "1", "2"}
    assert stored["per_seed"]["1"]["model_utility"] == summaries[1]["model_utility"]
    assert sum("computing the retain reference" in m for m in messages) <= 1
    assert len({str(r.model_dir) for r in result.runs}) == 3  # each seed its own saved model


def test_seeded_plans_name_their_runs_and_folders(tmp_path):
    cfg = load_experiment(None, TINY)
    plan = make_plan(cfg, saves=tmp_path, seeds=(0, 1))
    seeded = plan.with_seed(1)
    assert seeded.cfg.unlearn.seed == 1 and seeded.seeds == ()
    assert seeded.task_name != plan.task_name and seeded.save_dir.parent == plan.save_dir.parent
    assert seeded.run_name == f"{plan.run_name}-seed1"
    named = make_plan(cfg, saves=tmp_path, task_name="mine", seeds=(0, 1)).with_seed(1)
    assert named.task_name == "mine_seed1" and named.eval_dir.name == "mine_seed1"
