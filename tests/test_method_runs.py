"""Every method of the METHODS table through the project's real path, one epoch on the tiny embedded world:
plan -> run_experiment -> UnlearnData batches -> FeatureMaker (RMU's hidden states included) -> the method's loss
-> the shared loop -> saved model -> nested evaluation, tracked by the in-memory tracker.

Each method gets the same run-level checks (finite logged losses, changed weights, a nested evaluation run with
metrics and TOFU_EVAL.json) and one behaviour of its own, measured here with plain forward passes of the target
(start) model and the saved model; the expected direction of each is derived from the method's loss in its check.

Settings: 20 forget rows, batch 4, grad_accum 1, no warm-up -> 5 optimizer steps, one micro-batch each, at lr
1e-3 decaying linearly (factors 1, .8, .6, .4, .2); the evaluation computes forget_Q_A_Prob only (no generation,
no retain reference). With grad_accum 1 every logged value is one micro-batch's, so step 1 is the start model's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import TINY, make_plan
from unlearn_lab.methods import METHODS, MethodSpec

RUN = [
    *TINY,
    "unlearn.epochs=1",
    "unlearn.lr=1e-3",
    "unlearn.grad_accum=1",
    "unlearn.warmup_epochs=0",
    "eval.metrics=forget_Q_A_Prob",
]
STEPS = 5  # ceil(20 forget rows / batch 4) micro-batches // grad_accum 1

# The tiny target's answer tokens are improbable (pooled forget NLL ≈ 4.9 nats, p ≈ 0.007), which silences some
# forget terms at their TOFU defaults: SimNPO's −(2/β)·log σ(β·l) has slope 2σ(−β·l) ≈ 2σ(−22) ≈ 5e-10 at β = 4.5,
# SatImp's weights p^5·(1 − p) are ≈ 2e-11, WGA's p ≈ 0.007 leaves its forget term far below the retain NLL's
# gradient at α = 1. These settings make each method's own forget term the one that moves the model (α = 0: no
# retain descent), so its direction can be checked; the other methods run at their defaults.
OVERRIDES: dict[str, dict[str, Any]] = {
    "SimNPO": {"alpha": 0, "beta": 0.5},
    "WGA": {"alpha": 0},
    "SatImp": {"alpha": 0, "beta1": 1},
    "PDU": {"dual_warmup_epochs": 0},  # the dual ascent starts with the first micro-batch
}


@dataclass
class Ran:
    """One finished run, with what the method's state looked like along the way."""

    name: str
    plan: Any
    result: Any
    tracker: Any
    initial_state: dict = field(default_factory=dict)  # what init_state returned
    states: list[dict] = field(default_factory=list)  # the state each micro-batch's loss was computed with

    @property
    def metrics(self) -> dict[str, list[tuple[int | None, float]]]:
        return self.tracker.runs[self.result.run_id].metrics

    def logged(self, key: str) -> list[float]:
        return [value for _, value in self.metrics[key]]


def spied(name: str, ran: Ran) -> MethodSpec:
    """METHODS[name] with init_state / update_state recording the state (the loss itself is untouched)."""
    spec = METHODS[name]
    changes: dict[str, Callable[..., dict]] = {}
    if spec.init_state is not None:
        init = spec.init_state

        def init_state(hp: dict, **kw: Any) -> dict:
            ran.initial_state = init(hp, **kw)
            return ran.initial_state

        changes["init_state"] = init_state
    if spec.update_state is not None:
        update = spec.update_state

        def update_state(state: dict, out: Any, hp: dict, **kw: Any) -> dict:
            ran.states.append(dict(state))
            return update(state, out, hp, **kw)

        changes["update_state"] = update_state
    return dataclasses.replace(spec, **changes)


