"""GradAscent: gradient ascent on the forget set (spec §4.1).

Paper: Joel Jang, Dongkeun Yoon, Sohee Yang, Sungmin Cha, Moontae Lee, Lajanugen Logeswaran, Minjoon Seo,
"Knowledge Unlearning for Mitigating Privacy Risks in Language Models", ACL 2023, arXiv:2210.01504;
used as a TOFU baseline by Maini et al., "TOFU: A Task of Fictitious Unlearning for LLMs", arXiv:2401.06121.

    L = −NLL(forget)

NLL is the HF model loss: the mean token cross-entropy over all supervised tokens (answer + eot) of the
micro-batch, pooled over the batch. No retain term, no hyperparameters.
"""

from __future__ import annotations

from .base import Features, LossOutput
from .common import nll

PAPER = (
    "Jang, Yoon, Yang, Cha, Lee, Logeswaran, Seo. Knowledge Unlearning for Mitigating Privacy Risks in Language "
    "Models. ACL 2023, arXiv:2210.01504"
)


def loss(features: Features, state: dict) -> LossOutput:
    forget = -nll(features.forget)
    return LossOutput(loss=forget, forget_loss=forget, retain_loss=None)
