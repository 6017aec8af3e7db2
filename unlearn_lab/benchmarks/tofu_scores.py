"""What TOFU reports and how its trade-off is judged: the headline metrics, the sweep objectives and the choices
`--objectives` offers, the leaderboard's forget threshold. Plain declarations, importable without torch: the
benchmark (tofu.py) carries them, and the leaderboard uses them as its defaults without loading the benchmark."""

from __future__ import annotations

from collections.abc import Mapping

from unlearn_lab.benchmarks import Objective

HEADLINE: tuple[str, ...] = (
    "forget_quality",
    "model_utility",
    "privleak",
    "forget_Q_A_ROUGE",
    "forget_Q_A_Prob",
    "forget_truth_ratio",
    "extraction_strength",
)
# forget_quality (a KS p-value against the retain model) on log10: it spans 1e-239..1
OBJECTIVES: tuple[Objective, Objective] = (
    Objective("forget_quality", "max", log=True),
    Objective("model_utility", "max"),
)
# --objectives: the headline metrics with their direction (privleak: 0 is the retain model's; truth ratio's
# direction depends on what one wants of a retain-like model, so it is not offered)
OBJECTIVE_CHOICES: Mapping[str, Objective] = {
    "forget_quality": OBJECTIVES[0],
    "model_utility": OBJECTIVES[1],
    "privleak": Objective("privleak", "min", absolute=True),
    "forget_Q_A_ROUGE": Objective("forget_Q_A_ROUGE", "min"),
    "forget_Q_A_Prob": Objective("forget_Q_A_Prob", "min"),
    "extraction_strength": Objective("extraction_strength", "min"),
}
FORGET_THRESHOLD = 0.05  # the leaderboard's rule (b): forget_quality at least this
