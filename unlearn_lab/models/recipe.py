"""The embedded TOFU recipe's additions to a fine-tuning split (docs/embedded-world.md): paraphrased phrasings of the
same rows, and replay of the general-knowledge QA. Read by `prepare` (what it trains on) and by the plan (how many
steps that is), so it imports neither."""

from __future__ import annotations

from unlearn_lab.config import ExperimentConfig
from unlearn_lab.errors import UsageError


def extra_records(cfg: ExperimentConfig, source, n_rows: int) -> list[dict]:
    """The embedded recipe's additions: paraphrased phrasings of the same rows, general-knowledge replay."""
    f, extra = cfg.finetune, []
    if (f.paraphrase_augment or f.general_replay) and not hasattr(source, "world"):
        raise UsageError(
            "finetune.paraphrase_augment / general_replay need the synthetic world (data.source: synthetic)"
        )
    if f.paraphrase_augment:  # full and retainXX are prefixes of the author-ordered world
        rows = [qa for author in source.world["authors"] for qa in author][:n_rows]
        extra += [{"question": r["paraphrased_question"], "answer": r["paraphrased_answer"]} for r in rows]
    if f.general_replay:
        extra += source.load("real_authors_perturbed") + source.load("world_facts_perturbed")
    return extra
