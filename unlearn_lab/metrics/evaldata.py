"""The records TOFU's evaluation reads (spec 1.2): one list per eval part, and the answer keys each part is scored
with. Its own module so that the metric table (registry.py) and the suite that drives it (suite.py) both read it
without importing each other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from unlearn_lab.data.tofu import Source

# every answer key of each eval part (spec 1.2): a part is scored whole
PART_KEYS = {
    "forget": ("answer", "paraphrased_answer", "perturbed_answer"),
    "retain": ("answer", "paraphrased_answer", "perturbed_answer"),
    "ra": ("answer", "perturbed_answer"),
    "wf": ("answer", "perturbed_answer"),
    "holdout": ("answer",),
}


@dataclass(frozen=True)
class EvalData:
    """The records of each eval set (spec 1.2)."""

    forget: list[dict]  # forgetXX_perturbed
    retain: list[dict]  # retain_perturbed
    ra: list[dict]  # real_authors_perturbed
    wf: list[dict]  # world_facts_perturbed
    holdout: list[dict]  # holdoutXX
    question_key: str = "question"

    @classmethod
    def load(cls, source: Source, forget_split: str, holdout_split: str, question_key: str = "question") -> EvalData:
        return cls(
            source.load(f"{forget_split}_perturbed"),
            source.load("retain_perturbed"),
            source.load("real_authors_perturbed"),
            source.load("world_facts_perturbed"),
            source.load(holdout_split),
            question_key,
        )

    def records(self, part: str) -> list[dict]:
        if part not in PART_KEYS:
            raise ValueError(f"unknown eval part {part!r}; accepted: {', '.join(PART_KEYS)}")
        records: list[dict] = getattr(self, part)
        return records

    def question(self, part: str, record: dict) -> str:
        question: str = record[self.question_key] if part in ("forget", "retain") else record["question"]
        return question
