"""MUSE behind the benchmark interface (docs/muse.md, `muse-reference-spec.md`): its splits, its training chunks, the
embedded world's models, its suite and files, its headline metrics and its sweep objectives.

Splits (the experiment's `data` section): `forget_split: forget` (raw/forget, the forget set), `retain_split:
retain1` (default; the retain set unlearning reads) and `holdout_split: holdout` (privleak's non-members).
Objectives of a sweep, by default: forget_verbmem_ROUGE down (the forget set's text no longer reproduced: the most
direct measure of what unlearning removes) and retain_knowmem_ROUGE up (MUSE's utility: knowledge of retain2 kept);
privleak, forget_knowmem_ROUGE and extraction_strength are reported beside them (`--objectives` picks others).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from unlearn_lab.benchmarks import Objective, check_method
from unlearn_lab.config import ExperimentConfig
from unlearn_lab.errors import UsageError

if TYPE_CHECKING:  # torch comes with these: a report that only reads the benchmark's names does not pay
    from unlearn_lab.data import prompts
    from unlearn_lab.data.unlearning import UnlearnData
    from unlearn_lab.methods.base import MethodSpec

TRAINING_SPLITS = {"target": ("forget", "retain1", "retain2"), "retain": ("retain1", "retain2")}
RETAIN_SPLITS = ("retain1", "retain2")


def world_params(cfg: ExperimentConfig) -> Any:
    """The embedded world's sizes from the experiment's `muse` section."""
    from unlearn_lab.benchmarks.muse.world import WorldParams

    m = cfg.muse
    n = m.articles
    return WorldParams(
        n_forget=n, n_retain1=n, n_retain2=n, n_holdout=n, n_qa=m.questions, n_icl=m.icl_pairs,
        n_verbmem=min(20, n), n_privleak=min(20, n),
    )  # fmt: skip


def chunks(cfg: ExperimentConfig, tokenizer: Any, texts: Sequence[str]) -> list[prompts.Encoded]:
    """Training chunks of `texts` (spec 2.1), without the BOS-only chunk an exact multiple leaves (it holds no
    supervised token: SimNPO's per-sequence mean would divide by zero; documented in docs/metrics.md)."""
    from unlearn_lab.benchmarks.muse.items import is_empty, training_chunks

    return [c for c in training_chunks(tokenizer, list(texts), cfg.muse.chunk_tokens) if not is_empty(c)]


class Muse:
    """The MUSE benchmark (one instance, `MUSE`)."""

    name = "muse"
    eval_file, summary_file = "MUSE_EVAL.json", "MUSE_SUMMARY.json"
    headline: tuple[str, ...] = (
        "forget_verbmem_ROUGE",
        "forget_knowmem_ROUGE",
        "retain_knowmem_ROUGE",
        "privleak",
        "extraction_strength",
    )
    objectives: tuple[Objective, Objective] = (
        Objective("forget_verbmem_ROUGE", "min"),
        Objective("retain_knowmem_ROUGE", "max"),
    )
    objective_choices: Mapping[str, Objective] = {
        "forget_verbmem_ROUGE": objectives[0],
        "forget_knowmem_ROUGE": Objective("forget_knowmem_ROUGE", "min"),
        "retain_knowmem_ROUGE": objectives[1],
        "privleak": Objective("privleak", "min", absolute=True),  # 0: as much a member as for the retain model
        "extraction_strength": Objective("extraction_strength", "min"),
    }
    forget_threshold = 0.25  # the leaderboard's rule (b): forget_verbmem_ROUGE at most this
    has_alternate = False  # no "I don't know" answers: IdkDPO does not apply
    pretrains_base = False  # the embedded base is randomly initialised: all it knows comes from fine-tuning
    folder_kind = "a folder in the hub's MUSE layout (README.md with configs:, raw/forget-*.parquet, ...)"
    folder_marker = "README.md"

    def resolve(self, cfg: ExperimentConfig) -> ExperimentConfig:
        d = cfg.data
        if d.forget_split != "forget":
            raise UsageError(
                f"data.forget_split must be forget for the muse benchmark (raw/forget), got {d.forget_split}"
            )
        retain = d.retain_split or "retain1"
        if retain not in RETAIN_SPLITS:
            raise UsageError(f"data.retain_split must be retain1 or retain2 for the muse benchmark, got {retain}")
        if d.holdout_split != "holdout":
            raise UsageError(f"data.holdout_split must be holdout for the muse benchmark, got {d.holdout_split}")
        return replace(cfg, data=replace(d, retain_split=retain))

    def source(self, cfg: ExperimentConfig) -> Any:
        from unlearn_lab.benchmarks.muse.data import make_muse_source

        try:
            return make_muse_source(cfg.data.source, seed=cfg.data.seed, params=world_params(cfg))
        except UsageError as exc:  # the world's own field names, as the experiment's `muse` section calls them
            text = str(exc)
            for field, key in (("n_qa", "muse.questions"), ("n_forget", "muse.articles"), ("n_icl", "muse.icl_pairs")):
                text = text.replace(field, key)
            raise UsageError(text) from None

    def check_data(self, cfg: ExperimentConfig, source: Callable[[], Any]) -> str | None:
        """Every file a run reads: the raw forget and retain text, the knowmem, verbmem and privleak sets."""
        try:
            opened = source()
            opened.raw("forget")
            opened.raw(cfg.data.retain_split or "retain1")
            self.eval_data(cfg, opened)
        except UsageError as exc:
            return str(exc)
        return None

    def describe(self, source: Any) -> str:
        return str(source.describe())

    def show(self, source: Any, split: str, n: int) -> list[dict]:
        return list(source.show(split, n))

    def key_content(self, cfg: ExperimentConfig) -> dict | None:
        """The world's size and the chunking shape the models; privleak's truncation the reference."""
        m = asdict(cfg.muse)
        return {k: m[k] for k in ("chunk_tokens", "articles", "questions", "icl_pairs", "max_length")}

    def stage_items(self, cfg: ExperimentConfig, source: Any) -> dict[str, int]:
        """Chunks per stage, estimated before a tokenizer exists (4 characters a token: a plan's step counts are an
        estimate; training counts the real chunks). The hub's text is not read before the preflight: none."""
        if cfg.data.source.startswith("hf:"):
            return {}
        per = lambda texts: max(1, sum(len(t) + 2 for t in texts) // (4 * cfg.muse.chunk_tokens) + 1)
        out = {role: per(self._finetune_texts(cfg, source, role)) for role in TRAINING_SPLITS}
        out["forget"] = per(source.raw("forget"))
        return out

    # ------------------------------------------------------------------------------------- the embedded models

    def _finetune_texts(self, cfg: ExperimentConfig, source: Any, role: str) -> list[str]:
        """The embedded world: each article with its facts' QA renderings (a tiny model learns to answer questions
        about a text only from such pairs; docs/muse.md); another source: its raw articles."""
        splits = TRAINING_SPLITS[role]
        if hasattr(source, "world"):
            from unlearn_lab.benchmarks.muse.world import finetune_texts

            return finetune_texts(source.world, splits)
        return [text for split in splits for text in source.raw(split)]

    def embedded_tokenizer(self, cfg: ExperimentConfig, source: Any) -> Any:
        """A BPE tokenizer trained on every article (holdout too: a tokenizer is not a model) and its QA renderings,
        where a space after a colon is a token of its own: the knowmem prompt ends in "Answer: " (spec 2.4), and
        with the usual " word" pre-tokens that trailing space would be a token the model never saw before an answer
        (Llama-2's SentencePiece copes; a 1.2 M-parameter model answered nothing)."""
        from unlearn_lab.benchmarks.muse.world import ARTICLE_SPLITS, finetune_texts
        from unlearn_lab.models import tiny

        if not hasattr(source, "world"):
            raise UsageError("an embedded base model needs the embedded MUSE world (data.source: synthetic)")
        texts = finetune_texts(source.world, ARTICLE_SPLITS)
        return tiny.train_tokenizer(texts, cfg.model.tiny.vocab_size, pattern=r"(?<=:) |" + tiny.PRE_TOKENIZE)

    def pretrain_items(self, cfg: ExperimentConfig, source: Any, tokenizer: Any) -> list[prompts.Encoded]:
        return []  # the embedded base is a randomly initialised tiny Llama: all it knows comes from fine-tuning

    def finetune_items(self, cfg: ExperimentConfig, source: Any, tokenizer: Any, role: str) -> list[prompts.Encoded]:
        return chunks(cfg, tokenizer, self._finetune_texts(cfg, source, role))

    def describe_finetune(self, cfg: ExperimentConfig, source: Any, role: str) -> tuple[str, str]:
        return self.finetune_split(cfg, role), f"{sum(len(source.raw(s)) for s in TRAINING_SPLITS[role])} articles"

    def finetune_split(self, cfg: ExperimentConfig, role: str) -> str:
        return "+".join(TRAINING_SPLITS[role])

    def world_note(self, cfg: ExperimentConfig) -> str:
        return f"{cfg.muse.articles} articles a split" if cfg.data.source == "synthetic" else "all articles"

    # --------------------------------------------------------------------------------------------- unlearning

    def unlearn_data(self, cfg: ExperimentConfig, source: Any, tokenizer: Any, spec: MethodSpec) -> UnlearnData:
        """Chunks of raw/forget, and of the retain split each forget chunk draws its partner from (spec 5.1)."""
        from unlearn_lab.data.unlearning import UnlearnData

        check_method(self, spec)
        forget = chunks(cfg, tokenizer, source.raw("forget"))
        retain = chunks(cfg, tokenizer, source.raw(cfg.data.retain_split or "retain1"))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return UnlearnData(forget, retain, None, 0, pad, False)

    # --------------------------------------------------------------------------------------------- evaluation

    def metrics(self, text: str) -> tuple[str, ...]:
        from unlearn_lab.benchmarks.muse.suite import parse_metrics

        return parse_metrics(text)

    def reference_metrics(self, metrics: Sequence[str]) -> tuple[str, ...]:
        return tuple(m for m in metrics if m == "privleak")

    def reference_entries(self) -> tuple[str, ...]:
        return ("mia_min_k",)

    def eval_data(self, cfg: ExperimentConfig, source: Any) -> Any:
        from unlearn_lab.benchmarks.muse.suite import MuseEvalData

        return MuseEvalData.load(source, cfg.data.holdout_split)

    def evaluate(
        self,
        cfg: ExperimentConfig,
        model: Any,
        tokenizer: Any,
        data: Any,
        metrics: Sequence[str],
        *,
        reference: dict | None,
        progress: bool,
        log: Any,
    ) -> dict:
        from unlearn_lab.benchmarks.muse import suite
        from unlearn_lab.metrics.scoring import Scorer

        plus = "mia_min_k_plus_plus" in metrics
        scorer = Scorer(model, tokenizer, cfg.prompt, cfg.eval.batch_size, min_k_plus_plus=plus, log=log)
        run = suite.Suite(scorer, tokenizer, data, cfg.muse, cfg.eval.mink_k, progress)
        return suite.evaluate(run, metrics, reference)

    def summary(self, results: dict, metrics: Sequence[str]) -> dict:
        from unlearn_lab.benchmarks.muse.metrics import summary

        return summary(results, [m for m in metrics if results.get(m, {}).get("agg_value") is not None])

    def utility_bound(self, cfg: ExperimentConfig, model: Any, tokenizer: Any, data: Any) -> float | None:
        return None  # retain_knowmem_ROUGE needs generation: no cheaper bound than the evaluation itself


MUSE = Muse()
