"""Pure tensor helpers shared by the method losses (spec §4.0).

Conventions: labels are HF-aligned with -100 on unsupervised positions; logits[:, :-1] predict labels[:, 1:].
Logits are upcast to fp32 before any log-softmax (transformers-4.45 behaviour, spec §8.1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import LossOutput, Side

IGNORE = -100


def shifted(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, V), (B, T) -> fp32 logits[:, :-1] and labels[:, 1:] (the next-token pairs)."""
    return logits[:, :-1].float(), labels[:, 1:]


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token NLL (B, T-1), 0 where unsupervised, and the boolean supervision mask (B, T-1)."""
    z, y = shifted(logits, labels)
    mask = y != IGNORE
    loss = F.cross_entropy(z.transpose(1, 2), y, ignore_index=IGNORE, reduction="none")
    return loss, mask


def nll(side: Side) -> torch.Tensor:
    """HF model loss: mean token CE over all supervised tokens of the micro-batch, pooled (not per sample).

    Unlike HF, a batch with no supervised token gives 0 instead of NaN.
    """
    loss, mask = token_nll(side.logits, side.labels)
    return loss.sum() / mask.sum().clamp_min(1)


def sequence_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log π(y|x) per sample (B,): the sum of token log-probs over supervised tokens (answer + eot)."""
    loss, _ = token_nll(logits, labels)
    return -loss.sum(dim=1)


def per_sample_avg_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """S(y|x)/|y| per sample (B,). |y| counts the supervised (shifted) tokens, clamped to at least 1."""
    loss, mask = token_nll(logits, labels)
    return loss.sum(dim=1) / mask.sum(dim=1).clamp_min(1)


def kl_to_reference(side: Side) -> torch.Tensor:
    """KL(π_ref ‖ π_θ) over ALL B·T positions (prompt, answer, padding; no label mask), divided by B·T."""
    if side.ref_logits is None:
        raise ValueError("retain_loss_type 'KL' needs ref_logits from the frozen reference model; none were given")
    log_p = F.log_softmax(side.logits.float(), dim=-1).flatten(0, 1)
    log_ref = F.log_softmax(side.ref_logits.float(), dim=-1).flatten(0, 1)
    return F.kl_div(log_p, log_ref, reduction="sum", log_target=True) / log_p.shape[0]


def retain_loss(side: Side, kind: str) -> torch.Tensor:
    """The retain term of spec §4.0: "NLL" (HF loss on the retain batch) or "KL" (to the frozen reference)."""
    if kind == "NLL":
        return nll(side)
    if kind == "KL":
        return kl_to_reference(side)
    raise ValueError(f"unknown retain_loss_type {kind!r}; accepted: NLL, KL")


def need(side: Side | None, what: str, method: str) -> Side:
    """Return `side`, or raise a clear error if the loop did not provide it."""
    if side is None:
        raise ValueError(f"{method} needs the {what} batch, but Features.{what} is None")
    return side


def need_tensor(t: torch.Tensor | None, what: str, method: str) -> torch.Tensor:
    if t is None:
        raise ValueError(f"{method} needs Side.{what}, but it is None (check the method spec's needs_* flags)")
    return t


def combine(forget: torch.Tensor, retain: torch.Tensor, *, alpha: float, gamma: float) -> LossOutput:
    """L = γ·L_forget + α·L_retain (spec §4.0); the logged terms are reported before their weights."""
    return LossOutput(loss=gamma * forget + alpha * retain, forget_loss=forget, retain_loss=retain)


def log_ratio(side: Side, method: str) -> torch.Tensor:
    """log pi_theta(y|x) - log pi_ref(y|x) per sample (B,), sequence sums; the reference term carries no grad."""
    ref_logits = need_tensor(side.ref_logits, "ref_logits", method)
    return sequence_logprob(side.logits, side.labels) - sequence_logprob(ref_logits, side.labels).detach()


def preference_loss(margin: torch.Tensor, *, beta: float) -> torch.Tensor:
    """−(2/β)·mean_i log σ(β·m_i): the scaled log-sigmoid preference loss of NPO, IdkDPO and SimNPO.

    `margin` (B,) is each sample's preference for the behaviour the method rewards: IdkDPO's implicit-reward gap
    (log-ratio of the "I don't know" answer minus that of the forget answer), NPO's negated forget log-ratio
    −(log π_θ − log π_ref), SimNPO's length-normalised NLL − δ (reference-free). It decreases as the margin grows,
    with value (2/β)·ln 2 at margin 0 (e.g. policy = reference) and slope −1/B per sample there.
    """
    return -(2.0 / beta) * F.logsigmoid(beta * margin).mean()
