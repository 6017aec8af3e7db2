"""Tests for unlearn_lab.methods: hand-derived loss values, invariants, registry errors, tiny-model smoke runs.

Expected values are derived in the docstrings (math module / plain torch ops), never by calling the helpers under test.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from unlearn_lab.methods import (
    METHODS,
    Features,
    LossOutput,
    MethodSpec,
    Side,
    get_method,
    reference_sides,
    requires_reference,
    validate_hyperparams,
)
from unlearn_lab.methods.common import preference_loss
from unlearn_lab.unlearn import FeatureMaker, resolve_layer

LN2, LN3 = math.log(2), math.log(3)


def side(logits: Any, labels: Any, **extra: Any) -> Side:
    logits = torch.as_tensor(logits, dtype=torch.float32)
    labels = torch.as_tensor(labels)
    return Side(logits=logits, labels=labels, attention_mask=torch.ones_like(labels), **extra)


def loss_of(name: str, features: Features, state: dict | None = None, **overrides) -> LossOutput:
    spec = get_method(name)
    return spec.loss(features, state or {}, **validate_hyperparams(spec, overrides))


def random_side(seed: int, b: int = 2, t: int = 6, v: int = 5, with_ref: bool = True) -> Side:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, v, generator=g)
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[:, :2] = -100
    labels[1, -1] = -100  # a padded position
    return side(logits, labels, ref_logits=logits.clone() if with_ref else None)


# --- GradAscent / GradDiff ---------------------------------------------------------------------------------------


def test_grad_ascent_is_minus_pooled_nll_by_hand() -> None:
    """V = 3. Sample 0: position 0 logits (0,0,0) -> log p = -ln3 for all, target label[1] = 0 -> CE ln3;
    position 1 logits (ln2,0,0) -> p = (1/2,1/4,1/4), target label[2] = 1 -> CE ln4.
    Sample 1: only label[2] = 2 is supervised, predicted by logits (ln2,0,0) -> CE ln4.
    Pooled over the 3 supervised tokens (not a per-sample mean): NLL = (ln3 + 2 ln4)/3, GradAscent = -NLL."""
    pos0, pos1, last = [0.0, 0.0, 0.0], [LN2, 0.0, 0.0], [5.0, -1.0, 2.0]
    f = side([[pos0, pos1, last], [pos0, pos1, last]], [[-100, 0, 1], [-100, -100, 2]])
    out = loss_of("GradAscent", Features(forget=f))
    expected = -(LN3 + 2 * math.log(4)) / 3
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.forget_loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.retain_loss is None


def test_grad_diff_with_alpha_zero_is_gamma_times_grad_ascent() -> None:
    f, r = random_side(0), random_side(1)
    ga = loss_of("GradAscent", Features(forget=f)).loss
    gd = loss_of("GradDiff", Features(forget=f, retain=r), alpha=0, gamma=0.7)
    assert gd.loss.item() == pytest.approx(0.7 * ga.item(), rel=1e-6)
    assert gd.forget_loss.item() == pytest.approx(ga.item(), rel=1e-6)  # reported before gamma


def test_grad_diff_kl_retain_term_by_hand() -> None:
    """KL(π_ref ‖ π_θ) at every position, no label mask, divided by B·T. B = 1, T = 2, V = 2, all labels -100.
    Position 0: ref logits (0,0) -> p_ref = (1/2,1/2); current (ln3,0) -> p = (3/4,1/4);
    KL = 1/2 ln((1/2)/(3/4)) + 1/2 ln((1/2)/(1/4)) = 1/2 ln(4/3). Position 1 is identical -> 0.
    Retain term = 1/2 ln(4/3) / 2; it is 0 when ref == current."""
    cur = torch.tensor([[[LN3, 0.0], [1.0, 2.0]]])
    ref = torch.tensor([[[0.0, 0.0], [1.0, 2.0]]])
    f = random_side(0)
    r = side(cur, [[-100, -100]], ref_logits=ref)
    out = loss_of("GradDiff", Features(forget=f, retain=r), retain_loss_type="KL")
    assert out.retain_loss.item() == pytest.approx(0.5 * math.log(4 / 3) / 2, rel=1e-5)
    same = side(cur, [[-100, -100]], ref_logits=cur.clone())
    zero = loss_of("GradDiff", Features(forget=f, retain=same), retain_loss_type="KL").retain_loss
    assert zero.item() == pytest.approx(0.0, abs=1e-7)
    assert out.retain_loss.item() > 0


def test_kl_retain_without_reference_raises() -> None:
    f = random_side(0)
    with pytest.raises(ValueError, match="ref_logits"):
        loss_of("GradDiff", Features(forget=f, retain=random_side(1, with_ref=False)), retain_loss_type="KL")


def test_missing_retain_batch_raises() -> None:
    with pytest.raises(ValueError, match="retain"):
        loss_of("NPO", Features(forget=random_side(0)))


# --- NPO / IdkDPO / SimNPO ---------------------------------------------------------------------------------------


def test_preference_loss_by_hand() -> None:
    """−(2/β)·mean_i log σ(β·m_i). β = 1, margins (0, ln3): log σ(0) = −ln2, log σ(ln3) = ln(3/(3+1)) = ln(3/4),
    so the loss is −2·(−ln2 + ln(3/4))/2 = ln2 − ln(3/4) = ln(8/3). β = 2, margins (ln3/2, ln3/2): β·m = ln3 at both,
    so −(2/2)·ln(3/4) = ln(4/3). A larger margin always gives a smaller loss."""
    assert preference_loss(torch.tensor([0.0, LN3]), beta=1.0).item() == pytest.approx(math.log(8 / 3), rel=1e-6)
    assert preference_loss(torch.tensor([LN3 / 2] * 2), beta=2.0).item() == pytest.approx(math.log(4 / 3), rel=1e-6)
    assert preference_loss(torch.tensor([1.0]), beta=0.1) < preference_loss(torch.tensor([0.5]), beta=0.1)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_npo_and_idk_dpo_equal_2ln2_over_beta_when_policy_is_reference(beta: float) -> None:
    """log π_θ − log π_ref = 0 for every sequence, so both losses are −(2/β)·log σ(0) = (2/β)·ln 2."""
    f, r, alt = random_side(0), random_side(1), random_side(2)
    npo = loss_of("NPO", Features(forget=f, retain=r), beta=beta, alpha=0)
    dpo = loss_of("IdkDPO", Features(forget=f, retain=r, alternate=alt), beta=beta, alpha=0)
    for out in (npo, dpo):
        assert out.forget_loss.item() == pytest.approx(2 * LN2 / beta, rel=1e-6)
        assert out.loss.item() == pytest.approx(2 * LN2 / beta, rel=1e-6)


def test_npo_uses_sequence_sums() -> None:
    """One sample; the current model has token NLLs (ln2, ln2) where the reference has (ln4, ln4) on 2 tokens,
    so log π_θ − log π_ref = −2ln2 + 4ln2 = 2ln2 (a per-token mean would give ln2).
    NPO = −(2/β)·log σ(−β·2ln2), with β = 1: 2·ln(1 + 4) = 2 ln 5."""
    cur = torch.tensor([[[math.log(2), 0.0, 0.0], [math.log(2), 0.0, 0.0], [0.0, 0.0, 0.0]]])  # p(0) = 2/4 = 1/2
    ref = torch.tensor([[[0.0, 0.0, math.log(2)], [0.0, 0.0, math.log(2)], [0.0, 0.0, 0.0]]])  # p(0) = 1/4
    f = side(cur, [[-100, 0, 0]], ref_logits=ref)
    out = loss_of("NPO", Features(forget=f, retain=random_side(1)), beta=1.0)
    assert out.forget_loss.item() == pytest.approx(2 * math.log(5), rel=1e-6)


def test_simnpo_by_hand() -> None:
    """V = 2. Sample 0: labels (−100, 0, 0); position 0 logits (0,0) -> CE ln2, position 1 (ln3,0) -> p(0) = 3/4,
    CE ln(4/3); l_0 = (ln2 + ln(4/3))/2 − δ. Sample 1: labels (−100, −100, 1); position 1 (ln3,0) -> p(1) = 1/4,
    CE ln4; l_1 = ln4 − δ. With β = 2, δ = 0.5: L_f = −(2/β)·mean_i log σ(β·l_i)."""
    logits = [[[0.0, 0.0], [LN3, 0.0], [0.0, 0.0]]] * 2
    f = side(logits, [[-100, 0, 0], [-100, -100, 1]])
    out = loss_of("SimNPO", Features(forget=f, retain=random_side(1)), beta=2.0, delta=0.5)
    l = [(LN2 + math.log(4 / 3)) / 2 - 0.5, math.log(4) - 0.5]
    log_sigmoid = [-math.log1p(math.exp(-2.0 * li)) for li in l]
    assert out.forget_loss.item() == pytest.approx(-(2 / 2.0) * sum(log_sigmoid) / 2, rel=1e-6)
    assert out.loss.item() == pytest.approx(0.125 * out.forget_loss.item() + out.retain_loss.item(), rel=1e-6)


# --- RMU ---------------------------------------------------------------------------------------------------------


def test_rmu_forget_loss_is_masked_mse_to_control_vector() -> None:
    """c = 2, u = (0.6, 0.8) -> c·u = (1.2, 1.6). Sample 0: supervised (unshifted) positions 1 and 2:
    h_1 = (0,1): ((1.2)² + (0.6)²)/2 = 0.9; h_2 = (3,3): ((1.8)² + (1.4)²)/2 = 2.6 -> (0.9 + 2.6)/2 = 1.75.
    Position 0 (h = (1,0)) is a prompt token. Sample 1: only position 2, h = c·u -> 0.
    Mean over samples: 0.875 (a pooled mean would be 3.5/3)."""
    h = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [3.0, 3.0]], [[9.0, 9.0], [9.0, 9.0], [1.2, 1.6]]])
    labels = [[-100, 1, 2], [-100, -100, 3]]
    f = side(torch.zeros(2, 3, 4), labels, hidden=h)
    r = side(torch.zeros(2, 3, 4), labels, hidden=h, ref_hidden=h.clone())
    state = {"control_vector": torch.tensor([0.6, 0.8])}
    out = loss_of("RMU", Features(forget=f, retain=r), state, steering_coeff=2)
    assert out.forget_loss.item() == pytest.approx(0.875, rel=1e-6)
    assert out.retain_loss.item() == pytest.approx(0.0, abs=1e-8)


def test_rmu_init_state_is_deterministic_unit_vector() -> None:
    spec = get_method("RMU")
    hp = validate_hyperparams(spec, {})
    a = spec.init_state(hp, hidden_size=32, generator=torch.Generator().manual_seed(7))["control_vector"]
    b = spec.init_state(hp, hidden_size=32, generator=torch.Generator().manual_seed(7))["control_vector"]
    c = spec.init_state(hp, hidden_size=32, generator=torch.Generator().manual_seed(8))["control_vector"]
    assert a.shape == (32,) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.norm().item() == pytest.approx(1.0, rel=1e-6)
    assert (a >= 0).all()  # drawn from U[0,1)^d before normalising


# --- UNDIAL ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("wrap", [True, False])
def test_undial_beta_zero_is_entropy(wrap: bool) -> None:
    """β = 0 and z_ref = z: q = softmax(z), so CE(z, q) = H(softmax(z)) at each shifted position; the mean runs over
    all B×(T−1) positions with the reference quirk on, over the supervised ones with it off."""
    f = random_side(3, v=128)
    out = loss_of("UNDIAL", Features(forget=f, retain=random_side(1, v=128)), beta=0, reference_ignore_wrap=wrap)
    p = torch.softmax(f.logits[:, :-1], dim=-1)
    entropy = -(p * torch.log(p)).sum(-1)  # (B, T-1)
    keep = torch.ones_like(entropy, dtype=torch.bool) if wrap else f.labels[:, 1:] != -100
    assert out.forget_loss.item() == pytest.approx(entropy[keep].mean().item(), rel=1e-5)
    assert out.loss.item() == pytest.approx(out.forget_loss.item(), rel=1e-6)  # default α = 0


def test_undial_minus_100_wraps_to_index_v_minus_100() -> None:
    """V = 101, T = 3, labels (−100, −100, 5), β = 1, reference logits 0 everywhere.
    Shifted position 1 (label 5): student logits 0 -> log p = −ln101 everywhere, so CE = ln101 whatever q is.
    Shifted position 0 (label −100): student logits 0 except z_1 = 2, so −log p_v = ln(100 + e²) − z_v and
    CE = ln(100 + e²) − 2·q_1. With the quirk, −100 wraps to index 101 − 100 = 1: q_1 = e^{−1}/(100 + e^{−1});
    without a shift q_1 would be 1/101. Quirk on: mean of both positions. Quirk off: position 0 is excluded."""
    student = torch.zeros(1, 3, 101)
    student[0, 0, 1] = 2.0
    f = side(student, [[-100, -100, 5]], ref_logits=torch.zeros(1, 3, 101))
    features = Features(forget=f, retain=random_side(1))
    on = loss_of("UNDIAL", features, beta=1.0).forget_loss.item()
    off = loss_of("UNDIAL", features, beta=1.0, reference_ignore_wrap=False).forget_loss.item()
    q1 = math.exp(-1) / (100 + math.exp(-1))
    pos0 = math.log(100 + math.exp(2)) - 2 * q1
    assert on == pytest.approx((pos0 + math.log(101)) / 2, rel=1e-6)
    assert off == pytest.approx(math.log(101), rel=1e-6)
    no_shift = math.log(100 + math.exp(2)) - 2 / 101
    assert abs(on - (no_shift + math.log(101)) / 2) > 1e-4


# --- WGA / SatImp / CE-U / PDU -----------------------------------------------------------------------------------


def test_wga_beta_zero_is_minus_nll() -> None:
    """β = 0 -> all weights p^0 = 1 -> L_f = −(pooled token CE), computed here with plain cross_entropy."""
    f = random_side(4)
    out = loss_of("WGA", Features(forget=f, retain=random_side(1)), beta=0)
    nll = F.cross_entropy(f.logits[:, :-1].reshape(-1, 5), f.labels[:, 1:].reshape(-1), ignore_index=-100)
    assert out.forget_loss.item() == pytest.approx(-nll.item(), rel=1e-6)


def test_satimp_weights_by_hand() -> None:
    """V = 2, labels (−100, 0, 1). Token 1: logits (ln3, 0) -> p = 3/4, l = ln(4/3); token 2: logits (0,0) -> p = 1/2,
    l = ln2. β₁ = 2, β₂ = 1: w = p²(1 − p) = 9/64 and 1/8. L_f = −(9/64·ln(4/3) + 1/8·ln2)/2; total with the
    config defaults γ = 0.1, α = 1."""
    f = side([[[LN3, 0.0], [0.0, 0.0], [7.0, 0.0]]], [[-100, 0, 1]])
    out = loss_of("SatImp", Features(forget=f, retain=random_side(1)), beta1=2, beta2=1)
    expected = -(9 / 64 * math.log(4 / 3) + 1 / 8 * LN2) / 2
    assert out.forget_loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.loss.item() == pytest.approx(0.1 * expected + out.retain_loss.item(), rel=1e-6)


def test_weights_are_detached() -> None:
    """WGA gradient w.r.t. the logits equals that of −Σ w_t·l_t/N with w_t held constant (no gradient through w)."""
    f = side([[[LN3, 0.0], [0.0, 0.0], [7.0, 0.0]]], [[-100, 0, 1]])
    logits = f.logits.clone().requires_grad_(True)
    out = loss_of("WGA", Features(forget=side(logits, f.labels), retain=random_side(1)), beta=1)
    (grad,) = torch.autograd.grad(out.forget_loss, logits)
    z = f.logits.clone().requires_grad_(True)
    l = torch.stack([-torch.log_softmax(z[0, 0], -1)[0], -torch.log_softmax(z[0, 1], -1)[1]])
    manual = -(torch.tensor([0.75, 0.5]) * l).sum() / 2
    (expected,) = torch.autograd.grad(manual, z)
    assert torch.allclose(grad, expected, atol=1e-7)


@pytest.mark.parametrize(("n", "expected"), [(1, (LN3 + 4 / 3 * LN2) / 2), (0, (8 / 3 * LN2 + LN3) / 3)])
def test_ce_u_by_hand(n: int, expected: float) -> None:
    """V = 3, labels (−100, 0, 1, 2); shifted positions 0, 1, 2 predict 0, 1, 2.
    Position 1: logits (0,0,0), true 1 -> q = (1/2, 0, 1/2), log p = −ln3 -> CE = ln3.
    Position 2: logits (ln2,0,0), true 2 -> q = softmax(ln2, 0, −∞) = (2/3, 1/3, 0), p = (1/2,1/4,1/4)
    -> CE = 2/3·ln2 + 1/3·ln4 = 4/3·ln2.
    Position 0: logits (0,ln2,0), true 0 -> q = (0, 2/3, 1/3), p = (1/4,1/2,1/4) -> CE = 4/3·ln2; it is the first
    answer token, ignored with n = 1 (mean of 2 positions) and kept with n = 0 (mean of 3)."""
    logits = [[[0.0, LN2, 0.0], [0.0, 0.0, 0.0], [LN2, 0.0, 0.0], [9.0, 9.0, 0.0]]]
    out = loss_of("CE-U", Features(forget=side(logits, [[-100, 0, 1, 2]])), ignore_first_n_answer_tokens=n)
    assert out.forget_loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.retain_loss is None


def test_pdu_forget_term_uses_unshifted_positions() -> None:
    """Labels (−100, 1, 2): the logits AT positions 1 and 2 count. (3,0,0): max 3, mean 1 -> 4; (0,0,6): max 6,
    mean 2 -> 16. L_f = (4 + 16)/2 = 10 (the shifted positions 0, 1 would give (36 + 4)/2 = 20).
    L = γ·L_f + λ·(L_r − ε) with λ = state["lam"] = 2.5, ε = 0.3."""
    f = side([[[9.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 6.0]]], [[-100, 1, 2]])
    out = loss_of("PDU", Features(forget=f, retain=random_side(1)), {"lam": 2.5}, gamma=0.5)
    assert out.forget_loss.item() == pytest.approx(10.0, rel=1e-6)
    assert out.loss.item() == pytest.approx(0.5 * 10 + 2.5 * (out.retain_loss.item() - 0.3), rel=1e-6)


def test_pdu_dual_update() -> None:
    """λ starts at α; before dual_warmup_epochs it does not move; afterwards λ ← max(0, λ + η·(L_r − ε)) per call."""
    spec = get_method("PDU")
    hp = validate_hyperparams(spec, {"alpha": 1, "eta": 0.5, "retain_loss_eps": 0.3, "dual_warmup_epochs": 2})
    state = spec.init_state(hp, hidden_size=16, generator=torch.Generator())
    assert state == {"lam": 1.0}

    def out(retain: float) -> LossOutput:
        return LossOutput(loss=torch.tensor(0.0), forget_loss=torch.tensor(0.0), retain_loss=torch.tensor(retain))

    for epoch in (0.0, 1.0, 1.99):
        state = spec.update_state(state, out(1.3), hp, epoch=epoch)
        assert state["lam"] == 1.0
    state = spec.update_state(state, out(1.3), hp, epoch=2.0)
    assert state["lam"] == pytest.approx(1.0 + 0.5 * (1.3 - 0.3))  # 1.5
    state = spec.update_state(state, out(0.1), hp, epoch=2.5)
    assert state["lam"] == pytest.approx(1.5 + 0.5 * (0.1 - 0.3))  # 1.4
    for _ in range(20):
        state = spec.update_state(state, out(0.0), hp, epoch=3.0)
        assert state["lam"] >= 0.0
    assert state["lam"] == 0.0


# --- registry ----------------------------------------------------------------------------------------------------

NAMES = ["GradAscent", "GradDiff", "NPO", "SimNPO", "IdkDPO", "RMU", "UNDIAL", "WGA", "SatImp", "CE-U", "PDU"]


def test_registry_keys_and_specs() -> None:
    assert list(METHODS) == NAMES
    for name, spec in METHODS.items():
        assert spec.name == name and "arXiv" in spec.paper
        assert validate_hyperparams(spec, dict(spec.defaults)) == dict(spec.defaults)
        params = inspect.signature(spec.loss).parameters.values()
        assert {p.name for p in params if p.kind is p.KEYWORD_ONLY} == set(spec.defaults)
        if "alpha" in spec.defaults:
            assert {"gamma", "retain_loss_type"} <= set(spec.defaults) and spec.needs_retain


def test_tofu_defaults() -> None:
    d = {name: dict(spec.defaults) for name, spec in METHODS.items()}
    assert d["NPO"]["beta"] == 0.1 and d["IdkDPO"]["beta"] == 0.1
    assert (d["SimNPO"]["beta"], d["SimNPO"]["delta"], d["SimNPO"]["gamma"]) == (4.5, 0.0, 0.125)
    assert d["RMU"]["steering_coeff"] == 2 and d["RMU"]["layer"] is None
    assert (d["UNDIAL"]["beta"], d["UNDIAL"]["alpha"], d["UNDIAL"]["reference_ignore_wrap"]) == (10, 0, True)
    assert (d["SatImp"]["beta1"], d["SatImp"]["beta2"], d["SatImp"]["gamma"], d["SatImp"]["alpha"]) == (5, 1, 0.1, 1)
    assert d["WGA"]["beta"] == 1 and d["CE-U"] == {"ignore_first_n_answer_tokens": 1}
    assert d["PDU"]["retain_loss_eps"] == 0.3 and d["PDU"]["eta"] == 1 and d["PDU"]["dual_warmup_epochs"] == 5
    assert d["GradAscent"] == {}


def test_unknown_method_suggests() -> None:
    with pytest.raises(ValueError, match="did you mean 'NPO'") as err:
        get_method("npo")
    assert "\n" not in str(err.value) and "GradAscent" in str(err.value)
    with pytest.raises(ValueError, match="did you mean 'GradDiff'"):
        get_method("Grad_Diff")


def test_validate_hyperparams_errors() -> None:
    npo = get_method("NPO")
    with pytest.raises(ValueError, match="did you mean 'beta'"):
        validate_hyperparams(npo, {"betta": 0.2})
    with pytest.raises(ValueError, match="must be float"):
        validate_hyperparams(npo, {"beta": "0.2"})
    with pytest.raises(ValueError, match="must be float"):
        validate_hyperparams(npo, {"beta": True})
    with pytest.raises(ValueError, match="'NLL', 'KL'"):
        validate_hyperparams(npo, {"retain_loss_type": "nll"})
    with pytest.raises(ValueError, match="must be bool"):
        validate_hyperparams(get_method("UNDIAL"), {"reference_ignore_wrap": 1})
    with pytest.raises(ValueError, match="int or None"):
        validate_hyperparams(get_method("RMU"), {"layer": 3.0})
    assert validate_hyperparams(npo, {"beta": 1})["beta"] == 1.0  # ints accepted for floats
    assert validate_hyperparams(get_method("RMU"), {"layer": 3, "retain_loss_type": "KL"})["layer"] == 3


@pytest.mark.parametrize(
    ("method", "key", "bad", "edge", "bound"),
    [
        ("NPO", "beta", 0.0, 1e-9, "> 0"),  # beta divides the loss: 0 is out, anything above it in
        ("SimNPO", "beta", -1.0, 1e-9, "> 0"),
        ("IdkDPO", "beta", 0, 1e-9, "> 0"),
        ("WGA", "beta", -0.1, 0.0, ">= 0"),  # beta = 0 is plain gradient ascent (test_wga_beta_zero_is_minus_nll)
        ("UNDIAL", "beta", -1.0, 0.0, ">= 0"),
        ("SatImp", "beta2", -1.0, 0.0, ">= 0"),
        ("RMU", "steering_coeff", 0.0, 0.5, "> 0"),
        ("RMU", "layer", -1, 0, ">= 0"),
        ("PDU", "eta", -0.5, 0.0, ">= 0"),
        ("CE-U", "ignore_first_n_answer_tokens", -1, 0, ">= 0"),
        ("GradDiff", "alpha", -1.0, 0.0, ">= 0"),
        ("NPO", "gamma", -0.1, 0.0, ">= 0"),
    ],
)
def test_hyperparameter_bounds(method: str, key: str, bad: float, edge: float, bound: str) -> None:
    spec = get_method(method)
    with pytest.raises(ValueError, match=f"{method} hyperparameter '{key}' must be {bound}, got {bad}"):
        validate_hyperparams(spec, {key: bad})
    assert validate_hyperparams(spec, {key: edge})[key] == edge


def test_bounds_name_real_hyperparameters_and_admit_the_defaults() -> None:
    """A misspelt BOUNDS key would bound nothing; a default outside its own bound would reject the default run."""
    for name, spec in METHODS.items():
        assert set(spec.bounds) <= set(spec.defaults), name
        for key, bound in spec.bounds.items():
            default = spec.defaults[key]
            assert default is None or bound.admits(default), (name, key, default)
        assert validate_hyperparams(spec, {}) == dict(spec.defaults)


def test_requires_reference() -> None:
    assert requires_reference(get_method("NPO"), {})
    assert not requires_reference(get_method("GradDiff"), {"retain_loss_type": "NLL"})
    assert requires_reference(get_method("GradDiff"), {"retain_loss_type": "KL"})


def test_reference_sides_are_where_the_losses_read_the_reference() -> None:
    """The frozen reference runs only on the sides whose outputs the loss reads (each costs a forward pass)."""
    sides = lambda name, **hp: reference_sides(get_method(name), {**get_method(name).defaults, **hp})
    assert sides("NPO") == {"forget"} and sides("NPO", retain_loss_type="KL") == {"forget", "retain"}
    assert sides("IdkDPO") == {"forget", "alternate"} and sides("UNDIAL") == {"forget"}
    assert sides("RMU") == {"retain"}  # EMBED_DIFF: the reference's hidden state on the retain side
    assert sides("RMU", retain_loss_type="NLL") == set() and not requires_reference(get_method("RMU"), {})
    assert sides("GradDiff") == set() and sides("GradDiff", retain_loss_type="KL") == {"retain"}
    assert all(sides(name) == set() for name in ("GradAscent", "SimNPO", "WGA", "SatImp", "CE-U", "PDU"))


@pytest.mark.parametrize(
    ("name", "retain"), [("NPO", "NLL"), ("NPO", "KL"), ("IdkDPO", "NLL"), ("RMU", "EMBED_DIFF"), ("UNDIAL", "KL")]
)
def test_features_carry_reference_outputs_only_on_the_declared_sides(name: str, retain: str, tiny) -> None:
    base, batches = tiny
    spec = get_method(name)
    hp = resolve_layer(validate_hyperparams(spec, {"retain_loss_type": retain}), base.config.num_hidden_layers)
    features = FeatureMaker(copy.deepcopy(base), spec, hp)(base, sides_of(spec, batches))
    for side_name in ("forget", "retain", "alternate"):
        side = getattr(features, side_name)
        if side is not None:
            has = side.ref_logits is not None
            assert has == (side_name in reference_sides(spec, hp)), (name, retain, side_name)
    g = torch.Generator().manual_seed(0)
    state = spec.init_state(hp, hidden_size=base.config.hidden_size, generator=g) if spec.init_state else {}
    assert torch.isfinite(spec.loss(features, state, **hp).loss)  # what the loss reads is there


# --- tiny LlamaForCausalLM: every method backpropagates ----------------------------------------------------------

ASCENT = ["GradAscent", "GradDiff", "NPO", "SimNPO", "WGA", "SatImp"]


@pytest.fixture(scope="module")
def tiny() -> Iterator[tuple[Any, dict]]:
    """A tiny Llama (hidden 16, 2 layers, vocab 128) fitted for 25 Adam steps to the forget and retain answers, so
    token probabilities are moderate (SatImp's p^5(1 − p) weights would vanish on a random model)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: thread contention costs far more than it gains
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2)  # fmt: skip
    model = LlamaForCausalLM(cfg)
    g = torch.Generator().manual_seed(0)

    def batch() -> dict:
        ids = torch.randint(0, 128, (2, 8), generator=g)
        labels = ids.clone()
        labels[:, :3] = -100  # prompt
        mask = torch.ones_like(ids)
        labels[1, -2:], mask[1, -2:] = -100, 0  # right padding
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    forget, retain = batch(), batch()
    alternate = {**forget, "input_ids": forget["input_ids"].clone()}
    alternate["input_ids"][:, 3:] = torch.randint(0, 128, (2, 5), generator=g)
    alternate["labels"] = torch.where(forget["labels"] == -100, -100, alternate["input_ids"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(25):
        for b in (forget, retain):
            opt.zero_grad()
            model(**b).loss.backward()
            opt.step()
    yield model, {"forget": forget, "retain": retain, "alternate": alternate}
    torch.set_num_threads(threads)


def forget_nll(model: Any, b: dict) -> float:
    with torch.no_grad():
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), b["labels"][:, 1:], ignore_index=-100).item()