@pytest.fixture(scope="module")
def run_method(prepared: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Ran]:
    """name -> its run (memoised: GradDiff and IdkDPO compare against the GradAscent run)."""
    from unlearn_lab.config import load_experiment
    from unlearn_lab.experiment import RunOptions, run_experiment
    from unlearn_lab.tracking.memory import MemoryTracker

    saves, done = tmp_path_factory.mktemp("method_runs"), {}

    def run(name: str) -> Ran:
        if name not in done:
            args = [f"unlearn.method_args.{k}={v}" for k, v in OVERRIDES.get(name, {}).items()]
            cfg = load_experiment(None, [*RUN, f"unlearn.method={name}", *args])
            plan = make_plan(cfg, "run", task_name=f"{name}-1ep", saves=saves)
            assert plan.target.spec == prepared.target  # the session's prepared model, not a new one
            ran = Ran(name, plan, None, MemoryTracker())
            with pytest.MonkeyPatch.context() as mp:
                mp.setitem(METHODS, name, spied(name, ran))
                options = RunOptions(progress=False, eval_every="none")
                ran.result = run_experiment(plan, ran.tracker, options, log=lambda _: None)
            done[name] = ran
        return done[name]

    return run


# --- independent measurements: plain forward passes, log-softmax and gather -------------------------------------


@pytest.fixture(scope="module")
def probe(prepared: SimpleNamespace) -> SimpleNamespace:
    """The encoded forget rows, retain rows and "I don't know" answers to the forget questions, the pad id, and the
    target model (the start of every run)."""
    from unlearn_lab.data import prompts
    from unlearn_lab.models import load

    cfg = prepared.plan.cfg  # resolved: forget10 / retain90
    tok, source = load.load_tokenizer(prepared.target), prepared.plan.source
    forget, retain = source.load(cfg.data.forget_split), source.load(cfg.data.retain_split)
    enc = lambda q, a: prompts.encode_qa(tok, q, a, cfg.prompt)
    idk = [row["answer"] for row in source.load("idk")][:4]  # IdkDPO draws from all of them uniformly
    return SimpleNamespace(
        pad=prompts.pad_id(tok, cfg.prompt),
        forget=[enc(r["question"], r["answer"]) for r in forget],
        retain=[enc(r["question"], r["answer"]) for r in retain],
        idk=[[enc(r["question"], a) for r in forget] for a in idk],  # idk[j][i]: idk answer j to forget question i
        target=load.load_model(prepared.target),
    )


def forward(model: Any, items: list, pad: int, *, hidden_layer: int | None = None) -> tuple[torch.Tensor, ...]:
    """(sequence log-prob sums (B,), supervised-token counts (B,), hidden after block `hidden_layer`, labels)."""
    from unlearn_lab.data.prompts import collate

    batch = collate(items, pad)
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    logp = torch.log_softmax(out.logits[:, :-1].float(), dim=-1)
    target = batch["labels"][:, 1:]
    mask = target != -100
    token = logp.gather(-1, target.clamp_min(0).unsqueeze(-1)).squeeze(-1) * mask
    hidden = out.hidden_states[hidden_layer + 1] if hidden_layer is not None else None  # [0] = embeddings
    return token.sum(dim=1), mask.sum(dim=1), hidden, batch["labels"]


def pooled_nll(model: Any, items: list, pad: int) -> float:
    """Mean token NLL over all supervised tokens of `items` (the HF loss on one batch of all of them)."""
    logp, count, _, _ = forward(model, items, pad)
    return float(-logp.sum() / count.sum())


def saved_model(ran: Ran) -> Any:
    from unlearn_lab.models import load

    return load.load_model(str(ran.result.model_dir))


def assert_forget_nll_rises(ran: Ran, probe: SimpleNamespace) -> None:
    before = pooled_nll(probe.target, probe.forget, probe.pad)
    after = pooled_nll(saved_model(ran), probe.forget, probe.pad)
    assert after > before + 1e-3, f"{ran.name}: forget NLL {before:.4f} -> {after:.4f}"


# --- each method's own behaviour -----------------------------------------------------------------------------------


def check_grad_ascent(ran: Ran, probe: SimpleNamespace, run_method: Callable[[str], Ran]) -> None:
    """L = −NLL_f: every step climbs the forget NLL."""
    assert_forget_nll_rises(ran, probe)


