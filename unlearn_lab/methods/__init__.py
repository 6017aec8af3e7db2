"""Unlearning methods: a literal registry of pure loss functions (spec §4).

    spec = get_method("NPO")
    hp = validate_hyperparams(spec, {"beta": 0.2})          # merged with the TOFU defaults, type-checked
    state = spec.init_state(hp, hidden_size=..., generator=...) if spec.init_state else {}
    out = spec.loss(features, state, **hp)                   # -> LossOutput
    state = spec.update_state(state, out, hp, epoch=...) if spec.update_state else state

Defaults and hyperparameter types come from each loss function's keyword-only signature.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from unlearn_lab.errors import UsageError, unknown

from . import ce_u, grad_ascent, grad_diff, idk_dpo, npo, pdu, rmu, satimp, simnpo, undial, wga
from .base import NON_NEGATIVE, POSITIVE, WEIGHTS, Bound, Features, LossOutput, MethodSpec, Side, keyword_defaults

__all__ = [
    "METHODS",
    "NON_NEGATIVE",
    "POSITIVE",
    "Bound",
    "Features",
    "LossOutput",
    "MethodSpec",
    "Side",
    "all_methods",
    "get_method",
    "method_spec",
    "reference_sides",
    "requires_reference",
    "validate_hyperparams",
]  # fmt: skip


def method_spec(
    name: str,
    loss: Callable[..., LossOutput],
    *,
    paper: str,
    needs_retain: bool = False,
    reference_sides: Iterable[str] = (),
    needs_alternate: bool = False,
    needs_hidden: bool = False,
    bounds: Mapping[str, Bound] | None = None,
    init_state: Callable[..., dict] | None = None,
    update_state: Callable[..., dict] | None = None,
) -> MethodSpec:
    """A method's registry row, built-in or a plugin's (docs/extending.md): its pure `loss(features, state,
    **hyperparameters) -> LossOutput` (keyword-only hyperparameters with type hints and defaults: the defaults
    and types every command uses), what the training loop must give it (a retain batch; the frozen start model's
    outputs on `reference_sides`, any of "forget", "retain", "alternate"; IdkDPO's alternate answers; RMU's hidden
    states), lower `bounds` of numeric hyperparameters (alpha and gamma, the term weights, are >= 0 everywhere),
    and its paper."""
    sides = frozenset(reference_sides)
    if not sides <= {"forget", "retain", "alternate"}:
        raise UsageError(f"method {name}: reference_sides are forget, retain, alternate; got {sorted(sides)}")
    defaults = keyword_defaults(loss)
    declared = {k: b for k, b in WEIGHTS.items() if k in defaults} | dict(bounds or {})
    unknown_bounds = sorted(set(declared) - set(defaults))
    if unknown_bounds:
        raise UsageError(f"method {name}: bounds for {', '.join(unknown_bounds)}, which its loss does not take")
    return MethodSpec(
        name=name,
        loss=loss,
        defaults=types.MappingProxyType(defaults),
        bounds=types.MappingProxyType(declared),
        paper=paper,
        needs_retain=needs_retain,
        reference_sides=sides,
        needs_alternate=needs_alternate,
        needs_hidden=needs_hidden,
        init_state=init_state,
        update_state=update_state,
    )


def _spec(name: str, module: types.ModuleType, **flags: Any) -> MethodSpec:
    init, update = getattr(module, "init_state", None), getattr(module, "update_state", None)
    bounds = getattr(module, "BOUNDS", {})
    return method_spec(
        name, module.loss, paper=module.PAPER, bounds=bounds, init_state=init, update_state=update, **flags
    )


# the sides on which a method's own terms compare with the reference: NPO's and UNDIAL's forget answer; IdkDPO's
# log-ratios of both answers (the forget answer and the "I don't know" alternate)
FORGET, PREFERENCE = frozenset({"forget"}), frozenset({"forget", "alternate"})

METHODS: dict[str, MethodSpec] = {
    "GradAscent": _spec("GradAscent", grad_ascent, needs_retain=False),
    "GradDiff": _spec("GradDiff", grad_diff, needs_retain=True),
    "NPO": _spec("NPO", npo, needs_retain=True, reference_sides=FORGET),  # log-ratio of the forget answer
    "SimNPO": _spec("SimNPO", simnpo, needs_retain=True),
    "IdkDPO": _spec("IdkDPO", idk_dpo, needs_retain=True, reference_sides=PREFERENCE, needs_alternate=True),
    "RMU": _spec("RMU", rmu, needs_retain=True, needs_hidden=True),  # its EMBED_DIFF retain term: REFERENCE_RETAIN
    "UNDIAL": _spec("UNDIAL", undial, needs_retain=True, reference_sides=FORGET),  # distils the reference logits
    "WGA": _spec("WGA", wga, needs_retain=True),
    "SatImp": _spec("SatImp", satimp, needs_retain=True),
    "CE-U": _spec("CE-U", ce_u, needs_retain=False),
    "PDU": _spec("PDU", pdu, needs_retain=True),
}

# retain_loss_type values whose retain term compares the model with the frozen reference on the retain side
REFERENCE_RETAIN = ("KL", "EMBED_DIFF")  # KL: its logits (spec 4.0); EMBED_DIFF: RMU, its hidden state


def all_methods() -> dict[str, MethodSpec]:
    """METHODS and the installed plugins' methods (entry point group `unlearn_lab.methods`)."""
    from unlearn_lab import plugins

    return plugins.registry("methods", MethodSpec, METHODS)


