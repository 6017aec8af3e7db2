"""GAKL: gradient ascent on the forget answers, held near the target model by a KL term on the same batch.

    L = gamma * (-NLL(forget answers)) + alpha * KL(pi_ref || pi_theta) over every position of the forget batch

Gradient ascent alone drives the whole output distribution away until utility collapses; the KL term, taken over
the prompt and answer positions of the same batch against the frozen start model, pays for every change that is not
needed to forget. An example of an unlearn-lab plugin (docs/extending.md): one pure loss, its hyperparameters as
keyword-only arguments with defaults, their bounds, and the spec the entry point names.
"""

from unlearn_lab.methods import NON_NEGATIVE, Features, LossOutput, method_spec
from unlearn_lab.methods.common import kl_to_reference, nll


def loss(features: Features, state: dict, *, alpha: float = 0.5, gamma: float = 1.0) -> LossOutput:
    forget = features.forget
    ascent = -nll(forget)  # the HF loss of the forget batch, negated: its answers made less likely
    leash = kl_to_reference(forget)  # KL(pi_ref || pi_theta) over all B x T positions, needs the frozen copy
    return LossOutput(loss=gamma * ascent + alpha * leash, forget_loss=ascent, retain_loss=leash)


GAKL = method_spec(
    "GAKL",
    loss,
    paper="Example plugin (unlearn-lab docs/extending.md); gradient ascent as in Jang et al., ACL 2023",
    reference_sides={"forget"},  # the loop keeps a frozen copy of the target: Side.ref_logits on the forget batch
    bounds={"alpha": NON_NEGATIVE},  # alpha and gamma are >= 0 for every method anyway; shown for the pattern
)