def check_grad_diff(ran: Ran, probe: SimpleNamespace, run_method: Callable[[str], Ran]) -> None:
    """L = −NLL_f + α·NLL_r: same lr, data order and forget term as GradAscent, plus descent on retain rows, so the
    retain NLL (all retain90 rows) ends closer to its start than under GradAscent, while the forget NLL still rises."""
    start = pooled_nll(probe.target, probe.retain, probe.pad)
    diff = pooled_nll(saved_model(ran), probe.retain, probe.pad)
    ascent = pooled_nll(saved_model(run_method("GradAscent")), probe.retain, probe.pad)
    assert abs(diff - start) < abs(ascent - start), (start, diff, ascent)
    assert_forget_nll_rises(ran, probe)


def check_npo(ran: Ran, probe: SimpleNamespace, run_method: Callable[[str], Ran]) -> None:
    """The reference is the start model, so on the first micro-batch log π_θ − log π_ref = 0 for every row and
    L_f = −(2/β)·log σ(0) = (2/β)·ln 2 = 20·ln 2 at β = 0.1; then the forget NLL rises."""
    assert ran.logged("forget_loss")[0] == pytest.approx(2 * math.log(2) / 0.1, rel=1e-5)
    assert_forget_nll_rises(ran, probe)


def check_simnpo(ran: Ran, probe: SimpleNamespace, run_method: Callable[[str], Ran]) -> None:
    """L_f = −(2/β)·mean log σ(β·(S/|y| − δ)) decreases in each row's average NLL: descending it raises the NLL."""
    assert_forget_nll_rises(ran, probe)


def idk_margin(model: Any, probe: SimpleNamespace) -> tuple[float, float]:
    """(mean over forget questions of log π(idk) averaged over the idk answers, mean of log π(idk) − log π(answer))."""
    answer, _, _, _ = forward(model, probe.forget, probe.pad)
    idk = torch.stack([forward(model, items, probe.pad)[0] for items in probe.idk]).mean(dim=0)  # (rows,)
    return float(idk.mean()), float((idk - answer).mean())


def check_idk_dpo(ran: Ran, probe: SimpleNamespace, run_method: Callable[[str], Ran]) -> None:
    """Win = an "I don't know" answer, lose = the forget answer: L_f = −(2/β)·mean log σ(β·(Δ_win − Δ_lose)) is
    (2/β)·ln 2 on the first micro-batch (reference = start model) and training raises log π(idk) − log π(answer).
    Unlike plain ascent, it pulls the idk answers up too: their log-probability ends above GradAscent's."""
    assert ran.logged("forget_loss")[0] == pytest.approx(2 * math.log(2) / 0.1, rel=1e-5)
    saved = saved_model(ran)
    _, before = idk_margin(probe.target, probe)
    idk_after, after = idk_margin(saved, probe)
    assert after > before + 0.1, (before, after)
    idk_ascent, _ = idk_margin(saved_model(run_method("GradAscent")), probe)
    assert idk_after > idk_ascent, (idk_after, idk_ascent)


def control_distance(model: Any, probe: SimpleNamespace, layer: int, target: torch.Tensor) -> float:
    """Mean over forget rows of the mean over supervised (unshifted) positions of mean_d (h − target)²."""
    _, _, hidden, labels = forward(model, probe.forget, probe.pad, hidden_layer=layer)
    mask = (labels != -100).float()
    sq = (hidden - target).pow(2).mean(dim=-1)
    return float(((sq * mask).sum(dim=1) / mask.sum(dim=1)).mean())


def check_rmu(ran: Ran, probe: SimpleNamespace, run_method: Callable[[str], Ran]) -> None:
    """The state holds u ~ U[0,1)^d, u/‖u‖, at the model's hidden size, and it stays fixed. Layer None means
    num_layers // 2 − 1 = 0 here; the forget rows' activations after that block move toward c·u (c = 2), and the
    EMBED_DIFF retain term is 0 on the first micro-batch, where the model is still the reference."""
    u = ran.initial_state["control_vector"]
    hidden_size, layers = probe.target.config.hidden_size, probe.target.config.num_hidden_layers
    assert u.shape == (hidden_size,) and (u >= 0).all() and u.norm().item() == pytest.approx(1.0, rel=1e-6)
    assert not ran.states  # RMU has no update_state: u is drawn once
    layer = layers // 2 - 1
    before = control_distance(probe.target, probe, layer, 2.0 * u)
    after = control_distance(saved_model(ran), probe, layer, 2.0 * u)
    assert after < before - 1e-3, (before, after)
    assert ran.logged("retain_loss")[0] == pytest.approx(0.0, abs=1e-9)


