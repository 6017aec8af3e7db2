"""Where each teacher-forced token is computed: the shared-prefix layout of the rows `Scorer.score_pairs` scores.

A TOFU question is scored with several answers (its answer, the paraphrase, K perturbed answers), and every row's
conversation starts with the same chat-templated prompt; the perturbed answers also often start like the
paraphrase they perturb. Running every row as a full sequence repeats that work. This module plans it once:

- rows are grouped by their exact prompt token ids (two questions that template to the same ids share a group);
- the groups of a window (below) form one radix tree of *segments*: the root is what all its rows share (on TOFU
  the chat template's system turn and date), then one segment per prompt (the rest of it, plus whatever the
  group's rows share after it), then up to `answer_levels` levels of answer beginnings that several rows share,
  then each row's own remainder. A segment runs once, as a continuation of its ancestors' keys and values;
- a row's forward input is its conversation without the last token (nothing is predicted from it), so a row
  whose input ends inside a shared segment needs no segment of its own;
- every position from the prompt's last token on is a *site*: its hidden state predicts the next token. A site
  is computed once and serves every row through it; a row's *entries* are its supervised tokens, each read at
  the site before it (branch points serve several labels);
- segments are batched level by level (parents before children), sorted by length so padding stays small, at
  most `batch_size` segments per forward, within windows of about `window_rows` rows so that only a window's
  keys and values are held at once. Batches depend only on the rows given, never on which metrics asked.

Pure: token ids in, index arrays out (no torch, no model), so the plan is tested on its own; `metrics/scoring.py`
runs it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Row:
    """One scored pair: the conversation's token ids and how many of them are the prompt."""

    ids: tuple[int, ...]
    prompt_len: int


@dataclass(frozen=True)
class Segment:
    """A run of tokens computed once, continuing its ancestors (`chain`, root first; empty for a root)."""

    tokens: tuple[int, ...]
    start: int  # position of tokens[0] in the conversation (= tokens in its ancestors)
    chain: tuple[int, ...]  # ancestor segment ids, root first
    level: int  # 0 for a root
    first_site: int  # offset in `tokens` of its first site (the earliest prompt end - 1 of its rows; may be past it)

    @property
    def sites(self) -> int:
        return max(0, len(self.tokens) - self.first_site)


@dataclass(frozen=True)
class Batch:
    """One forward pass: segments of one level, right-padded to the longest."""

    segments: tuple[int, ...]
    site_lo: int  # its sites are the global ids [site_lo, site_hi), segment by segment
    site_hi: int
    site_rows: np.ndarray  # (sites,) the row of the batch holding each site
    site_cols: np.ndarray  # (sites,) its column
    entries: np.ndarray  # entry ids read at this batch's sites
    keep: tuple[int, ...]  # segments of this batch whose keys and values later batches continue
    release: tuple[int, ...]  # segments whose keys and values no later batch reads
    rows_done: int  # rows whose last entry is read here (for progress)


@dataclass(frozen=True)
class Layout:
    """The plan of one `score_pairs` call: segments, the passes that run them, and where each entry is read."""

    segments: tuple[Segment, ...]
    batches: tuple[Batch, ...]
    entry_site: np.ndarray  # (E,) the site predicting each supervised token; rows in input order
    entry_label: np.ndarray  # (E,) that token
    bounds: np.ndarray  # (rows + 1,): row r's entries are [bounds[r], bounds[r + 1])
    sites: int

    def tokens_run(self) -> dict[str, int]:
        """Token positions the forward passes run: real ones, and with padding."""
        real = sum(len(s.tokens) for s in self.segments)
        padded = sum(len(b.segments) * max(len(self.segments[i].tokens) for i in b.segments) for b in self.batches)
        return {"real": real, "padded": padded, "sites": self.sites, "passes": len(self.batches)}


