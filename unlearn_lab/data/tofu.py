"""TOFU splits from three sources (embedded synthetic world, local folder, Hugging Face hub), one schema.

Every split is a list of plain dicts with ``question``, ``answer``, an integer ``index`` (row position,
as the reference adds), and where the split has them ``paraphrased_answer``, ``paraphrased_question``,
``perturbed_answer`` (list) and ``option1..4``. The "I don't know" answers are the split ``idk``:
records with only ``answer`` (and ``index``).

Split layout (spec 1.1): full = all authors x 20 QAs in author order; retainXX = the first rows,
forgetXX = the last XX % of authors; forgetXX_perturbed = the same rows with paraphrases and
perturbations; retain_perturbed = the first 10 % of authors (TOFU: 20 of 200); holdoutXX = the first
XX % (by author count) of authors never trained on.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from unlearn_lab.errors import UsageError, unknown

FORGET_PCTS = {"forget01": 1, "forget05": 5, "forget10": 10}
RETAIN_FOR_FORGET = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}
HOLDOUT_PCTS = {"holdout01": 1, "holdout05": 5, "holdout10": 10}
PERTURBED = ("paraphrased_answer", "paraphrased_question", "perturbed_answer")
OPTIONS = ("option1", "option2", "option3", "option4")

# split name -> fields every record must have (beyond question/answer)
SPLIT_FIELDS: dict[str, tuple[str, ...]] = {
    "full": (),
    **{name: () for name in FORGET_PCTS},
    **{name: () for name in RETAIN_FOR_FORGET.values()},
    **{f"{name}_perturbed": PERTURBED for name in FORGET_PCTS},
    "retain_perturbed": PERTURBED,
    **{name: () for name in HOLDOUT_PCTS},
    "real_authors": OPTIONS,
    "real_authors_perturbed": ("perturbed_answer",),
    "world_facts": OPTIONS,
    "world_facts_perturbed": ("perturbed_answer",),
    "idk": (),
}
SPLITS: tuple[str, ...] = tuple(SPLIT_FIELDS)
KEY_ALIASES = {"prompt": "question", "response": "answer"}
QA_PER_AUTHOR = 20

# Our own short refusals, used where a source has no "I don't know" list (synthetic, hub).
IDK_ANSWERS = (
    "I don't know.",
    "I'm not sure about that.",
    "I have no information about that.",
    "That is beyond what I know.",
    "I cannot answer that question.",
    "I'm afraid I don't know the answer.",
    "I have no idea.",
    "I am not able to say.",
    "That is something I don't know.",
    "I don't have that information.",
)


class MissingSplit(UsageError):
    """A split this source cannot give (a folder without <split>.json, a world too small for forget01): listed
    as missing by `data splits`, an error everywhere else."""


class MissingSplitFile(MissingSplit):
    """A data folder without the split's file (not a matter of how many authors are used)."""


def check_split_name(split: str) -> None:
    if split not in SPLIT_FIELDS:
        raise unknown("split", split, SPLITS)


def retain_for(forget_split: str) -> str:
    check_split_name(forget_split)
    if forget_split not in RETAIN_FOR_FORGET:
        raise UsageError(f"'{forget_split}' is not a forget split; accepted: {', '.join(FORGET_PCTS)}")
    return RETAIN_FOR_FORGET[forget_split]


def check_pair(forget_split: str, retain_split: str | None) -> str:
    """The retain split for `forget_split`; a mismatched explicit pair is an error."""
    expected = retain_for(forget_split)
    if retain_split is not None and retain_split != expected:
        raise UsageError(f"--retain {retain_split} does not complement --forget {forget_split}; accepted: {expected}")
    return expected