def sides_of(spec: MethodSpec, batches: dict) -> dict:
    """The sides a method's micro-batch carries, as UnlearnData.epoch_batches yields them."""
    wanted = {"forget": True, "retain": spec.needs_retain, "alternate": spec.needs_alternate}
    return {k: batches[k] for k, needed in wanted.items() if needed}


@pytest.mark.parametrize("name", NAMES)
def test_method_trains_tiny_llama(name: str, tiny: tuple[Any, dict]) -> None:
    base, batches = tiny
    spec = get_method(name)
    overrides = {"alpha": 0.0, "gamma": 1.0} if name in ASCENT and "alpha" in spec.defaults else {}
    model = copy.deepcopy(base)
    hp = resolve_layer(validate_hyperparams(spec, overrides), model.config.num_hidden_layers)
    features = FeatureMaker(model, spec, hp)  # the project's features step; its reference is the start model
    assert (features.reference is not None) == requires_reference(spec, hp)
    g = torch.Generator().manual_seed(0)
    state = spec.init_state(hp, hidden_size=model.config.hidden_size, generator=g) if spec.init_state else {}
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    before_params = [p.detach().clone() for p in model.parameters()]
    before_nll = forget_nll(model, batches["forget"])
    for step in range(3):
        out = spec.loss(features(model, sides_of(spec, batches)), state, **hp)
        assert out.loss.dim() == 0 and torch.isfinite(out.loss) and torch.isfinite(out.forget_loss)
        opt.zero_grad()
        out.loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(gr).all() for gr in grads)
        opt.step()
        if spec.update_state:
            state = spec.update_state(state, out, hp, epoch=float(step))
    assert any(not torch.equal(a, p) for a, p in zip(before_params, model.parameters(), strict=False))
    if name in ASCENT:
        assert forget_nll(model, batches["forget"]) > before_nll + 1e-3
