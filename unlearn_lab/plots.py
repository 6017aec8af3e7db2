"""Pictures for people who never open the MLflow UI: one run's training curve.

matplotlib (Agg) is imported inside the functions: commands that draw nothing never pay for it.
"""

from __future__ import annotations

from pathlib import Path

FQ_FLOOR = 1e-300  # a forget_quality that underflowed to 0 still gets a place on a log axis


def training_curve_figure(
    steps: list[tuple[int, float]],
    evaluations: dict[int, dict],
    title: str,
    first: tuple[str, bool] = ("forget_quality", True),
    second: tuple[str, bool] = ("model_utility", False),
):
    """Left: the training loss per optimizer step (gradient ascent's is negative). Right: the benchmark's two
    objectives' metrics (`first`, `second`: name and whether on a log axis; TOFU: forget_quality on a log axis and
    model_utility) at the optimizer step of each evaluation, on the same step axis as the loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot([s for s, _ in steps], [v for _, v in steps], c="#345", lw=1.2)
    left.set_xlabel("optimizer step")
    left.set_ylabel("loss")
    left.set_title("training loss")
    left.grid(True, alpha=0.3)
    (a, a_log), (b, b_log) = first, second
    at = sorted(s for s, summary in evaluations.items() if summary.get(a) is not None)
    if at:
        value = lambda s: max(evaluations[s][a], FQ_FLOOR) if a_log else evaluations[s][a]
        right.plot(at, [value(s) for s in at], "o-", c="#c33", label=a)
        if a_log:
            right.set_yscale("log")
        right.set_ylabel(a + (" (log)" if a_log else ""), color="#c33")
        twin = right.twinx()
        others = [s for s in at if evaluations[s].get(b) is not None]
        twin.plot(others, [evaluations[s][b] for s in others], "s--", c="#36c", label=b)
        twin.set_ylabel(b, color="#36c")
        if b_log:
            twin.set_yscale("log")
        else:
            twin.set_ylim(0, max(1.0, *(evaluations[s][b] for s in others)) if others else 1.0)
    right.set_xlabel("optimizer step")
    right.set_xlim(left.get_xlim())
    right.set_title("evaluations")
    right.grid(True, alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """Written atomically (a temporary file renamed into place), then closed."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    tmp.replace(path)
    return path
