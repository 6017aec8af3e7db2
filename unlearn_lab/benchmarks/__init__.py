"""Benchmarks: what a run needs to know about its data and its judgement, behind one small interface.

A benchmark owns its data sources and splits, how training items are built (TOFU: question-answer pairs in the chat
template; MUSE: raw text cut into fixed-length chunks), how its embedded models are prepared, its evaluation suite
and the files it writes, its headline metrics, and the objectives and threshold its sweeps and leaderboard use by
default. The experiment names it (`benchmark: tofu | muse`); the plan resolves it once and every stage asks it,
never `if benchmark == ...`. `BENCHMARKS` is the literal registry; installed plugins add rows (entry point group
`unlearn_lab.benchmarks`, docs/extending.md). Adding one (WMDP, your own) is a package that implements `Benchmark`
plus its registration.

Benchmarks take the experiment config and plain objects, never the plan (the plan is built from them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from unlearn_lab.errors import UsageError, unknown

if TYPE_CHECKING:
    from unlearn_lab.config import ExperimentConfig
    from unlearn_lab.data.prompts import Encoded
    from unlearn_lab.data.unlearning import UnlearnData
    from unlearn_lab.methods.base import MethodSpec


@dataclass(frozen=True)
class Objective:
    """One sweep objective: a summary metric, the way the sweep pushes it, and its scale. The sweep maximises
    `value`: the metric on its scale (log10 when `log`: forget_quality spans 1e-239..1; |metric| when `absolute`:
    privleak is best at 0), negated when the goal is "min"."""

    metric: str
    goal: Literal["max", "min"] = "max"
    log: bool = False
    absolute: bool = False

    @property
    def scale(self) -> str:
        """The metric on the scale its spread is reported in: log10_forget_quality, abs_privleak, model_utility."""
        return f"log10_{self.metric}" if self.log else f"abs_{self.metric}" if self.absolute else self.metric

    @property
    def name(self) -> str:
        """What the sweep calls the maximised value: log10_forget_quality, model_utility, -forget_verbmem_ROUGE."""
        return self.scale if self.goal == "max" else f"-{self.scale}"

    @property
    def wording(self) -> str:
        """'forget_quality up (log10)', 'privleak towards 0': for plans, help and plot labels."""
        if self.absolute:
            return f"{self.metric} towards 0"
        return f"{self.metric} {'up' if self.goal == 'max' else 'down'}" + (" (log10)" if self.log else "")

    def scaled(self, raw: float) -> float:
        """A metric value on this objective's scale."""
        from unlearn_lab.metrics.functions import log10_forget_quality

        return log10_forget_quality(raw) if self.log else abs(float(raw)) if self.absolute else float(raw)

    def value(self, summary: Mapping[str, Any]) -> float:
        """What the sweep maximises, from an evaluation summary (a metric the summary lacks is an error)."""
        raw = summary.get(self.metric)
        if raw is None:
            raise ValueError(f"the evaluation returned no {self.metric}")
        scaled = self.scaled(float(raw))
        return scaled if self.goal == "max" else -scaled

    def shown(self, value: float) -> float:
        """`value` (maximised) back on the objective's scale."""
        return value if self.goal == "max" else -value

    def central(self, scale_mean: float) -> float:
        """The metric's central value from a mean on its scale: 10 ** mean for `log` (the geometric mean)."""
        return 10**scale_mean if self.log else scale_mean

    def better(self, a: float, b: float) -> bool:
        """Scale value a is at least as good as b."""
        return a >= b if self.goal == "max" else a <= b

    def columns(self, mean: float, sd: float | None) -> dict[str, Any]:
        """A setting's report columns from its mean (maximised) and seed sd: <scale>_mean and <scale>_sd, plus the
        metric's geometric mean <metric>_mean when on log10 (forget_quality_mean, log10_forget_quality_mean, ...)."""
        shown = self.shown(mean)
        out: dict[str, Any] = {f"{self.metric}_mean": self.central(shown)} if self.log else {}
        out[f"{self.scale}_mean"] = shown
        out[f"{self.scale}_sd"] = "" if sd is None else sd
        return out

    def column_names(self) -> tuple[str, ...]:
        return tuple(self.columns(0.0, None))

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "goal": self.goal, "log": self.log, "absolute": self.absolute}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Objective:
        return cls(str(data["metric"]), data.get("goal", "max"), bool(data.get("log")), bool(data.get("absolute")))


def choose_objectives(benchmark: Benchmark, text: str | None) -> tuple[Objective, Objective]:
    """`--objectives FORGET,UTILITY` from the benchmark's objective choices (None: its default pair). The second is
    the utility that the collapse floor and --min-utility read: a metric the benchmark maximises on its own scale."""
    if text is None:
        return benchmark.objectives
    choices = benchmark.objective_choices
    names = [n.strip() for n in text.split(",") if n.strip()]
    listed = ", ".join(f"{name} ({o.wording})" for name, o in choices.items())
    if len(names) != 2 or names[0] == names[1]:
        raise UsageError(f"--objectives takes two different metrics, FORGET,UTILITY; {benchmark.name} offers {listed}")
    for name in names:
        if name not in choices:
            raise unknown(f"{benchmark.name} objective", name, choices, listed=listed)
    first, second = choices[names[0]], choices[names[1]]
    if second.goal != "max" or second.log or second.absolute:
        utilities = ", ".join(n for n, o in choices.items() if o.goal == "max" and not (o.log or o.absolute))
        raise UsageError(
            f"--objectives: the second objective is the utility kept (the collapse floor reads it): one of "
            f"{utilities}, got {names[1]}"
        )
    return first, second


