"""Eval speed: the batched suite vs a straightforward per-sample evaluator, in one process.

The baseline runs one forward pass per metric per sample (batch size 1; truth ratios and normalised
probabilities recompute the probabilities they need, as independent metric implementations would) and
generates one sample at a time. Both produce the default suite's top-level numbers on the embedded
default's target model; the script checks that they agree and prints the time ratio.

    .venv/bin/python benchmarks/bench_eval.py [--experiment FILE] [--max-new-tokens N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from unlearn_lab.commands import make_plan
from unlearn_lab.config import load_experiment
from unlearn_lab.data import prompts
from unlearn_lab.evaluation import eval_data, evaluate_model, load_for_eval, reference_entries
from unlearn_lab.metrics import functions as F
from unlearn_lab.metrics import suite
from unlearn_lab.metrics.scoring import Scorer
from unlearn_lab.models.prepare import prepare
from unlearn_lab.runtime import configure_threads


class PerSampleEvaluator:
    """The baseline: every metric computes what it needs itself, one sample and one forward at a time."""

    def __init__(self, model, tokenizer, pcfg, max_new_tokens):
        self.model, self.tok, self.pcfg, self.max_new = model, tokenizer, pcfg, max_new_tokens

    @torch.no_grad()
    def token_logprobs(self, q, a):
        enc = prompts.encode_qa(self.tok, q, a, self.pcfg)
        ids = torch.tensor([enc.input_ids])
        logits = self.model(input_ids=ids).logits[0, :-1].float()
        labels = torch.tensor(enc.labels[1:])
        keep = labels != prompts.IGNORE
        logp = torch.log_softmax(logits[keep], -1)
        return (
            logp.gather(1, labels[keep][:, None]).squeeze(1).numpy(),
            logits[keep].argmax(-1).numpy(),
            labels[keep].numpy(),
        )

    def avg_loss(self, q, a):
        return float(-self.token_logprobs(q, a)[0].mean())

    def prob(self, recs, key):
        return [
            np.mean(
                [np.exp(-self.avg_loss(r["question"], x)) for x in (r[key] if isinstance(r[key], list) else [r[key]])]
            )
            for r in recs
        ]

    def truth_ratio(self, recs, correct_key):
        c = np.array([self.avg_loss(r["question"], r[correct_key]) for r in recs])
        w = np.array([[self.avg_loss(r["question"], x) for x in r["perturbed_answer"]] for r in recs])
        return F.truth_ratio(c, w)

    @torch.no_grad()
    def rouge(self, recs):
        gens, truths = [], []
        for r in recs:
            ids = torch.tensor([prompts.encode_prompt(self.tok, r["question"], self.pcfg)])
            out = self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=self.max_new,
                do_sample=False,
                pad_token_id=self.tok.pad_token_id,
            )
            gens.append(self.tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip())
            truths.append(r["answer"])
        return float(np.mean([s["rougeL_recall"] for s in F.rouge_scores(gens, truths)]))

    def min_k(self, recs):
        return [F.min_k_score(self.token_logprobs(r["question"], r["answer"])[0][:-1]) for r in recs]

    def run(self, data: suite.EvalData, ref: dict) -> dict:
        out = {"forget_Q_A_Prob": float(np.mean(self.prob(data.forget, "answer")))}
        self.prob(data.forget, "paraphrased_answer"), self.prob(data.forget, "perturbed_answer")  # pre-computes
        tr = self.truth_ratio(data.forget, "paraphrased_answer")
        out["forget_truth_ratio"] = F.aggregate_truth_ratio(tr, "closer_to_1_better")
        ref_tr = np.array([ref["forget_truth_ratio"]["value_by_index"][str(i)]["score"] for i in range(len(tr))])
        out["forget_quality"] = F.forget_quality(tr, ref_tr)
        out["forget_Q_A_ROUGE"] = self.rouge(data.forget)
        es = []
        for r in data.forget:
            _, pred, lab = self.token_logprobs(r["question"], r["answer"])
            es.append(F.extraction_strength(pred[:-1].tolist(), lab[:-1].tolist()))
        out["extraction_strength"] = float(np.mean(es))
        mu = {"retain_Q_A_Prob": float(np.mean(self.prob(data.retain, "answer")))}
        self.prob(data.retain, "paraphrased_answer"), self.prob(data.retain, "perturbed_answer")
        mu["retain_Q_A_ROUGE"] = self.rouge(data.retain)
        mu["retain_Truth_Ratio"] = F.aggregate_truth_ratio(
            self.truth_ratio(data.retain, "paraphrased_answer"), "true_better"
        )
        for part in ("ra", "wf"):
            recs = getattr(data, part)
            self.prob(recs, "answer"), self.prob(recs, "perturbed_answer")
            p = np.array(self.prob(recs, "answer"))
            w = np.array([[np.exp(-self.avg_loss(r["question"], x)) for x in r["perturbed_answer"]] for r in recs])
            mu[f"{part}_Q_A_Prob_normalised"] = float(np.mean(F.normalised_option_prob(p, w)))
            mu[f"{part}_Q_A_ROUGE"] = self.rouge(recs)
            mu[f"{part}_Truth_Ratio"] = F.aggregate_truth_ratio(self.truth_ratio(recs, "answer"), "true_better")
        out["model_utility"] = F.model_utility(mu)
        auc = F.mia_auc(np.array(self.min_k(data.forget)), np.array(self.min_k(data.holdout)))
        out["privleak"] = F.privleak(auc, ref["mia_min_k"]["agg_value"])
        return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default=None)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    args = parser.parse_args()
    threads = configure_threads()
    overrides = [f"eval.max_new_tokens={args.max_new_tokens}"] if args.max_new_tokens else []
    cfg = load_experiment(args.experiment, overrides)
    plan = make_plan("eval", cfg, device=None, evaluated="target")
    prepare(plan)
    data = eval_data(plan)
    ref = reference_entries(plan, data, progress=False)  # cached: not part of either timing
    model, tok = load_for_eval(plan, plan.evaluated.spec)
    # warm-up outside both timings: lazy imports (rouge-score pulls in nltk), first-call allocations
    F.rouge_scores(["warm up"], ["warm up"])
    Scorer(model, tok, cfg.prompt).generate([data.forget[0]["question"]], 4)

    start = time.perf_counter()
    fast = evaluate_model(plan, model, tok, reference=ref, data=data, progress=False).summary
    t_suite = time.perf_counter() - start
    start = time.perf_counter()
    slow = PerSampleEvaluator(model, tok, cfg.prompt, cfg.eval.max_new_tokens).run(data, ref)
    t_base = time.perf_counter() - start

    print(
        f"embedded default target model, default suite, {threads} torch threads, max_new_tokens "
        f"{cfg.eval.max_new_tokens}"
    )
    print(f"{'metric':<22} {'suite':>12} {'per-sample':>12}")
    for name in suite.DEFAULT_METRICS:
        print(f"{name:<22} {fast[name]:>12.6g} {slow[name]:>12.6g}")
    worst = max(
        abs(fast[n] - slow[n]) / max(1e-12, abs(slow[n]))
        for n in ("forget_Q_A_Prob", "model_utility", "forget_truth_ratio")
    )
    print(f"largest relative difference (probabilities, truth ratio, utility): {worst:.2e}")
    print(f"suite: {t_suite:.2f} s   per-sample baseline: {t_base:.2f} s   speed-up: {t_base / t_suite:.1f}x")


if __name__ == "__main__":
    main()
