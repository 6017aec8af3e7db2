"""The search space: learning rate (log scale), epochs (integers) and optional method hyperparameters.

Range syntax, on the command line and in a `--space` YAML file (a mapping of hyperparameter -> range):
`LOW:HIGH` (uniform; integers if both ends are integers and the hyperparameter is an integer),
`log:LOW:HIGH` (log scale, LOW > 0), or a YAML list of choices (categorical).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from unlearn_lab.errors import UsageError, unknown

if TYPE_CHECKING:
    import optuna

    from unlearn_lab.methods import MethodSpec


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
class MethodChoice:
    """`--methods`: one method the search may pick, with its own lr and epochs ranges (methods differ by an order
    of magnitude in lr; the experiment's `sweep.methods` declares each one's)."""

    name: str
    lr: Param
    epochs: Param

    def describe(self) -> str:
        return f"{self.lr.describe()}, {self.epochs.describe()}"


@dataclass(frozen=True)
class SearchSpace:
    lr: Param
    epochs: Param
    method: tuple[Param, ...] = ()  # the method's hyperparameters
    methods: tuple[MethodChoice, ...] = ()  # --methods: the method itself is a categorical dimension

    @property
    def params(self) -> tuple[Param, ...]:
        """Every trial parameter (the method first when it is searched): rows, tags and the stored study read it."""
        chosen = (Param("method", "categorical", choices=tuple(m.name for m in self.methods)),) if self.methods else ()
        return (*chosen, self.lr, self.epochs, *self.method)

    def describe(self) -> str:
        """The space in one line (with --methods: lr and epochs are the envelope of the methods' own ranges)."""
        text = ", ".join(p.describe() for p in self.params)
        return text + "".join(f"; {m.name}: {m.describe()}" for m in self.methods)

    def ranges(self, method: str | None) -> tuple[Param, Param]:
        """The lr and epochs ranges of `method` (the one ranges without --methods)."""
        choice = next((m for m in self.methods if m.name == method), None)
        return (choice.lr, choice.epochs) if choice else (self.lr, self.epochs)

    def draw(self, trial: optuna.Trial, *, reuse_epochs: bool = False) -> dict[str, Any]:
        """One trial's parameters: the method (with --methods), then its lr and epochs, then its hyperparameters;
        with `reuse_epochs` every trial trains the range's largest epoch count."""
        values: dict[str, Any] = {}
        if self.methods:
            values["method"] = trial.suggest_categorical("method", [m.name for m in self.methods])
        lr, epochs = self.ranges(values.get("method"))
        values["lr"] = lr.suggest(trial)
        high = int(epochs.bounds()[1])
        values["epochs"] = trial.suggest_int("epochs", high, high) if reuse_epochs else epochs.suggest(trial)
        values.update({p.name: p.suggest(trial) for p in self.method})
        return values

    def grid(self, n: int, method: str | None = None) -> list[dict[str, Any]]:
        """The lr x epochs grid of n settings people run by hand: b = n // 5 epoch counts (at least 1, at most 5
        and the range's count; evenly over the range, both ends, or its middle when b = 1) times a = n // b learning
        rates (log-spaced over the range on a log range, both ends; 4 significant digits). 5 = 5 x 1,
        10 = 5 x 2, 20 = 5 x 4, 40 = 8 x 5. lr and epochs only: other hyperparameters are left to the sampler."""
        if n < 1:
            return []
        lr, epochs = self.ranges(method)
        (lo, hi), (e_lo, e_hi) = lr.bounds(), (int(v) for v in epochs.bounds())
        b = max(1, min(n // 5, 5, e_hi - e_lo + 1))
        a = max(1, n // b)

        def spaced(i: int, count: int) -> float:
            t = 0.5 if count == 1 else i / (count - 1)
            return lo * (hi / lo) ** t if lr.log else lo + (hi - lo) * t

        lrs = [min(hi, max(lo, float(f"{spaced(i, a):.4g}"))) for i in range(a)]
        counts = [round((e_lo + e_hi) / 2)] if b == 1 else [round(e_lo + (e_hi - e_lo) * j / (b - 1)) for j in range(b)]
        return [{"lr": x, "epochs": e} for x in lrs for e in counts]

    def contains(self, values: dict[str, Any]) -> bool:
        """Whether a configuration (e.g. the experiment's own) lies inside the space."""
        if self.methods and values.get("method") not in {m.name for m in self.methods}:
            return False
        lr, epochs = self.ranges(values.get("method"))
        return all(p.contains(values.get(p.name)) for p in (lr, epochs, *self.method))

    def overrides(self, values: dict) -> list[str]:
        """Trial parameters -> --set style overrides for the experiment config (a searched method starts from its
        own default hyperparameters)."""
        out = [f"unlearn.method={values['method']}", "unlearn.method_args={}"] if "method" in values else []
        out += [f"unlearn.lr={values['lr']!r}", f"unlearn.epochs={values['epochs']}"]
        out += [f"unlearn.method_args.{p.name}={values[p.name]!r}" for p in self.method]
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, for the study (a worker on another host rebuilds the space from it)."""
        return {
            "lr": asdict(self.lr),
            "epochs": asdict(self.epochs),
            "method": [asdict(p) for p in self.method],
            "methods": [asdict(m) for m in self.methods],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | list[dict[str, Any]]) -> SearchSpace:
        """`to_dict`'s inverse; also reads the list form older versions stored ([lr, epochs, *hyperparameters])."""
        param = lambda p: Param(**{**p, "choices": tuple(p["choices"])})
        if isinstance(data, list):
            return cls(param(data[0]), param(data[1]), tuple(param(p) for p in data[2:]))
        methods = tuple(MethodChoice(m["name"], param(m["lr"]), param(m["epochs"])) for m in data["methods"])
        return cls(param(data["lr"]), param(data["epochs"]), tuple(param(p) for p in data["method"]), methods)


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


def check_space(space: SearchSpace, method: MethodSpec) -> None:
    """Every value the method's hyperparameter space can draw is one the method accepts (its type and bound): both
    ends of a range, every choice; one line naming the parameter otherwise, before any trial runs."""
    from unlearn_lab.methods import validate_hyperparams

    for param in space.method:
        values = param.choices if param.kind == "categorical" else param.bounds()
        for value in values:
            try:
                validate_hyperparams(method, {param.name: value})
            except UsageError as exc:
                raise UsageError(f"space parameter {param.describe()}: {exc}") from None


def with_methods(
    space: SearchSpace,
    text: str,
    ranges: Callable[[str], tuple[str, str]],
    lr_range: str | None = None,
    epochs_range: str | None = None,
    *,
    reuse_epochs: bool = False,
) -> SearchSpace:
    """`--methods A,B,...`: the method becomes a categorical dimension, each method with its own lr and epochs
    ranges (`ranges(method)`, the experiment's sweep.methods; --lr-range / --epochs-range set them for all)."""
    from unlearn_lab.methods import get_method

    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    for name in names:
        get_method(name)  # unknown names: one line with a suggestion
    if len(names) < 2:
        raise UsageError("--methods takes two or more methods separated by commas, e.g. GradAscent,NPO (one: --method)")
    if space.method:
        raise UsageError(
            "--methods searches each method's lr and epochs; a hyperparameter space (--space, sweep.space) belongs "
            "to one method: drop it, or sweep one --method"
        )
    if reuse_epochs:
        raise UsageError("--methods and --reuse-epochs cannot be combined (each method has its own epochs range)")
    choices = []
    for name in names:
        lr_text, epochs_text = ranges(name)
        own_lr = parse_range(lr_range or lr_text, "lr", log=True)
        own_epochs = parse_range(epochs_range or epochs_text, "epochs", kind="int", positive=True)
        choices.append(MethodChoice(name, own_lr, own_epochs))
    low, high = min(c.lr.bounds()[0] for c in choices), max(c.lr.bounds()[1] for c in choices)
    first, last = min(c.epochs.bounds()[0] for c in choices), max(c.epochs.bounds()[1] for c in choices)
    envelope = (Param("lr", "float", low, high, log=True), Param("epochs", "int", first, last))
    return SearchSpace(*envelope, (), tuple(choices))
