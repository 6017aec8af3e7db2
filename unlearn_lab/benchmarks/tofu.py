"""TOFU (Maini et al., 2024) behind the benchmark interface: the reference implementation's metrics, splits and
files, on the embedded world, a folder or the hub (docs/metrics.md, `tofu-reference-spec.md`).

The pieces live where they always did (data/tofu.py and data/synthetic.py: the sources and the embedded world;
metrics/: the scorer, the metric table and the suite; models/recipe.py: the embedded recipe); this module is how a
run reaches them. Every TOFU number is what it was before the interface (checked against runs recorded before).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from unlearn_lab.benchmarks import tofu_scores as scores
from unlearn_lab.config import ExperimentConfig
from unlearn_lab.errors import UsageError

if TYPE_CHECKING:  # torch comes with these: a report or a plan that only reads the benchmark's names does not pay
    from unlearn_lab.data import prompts
    from unlearn_lab.data.unlearning import UnlearnData
    from unlearn_lab.methods.base import MethodSpec

TOFU_AUTHORS = 200  # the published TOFU: 200 fictitious authors x 20 QAs
HOLDOUTS = ("holdout01", "holdout05", "holdout10")
QUESTION_KEYS = ("question", "paraphrased_question")


def qa_items(tokenizer: Any, records: list[dict], pcfg: Any) -> list[prompts.Encoded]:
    """Question-answer records in the prompt format (chat template or plain), answers (and eos/eot) supervised."""
    from unlearn_lab.data import prompts

    return [prompts.encode_qa(tokenizer, r["question"], r["answer"], pcfg) for r in records]


class Tofu:
    """The TOFU benchmark (one instance, `TOFU`)."""

    name = "tofu"
    eval_file, summary_file = "TOFU_EVAL.json", "TOFU_SUMMARY.json"
    headline = scores.HEADLINE
    objectives = scores.OBJECTIVES
    objective_choices = scores.OBJECTIVE_CHOICES
    forget_threshold = scores.FORGET_THRESHOLD
    has_alternate = True  # "I don't know" answers (the split idk)
    pretrains_base = True  # the embedded base reads the general-knowledge corpus first
    folder_kind = "a folder of TOFU files (full.json, forget10.json, ... as .json, .jsonl or .parquet)"
    folder_marker = "full.*"

    # ------------------------------------------------------------------------------------------- configuration

    def resolve(self, cfg: ExperimentConfig) -> ExperimentConfig:
        """The retain split filled in (the complement of the forget split) and the holdout and question key
        checked."""
        from unlearn_lab.data.tofu import check_pair

        d = cfg.data
        if d.holdout_split not in HOLDOUTS:
            accepted = f"{', '.join(HOLDOUTS[:-1])} or {HOLDOUTS[-1]}"
            raise UsageError(f"data.holdout_split must be {accepted}, got {d.holdout_split}")
        if d.question_key not in QUESTION_KEYS:
            raise UsageError(f"data.question_key must be question or paraphrased_question, got {d.question_key}")
        return replace(cfg, data=replace(d, retain_split=check_pair(d.forget_split, d.retain_split)))

    def source(self, cfg: ExperimentConfig) -> Any:
        from unlearn_lab.data.tofu import make_source

        d = cfg.data
        return make_source(d.source, d.authors, d.seed)

    def check_data(self, cfg: ExperimentConfig, source: Callable[[], Any]) -> str | None:
        """An author count the splits cannot divide, a subset larger than the source, a split it lacks."""
        from unlearn_lab.data.tofu import MissingSplitFile

        d = cfg.data
        try:
            opened = source()
            for split in (d.forget_split, d.retain_split, d.holdout_split):
                if split is not None:
                    opened.load(split)
        except UsageError as exc:
            if d.source == "synthetic" or isinstance(exc, MissingSplitFile):  # names the folder or the world
                return str(exc)
            hint = (
                " (set data.authors to a multiple of 10 up to the source's size, or null for all)" if d.authors else ""
            )
            return f"data {d.source}: {exc}{hint}"
        return None

    def describe(self, source: Any) -> str:
        from unlearn_lab.data.tofu import describe_splits

        return describe_splits(source)

    def show(self, source: Any, split: str, n: int) -> list[dict]:
        return source.load(split)[:n]

    def key_content(self, cfg: ExperimentConfig) -> dict | None:
        return None  # TOFU's keys are those of the shared settings (unchanged since before benchmarks)

    def stage_items(self, cfg: ExperimentConfig, source: Any) -> dict[str, int]:
        """Items of prepare's fine-tunes (with the embedded recipe's paraphrases and general replay) and of the
        forget set; a hub source is not read before the preflight: TOFU's published sizes (20 QAs per author)."""
        from unlearn_lab.models.recipe import extra_records

        d = cfg.data
        if d.source.startswith("hf:"):
            from unlearn_lab.data.tofu import FORGET_PCTS

            full = (d.authors or TOFU_AUTHORS) * 20
            forget = full * FORGET_PCTS[d.forget_split] // 100
            return {"target": full, "retain": full - forget, "forget": forget}
        counts = {}
        for role, split in (("target", "full"), ("retain", d.retain_split)):
            rows = len(source.load(split))
            counts[role] = rows + len(extra_records(cfg, source, rows))
        counts["forget"] = len(source.load(d.forget_split))
        return counts

    # ------------------------------------------------------------------------------------- the embedded models

    def embedded_tokenizer(self, cfg: ExperimentConfig, source: Any) -> Any:
        """The embedded models' BPE tokenizer, trained on every string of the world and the prompt template's."""
        from unlearn_lab.models import tiny

        world = source.world
        keys = ("question", "answer", "paraphrased_question", "paraphrased_answer")
        texts = [
            t
            for a in world["authors"] + world["holdout"]
            for qa in a
            for t in (*(qa[k] for k in keys), *qa["perturbed_answer"])
        ]
        pcfg = cfg.prompt
        texts += world["pretrain_text"] + tiny.template_corpus(pcfg.system_prompt, pcfg.date_string)
        return tiny.train_tokenizer(texts, cfg.model.tiny.vocab_size)

    def pretrain_items(self, cfg: ExperimentConfig, source: Any, tokenizer: Any) -> list[prompts.Encoded]:
        """The base model's general knowledge: the real-author and world-fact QA and the pre-training text."""
        from unlearn_lab.data import prompts

        general = source.load("real_authors_perturbed") + source.load("world_facts_perturbed")
        return qa_items(tokenizer, general, cfg.prompt) + prompts.text_items(tokenizer, source.world["pretrain_text"])

    def finetune_items(self, cfg: ExperimentConfig, source: Any, tokenizer: Any, role: str) -> list[prompts.Encoded]:
        """The target on `full`, the retain model on the retain split (plus the embedded recipe's additions)."""
        from unlearn_lab.models.recipe import extra_records

        records = source.load("full" if role == "target" else cfg.data.retain_split or "")
        return qa_items(tokenizer, records + extra_records(cfg, source, len(records)), cfg.prompt)

    def describe_finetune(self, cfg: ExperimentConfig, source: Any, role: str) -> tuple[str, str]:
        """What a role is fine-tuned on, for the log and the manifest: (split, its size)."""
        split = self.finetune_split(cfg, role)
        return split, f"{len(source.load(split))} QAs"

    def finetune_split(self, cfg: ExperimentConfig, role: str) -> str:
        return "full" if role == "target" else cfg.data.retain_split or ""

    def world_note(self, cfg: ExperimentConfig) -> str:
        return f"authors: {cfg.data.authors or 'all'}"

    # --------------------------------------------------------------------------------------------- unlearning

    def unlearn_data(self, cfg: ExperimentConfig, source: Any, tokenizer: Any, spec: MethodSpec) -> UnlearnData:
        """The forget split's QA, the retain split's QA, and (IdkDPO) each forget question with an idk answer."""
        from unlearn_lab.data import prompts
        from unlearn_lab.data.unlearning import UnlearnData

        pcfg = cfg.prompt
        forget, retain = source.load(cfg.data.forget_split), source.load(cfg.data.retain_split or "")
        idk = source.load("idk") if spec.needs_alternate else None
        encode = lambda q, a: prompts.encode_qa(tokenizer, q, a, pcfg)
        alternate = None
        if idk:
            alternate = functools.lru_cache(maxsize=None)(lambda i, j: encode(forget[i]["question"], idk[j]["answer"]))
        return UnlearnData(
            [encode(r["question"], r["answer"]) for r in forget],
            [encode(r["question"], r["answer"]) for r in retain],
            alternate,
            len(idk or ()),
            prompts.pad_id(tokenizer, pcfg),
            pcfg.reference_attention_mask,
        )

    # --------------------------------------------------------------------------------------------- evaluation

    def metrics(self, text: str) -> tuple[str, ...]:
        from unlearn_lab.metrics import suite

        return suite.parse_metrics(text)

    def reference_metrics(self, metrics: Sequence[str]) -> tuple[str, ...]:
        from unlearn_lab.metrics import suite

        return tuple(m for m in metrics if m in suite.NEEDS_REFERENCE)

    def reference_entries(self) -> tuple[str, ...]:
        from unlearn_lab.metrics import suite

        return tuple(dict.fromkeys(suite.NEEDS_REFERENCE.values()))

    def eval_data(self, cfg: ExperimentConfig, source: Any) -> Any:
        from unlearn_lab.metrics.evaldata import EvalData

        d = cfg.data
        return EvalData.load(source, d.forget_split, d.holdout_split, d.question_key)

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
        """The TOFU suite's entries (the reference's TOFU_EVAL layout) for `metrics` and their pre-computes."""
        from unlearn_lab.metrics import suite
        from unlearn_lab.metrics.scoring import Scorer

        e = cfg.eval
        plus_plus = "mia_min_k_plus_plus" in suite.closure(tuple(metrics))
        scorer = Scorer(model, tokenizer, cfg.prompt, e.batch_size, min_k_plus_plus=plus_plus, log=log)
        return suite.evaluate(
            scorer,
            data,
            tuple(metrics),
            max_new_tokens=e.max_new_tokens,
            mink_k=e.mink_k,
            reference=reference,
            progress=progress,
            log=log,
            answer_length_ratio=e.answer_length_ratio,
        )

    def summary(self, results: dict, metrics: Sequence[str]) -> dict:
        from unlearn_lab.metrics import suite

        return suite.summary(results, tuple(metrics))

    def utility_bound(self, cfg: ExperimentConfig, model: Any, tokenizer: Any, data: Any) -> float | None:
        """An upper bound on model_utility from its six scoring-only parts (no generation: about a third of an
        evaluation); a collapsed model is recognised without generating a word (metrics.functions.utility_bound)."""
        from unlearn_lab.metrics import functions as F
        from unlearn_lab.metrics.registry import REGISTRY

        parts = tuple(c for c in F.MODEL_UTILITY_COMPONENTS if REGISTRY[c].generations is None)
        results = self.evaluate(cfg, model, tokenizer, data, parts, reference=None, progress=False, log=None)
        return F.utility_bound({c: float(results[c]["agg_value"]) for c in parts})


TOFU = Tofu()