def group_by_prompt(rows: Sequence[Row]) -> list[list[int]]:
    """Row indices grouped by their exact prompt token ids, groups and members in first-appearance order; rows
    without a supervised token (a prompt as long as the conversation) are left out: they have nothing to score."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, row in enumerate(rows):
        if not 0 < row.prompt_len <= len(row.ids):
            raise ValueError(f"row {i}: a prompt of {row.prompt_len} tokens in a conversation of {len(row.ids)}")
        if row.prompt_len < len(row.ids):
            groups.setdefault(row.ids[: row.prompt_len], []).append(i)
    return list(groups.values())


def _common(inputs: list[tuple[int, ...]], start: int) -> int:
    """End of the longest common prefix of `inputs` (all share [:start]): that of the first and last in
    lexicographic order (min and max compare in C; the one loop in Python is over the shared tokens)."""
    low, high = min(inputs), max(inputs)
    end = start
    while end < len(low) and low[end] == high[end]:
        end += 1
    return end


def _partition(
    inputs: dict[int, tuple[int, ...]], groups: list[list[int]], members: list[int], start: int, depth: int, levels: int
) -> list[list[int]]:
    """How the rows sharing [:start] split at tree depth `depth`: all together (the window's common prefix), by
    prompt (`groups`), by next token for `levels` levels of answer prefixes, then one row each."""
    live = [m for m in members if len(inputs[m]) > start]  # a row whose input ends here is done
    if depth == 0:
        return [live] if live else []
    if depth == 1:
        alive = set(live)
        return [kept for kept in ([m for m in g if m in alive] for g in groups) if kept]
    if depth > levels + 1:
        return [[m] for m in live]
    keys: dict[int, list[int]] = {}
    for m in live:
        keys.setdefault(inputs[m][start], []).append(m)
    return list(keys.values())


def _tree(rows: Sequence[Row], groups: list[list[int]], levels: int) -> tuple[list[Segment], dict[int, list[int]]]:
    """One window's radix tree over its prompt `groups`' inputs (conversations less their last token): segments in
    creation order (parents first; ids local to the window) and each row's path of segment ids, root first."""
    inputs = {m: rows[m].ids[:-1] for g in groups for m in g}
    segments: list[Segment] = []
    paths: dict[int, list[int]] = {m: [] for m in inputs}
    todo = deque([(list(inputs), 0, -1, 0)])  # rows sharing [:start], start, their last segment (-1: none), depth
    while todo:
        group, start, parent, depth = todo.popleft()
        for part in _partition(inputs, groups, group, start, depth, levels):
            stop = _common([inputs[m] for m in part], start)
            node = parent
            if stop > start:  # an empty segment (nothing more shared) is skipped
                chain = (*segments[parent].chain, parent) if parent >= 0 else ()
                first = max(0, min(rows[m].prompt_len for m in part) - 1 - start)
                segments.append(Segment(inputs[part[0]][start:stop], start, chain, len(chain), first))
                node = len(segments) - 1
                for m in part:
                    paths[m].append(node)
            if any(len(inputs[m]) > stop for m in part):
                todo.append((part, stop, node, depth + 1))
    return segments, paths


def _windows(rows: Sequence[Row], groups: list[list[int]], window_rows: int) -> list[list[list[int]]]:
    """Prompt groups in windows of about `window_rows` rows (a larger group alone), ordered by their first
    conversation's length so that a window's segments are of similar lengths."""
    ordered = sorted(groups, key=lambda g: (len(rows[g[0]].ids), g[0]))
    windows: list[list[list[int]]] = [[]]
    size = 0
    for group in ordered:
        if windows[-1] and size + len(group) > window_rows:
            windows.append([])
            size = 0
        windows[-1].append(group)
        size += len(group)
    return windows


def _batches(segments: list[Segment], ids: list[int], batch_size: int) -> list[list[int]]:
    """Segment ids of one window in forward order: level by level, by length, `batch_size` per pass."""
    out: list[list[int]] = []
    for level in sorted({segments[i].level for i in ids}):
        same = sorted((i for i in ids if segments[i].level == level), key=lambda i: (len(segments[i].tokens), i))
        out += [same[k : k + batch_size] for k in range(0, len(same), batch_size)]
    return out


def plan(rows: Sequence[Row], batch_size: int, *, answer_levels: int = 1, window_rows: int = 512) -> Layout:
    """The layout of `rows` (see the module docstring); entries follow the rows' order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    segments: list[Segment] = []
    paths: list[list[int]] = [[] for _ in rows]
    order: list[list[int]] = []
    for window in _windows(rows, group_by_prompt(rows), window_rows):
        local, local_paths = _tree(rows, window, answer_levels)
        base = len(segments)
        segments += [replace(s, chain=tuple(base + a for a in s.chain)) for s in local]
        for m, path in local_paths.items():
            paths[m] = [base + n for n in path]
        order += _batches(segments, list(range(base, len(segments))), batch_size)
    site_base = np.zeros(len(segments), dtype=np.int64)
    batch_of = np.zeros(len(segments), dtype=np.int64)
    cursor = 0
    for b, seg_ids in enumerate(order):
        for i in seg_ids:
            site_base[i], batch_of[i] = cursor, b
            cursor += segments[i].sites
    entry_site = _entry_sites(rows, segments, paths, site_base)
    labels = [np.asarray(row.ids[row.prompt_len :], dtype=np.int64) for row in rows]
    bounds = np.concatenate([[0], np.cumsum([len(x) for x in labels])]).astype(np.int64)
    label = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
    return Layout(
        tuple(segments), _assemble(segments, order, paths, batch_of, entry_site), entry_site, label, bounds, cursor
    )


def _entry_sites(
    rows: Sequence[Row], segments: list[Segment], paths: list[list[int]], site_base: np.ndarray
) -> np.ndarray:
    """The site predicting each row's supervised tokens: positions prompt_len - 1 .. len - 2 along its path."""
    pieces = [np.zeros(0, dtype=np.int64)]
    for row, path in zip(rows, paths, strict=True):
        for i in path:
            seg = segments[i]
            lo, hi = max(seg.start, row.prompt_len - 1), seg.start + len(seg.tokens)
            if hi > lo:
                first = site_base[i] + lo - seg.start - seg.first_site
                pieces.append(np.arange(first, first + hi - lo, dtype=np.int64))
    return np.concatenate(pieces)


def _assemble(
    segments: list[Segment],
    order: list[list[int]],
    paths: list[list[int]],
    batch_of: np.ndarray,
    entry_site: np.ndarray,
) -> tuple[Batch, ...]:
    """Per batch: where its sites sit in the padded pass, the entries read there, which keys/values to keep."""
    last_use = np.full(len(segments), -1, dtype=np.int64)  # the last batch continuing each segment
    for i, seg in enumerate(segments):
        for a in seg.chain:
            last_use[a] = max(last_use[a], batch_of[i])
    done = np.bincount([batch_of[p[-1]] for p in paths if p], minlength=len(order))
    site_batch = np.repeat(np.arange(len(order)), [sum(segments[i].sites for i in ids) for ids in order])
    entry_batch = site_batch[entry_site]
    by_batch = np.argsort(entry_batch, kind="stable")
    cuts = np.searchsorted(entry_batch[by_batch], np.arange(len(order) + 1))
    batches = []
    for b, seg_ids in enumerate(order):
        rows_, cols = [], []
        for r, i in enumerate(seg_ids):
            seg = segments[i]
            rows_.append(np.full(seg.sites, r, dtype=np.int64))
            cols.append(np.arange(seg.first_site, len(seg.tokens), dtype=np.int64))
        lo = int(np.searchsorted(site_batch, b))
        batches.append(
            Batch(
                segments=tuple(seg_ids),
                site_lo=lo,
                site_hi=lo + sum(segments[i].sites for i in seg_ids),
                site_rows=np.concatenate(rows_),
                site_cols=np.concatenate(cols),
                entries=by_batch[cuts[b] : cuts[b + 1]],
                keep=tuple(i for i in seg_ids if last_use[i] >= 0),
                release=tuple(int(i) for i in np.flatnonzero(last_use == b)),
                rows_done=int(done[b]),
            )
        )
    return tuple(batches)