class Benchmark(Protocol):
    name: str
    eval_file: str  # TOFU_EVAL.json / MUSE_EVAL.json
    summary_file: str
    headline: tuple[str, ...]  # copied onto runs; the leaderboard's columns
    objectives: tuple[Objective, Objective]  # the sweep's default: (forget, utility)
    objective_choices: Mapping[str, Objective]  # what --objectives may name: headline metrics with their direction
    forget_threshold: float  # the leaderboard's rule (b): the forget metric at least this good
    has_alternate: bool  # "I don't know" answers for IdkDPO

    def resolve(self, cfg: ExperimentConfig) -> ExperimentConfig:
        """The config checked for this benchmark (its splits) with derived settings filled in."""
        ...

    def source(self, cfg: ExperimentConfig) -> Any: ...
    def check_data(self, cfg: ExperimentConfig, source: Callable[[], Any]) -> str | None:
        """Why the data source (`source()` opens it) cannot serve the experiment's splits, one line naming the source,
        or None: the preflight asks before any model is built or loaded."""
        ...

    def describe(self, source: Any) -> str: ...
    def show(self, source: Any, split: str, n: int) -> list[dict]: ...
    def key_content(self, cfg: ExperimentConfig) -> dict | None:
        """What the model and reference cache keys hold beyond the shared settings (None: nothing)."""
        ...

    def stage_items(self, cfg: ExperimentConfig, source: Any) -> dict[str, int]:
        """Training items of each stage: 'target' and 'retain' (prepare's fine-tunes) and 'forget' (unlearning)."""
        ...

    def embedded_tokenizer(self, cfg: ExperimentConfig, source: Any) -> Any:
        """The tokenizer of the embedded models (`model.base: embedded`), trained on the world's text."""
        ...

    def pretrain_items(self, cfg: ExperimentConfig, source: Any, tokenizer: Any) -> list[Encoded]: ...
    def finetune_items(self, cfg: ExperimentConfig, source: Any, tokenizer: Any, role: str) -> list[Encoded]: ...
    def describe_finetune(self, cfg: ExperimentConfig, source: Any, role: str) -> tuple[str, str]:
        """What the target or retain model is fine-tuned on: (its name, its size in words)."""
        ...

    def finetune_split(self, cfg: ExperimentConfig, role: str) -> str:
        """The name of what the target or retain model is fine-tuned on, without reading the data (plans)."""
        ...

    def world_note(self, cfg: ExperimentConfig) -> str:
        """The data's size as a plan shows it ('authors: 20', '20 articles a split')."""
        ...

    pretrains_base: bool  # the embedded base model is pre-trained (pretrain_items) before fine-tuning
    folder_kind: str  # what a data folder holds, for messages: "a folder of TOFU files (full.json, ...)"
    folder_marker: str  # a glob every such folder matches ("full.*"): the preflight's first check of a folder

    def unlearn_data(self, cfg: ExperimentConfig, source: Any, tokenizer: Any, spec: MethodSpec) -> UnlearnData: ...
    def metrics(self, text: str) -> tuple[str, ...]: ...
    def reference_metrics(self, metrics: Sequence[str]) -> tuple[str, ...]:
        """Of these top-level metrics, those that need the retain model's reference."""
        ...

    def reference_entries(self) -> tuple[str, ...]:
        """The metrics the retain reference computes (what forget_quality, privleak... read from it)."""
        ...

    def eval_data(self, cfg: ExperimentConfig, source: Any) -> Any: ...
    def evaluate(
        self,
        cfg: ExperimentConfig,
        model: Any,
        tokenizer: Any,
        data: Any,
        metrics: Sequence[str],
        *,
        reference: dict | None,
        progress: bool,
        log: Any,
    ) -> dict: ...
    def summary(self, results: dict, metrics: Sequence[str]) -> dict: ...
    def utility_bound(self, cfg: ExperimentConfig, model: Any, tokenizer: Any, data: Any) -> float | None:
        """An upper bound on the utility objective's metric cheaper than an evaluation (early stopping of
        collapsed runs), or None when the benchmark has none."""
        ...


# the built-in benchmarks: name -> where its instance lives (imported when asked for: TOFU runs never import MUSE)
BENCHMARKS = {
    "tofu": "unlearn_lab.benchmarks.tofu:TOFU",
    "muse": "unlearn_lab.benchmarks.muse.benchmark:MUSE",
}


def _load(ref: str) -> Any:
    import importlib

    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def all_benchmarks() -> dict[str, Benchmark]:
    """The built-in benchmarks and the installed plugins' (entry point group `unlearn_lab.benchmarks`)."""
    from unlearn_lab import plugins

    return plugins.registry("benchmarks", Benchmark, {name: _load(ref) for name, ref in BENCHMARKS.items()})


def get_benchmark(name: str) -> Benchmark:
    """The benchmark `name`; unknown names are one line with the accepted ones."""
    if name in BENCHMARKS:
        benchmark: Benchmark = _load(BENCHMARKS[name])
        return benchmark
    known = all_benchmarks()
    if name not in known:
        raise unknown("benchmark", name, known)
    return known[name]


def check_method(benchmark: Benchmark, spec: MethodSpec) -> None:
    """A method that needs what the benchmark lacks (IdkDPO: "I don't know" answers) is one line, before anything."""
    if spec.needs_alternate and not benchmark.has_alternate:
        raise UsageError(
            f'{spec.name} needs "I don\'t know" answers, which the {benchmark.name} benchmark does not have; '
            "choose another method (unlearn-lab methods)"
        )


def objective_names(objectives: Sequence[Objective]) -> tuple[str, ...]:
    return tuple(o.name for o in objectives)
