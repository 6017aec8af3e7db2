"""The search space: learning rate (log scale), epochs (integers) and optional method hyperparameters.

Range syntax, on the command line and in a `--space` YAML file (a mapping of hyperparameter -> range):
`LOW:HIGH` (uniform; integers if both ends are integers and the hyperparameter is an integer),
`log:LOW:HIGH` (log scale, LOW > 0), or a YAML list of choices (categorical).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from unlearn_lab.errors import UsageError, unknown

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "float" | "int" | "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()

    def bounds(self) -> tuple[float, float]:
        """LOW and HIGH of a numeric range (a categorical parameter has none)."""
        if self.low is None or self.high is None:
            raise ValueError(f"parameter {self.name} is {self.kind}: it has choices, not bounds")
        return self.low, self.high

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        low, high = self.bounds()
        if self.kind == "int":
            return trial.suggest_int(self.name, int(low), int(high), log=self.log)
        return trial.suggest_float(self.name, low, high, log=self.log)

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return value in self.choices
        low, high = self.bounds()
        return isinstance(value, (int, float)) and low <= value <= high

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"{self.name} in {list(self.choices)}"
        return f"{self.name} in [{self.low:g}, {self.high:g}]{' (log)' if self.log else ''}"


def parse_range(text: str, name: str, *, kind: str = "float", log: bool = False, positive: bool = False) -> Param:
    """'1e-6:1e-3' -> Param; inverted, empty or (for log/positive) non-positive ranges are errors."""
    text = str(text).strip()
    if text.startswith("log:"):
        text, log = text[4:], True
    parts = text.split(":")
    if len(parts) != 2:
        raise UsageError(f"range for {name} must look like LOW:HIGH (e.g. 1e-6:1e-3), got '{text}'")
    try:
        low, high = (int(p) if kind == "int" else float(p) for p in parts)
    except ValueError:
        expected = "integers" if kind == "int" else "numbers"
        raise UsageError(f"range for {name} must be two {expected} LOW:HIGH, got '{text}'") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise UsageError(f"range for {name} must be finite, got '{text}'")
    if (positive or log) and low <= 0:
        raise UsageError(f"range for {name} must be positive (log scale), got '{text}'")
    if low >= high:
        raise UsageError(f"range for {name} is empty or inverted ({low:g} >= {high:g}); write LOW:HIGH with LOW < HIGH")
    return Param(name, kind, low, high, log)


def method_param(name: str, value: Any, default: Any, accepted: list[str]) -> Param:
    """One `--space` entry, typed by the method hyperparameter's default."""
    if name not in accepted:
        raise unknown("space parameter", name, accepted, listed=f"lr, epochs, {', '.join(accepted)}")
    if isinstance(value, list):
        if not value:
            raise UsageError(f"space parameter {name}: the list of choices is empty")
        return Param(name, "categorical", choices=tuple(value))
    if isinstance(default, (bool, str)):
        raise UsageError(f"space parameter {name} takes a list of choices, e.g. {name}: [{default!r}]")
    integer_ends = all(part.strip().lstrip("-").isdigit() for part in str(value).removeprefix("log:").split(":"))
    kind = "int" if isinstance(default, int) or (default is None and integer_ends) else "float"
    return parse_range(str(value), name, kind=kind)


@dataclass(frozen=True)
class SearchSpace:
    lr: Param
    epochs: Param
    method: tuple[Param, ...] = ()

    @property
    def params(self) -> tuple[Param, ...]:
        return (self.lr, self.epochs, *self.method)

    def overrides(self, values: dict) -> list[str]:
        """Trial parameters -> --set style overrides for the experiment config."""
        out = [f"unlearn.lr={values['lr']!r}", f"unlearn.epochs={values['epochs']}"]
        out += [f"unlearn.method_args.{p.name}={values[p.name]!r}" for p in self.method]
        return out


def build_space(
    lr_range: str, epochs_range: str, space_file: str | None, method_defaults: dict, declared: dict | None = None
) -> SearchSpace:
    """lr and epochs ranges plus method hyperparameters: from `declared` (the experiment's `sweep.space`), then
    the --space file, whose entries win (lr and epochs in it too)."""
    lr = parse_range(lr_range, "lr", log=True)
    epochs = parse_range(epochs_range, "epochs", kind="int", positive=True)
    extra: tuple[Param, ...] = ()
    raw: dict = dict(declared or {})
    if space_file:
        from unlearn_lab.config import load_yaml

        raw.update(load_yaml(space_file, "--space file"))
    if raw:
        accepted = list(method_defaults)
        extra = tuple(
            method_param(str(k), v, method_defaults.get(k), accepted)
            for k, v in raw.items()
            if k not in ("lr", "epochs")
        )
        if "lr" in raw:
            lr = parse_range(str(raw["lr"]), "lr", log=True)
        if "epochs" in raw:
            epochs = parse_range(str(raw["epochs"]), "epochs", kind="int", positive=True)
    return SearchSpace(lr, epochs, extra)
