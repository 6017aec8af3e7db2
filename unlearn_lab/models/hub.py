"""Hub ids without surprises: is a model or data set in the local cache, is the hub reachable, and one quick
probe instead of the libraries' retry loops (30-55 s and ~11 log lines per missing piece, machine notes).

`HF_HUB_OFFLINE=1` is honoured: nothing is asked of the network, only the local cache counts.
"""

from __future__ import annotations

import os
from pathlib import Path

PROBE_TIMEOUT_S = 5.0


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def cached_file(repo_id: str, filename: str, repo_type: str = "model") -> Path | None:
    """The file's path in the local Hugging Face cache, or None (no network)."""
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/", "~")):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, filename, repo_type=repo_type)
    except Exception:  # noqa: BLE001 - a cache lookup that fails is a miss
        return None
    return Path(found) if isinstance(found, str) else None


def dataset_cached(dataset_id: str) -> bool:
    """A hub data set that `datasets` can load without the network: in the hub cache or datasets' own cache."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        hub = Path(HF_HUB_CACHE) / f"datasets--{dataset_id.replace('/', '--')}"
    except Exception:  # noqa: BLE001 - no hub library or constants: only datasets' own cache counts
        hub = None
    home = Path(
        os.environ.get("HF_DATASETS_CACHE")
        or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "datasets"
    )
    local = home / dataset_id.replace("/", "___").lower()
    return bool(hub and hub.is_dir()) or local.is_dir()


def probe(repo_id: str, repo_type: str = "model") -> str | None:
    """One request with a short timeout: None if the hub serves the repo, else why not (one line)."""
    if offline():
        return "HF_HUB_OFFLINE is set and it is not in the local cache"
    try:
        from huggingface_hub import HfApi

        api = HfApi()
        info = api.dataset_info if repo_type == "dataset" else api.model_info
        info(repo_id, timeout=PROBE_TIMEOUT_S)
        return None
    except Exception as exc:  # noqa: BLE001 - connection refused / DNS / timeout / 401 / 404: one line
        name = type(exc).__name__
        if "RepositoryNotFound" in name:
            return "no such repository on the hub (or it is private: log in with `hf auth login`)"
        if "Gated" in name:
            return "a gated repository: accept its licence on the hub and log in with `hf auth login`"
        return f"the hub is not reachable ({name})"
