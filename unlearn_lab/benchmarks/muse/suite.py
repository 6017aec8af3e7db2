"""The MUSE evaluation suite: every metric of the reference's MUSE evaluator (spec §3), from one teacher-forced pass
per item and one greedy generation per prompt, into the MUSE_EVAL layout (spec §4).

The model runs only in `metrics/scoring.py` (`Scorer.score_items`: teacher-forced statistics of encoded items;
`Scorer.generate_ids`: greedy continuations of token-id prompts, left-padded, KV cache); what is scored and how it
becomes a metric is here and in `metrics.py` (pure). Each part is computed only when a requested metric reads it:

| part | items | read by |
|---|---|---|
| knowmem generations (forget, retain) | ICL prompt -> <= knowmem_new_tokens, cut at the stop words | *_knowmem_ROUGE |
| verbmem generations | BOS + prompt -> <= verbmem_new_tokens, cut at EOS | forget_verbmem_ROUGE |
| verbmem scoring | BOS + prompt + " " + gt, labels on gt | extraction_strength, exact_memorization |
| privleak scoring | BOS + text, labels on all but BOS (forget: members, holdout: non-members) | mia_* , privleak |

Decoding follows the reference (new tokens only, special tokens skipped) except that the clean-up of spaces before
punctuation is off: transformers >= 5 refuses it for BPE tokenizers, and rouge-score drops punctuation, so ROUGE is
unaffected (as for TOFU, docs/metrics.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from unlearn_lab.benchmarks.muse import items as I
from unlearn_lab.benchmarks.muse import metrics as M
from unlearn_lab.errors import UsageError, unknown

if TYPE_CHECKING:
    from unlearn_lab.config import MuseConfig

DEFAULT = M.SUITE
EXTRA = ("exact_memorization", "mia_min_k", "mia_loss", "mia_zlib", "mia_min_k_plus_plus")
ALL = DEFAULT + EXTRA
MIAS = ("mia_min_k", "mia_loss", "mia_zlib", "mia_min_k_plus_plus")


@dataclass(frozen=True)
class MuseEvalData:
    """The records the MUSE suite reads (spec §1.2)."""

    forget_qa: list[dict]
    retain_qa: list[dict]
    forget_icl: list[dict]
    retain_icl: list[dict]
    verbmem: list[dict]
    privleak_forget: list[str]
    privleak_holdout: list[str]

    @classmethod
    def load(cls, source: Any, holdout_split: str = "holdout") -> MuseEvalData:
        return cls(
            source.knowmem("forget_qa"),
            source.knowmem("retain_qa"),
            source.knowmem("forget_qa_icl"),
            source.knowmem("retain_qa_icl"),
            source.verbmem(),
            source.privleak("forget"),
            source.privleak(holdout_split),
        )


def parse_metrics(text: str) -> tuple[str, ...]:
    """'default' | 'all' | names (default and all may be among them), in a stable order."""
    names: list[str] = []
    for token in (t.strip() for t in text.split(",") if t.strip()):
        if token in ("default", "all"):
            names += DEFAULT if token == "default" else ALL
        elif token in ALL:
            names.append(token)
        else:
            raise unknown("MUSE metric", token, ALL, listed=f"default, all, or names from: {', '.join(ALL)}")
    if not names:
        raise UsageError("--metrics is empty; accepted: default, all, or comma-separated MUSE metric names")
    return tuple(dict.fromkeys(names))


class Suite:
    """One evaluation of one model: the parts its metrics read, computed at most once each."""

    def __init__(self, scorer: Any, tokenizer: Any, data: MuseEvalData, muse: MuseConfig, k: float, progress: bool):
        self.scorer, self.tokenizer, self.data, self.muse, self.k = scorer, tokenizer, data, muse, k
        self.progress = progress
        self.parts: dict[str, Any] = {}

    def part(self, name: str, make: Callable[[], Any]) -> Any:
        if name not in self.parts:
            self.parts[name] = make()
        return self.parts[name]

    def decode(self, ids: Sequence[int]) -> str:
        text = self.tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return str(text)

    # ------------------------------------------------------------------------------------------------- ROUGE

    def knowmem(self, side: str) -> dict:
        """forget_/retain_knowmem_ROUGE: the ICL prompt's greedy answer, cut at the stop words, vs the answer."""
        icl = self.data.forget_icl if side == "forget" else self.data.retain_icl
        icl = icl[: self.muse.icl] if self.muse.icl is not None else icl
        records = self.data.forget_qa if side == "forget" else self.data.retain_qa
        rows = I.knowmem_items(self.tokenizer, icl, records, self.muse.knowmem_max_length)
        return self._rouge(rows, self.muse.knowmem_new_tokens, M.KNOWMEM_STOPWORDS, answers_in_labels=True)

    def verbmem(self) -> dict:
        """forget_verbmem_ROUGE: the greedy continuation of the excerpt's beginning vs the whole continuation."""
        rows = self.part(
            "verbmem_items", lambda: I.verbmem_items(self.tokenizer, self.data.verbmem, self.muse.max_length)
        )
        return self._rouge(rows, self.muse.verbmem_new_tokens, (), answers_in_labels=False)

    def _rouge(
        self, rows: list[I.GenerationItem], new_tokens: int, stops: tuple[str, ...], *, answers_in_labels: bool
    ) -> dict:
        generated = self.scorer.generate_ids([r.prompt_ids for r in rows], new_tokens)
        eos = self.tokenizer.eos_token
        generations = [M.cut_generation(self.decode(ids), eos, stops) for ids in generated]
        inputs = [self.decode(r.prompt_ids) for r in rows]
        truths = []
        for row, text in zip(rows, inputs, strict=True):
            labels = [t for t in row.scoring.labels if t >= 0]
            truths.append(M.ground_truth(self.decode(labels), text if answers_in_labels else ""))
        return M.rouge_entry([r.index for r in rows], inputs, truths, generations)

    # ------------------------------------------------------------------------------------- teacher-forced

    def verbmem_stats(self) -> list[Any]:
        rows = self.part(
            "verbmem_items", lambda: I.verbmem_items(self.tokenizer, self.data.verbmem, self.muse.max_length)
        )
        return self.part("verbmem_stats", lambda: self.scorer.score_items([r.scoring for r in rows]))

    def privleak_stats(self, side: str) -> list[Any]:
        texts = self.data.privleak_forget if side == "forget" else self.data.privleak_holdout
        make = lambda: self.scorer.score_items(I.privleak_items(self.tokenizer, texts, self.muse.max_length))
        return self.part(f"privleak_{side}", make)

    def token_match(self, per_item: Callable[[list[int], list[int]], float | None]) -> dict:
        """ES / EM on the verbmem items: argmax vs labels at the positions predicting the gt (last one dropped)."""
        rows = self.part(
            "verbmem_items", lambda: I.verbmem_items(self.tokenizer, self.data.verbmem, self.muse.max_length)
        )
        scores = [per_item(s.argmax.tolist(), s.labels.tolist()) for s in self.verbmem_stats()]
        return M.score_entry([r.index for r in rows], scores)

    def mia(self, attack: str) -> dict:
        """A membership attack's entry: forget (label 0) vs holdout (label 1), the reference's scores."""
        scores = {}
        for side in ("forget", "holdout"):
            texts = self.data.privleak_forget if side == "forget" else self.data.privleak_holdout
            stats = self.privleak_stats(side)
            scores[side] = {i: self._attack(attack, s, t) for i, (s, t) in enumerate(zip(stats, texts, strict=True))}
        return M.mia_entry(scores["forget"], scores["holdout"])

    def _attack(self, attack: str, stats: Any, text: str) -> float:
        if attack == "mia_min_k":
            return M.min_k_item(stats.logprobs, self.k)
        if attack == "mia_min_k_plus_plus":
            return M.min_k_plus_plus_item(stats.logprobs, stats.mu, stats.sigma, self.k)
        if attack == "mia_loss":
            return M.loss_item(stats.logprobs)
        labelled = self.decode([int(t) for t in stats.labels])
        return M.zlib_item(stats.logprobs, labelled)


def evaluate(suite: Suite, metrics: Sequence[str], reference: dict | None) -> dict:
    """The MUSE_EVAL dict of `metrics` (and the pre-computes they read: privleak reads mia_min_k)."""
    computers: dict[str, Callable[[], dict]] = {
        "forget_knowmem_ROUGE": lambda: suite.knowmem("forget"),
        "retain_knowmem_ROUGE": lambda: suite.knowmem("retain"),
        "forget_verbmem_ROUGE": suite.verbmem,
        "extraction_strength": lambda: suite.token_match(M.extraction_strength_item),
        "exact_memorization": lambda: suite.token_match(M.exact_memorization_item),
        **{name: functools.partial(suite.mia, name) for name in MIAS},
    }
    results: dict[str, dict] = {}
    wanted = list(dict.fromkeys(["mia_min_k", *metrics] if "privleak" in metrics else metrics))
    for name in wanted:
        if name == "privleak":
            if reference is None or "mia_min_k" not in reference:
                raise UsageError("privleak needs the retain model's 'mia_min_k' (give --retain-model or --retain-logs)")
            results[name], _ = M.privleak_entry(results["mia_min_k"], reference)
        else:
            results[name] = computers[name]()
    return results
