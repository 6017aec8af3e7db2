"""MUSE data from three sources (hub, local folder in the hub's layout, embedded world), one API (spec §1).

Every piece is one (config, split) of the hub dataset `muse-bench/MUSE-News` / `muse-bench/MUSE-Books`, read as the
reference reads it, `datasets.load_dataset(path, name=<config>, split=<split>)`, with the current split names:

| config   | splits                                              | fields           |
|----------|-----------------------------------------------------|------------------|
| raw      | forget, retain1, retain2, holdout                   | text             |
| verbmem  | forget                                              | prompt, gt       |
| knowmem  | forget_qa, retain_qa, forget_qa_icl, retain_qa_icl  | question, answer |
| privleak | forget, retain, holdout                             | text             |

A source gives `raw(split)` and `privleak(split)` (lists of texts), `knowmem(split)` and `verbmem()` (records with
an integer `index` = row position, as the reference adds), `records(config, split)` (any piece as records),
`describe()` (for `data splits`) and `show(name, n)` (for `data show`; a name is `config/split`, or a bare split
name that only one config has, such as `forget_qa` or `retain1`). Records keep only the fields above (older hub
revisions had extra columns). The scal / sust / train configs of MUSE-News are not read here.

Bad input is one line (`UsageError`): an unknown config or split (with the accepted names), a missing folder, a
source that cannot be reached, a malformed record (file, record, field).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from unlearn_lab.errors import UsageError, unknown

CONFIGS: dict[str, tuple[str, ...]] = {
    "raw": ("forget", "retain1", "retain2", "holdout"),
    "verbmem": ("forget",),
    "knowmem": ("forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl"),
    "privleak": ("forget", "retain", "holdout"),
}
FIELDS: dict[str, tuple[str, ...]] = {
    "raw": ("text",),
    "verbmem": ("prompt", "gt"),
    "knowmem": ("question", "answer"),
    "privleak": ("text",),
}
QUALIFIED_SPLITS: tuple[str, ...] = tuple(f"{config}/{split}" for config, splits in CONFIGS.items() for split in splits)
HUB_DATASETS = {"News": "muse-bench/MUSE-News", "Books": "muse-bench/MUSE-Books"}
LAYOUT_HINT = (
    "the hub's layout: a README.md whose `configs:` YAML maps each config/split to its files, "
    "e.g. raw/forget-00000-of-00001.parquet"
)


class MissingMuseSplit(UsageError):
    """A (config, split) this source does not have: listed as missing by `describe`, an error everywhere else."""


def check_split(config: str, split: str) -> None:
    if config not in CONFIGS:
        raise unknown("MUSE config", config, CONFIGS)
    if split not in CONFIGS[config]:
        raise unknown(f"MUSE {config} split", split, CONFIGS[config])


def resolve_name(name: str) -> tuple[str, str]:
    """`config/split`, or a bare split name that only one config has -> (config, split)."""
    if "/" in name:
        config, _, split = name.partition("/")
        if config in CONFIGS and split in CONFIGS[config]:
            return config, split
        raise unknown("MUSE split", name, QUALIFIED_SPLITS)
    owners = [config for config, splits in CONFIGS.items() if name in splits]
    if len(owners) == 1:
        return owners[0], name
    if owners:
        raise UsageError(
            f"MUSE split '{name}' exists in several configs; accepted: {', '.join(f'{c}/{name}' for c in owners)}"
        )
    raise unknown("MUSE split", name, QUALIFIED_SPLITS)


def normalise(raw: object, *, config: str, origin: str, i: int) -> dict:
    """One row -> {field: str, ..., index: i}; a missing or non-string field names the origin, record and field."""
    if not isinstance(raw, dict):
        raise UsageError(f"{origin}: record {i} is not a mapping of fields")
    record: dict[str, Any] = {}
    for field in FIELDS[config]:
        value = raw.get(field)
        if value is None:
            raise UsageError(
                f"{origin}: record {i} has no field '{field}' ({config} records need: {', '.join(FIELDS[config])})"
            )
        if not isinstance(value, str):
            raise UsageError(f"{origin}: record {i} field '{field}' must be a string, got {type(value).__name__}")
        record[field] = value
    record["index"] = i
    return record


class MuseSource:
    """The API every MUSE source shares; subclasses implement `_read(config, split)` -> rows (dicts)."""

    name: str = "muse"

    def _read(self, config: str, split: str) -> list[dict]:
        raise NotImplementedError

    @functools.cached_property
    def _cache(self) -> dict[tuple[str, str], list[dict]]:
        return {}

    def records(self, config: str, split: str) -> list[dict]:
        """The (config, split) as validated records with `index`; read once per source object."""
        check_split(config, split)
        key = (config, split)
        if key not in self._cache:
            origin = f"{self.name} {config}/{split}"
            rows = self._read(config, split)
            if not rows:
                raise UsageError(f"{origin} holds no records (expected {', '.join(FIELDS[config])} per record)")
            self._cache[key] = [normalise(r, config=config, origin=origin, i=i) for i, r in enumerate(rows)]
        return self._cache[key]

    def raw(self, split: str) -> list[str]:
        """Articles (News) or books (Books) of raw/<split>, in dataset order: forget, retain1, retain2, holdout."""
        return [r["text"] for r in self.records("raw", split)]

    def knowmem(self, split: str) -> list[dict]:
        """{question, answer, index} of knowmem/<split>: forget_qa, retain_qa, forget_qa_icl, retain_qa_icl."""
        return self.records("knowmem", split)

    def verbmem(self, split: str = "forget") -> list[dict]:
        """{prompt, gt, index} of verbmem/forget (gt continues prompt after one space, which the hub dropped)."""
        return self.records("verbmem", split)

    def privleak(self, split: str) -> list[str]:
        """Texts of privleak/<split>: forget (members), holdout (non-members), retain (unused by the reference)."""
        return [r["text"] for r in self.records("privleak", split)]

    def show(self, name: str, count: int) -> list[dict]:
        """The first `count` records of a split named `config/split` (or a bare name only one config has)."""
        config, split = resolve_name(name)
        return self.records(config, split)[: max(0, count)]

    def describe(self) -> str:
        """`data splits`: each split's size and fields; a split the source lacks is listed as missing, a source with
        none at all is an error (as TOFU's `describe_splits`)."""
        rows, found = [], 0
        for config, splits in CONFIGS.items():
            for split in splits:
                label = f"{config}/{split}"
                try:
                    count = len(self.records(config, split))
                except MissingMuseSplit as exc:
                    rows.append(f"{label:<24} {'-':>8}  ({exc})")
                    continue
                found += 1
                rows.append(f"{label:<24} {count:>8}  {', '.join((*FIELDS[config], 'index'))}")
        if not found:
            raise UsageError(f"{self.name} holds no MUSE split (expected {LAYOUT_HINT})")
        return "\n".join([f"source: {self.name}", f"{'split':<24} {'records':>8}  fields", *rows])


class SyntheticMuseSource(MuseSource):
    """The embedded world (`world.generate_muse_world`): fictitious news articles, seeded."""

    def __init__(self, seed: int = 0, params: Any = None):
        from unlearn_lab.benchmarks.muse.world import WorldParams

        self.seed, self.params = seed, params or WorldParams()
        try:
            self.params.validate()
        except ValueError as exc:
            raise UsageError(f"embedded MUSE world: {exc}") from None
        changed = [f"{k}={v}" for k, v in vars(self.params).items() if v != getattr(WorldParams(), k)]
        self.name = f"synthetic-muse({','.join([f'seed={seed}', *changed])})"

    @functools.cached_property
    def world(self) -> dict:
        from unlearn_lab.benchmarks.muse.world import generate_muse_world

        return generate_muse_world(self.params, seed=self.seed)

    def _read(self, config: str, split: str) -> list[dict]:
        world = self.world
        if config == "raw":
            return [{"text": a["text"]} for a in world["articles"][split]]
        if config == "privleak":
            return [{"text": text} for text in world["privleak"][split]]
        source = world["verbmem"] if config == "verbmem" else world["knowmem"][split]
        return [{field: r[field] for field in FIELDS[config]} for r in source]


class HubMuseSource(MuseSource):
    """`datasets.load_dataset(path, name=config, split=split)`: a hub id (`muse-bench/MUSE-News`) or a local folder
    in the hub's layout; `revision` is passed on only when given (nothing is pinned by default)."""

    def __init__(self, path: str, *, revision: str | None = None, folder: bool = False):
        self.path, self.revision, self.folder = path, revision, folder
        self.name = f"folder({path})" if folder else f"hf:{path}" + (f"@{revision}" if revision else "")

    def _read(self, config: str, split: str) -> list[dict]:
        import datasets

        extra = {"revision": self.revision} if self.revision else {}
        try:
            dataset = datasets.load_dataset(self.path, name=config, split=split, **extra)
        except Exception as exc:  # noqa: BLE001 - offline, unknown id, missing split...: one line for the user
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            where = "the folder" if self.folder else "the hub"
            if re.search(r"Unknown split|BuilderConfig .* not found|doesn't contain any data files", first):
                raise MissingMuseSplit(f"{config}/{split} is missing from {self.name} ({first})") from None
            raise UsageError(f"cannot load {self.path} {config}/{split} from {where}: {first}") from None
        return [dict(row) for row in dataset]


def make_muse_source(source: str, *, seed: int = 0, params: Any = None, revision: str | None = None) -> MuseSource:
    """`synthetic` (the embedded world; `params` = `world.WorldParams`), `hf:<dataset id>` (e.g.
    `hf:muse-bench/MUSE-News`; optional `revision`), or a local folder in the hub's layout."""
    if source == "synthetic":
        return SyntheticMuseSource(seed, params)
    if source.startswith("hf:"):
        return HubMuseSource(source[3:], revision=revision)
    folder = Path(source).expanduser()
    if folder.is_dir():
        return HubMuseSource(str(folder), folder=True)
    if re.match(r"^[\w.-]+/[\w.-]+$", source):
        raise UsageError(
            f"MUSE data source '{source}' is neither a folder nor 'synthetic'; for the hub write hf:{source}"
        )
    raise UsageError(
        f"MUSE data folder not found: {folder} (expected 'synthetic', hf:<dataset id> or a folder in {LAYOUT_HINT})"
    )