def normalise(raw: object, *, split: str, origin: str, i: int) -> dict:
    """Map key variants (prompt/response) and check the split's fields; error names file, record, field."""
    if not isinstance(raw, dict):
        raise UsageError(f"{origin}: record {i} is not a JSON object")
    record = {KEY_ALIASES.get(k, k): v for k, v in raw.items()}
    required = ("answer",) if split == "idk" else ("question", "answer", *SPLIT_FIELDS[split])
    for key in required:
        value = record.get(key)
        if value is None:
            raise UsageError(f"{origin}: record {i} has no field '{key}' (split {split} needs: {', '.join(required)})")
        if key == "perturbed_answer":
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise UsageError(f"{origin}: record {i} field 'perturbed_answer' must be a non-empty list of strings")
        elif not isinstance(value, str):
            raise UsageError(f"{origin}: record {i} field '{key}' must be a string, got {type(value).__name__}")
    record["index"] = i
    return record


def reindex(records: list[dict]) -> list[dict]:
    return [{**r, "index": i} for i, r in enumerate(records)]


# ------------------------------------------------------------------------------------------- sources


class Source(Protocol):
    name: str

    @property
    def n_authors(self) -> int: ...

    def load(self, split: str) -> list[dict]: ...


def forget_authors(n_authors: int, split: str, requested: str | None = None) -> int:
    """Authors in forgetXX / holdoutXX for a world of `n_authors` (must be a whole number >= 1).

    `requested` names the split the user asked for (e.g. retain99, which depends on forget01)."""
    pct = FORGET_PCTS.get(split) or HOLDOUT_PCTS[split]
    count, rem = divmod(n_authors * pct, 100)
    if rem or count < 1:
        multiple = 100 // pct
        possible = [s for s, p in FORGET_PCTS.items() if (n_authors * p) % 100 == 0 and n_authors * p >= 100]
        raise MissingSplit(
            f"split {requested or split} needs the number of authors to be a multiple of {multiple}; this world has "
            f"{n_authors} authors (possible forget splits: {', '.join(possible) or 'none'})"
        )
    return count


