"""TOFU_EVAL.json / TOFU_SUMMARY.json in the reference layout (indent 4, sorted keys), written atomically."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

SUMMARY_ORDER = (
    "forget_Q_A_Prob",
    "forget_Q_A_ROUGE",
    "extraction_strength",
    "model_utility",
    "privleak",
    "forget_quality",
    "forget_truth_ratio",
)


def write_json(path: str | Path, data: Any) -> Path:
    """Pretty JSON (indent 4, sorted keys) through a temp file + rename: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=4, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_reports(
    out_dir: str | Path, results: dict, summary: dict, names: tuple[str, str] = ("TOFU_EVAL.json", "TOFU_SUMMARY.json")
) -> tuple[Path, Path]:
    """The benchmark's eval file (every entry) and summary file (top-level metrics), each written atomically."""
    out_dir = Path(out_dir)
    return write_json(out_dir / names[0], results), write_json(out_dir / names[1], summary)


def read_json(path: str | Path) -> dict:
    from unlearn_lab.errors import UsageError

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"file not found: {path} (expected an evaluation file such as TOFU_EVAL.json)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); expected a TOFU_EVAL.json"
        ) from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a JSON object of metrics (a TOFU_EVAL.json)")
    return data


def fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4) and math.isfinite(value):
        return f"{value:.3e}"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def table(summary: dict, names: tuple[str, ...] | None = None) -> str:
    keys = [n for n in (names or SUMMARY_ORDER) if n in summary] + [
        n for n in summary if n not in (names or SUMMARY_ORDER)
    ]
    width = max((len(k) for k in keys), default=10)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  {'-' * 10}"]
    lines += [f"{k:<{width}}  {fmt(summary[k])}" for k in keys]
    return "\n".join(lines)