def get_method(name: str) -> MethodSpec:
    """The registered method `name` (exact spelling), a plugin's, or `package.module:Name` (a MethodSpec in an
    importable module); unknown names raise a one-line UsageError."""
    if name in METHODS:
        return METHODS[name]
    if ":" in name:
        from unlearn_lab import plugins

        return plugins.from_module(name, MethodSpec, "method")
    known = all_methods()
    if name in known:
        return known[name]
    raise unknown("method", name, known)


def method_origin(name: str) -> str:
    """Where a method comes from: "built-in", "<distribution> <version>" (a plugin) or "module <ref>"."""
    from unlearn_lab import plugins

    return plugins.origin_of("methods", MethodSpec, METHODS, name)


def reference_sides(spec: MethodSpec, hyperparams: dict) -> frozenset[str]:
    """The sides (forget, retain, alternate) on which the loss reads the frozen reference model's outputs: the
    method's own (`spec.reference_sides`), and the retain side when the retain term compares with the reference
    (`REFERENCE_RETAIN`). The loop runs the reference on these sides only (it costs a forward each)."""
    retain = frozenset({"retain"}) if hyperparams.get("retain_loss_type") in REFERENCE_RETAIN else frozenset()
    return spec.reference_sides | retain


def requires_reference(spec: MethodSpec, hyperparams: dict) -> bool:
    """Whether the loop needs the frozen reference model at all (a copy of the start model's weights)."""
    return bool(reference_sides(spec, hyperparams))


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    options = typing.get_args(hint) or (hint,)
    return " or ".join("None" if t is type(None) else t.__name__ for t in options)


def _check(method: str, key: str, value: Any, hint: Any) -> Any:
    """Return `value` (ints widened to float where a float is expected) or raise a one-line ValueError."""
    if typing.get_origin(hint) is Literal:
        if isinstance(value, str) and value in typing.get_args(hint):
            return value
    else:
        for t in typing.get_args(hint) or (hint,):
            if t is type(None) and value is None:
                return None
            if isinstance(value, bool) != (t is bool):  # bools are strict both ways
                continue
            if t is float and isinstance(value, (int, float)):
                return float(value)
            if t in (int, bool, str) and isinstance(value, t):
                return value
    raise UsageError(f"{method} hyperparameter {key!r} must be {_describe(hint)}, got {value!r}")


def validate_hyperparams(spec: MethodSpec, overrides: dict) -> dict:
    """spec.defaults updated with `overrides`; unknown keys, wrongly typed values and values outside a declared
    bound (spec.bounds: a method module's BOUNDS, and alpha/gamma >= 0) raise a one-line UsageError."""
    hints = typing.get_type_hints(spec.loss)
    merged = dict(spec.defaults)
    for key, value in overrides.items():
        if key not in merged:
            raise unknown("hyperparameter", key, merged, of=spec.name, listed=", ".join(merged) or "none")
        merged[key] = _check(spec.name, key, value, hints[key])
        bound = spec.bounds.get(key)
        if bound is not None and isinstance(merged[key], (int, float)) and not bound.admits(merged[key]):
            raise UsageError(f"{spec.name} hyperparameter {key!r} must be {bound}, got {value!r}")
    return merged
