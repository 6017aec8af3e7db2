"""An in-memory Tracker for tests and for runs with tracking turned off."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearn_lab.tracking import first_free_name


@dataclass
class MemoryRun:
    name: str
    parent_id: str | None
    tags: dict[str, str]
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, list[tuple[int | None, float]]] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)  # artifact path -> local source path or text
    status: str = "RUNNING"


class MemoryTracker:
    def __init__(self) -> None:
        self.runs: dict[str, MemoryRun] = {}
        self.registry: dict[str, list[str]] = {}
        self.aliases: dict[tuple[str, str], str] = {}
        self.version_tags: dict[tuple[str, str], dict[str, Any]] = {}
        self.models: dict[str, dict[str, Any]] = {}  # logged models: id -> run, folder, linked metrics
        self._ids = itertools.count()

    def unique_name(self, name: str) -> str:
        return first_free_name(name, {run.name for run in self.runs.values()})

    def start_run(self, name: str, *, tags: dict[str, str] | None = None, parent_id: str | None = None) -> str:
        run_id = f"run{next(self._ids)}"
        self.runs[run_id] = MemoryRun(name, parent_id, dict(tags or {}))
        return run_id

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        self.runs[run_id].params.update(params)

    def log_metrics(
        self, run_id: str, metrics: dict[str, float], step: int | None = None, model_id: str | None = None
    ) -> None:
        for key, value in metrics.items():
            self.runs[run_id].metrics.setdefault(key, []).append((step, float(value)))
        if model_id is not None:
            self.models[model_id]["metrics"].update(metrics)

    def log_metric_history(
        self, run_id: str, history: list[tuple[int, dict[str, float]]], model_id: str | None = None
    ) -> None:
        for step, metrics in history:
            self.log_metrics(run_id, metrics, step, model_id)

    def log_model(self, run_id: str, model: Any, tokenizer: Any, saved_dir: Path, name: str = "model") -> str:
        model_id = f"m-{len(self.models)}"
        self.models[model_id] = {"run_id": run_id, "name": name, "saved_dir": str(saved_dir), "metrics": {}}
        self.runs[run_id].tags["model_id"] = model_id
        return model_id

    def log_artifact(self, run_id: str, path: str, artifact_path: str | None = None) -> None:
        name = Path(path).name
        self.runs[run_id].artifacts[f"{artifact_path}/{name}" if artifact_path else name] = str(path)

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.runs[run_id].artifacts[name] = text

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        self.runs[run_id].tags.update(tags)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.runs[run_id].status = status

    def has_run(self, run_id: str) -> bool:
        return run_id in self.runs

    def run_status(self, run_id: str) -> str:
        return self.runs[run_id].status

    def resume_run(self, run_id: str) -> None:
        self.runs[run_id].status = "RUNNING"

    def register_model(
        self,
        name: str,
        run_id: str,
        artifact_path: str = "model",
        alias: str | None = None,
        tags: dict[str, Any] | None = None,
    ) -> int:
        versions = self.registry.setdefault(name, [])
        self.version_tags[(name, run_id)] = dict(tags or {})
        if run_id not in versions:
            versions.append(run_id)
        if alias:
            self.aliases[(name, alias)] = run_id
        return versions.index(run_id) + 1

    def children(self, run_id: str) -> list[str]:
        return [rid for rid, run in self.runs.items() if run.parent_id == run_id]
