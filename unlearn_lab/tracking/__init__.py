"""Experiment tracking behind one small interface. `mlflow_tracker` is the only module importing mlflow.

Runs are addressed by explicit ids (no "active run" global): a run, its nested evaluation runs
(tag mlflow.parentRunId) and a sweep's trials all go through the same five calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from unlearn_lab.errors import RunFailed


class Tracker(Protocol):
    def unique_name(self, name: str) -> str: ...

    def start_run(self, name: str, *, tags: dict[str, str] | None = None, parent_id: str | None = None) -> str: ...

    def log_params(self, run_id: str, params: dict[str, Any]) -> None: ...

    def log_metrics(
        self, run_id: str, metrics: dict[str, float], step: int | None = None, model_id: str | None = None
    ) -> None: ...

    def log_metric_history(
        self, run_id: str, history: list[tuple[int, dict[str, float]]], model_id: str | None = None
    ) -> None: ...

    def log_model(
        self, run_id: str, model: Any, tokenizer: Any, saved_dir: Path, name: str = "model"
    ) -> str | None: ...

    def log_artifact(self, run_id: str, path: str, artifact_path: str | None = None) -> None: ...

    def log_text(self, run_id: str, text: str, name: str) -> None: ...

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None: ...

    def end_run(self, run_id: str, status: str = "FINISHED") -> None: ...

    def resume_run(self, run_id: str) -> None: ...

    def register_model(
        self,
        name: str,
        run_id: str,
        artifact_path: str = "model",
        alias: str | None = None,
        tags: dict[str, Any] | None = None,
    ) -> str | int: ...

    def run_status(self, run_id: str) -> str: ...

    def has_run(self, run_id: str) -> bool: ...


@dataclass(frozen=True)
class TrackedRun:
    """A run read back from a tracking store (reports and docs tables read runs; runs never read themselves)."""

    run_id: str
    name: str
    status: str
    start_ms: int
    end_ms: int | None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # the latest value of each

    @property
    def parent_id(self) -> str | None:
        return self.tags.get("mlflow.parentRunId")

    @property
    def seconds(self) -> float | None:
        return None if self.end_ms is None else (self.end_ms - self.start_ms) / 1000


def first_free_name(name: str, taken: set[str]) -> str:
    """`name`, or the first of `name-2`, `name-3`, ... not in `taken`: run names stay unique in an experiment."""
    if name not in taken:
        return name
    return next(f"{name}-{k}" for k in range(2, len(taken) + 3) if f"{name}-{k}" not in taken)


class TrackingLost(RunFailed):
    """The tracking store stopped answering during a run. The message says what finished locally."""


class Guarded:
    """One run's view of a Tracker that may go away: the first call failing because the store is unreachable
    (as the tracker's `is_unavailable` judges; other errors propagate) is remembered in `lost`, and every later
    call returns None without trying, so training, the local save and the local evaluation still finish.
    The caller checks `lost` at the end and raises TrackingLost."""

    def __init__(self, tracker: Tracker, log: Callable[[str], None] = print):
        self.tracker, self.log = tracker, log
        self.lost: str | None = None

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.tracker, name)
        judge = getattr(self.tracker, "is_unavailable", None)
        if not callable(method) or judge is None:
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.lost:
                return None
            try:
                return method(*args, **kwargs)
            except Exception as exc:
                if not judge(exc):
                    raise
                self.lost = f"{name}: {str(exc).splitlines()[0][:300]}"
                self.log(f"warning: tracking store unreachable ({self.lost}); continuing locally")
                return None

        return call
