"""MLflow adapter (the only module that imports mlflow). Uses MlflowClient with explicit run ids.

Default store: a SQLite database plus an artifact folder under ./mlruns (MLflow 3.17 refuses the
plain file store). `MLFLOW_TRACKING_URI` or `--tracking-uri` override it; an http(s) server is
checked for reachability before anything trains.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unlearn_lab.errors import UsageError
from unlearn_lab.tracking import TrackedRun, first_free_name

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

DEFAULT_DIR = "mlruns"
MAX_PARAM_LEN = 6000
MODEL_ID_TAG = "model_id"  # a run's logged MLflow model


def default_uri(root: str | Path = ".") -> str:
    return f"sqlite:///{(Path(root) / DEFAULT_DIR / 'mlflow.db').resolve()}"


def resolve_uri(uri: str | None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri()


def check_reachable(uri: str, timeout: float = 5.0, *, create: bool = True) -> None:
    """One clear line, before any training, if the store cannot be used (create: make a SQLite store's folder)."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
                if response.status != 200:
                    raise UsageError(f"tracking server {uri} answered /health with HTTP {response.status}")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UsageError(
                f"tracking server unreachable at {uri} ({reason}); start it or pass another "
                f"--tracking-uri (e.g. sqlite:///mlruns/mlflow.db)"
            ) from None
    elif uri.startswith("sqlite:///"):
        if create:
            Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    elif uri.startswith(("postgresql://", "postgresql+", "mysql://", "mysql+", "databricks")):
        return
    else:
        raise UsageError(
            f"unsupported tracking URI '{uri}'; accepted: sqlite:///path/mlflow.db, http(s)://host:port, "
            "postgresql://..."
        )


# MLflow 3's UI reads the experiment kind to choose its view: "finetuning" opens the model-training view (runs
# table, charts), not the GenAI one. The note is the experiment's description on its page.
EXPERIMENT_TAGS = {
    "mlflow.experimentKind": "finetuning",
    "mlflow.note.content": (
        "LLM unlearning runs made by unlearn-lab. Each top-level run unlearns one model with one method "
        "(named `<method>-<forget split>-lr<lr>-ep<epochs>`; sweep trials `t<k>-...` under their `sweep-<study>` "
        "run) and carries its final headline metrics: forget_quality (KS p-value against the retain model; "
        "higher = closer to never having seen the forget set; compare its scale with log10_forget_quality), "
        "model_utility (harmonic mean of 9 retain/real-author/world-fact scores; higher is better), privleak "
        "(0 = the retain model; negative = under-unlearned, positive = over-unlearned) and forget_Q_A_ROUGE. "
        "Nested `eval-ep<k>` / `eval-final` runs hold every TOFU metric at the optimizer step where their epoch "
        "ended, so they share a chart axis with the training loss. Compare runs: tick them in the table and press "
        "Compare, or chart log10_forget_quality against model_utility."
    ),
}

# A lost server: MLflow's own default retries a request 7 times with a backoff factor of 2 (minutes of
# waiting per call). These defaults ride out a server restart of ~30 s (waits 1+2+4+8+16 s); the
# environment variables still override them.
HTTP_RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


class Uninterrupted:
    """An MlflowClient whose every call finishes before a Ctrl-C / SIGTERM lands (runtime.deferred): an interrupt
    inside MLflow's SQLite session leaves the database locked for the rest of the process, so the run it should
    mark KILLED would stay RUNNING."""

    def __init__(self, client: MlflowClient):
        self._client = client

    def __getattr__(self, name: str) -> Any:
        from unlearn_lab.runtime import deferred

        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with deferred():
                return attr(*args, **kwargs)

        return call


class MlflowTracker:
    def __init__(self, uri: str | None = None, experiment: str = "unlearn-lab"):
        from mlflow.tracking import MlflowClient

        self.uri = resolve_uri(uri)
        check_reachable(self.uri)
        for key, value in HTTP_RETRY_DEFAULTS.items():
            os.environ.setdefault(key, value)
        self.client = Uninterrupted(MlflowClient(tracking_uri=self.uri))
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
        else:
            artifacts = None
            if self.uri.startswith("sqlite:///"):  # keep artifacts beside the database
                artifacts = (Path(self.uri[len("sqlite:///") :]).parent / "artifacts").resolve().as_uri()
            try:
                self.experiment_id = self.client.create_experiment(
                    experiment, artifact_location=artifacts, tags=EXPERIMENT_TAGS
                )
            except Exception:
                created = self.client.get_experiment_by_name(experiment)
                if created is None:  # no: the creation itself failed
                    raise
                self.experiment_id = created.experiment_id
        if found is not None and found.tags.get("mlflow.experimentKind") != EXPERIMENT_TAGS["mlflow.experimentKind"]:
            for key, value in EXPERIMENT_TAGS.items():  # a store made by an older version
                self.client.set_experiment_tag(self.experiment_id, key, value)

    def is_unavailable(self, exc: BaseException) -> bool:
        """A request that failed because the server is gone or failing (after MLflow's retries), or a SQLite store
        that stayed locked past MLflow's 20 s busy timeout (another process holding it), not bad data."""
        import requests

        if isinstance(exc, (requests.exceptions.RequestException, ConnectionError)):
            return True
        if getattr(exc, "error_code", None) == "TEMPORARILY_UNAVAILABLE":
            return True
        text = str(exc)
        return (
            type(exc).__name__ == "MlflowException"
            and text.startswith("API request to")
            and ("failed with exception" in text or "failed with error code 5" in text)
        )

    def unique_name(self, name: str) -> str:
        """`name`, or `name-2`, `name-3`, ... when a run of this experiment already has it."""
        from mlflow.entities import ViewType

        pattern = name.replace("'", "\\'")
        runs = self.client.search_runs(
            [self.experiment_id], f"attributes.run_name LIKE '{pattern}%'", run_view_type=ViewType.ALL, max_results=5000
        )
        return first_free_name(name, {r.info.run_name for r in runs})

    def start_run(self, name: str, *, tags: dict[str, str] | None = None, parent_id: str | None = None) -> str:
        tags = dict(tags or {})
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        return run.info.run_id

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(str(k), str(v)[:MAX_PARAM_LEN]) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
            self.client.log_batch(run_id, params=items[start : start + 100])

    def log_metrics(
        self, run_id: str, metrics: dict[str, float], step: int | None = None, model_id: str | None = None
    ) -> None:
        self.log_metric_history(run_id, [(step or 0, metrics)], model_id=model_id)

    def log_metric_history(
        self, run_id: str, history: list[tuple[int, dict[str, float]]], model_id: str | None = None
    ) -> None:
        """Metrics in batches; `model_id` links them to a logged model too (its page then shows them)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, int(step), model_id=model_id)
            for step, metrics in history
            for k, v in metrics.items()
            if v is not None
        ]
        for start in range(0, len(items), 1000):  # one call per 1000 values (log_batch limit)
            self.client.log_batch(run_id, metrics=items[start : start + 1000])

    def log_artifact(self, run_id: str, path: str, artifact_path: str | None = None) -> None:
        if Path(path).is_dir():
            self.client.log_artifacts(run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(run_id, str(path), artifact_path)

    def log_model(self, run_id: str, model: Any, tokenizer: Any, saved_dir: Path, name: str = "model") -> str | None:
        """The unlearned model as an MLflow model (transformers flavour, task text-generation) in a LoggedModel
        whose source is the run: the Models tab lists it, the registry versions it, and
        `mlflow.transformers.load_model("models:/<id>")` loads it back. Returns the model id; None where the flavour
        cannot package the model (the saved folder is then logged as a plain artifact, and a tag says why)."""
        import logging
        import tempfile

        import mlflow.transformers
        import torch
        import transformers

        from unlearn_lab.models.load import quiet_transformers

        # the weights are the saved folder's: naming it keeps MLflow from looking for a model card on the hub
        model.config.name_or_path = str(Path(saved_dir).resolve())
        requirements = [f"torch=={torch.__version__.split('+')[0]}", f"transformers=={transformers.__version__}"]
        quiet = logging.getLogger("mlflow.transformers")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # "no license information" and model-card notes about a local folder
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / name
                try:
                    with quiet_transformers():
                        mlflow.transformers.save_model(
                            transformers_model={"model": model, "tokenizer": tokenizer},
                            path=str(path),
                            task="text-generation",
                            pip_requirements=requirements,
                        )
                except Exception as exc:  # noqa: BLE001 - a model the flavour cannot package: keep the plain folder instead
                    self.client.log_artifacts(run_id, str(saved_dir), name)
                    self.client.set_tag(
                        run_id,
                        "model_logging",
                        f"plain folder artifact '{name}' "
                        f"(MLflow's transformers flavour failed: {str(exc).splitlines()[0][:200]})",
                    )
                    return None
                logged = self.client.create_logged_model(
                    self.experiment_id, name=name, source_run_id=run_id, model_type="transformers"
                )
                try:
                    self.client.log_model_artifacts(logged.model_id, str(path))
                except BaseException:
                    self.client.finalize_logged_model(logged.model_id, "FAILED")
                    raise
        finally:
            quiet.setLevel(level)
        from mlflow.entities import LoggedModelOutput

        self.client.finalize_logged_model(logged.model_id, "READY")
        self.client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])  # the run page lists it
        self.client.set_tag(run_id, MODEL_ID_TAG, logged.model_id)
        return logged.model_id

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.client.log_text(run_id, text, name)

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def has_run(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise
        return True

    def run_status(self, run_id: str) -> str:
        return self.client.get_run(run_id).info.status

    def resume_run(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def search(self, filter_string: str = "") -> list[TrackedRun]:
        """Every run of this tracker's experiment matching an MLflow filter (e.g. "tags.kind = 'sweep'"), newest
        first, with its tags, params and latest metrics."""
        from mlflow.entities import ViewType

        found, token = [], None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string, ViewType.ACTIVE_ONLY, max_results=1000, page_token=token
            )
            found += [
                TrackedRun(
                    r.info.run_id,
                    r.info.run_name,
                    r.info.status,
                    r.info.start_time,
                    r.info.end_time,
                    dict(r.data.tags),
                    dict(r.data.params),
                    dict(r.data.metrics),
                )
                for r in page
            ]
            token = page.token
            if not token:
                return found

    def read_text(self, run_id: str, path: str) -> str:
        """A text artifact of a run (e.g. a sweep's pareto.csv)."""
        import mlflow.artifacts

        return mlflow.artifacts.load_text(f"{self.client.get_run(run_id).info.artifact_uri}/{path}")

    def register_model(
        self,
        name: str,
        run_id: str,
        artifact_path: str = "model",
        alias: str | None = None,
        tags: dict[str, Any] | None = None,
    ) -> str:
        """A registry version (its number) for a run's model artifact (once per run), with an optional alias and
        version tags (what it is and how it scored: the registry page then says so without opening the run). One
        process registers a study's front (the `sweep` command), so nothing else writes these versions and aliases
        at the same time."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            self.client.create_registered_model(name)
        versions = self.client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
        if versions:
            version = versions[0]
        elif model_id := self.client.get_run(run_id).data.tags.get(MODEL_ID_TAG):
            # the run's logged MLflow model, by its artifact location: a models:/ source would be resolved
            # against the process-wide tracking URI, not this tracker's store
            location = self.client.get_logged_model(model_id).artifact_location
            version = self.client.create_model_version(name, location, run_id=run_id, model_id=model_id)
        else:
            version = self.client.create_model_version(name, f"runs:/{run_id}/{artifact_path}", run_id=run_id)
        for key, value in (tags or {}).items():
            self.client.set_model_version_tag(name, version.version, key, str(value))
        if alias:
            self.client.set_registered_model_alias(name, alias, version.version)
        return str(version.version)


def ui_command(uri: str | None, host: str, port: int, workers: int = 1) -> tuple[str, list[str], dict]:
    """The experiment page's URL and the `mlflow ui` command line for the store. The experiment is created (with
    its tags) first, so the URL opens the runs table in the training view. No job executor: the UI does not need
    one, and without it each worker holds ~0.3 GB instead of ~1 GB."""
    import sys

    tracker = MlflowTracker(uri)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}/#/experiments/{tracker.experiment_id}/runs"
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"),
    }
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        tracker.uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    return url, argv, env


def fetch_registered(spec: str, uri: str | None, dest: Path) -> Path:
    """`models:/<name>@<alias>`, `models:/<name>/<version>` or `models:/<model id>` -> a plain Hugging Face folder
    (weights and tokenizer side by side) under `dest`, downloaded once. Unknown names, aliases or versions are
    one-line usage errors."""
    import shutil

    import mlflow.artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    resolved = resolve_uri(uri)
    check_reachable(resolved, create=False)
    if resolved.startswith("sqlite:///") and not Path(resolved[len("sqlite:///") :]).is_file():
        raise UsageError(
            f"cannot fetch {spec}: no tracking database at {resolved[len('sqlite:///') :]} "
            "(give the store that holds the registry with --tracking-uri)"
        )
    try:
        location = _model_location(MlflowClient(tracking_uri=resolved, registry_uri=resolved), spec[len("models:/") :])
    except MlflowException as exc:
        raise UsageError(
            f"cannot fetch {spec} from {resolved}: {str(exc).splitlines()[0][:300]} "
            "(accepted: models:/<name>@<alias>, models:/<name>/<version>, models:/<model id>)"
        ) from None
    # keyed by what the spec points at now: an alias moves to another version when a sweep registers again
    key = hashlib.sha256(location.encode()).hexdigest()[:16]
    folder = dest / key
    if (folder / "config.json").is_file():
        return folder
    try:
        raw = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=location, tracking_uri=resolved, dst_path=str(dest / f".{key}.download")
            )
        )
    except MlflowException as exc:
        raise UsageError(f"cannot fetch {spec} from {resolved}: {str(exc).splitlines()[0][:300]}") from None
    weights, tokenizer = raw / "model", raw / "components" / "tokenizer"
    if not (weights / "config.json").is_file():
        raise UsageError(f"{spec} is not a transformers model logged by unlearn-lab (no model/config.json in it)")
    tmp = dest / f".{key}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(weights, tmp)
    if tokenizer.is_dir():
        shutil.copytree(tokenizer, tmp, dirs_exist_ok=True)
    tmp.replace(folder)
    shutil.rmtree(dest / f".{key}.download", ignore_errors=True)
    return folder


def _model_location(client: MlflowClient, ref: str) -> str:
    """`<name>@<alias>`, `<name>/<version>` or a logged model id -> the artifact URI of the model's files."""
    if "@" in ref:
        name, alias = ref.split("@", 1)
        source = client.get_model_version_by_alias(name, alias).source
    elif "/" in ref:
        name, version = ref.rsplit("/", 1)
        source = client.get_model_version(name, version).source
    else:
        source = f"models:/{ref}"
    if not source:
        raise UsageError(f"models:/{ref} names a registered version without a source")
    if source.startswith("models:/"):
        return client.get_logged_model(source[len("models:/") :]).artifact_location
    if source.startswith("runs:/"):
        run_id, _, path = source[len("runs:/") :].partition("/")
        return f"{client.get_run(run_id).info.artifact_uri}/{path}"
    return source