def check_pdu(ran: Ran, probe: SimpleNamespace, run_method: Callable[[str], Ran]) -> None:
    """Each logged loss is γ·L_f + λ_k·(L_r − ε) (γ = 1, ε = 0.3) with λ_1 = α = 1 and, warm-up 0,
    λ_{k+1} = max(0, λ_k + η·(L_r,k − ε)) (η = 1), recomputed here from the logged L_r; the λ the run used (its
    state) agrees, and it moved: the tiny model's retain NLL (≈ 4.9) is far above ε."""
    loss, forget, retain = ran.logged("loss"), ran.logged("forget_loss"), ran.logged("retain_loss")
    assert len(ran.states) == STEPS  # one dual update per micro-batch
    lam = 1.0
    for k in range(STEPS):
        assert loss[k] == pytest.approx(forget[k] + lam * (retain[k] - 0.3), rel=1e-5), k
        assert ran.states[k]["lam"] == pytest.approx(lam, rel=1e-6), k
        lam = max(0.0, lam + (retain[k] - 0.3))
    assert all(state["lam"] > 1.0 for state in ran.states[1:])  # it moved from α, upwards since L_r > ε


BEHAVIOUR: dict[str, Callable[[Ran, SimpleNamespace, Callable[[str], Ran]], None]] = {
    "GradAscent": check_grad_ascent,
    "GradDiff": check_grad_diff,
    "NPO": check_npo,
    "SimNPO": check_simnpo,
    "IdkDPO": check_idk_dpo,
    "RMU": check_rmu,
    "UNDIAL": lambda ran, probe, _: assert_forget_nll_rises(ran, probe),  # q pushes the label token down by β
    "WGA": lambda ran, probe, _: assert_forget_nll_rises(ran, probe),  # −mean sg(p)^β·l: weighted ascent
    "SatImp": lambda ran, probe, _: assert_forget_nll_rises(ran, probe),  # −mean sg(p^β₁(1−p)^β₂)·l
    "CE-U": lambda ran, probe, _: assert_forget_nll_rises(ran, probe),  # CE to q with the true token removed
    "PDU": check_pdu,
}


def test_every_method_has_a_behaviour_check() -> None:
    assert set(BEHAVIOUR) == set(METHODS), "give each new method a behaviour check in BEHAVIOUR"


def assert_run_recorded(ran: Ran, prepared: SimpleNamespace) -> None:
    """Finite per-step losses for the 5 steps, changed weights, one finished nested evaluation with metrics."""
    spec, tracker, result = METHODS[ran.name], ran.tracker, ran.result
    assert tracker.runs[result.run_id].status == "FINISHED"
    assert [step for step, _ in ran.metrics["loss"]] == list(range(1, STEPS + 1))
    assert ("retain_loss" in ran.metrics) == spec.needs_retain
    for key in {"loss", "forget_loss", "retain_loss"} & set(ran.metrics):
        assert all(math.isfinite(v) for v in ran.logged(key)), key
    saved = load_file(str(result.model_dir / "model.safetensors"))
    start = load_file(str(Path(prepared.target) / "model.safetensors"))
    assert set(saved) == set(start) and any(not torch.equal(saved[k], start[k]) for k in start)
    (child,) = tracker.children(result.run_id)
    evaluation = tracker.runs[child]
    assert evaluation.name == "eval-final" and evaluation.status == "FINISHED"
    assert math.isfinite(evaluation.metrics["forget_Q_A_Prob"][-1][1])
    assert (result.eval_dir / "TOFU_EVAL.json").is_file() and "TOFU_EVAL.json" in evaluation.artifacts


@pytest.mark.slow
@pytest.mark.parametrize("name", list(METHODS))
def test_method_runs_end_to_end(
    name: str, run_method: Callable[[str], Ran], probe: SimpleNamespace, prepared: SimpleNamespace
) -> None:
    ran = run_method(name)
    assert_run_recorded(ran, prepared)
    BEHAVIOUR[name](ran, probe, run_method)