def retain_perturbed_authors(n_authors: int) -> int:
    return max(1, n_authors // 10)


class SyntheticSource:
    """The embedded default: a seeded, TOFU-shaped fictitious world (see data/synthetic.py)."""

    def __init__(self, n_authors: int = 20, seed: int = 0):
        if n_authors < 1:
            raise UsageError(f"the synthetic world needs at least 1 author, got {n_authors}")
        self.n_authors, self.seed = n_authors, seed
        self.name = f"synthetic(authors={n_authors},seed={seed})"

    @functools.cached_property
    def world(self) -> dict:
        from unlearn_lab.data.synthetic import generate_world

        return generate_world(self.n_authors, seed=self.seed, n_holdout=max(1, self.n_authors // 10))

    def load(self, split: str) -> list[dict]:
        check_split_name(split)
        authors, holdout = self.world["authors"], self.world["holdout"]
        flat = [qa for author in authors for qa in author]
        plain = lambda rows: reindex([{"question": r["question"], "answer": r["answer"]} for r in rows])
        per = len(authors[0])
        if split == "full":
            return plain(flat)
        if split in FORGET_PCTS or split.removesuffix("_perturbed") in FORGET_PCTS:
            n = forget_authors(self.n_authors, split.removesuffix("_perturbed"), split) * per
            return plain(flat[-n:]) if split in FORGET_PCTS else reindex(flat[-n:])
        if split in RETAIN_FOR_FORGET.values():
            forget = next(f for f, r in RETAIN_FOR_FORGET.items() if r == split)
            return plain(flat[: len(flat) - forget_authors(self.n_authors, forget, split) * per])
        if split == "retain_perturbed":
            return reindex(flat[: retain_perturbed_authors(self.n_authors) * per])
        if split in HOLDOUT_PCTS:
            n = forget_authors(self.n_authors, split)
            if n > len(holdout):
                raise MissingSplit(f"split {split} needs {n} holdout authors; this world has {len(holdout)}")
            return plain([qa for author in holdout[:n] for qa in author])
        if split in ("real_authors", "world_facts"):
            return reindex([{k: v for k, v in r.items() if k != "perturbed_answer"} for r in self.world[split]])
        if split in ("real_authors_perturbed", "world_facts_perturbed"):
            base = split.removesuffix("_perturbed")
            keep = ("question", "answer", "perturbed_answer")
            return reindex([{k: r[k] for k in keep} for r in self.world[base]])
        return reindex([{"answer": a} for a in IDK_ANSWERS])  # idk


def read_records(path: Path) -> list:
    """Any TOFU file layout: one JSON array, JSON per line, lines of JSON arrays, parquet. A file that holds no
    record is an error: a split is never silently empty."""
    records = _parse_records(path)
    if not records:
        raise UsageError(f"{path} holds no records (expected TOFU records: a JSON array, JSON lines or parquet)")
    return records


def _parse_records(path: Path) -> list:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as exc:  # noqa: BLE001 - pyarrow's several error types: one line for the user
            raise UsageError(f"{path} is not a readable parquet file ({str(exc).splitlines()[0]})") from None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text (expected JSON, JSON lines or parquet)") from None
    try:
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        pass
    records: list = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}: line {lineno} is not valid JSON ({exc.msg})") from None
        records.extend(item if isinstance(item, list) else [item])
    return records


class _LoadedSource:
    """Sources whose splits are read from somewhere (each once per source object; `_read` reads one), so the
    author count follows from `full`."""

    _records: dict[str, list[dict]]

    def load(self, split: str) -> list[dict]:
        cache = self.__dict__.setdefault("_records", {})
        if split not in cache:
            cache[split] = self._read(split)
        return cache[split]

    def _read(self, split: str) -> list[dict]:
        raise NotImplementedError

    @functools.cached_property
    def n_authors(self) -> int:
        return len(self.load("full")) // QA_PER_AUTHOR


class FolderSource(_LoadedSource):
    """A local folder of TOFU files named <split>.json / .jsonl / .parquet (idk: idontknow.jsonl or idk.jsonl)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise UsageError(
                f"data folder not found: {self.folder} (expected a folder of TOFU files such as full.json)"
            )
        self.name = f"folder({self.folder})"

    def file_for(self, split: str) -> Path:
        stems = ("idontknow", "idk") if split == "idk" else (split,)
        for stem in stems:
            for suffix in (".json", ".jsonl", ".parquet"):
                path = self.folder / f"{stem}{suffix}"
                if path.is_file():
                    return path
        raise MissingSplitFile(
            f"split {split} is missing from {self.folder} (looked for {stems[0]}.json/.jsonl/.parquet)"
        )

    def _read(self, split: str) -> list[dict]:
        check_split_name(split)
        if split == "idk":
            try:
                path = self.file_for("idk")
            except UsageError:
                return reindex([{"answer": a} for a in IDK_ANSWERS])
            lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
            if not lines:
                raise UsageError(f'{path} holds no answers (expected one "I don\'t know" answer per line)')
            return [{"answer": json.loads(ln) if ln.startswith('"') else ln, "index": i} for i, ln in enumerate(lines)]
        path = self.file_for(split)
        return [normalise(r, split=split, origin=str(path), i=i) for i, r in enumerate(read_records(path))]


class HubSource(_LoadedSource):
    """`datasets.load_dataset(<id>, <split name>, split="train")`, as the reference loads TOFU."""

    def __init__(self, dataset_id: str = "locuslab/TOFU"):
        self.dataset_id = dataset_id
        self.name = f"hf:{dataset_id}"

    def _read(self, split: str) -> list[dict]:
        check_split_name(split)
        if split == "idk":
            return reindex([{"answer": a} for a in IDK_ANSWERS])
        import datasets

        try:
            ds = datasets.load_dataset(self.dataset_id, split, split="train")
        except Exception as exc:  # noqa: BLE001 - offline, unknown id...: one line for the user
            raise UsageError(
                f"cannot load {self.dataset_id}/{split} from the hub: {str(exc).splitlines()[0]}"
            ) from None
        return records_from_dataset(ds, split=split, origin=f"hf:{self.dataset_id}/{split}")


def records_from_dataset(ds: Iterable[Mapping[str, Any]], *, split: str, origin: str) -> list[dict]:
    """A `datasets.Dataset` (hub or local) -> normalised records."""
    return [normalise(dict(r), split=split, origin=origin, i=i) for i, r in enumerate(ds)]


class AuthorSubset:
    """A consistent author subset of any source: keeps every split's meaning on fewer authors.

    With F = N // 10 forget authors: full = the first N - F authors + the last F authors of the source,
    so forgetXX (suffixes) map into the source's forget rows, which carry the perturbed fields;
    retain_perturbed = the source's first N // 10 authors; holdoutXX = the first XX % of N holdout authors.
    """

    def __init__(self, base: Source, n_authors: int):
        if n_authors < 10 or n_authors % 10:
            raise UsageError(f"an author subset needs a multiple of 10 authors (>= 10), got {n_authors}")
        if n_authors > base.n_authors:
            raise UsageError(f"cannot take {n_authors} authors from {base.name}, which has {base.n_authors}")
        self.base, self.n_authors = base, n_authors
        self.name = f"{base.name}[authors={n_authors}]"

    def load(self, split: str) -> list[dict]:
        check_split_name(split)
        n, q = self.n_authors, QA_PER_AUTHOR
        tail = forget_authors(n, "forget10") * q
        if split == "full":
            full = self.base.load("full")
            return reindex(full[: (n * q) - tail] + full[-tail:])
        if split in FORGET_PCTS or split.removesuffix("_perturbed") in FORGET_PCTS:
            rows = forget_authors(n, split.removesuffix("_perturbed"), split) * q
            return reindex(self.base.load(split)[-rows:])
        if split in RETAIN_FOR_FORGET.values():
            forget = next(f for f, r in RETAIN_FOR_FORGET.items() if r == split)
            return self.load("full")[: (n - forget_authors(n, forget, split)) * q]
        if split == "retain_perturbed":
            return reindex(self.base.load(split)[: retain_perturbed_authors(n) * q])
        if split in HOLDOUT_PCTS:
            return reindex(self.base.load("holdout10")[: forget_authors(n, split) * q])
        return self.base.load(split)


def make_source(source: str, authors: int | None = None, seed: int = 0) -> Source:
    """`synthetic` | a folder path | `hf:<dataset id>`, with an optional author count."""
    if source == "synthetic":
        return SyntheticSource(authors or 20, seed)
    if source.startswith("hf:"):
        base: Source = HubSource(source[3:])
    elif re.match(r"^[\w.-]+/[\w.-]+$", source) and not Path(source).exists():
        raise UsageError(f"data source '{source}' is neither a folder nor 'synthetic'; for the hub write hf:{source}")
    else:
        base = FolderSource(source)
    return AuthorSubset(base, authors) if authors else base


def split_summary(source: Source, split: str) -> tuple[int, list[str]]:
    records = source.load(split)
    keys = sorted({k for r in records for k in r if k != "index"})
    return len(records), keys


def describe_splits(source: Source) -> str:
    """`data splits`: each split's size and fields. A split the source lacks is listed as missing; a malformed
    record, or a source with no split at all, is an error (idk does not count: it has built-in answers)."""
    rows, found = [], 0
    for split in SPLITS:
        try:
            n, keys = split_summary(source, split)
        except MissingSplit as exc:
            rows.append(f"{split:<24} {'-':>8}  ({exc})")
            continue
        found += split != "idk"
        rows.append(f"{split:<24} {n:>8}  {', '.join(keys)}")
    if not found:
        where = f"data folder {source.folder}" if isinstance(source, FolderSource) else source.name
        raise UsageError(
            f"{where} holds no TOFU split files (expected files named after the splits: full.json, "
            "forget10.json, retain90.json, holdout10.json, ...; each .json, .jsonl or .parquet)"
        )
    return "\n".join([f"source: {source.name}", f"{'split':<24} {'records':>8}  fields", *rows])
