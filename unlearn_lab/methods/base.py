"""Data types shared by every unlearning method.

The training loop runs the model(s) once per micro-batch, packs the results into `Features`, then calls the
method's pure `loss` function. A method is described by a `MethodSpec`; the registry lives in `__init__.py`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Side:
    """One micro-batch (forget, retain or alternate) after the forward pass(es).

    labels follow the HF convention: aligned with input_ids, -100 where not supervised (supervised = answer tokens
    + final end-of-turn token). Losses shift internally: logits[:, :-1] predict labels[:, 1:].
    """

    logits: torch.Tensor  # (B, T, V) current model, any float dtype (upcast to fp32 inside losses)
    labels: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    ref_logits: torch.Tensor | None = None  # frozen reference model's logits on the same batch (no grad)
    hidden: torch.Tensor | None = None  # (B, T, D) residual stream after decoder block `layer` (current model)
    ref_hidden: torch.Tensor | None = None  # same from the frozen reference model


@dataclass(frozen=True)
class Features:
    forget: Side
    retain: Side | None = None
    alternate: Side | None = None  # IdkDPO's "win" side: same questions, an "I don't know" answer


@dataclass(frozen=True)
class LossOutput:
    loss: torch.Tensor  # scalar to backpropagate
    forget_loss: torch.Tensor  # the forget term BEFORE gamma, as reported in logs
    retain_loss: torch.Tensor | None  # the retain term BEFORE alpha, or None


@dataclass(frozen=True)
class MethodSpec:
    name: str
    loss: Callable[..., LossOutput]  # loss(features, state, **hyperparams) -> LossOutput
    defaults: Mapping[str, Any]  # every hyperparameter with its TOFU default (spec §4.1)
    paper: str
    needs_retain: bool
    # the sides whose ref_logits / ref_hidden the loss itself reads (a frozen copy of the start model computes
    # them); a retain term that compares with the reference adds the retain side (methods.reference_sides)
    reference_sides: frozenset[str] = frozenset()
    needs_alternate: bool = False  # IdkDPO
    needs_hidden: bool = False  # RMU: loop fills Side.hidden / ref_hidden
    init_state: Callable[..., dict] | None = None  # (hyperparams, *, hidden_size, generator) -> dict
    update_state: Callable[..., dict] | None = None  # (state, output, hyperparams, *, epoch) -> dict, per micro-batch
    bounds: Mapping[str, Bound] = field(default_factory=dict)  # numeric hyperparameters' lower bounds


@dataclass(frozen=True)
class Bound:
    """A numeric hyperparameter's lower bound: `value > low` (strict) or `value >= low`."""

    low: float
    strict: bool = False

    def admits(self, value: float) -> bool:
        return value > self.low if self.strict else value >= self.low

    def __str__(self) -> str:
        return f"{'>' if self.strict else '>='} {self.low:g}"


POSITIVE, NON_NEGATIVE = Bound(0.0, strict=True), Bound(0.0)
WEIGHTS = {"alpha": NON_NEGATIVE, "gamma": NON_NEGATIVE}  # every method's term weights: a negative one flips a term


def keyword_defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    """The keyword-only parameters of a loss function with their defaults: the single source of method defaults."""
    params = inspect.signature(fn).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
