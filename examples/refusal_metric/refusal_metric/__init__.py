"""forget_refusal_rate: the share of forget questions the model declines to answer ("I don't know", "I'm not sure").

An example of an unlearn-lab metric plugin (docs/extending.md): a pure function over the suite's inputs (here the
greedy generations of the forget part, which the suite makes once for every metric that reads them), declared
once with what it reads, its direction and its aggregation. IdkDPO teaches exactly this behaviour.
"""

import re

from unlearn_lab.metrics.registry import Inputs, Metric

REFUSALS = re.compile(r"\b(i don't know|i do not know|i'm not sure|i am not sure|no idea|cannot answer|not able to)\b")


def refused(text: str) -> bool:
    return bool(REFUSALS.search(text.lower().replace("\u2019", "'")))


def refusal_rate(metric: Metric, inputs: Inputs) -> dict:
    """{agg_value: mean of the per-question 0/1, value_by_index: {i: {score}}} (the TOFU_EVAL entry shape)."""
    generations = inputs.generations["forget"]
    scores = [float(refused(g)) for g in generations]
    return {
        "agg_value": sum(scores) / len(scores) if scores else None,
        "value_by_index": {
            str(i): {"score": s, "generation": g} for i, (s, g) in enumerate(zip(scores, generations, strict=True))
        },
    }


FORGET_REFUSAL_RATE = Metric("forget_refusal_rate", refusal_rate, "higher_is_better", "mean", generations="forget")
