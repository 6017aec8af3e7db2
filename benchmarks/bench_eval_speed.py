"""How fast the evaluator is, as ratios measured in one run (issue: faithful, fast evaluation).

1. scoring: answer tokens/s of `Scorer.score_pairs` over every (question, answer) pair the default suite
   scores, against a bare forward pass of the same model over the same pairs as right-padded full sequences in
   the same batches (no log-softmax, nothing kept): >= 0.70 wanted.
2. generation: `Scorer.generate` against bare `model.generate` (greedy, KV cache) on the same prompts in the
   same batches with the same token budget: >= 0.70 wanted.
3. passes: pairs scored by one evaluation with every metric, against the distinct pairs it needs (1.00: no pair
   scored twice); gradnorm's backward passes against its samples.
4. start-up: seconds from process start to the first forward pass of `unlearn-lab eval` (reference cached), and
   whether the tracking and sweep libraries were imported: <= 5 s wanted.
5. a collapsed model (gradient ascent at lr 1e-3, 5 epochs: it rambles to the token budget) against the healthy
   target, `eval` wall time with the reference cached: <= 2.0 wanted.
6. load: `eval` of the target beside one busy process (a spinning Python) against a quiet machine, with the
   default thread policy and with threads forced to every core (the old behaviour): policy <= 2.0 wanted.
7. end to end: `unlearn-lab eval` of the default suite with the retain reference computed fresh, at 1 thread,
   against an older commit run from a git worktree, on the embedded target and retain models and (when the real
   TOFU files are there) on real TOFU forget01: the older commit's time over ours, >= 1.8 wanted.
8. floor, for each end-to-end case: what an `eval` cannot go below with the libraries the metrics are defined by
   and these models: importing them (torch, the transformers model class, scipy.stats for KS, rouge_score) in a
   fresh process, plus this evaluator's own forward passes alone (the target's scoring and generation, the retain
   model's reference scoring; they beat a bare forward pass, measurement 1). The older commit's time over the floor
   is the largest speed-up any evaluator could show against it.

    .venv/bin/python benchmarks/bench_eval_speed.py [--baseline-commit bd7398e] [--rounds 2] [--skip-e2e]

Runs at 1 thread (OMP_NUM_THREADS=1) unless told otherwise; give the machine to it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOFU = Path(os.environ.get("UNLEARN_LAB_TOFU_DIR", REPO.parent / "shared" / "tofu"))


def suite_pairs(data, part_keys):
    """Every (question, answer) pair of each part, as the suite scores them."""
    pairs = []
    for part, keys in part_keys.items():
        for key in keys:
            for r in getattr(data, part):
                answers = r[key] if isinstance(r[key], list) else [r[key]]
                pairs += [(data.question(part, r), a) for a in answers]
    return pairs


def bare_forward(model, tokenizer, pairs, pcfg, batch_size):
    """Full teacher-forced sequences, right-padded, in `batch_size` batches sorted by length: only the forward."""
    import torch

    from unlearn_lab.data import prompts

    encoded = sorted((prompts.encode_qa(tokenizer, q, a, pcfg) for q, a in pairs), key=lambda e: len(e.input_ids))
    pad = prompts.pad_id(tokenizer, pcfg)
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(encoded), batch_size):
            batch = encoded[i : i + batch_size]
            width = max(len(e.input_ids) for e in batch)
            ids = torch.full((len(batch), width), pad)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, e in enumerate(batch):
                ids[r, : len(e.input_ids)] = torch.tensor(e.input_ids)
                mask[r, : len(e.input_ids)] = 1
            model(input_ids=ids, attention_mask=mask)
    return time.perf_counter() - start


def bare_generate(model, tokenizer, questions, pcfg, batch_size, max_new_tokens):
    import torch

    from unlearn_lab.data import prompts

    encoded = sorted((prompts.encode_prompt(tokenizer, q, pcfg) for q in questions), key=len)
    pad = prompts.pad_id(tokenizer, pcfg)
    start, new_tokens = time.perf_counter(), 0
    with torch.no_grad():
        for i in range(0, len(encoded), batch_size):
            batch = prompts.collate_prompts(encoded[i : i + batch_size], pad, reference_mask=False)
            out = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                top_p=None,
                temperature=None,
                use_cache=True,
                pad_token_id=pad,
                eos_token_id=tokenizer.eos_token_id,
            )
            new_tokens += int((out[:, batch["input_ids"].shape[1] :] != pad).sum())
    return time.perf_counter() - start, new_tokens


def in_process(plan, rounds: int) -> dict:
    """Measurements 1-3 on the plan's evaluated model."""
    from unlearn_lab.evaluation import eval_data, load_for_eval
    from unlearn_lab.metrics import suite
    from unlearn_lab.metrics.scoring import Scorer

    cfg = plan.cfg
    data = eval_data(plan)
    model, tokenizer = load_for_eval(plan, plan.evaluated.spec)
    scorer = Scorer(model, tokenizer, cfg.prompt, cfg.eval.batch_size)
    pairs_by_part = {p: suite_pairs(data, {p: keys}) for p, keys in suite.PART_KEYS.items()}
    answer_tokens = sum(scorer.answer_tokens(q, a) for pairs in pairs_by_part.values() for q, a in pairs)
    ours, bare = [], []
    for _ in range(rounds):  # interleaved: drift on a shared machine hits both alike
        t = time.perf_counter()
        for pairs in pairs_by_part.values():
            scorer.score_pairs(pairs)
        ours.append(time.perf_counter() - t)
        bare.append(
            sum(
                bare_forward(model, tokenizer, pairs, cfg.prompt, cfg.eval.batch_size)
                for pairs in pairs_by_part.values()
            )
        )
    out = {
        "scoring": {
            "answer_tokens": answer_tokens,
            "ours_s": min(ours),
            "bare_forward_s": min(bare),
            "ours_tok_s": answer_tokens / min(ours),
            "bare_tok_s": answer_tokens / min(bare),
            "ratio": min(bare) / min(ours),
        }
    }

    questions = [data.question(p, r) for p in ("forget", "retain", "ra", "wf") for r in getattr(data, p)]
    budget = scorer.generation_budget(questions, cfg.eval.max_new_tokens)
    ours, bare = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        scorer.generate(questions, budget)
        ours.append(time.perf_counter() - t)
        seconds, new_tokens = bare_generate(model, tokenizer, questions, cfg.prompt, cfg.eval.batch_size, budget)
        bare.append(seconds)
    out["generation"] = {
        "prompts": len(questions),
        "max_new_tokens": budget,
        "new_tokens": new_tokens,
        "ours_s": min(ours),
        "bare_generate_s": min(bare),
        "ratio": min(bare) / min(ours),
    }

    # 3. one evaluation with every metric: count what the scorer is asked for
    scored, backward = [], [0]
    original_score, original_grads = Scorer.score_pairs, Scorer.gradnorm_grads

    def counting_score(self, pairs, progress=None):
        scored.extend(pairs)
        return original_score(self, pairs, progress)

    def counting_grads(self, q, a):
        backward[0] += 1
        return original_grads(self, q, a)

    Scorer.score_pairs, Scorer.gradnorm_grads = counting_score, counting_grads
    try:
        reference = {
            "forget_truth_ratio": {"value_by_index": {str(i): {"score": 1.0} for i in range(len(data.forget))}},
            "mia_min_k": {"agg_value": 0.5, "value_by_index": {str(i): {} for i in range(len(data.forget))}},
            "mia_loss": {
                "forget": {"value_by_index": {str(i): {"score": 1.0} for i in range(len(data.forget))}},
                "holdout": {"value_by_index": {str(i): {"score": 1.0} for i in range(len(data.holdout))}},
                "value_by_index": {str(i): {} for i in range(len(data.forget))},
            },
        }
        suite.evaluate(scorer, data, suite.parse_metrics("all"), max_new_tokens=4, reference=reference, progress=False)
    finally:
        Scorer.score_pairs, Scorer.gradnorm_grads = original_score, original_grads
    distinct = {(q, a) for pairs in pairs_by_part.values() for q, a in pairs}
    out["passes"] = {
        "pairs_scored": len(scored),
        "distinct_pairs_needed": len(distinct),
        "pairs_scored_twice": len(scored) - len(set(scored)),
        "gradnorm_backward": backward[0],
        "gradnorm_samples": len(data.forget) + len(data.holdout),
    }
    return out


STARTUP = r"""
import os, sys, time
from unlearn_lab.metrics import scoring
def first(self, *a, **k):
    took = time.time() - float(os.environ["BENCH_T0"])
    loaded = sorted(m for m in ("mlflow", "optuna", "matplotlib", "sqlalchemy") if m in sys.modules)
    print("BENCH", took, ",".join(loaded) or "-", flush=True)
    os._exit(0)
scoring.Scorer.score_pairs = first
from unlearn_lab.cli import main
main(sys.argv[1:])
"""


def startup(args: list[str], env: dict, workdir: str) -> tuple[float, str]:
    env = {**env, "BENCH_T0": repr(time.time())}
    done = subprocess.run([sys.executable, "-c", STARTUP, *args], env=env, cwd=workdir, capture_output=True, text=True)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH")), None)
    if line is None:
        raise SystemExit(f"start-up probe failed:\n{done.stderr[-2000:]}")
    _, took, loaded = line.split()
    return float(took), loaded


def eval_cli(
    pythonpath: Path, args: list[str], env: dict, cache: Path, workdir: Path, stages: dict | None = None
) -> float:
    """Wall seconds of one `unlearn-lab eval` from the given source tree. `stages` receives what its output says:
    the evaluation's seconds ("wrote ... (X s)": the older commit counts the reference in it) and the reference's
    ("retain reference ready (X s)", this commit only)."""
    env = {**env, "PYTHONPATH": str(pythonpath), "UNLEARN_LAB_CACHE": str(cache)}
    code = "import sys; from unlearn_lab.cli import main; main(sys.argv[1:])"
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, "eval", *args], env=env, cwd=workdir, capture_output=True, text=True
    )
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"eval from {pythonpath} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    if stages is not None:
        text = done.stdout + done.stderr
        for key, pattern in (
            ("evaluation_s", r"TOFU_SUMMARY\.json \(([0-9.]+) s\)"),
            ("reference_s", r"retain reference ready \(([0-9.]+) s\)"),
        ):
            found = re.search(pattern, text)
            stages[key] = float(found.group(1)) if found else 0.0
        stages["startup_and_loading_s"] = took - stages["evaluation_s"] - stages["reference_s"]
    return took


def collapsed_vs_healthy(env: dict, quiet_env: dict) -> dict:
    """Times `eval` of a collapsed GA model and of the healthy target (reference cached, default suite)."""
    with tempfile.TemporaryDirectory() as tmp:
        run_env = {**quiet_env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
        code = "import sys; from unlearn_lab.cli import main; main(sys.argv[1:])"
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                "run",
                "--method",
                "GradAscent",
                "--lr",
                "1e-3",
                "--epochs",
                "5",
                "--task-name",
                "collapsed",
            ],
            env=run_env,
            cwd=tmp,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"collapsed run failed:\n{done.stderr[-2000:]}")
        collapsed = f"{tmp}/saves/unlearn/collapsed"
        times = {}
        for name, model in (("healthy", "target"), ("collapsed", collapsed)):
            times[name] = min(
                eval_cli(REPO, ["--model", model, "--out", f"{tmp}/{name}"], env, _cache(), Path(tmp)) for _ in range(2)
            )
        summary = json.loads(Path(f"{tmp}/collapsed/TOFU_SUMMARY.json").read_text())
    return {
        **{f"{k}_s": v for k, v in times.items()},
        "ratio": times["collapsed"] / times["healthy"],
        "collapsed_model_utility": summary.get("model_utility"),
    }


def under_load(quiet_env: dict) -> dict:
    """`eval` of the target on a quiet machine and beside one spinning process (reference cached)."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        args = ["--model", "target", "--out", f"{tmp}/out"]
        every_core = {**quiet_env, "UNLEARN_LAB_THREADS": str(os.cpu_count())}
        out["quiet_policy_s"] = min(eval_cli(REPO, args, quiet_env, _cache(), Path(tmp)) for _ in range(2))
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(1.0)
            out["busy_policy_s"] = min(eval_cli(REPO, args, quiet_env, _cache(), Path(tmp)) for _ in range(2))
            out["busy_every_core_s"] = min(eval_cli(REPO, args, every_core, _cache(), Path(tmp)) for _ in range(2))
        finally:
            spinner.kill()
    out["ratio_policy"] = out["busy_policy_s"] / out["quiet_policy_s"]
    out["ratio_every_core"] = out["busy_every_core_s"] / out["quiet_policy_s"]
    return out


def _cache() -> Path:
    from unlearn_lab.models.load import cache_root

    return cache_root()


def end_to_end(commit: str, target: str, retain: str, rounds: int, env: dict) -> dict:
    """Both trees at the same thread count: the older commit reads only UNLEARN_LAB_THREADS (it ignores
    OMP_NUM_THREADS and would otherwise take every core)."""
    env = {**env, "UNLEARN_LAB_THREADS": env["OMP_NUM_THREADS"]}
    worktree = Path(tempfile.mkdtemp(prefix="bench-base-")) / "tree"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), commit], check=True, capture_output=True
    )
    cases = {"embedded forget10": []}
    if (TOFU / "full.json").is_file():
        cases["real TOFU forget01"] = [
            "--set",
            f"data.source={TOFU}",
            "--set",
            "data.authors=null",
            "--forget",
            "forget01",
            "--holdout",
            "holdout01",
        ]
    out = {}
    try:
        for name, extra in cases.items():
            runs: dict[str, list[tuple[float, dict]]] = {"ours": [], "baseline": []}
            for _round in range(rounds if name.startswith("embedded") else 1):
                for who, tree in (("baseline", worktree), ("ours", REPO)):
                    with tempfile.TemporaryDirectory() as tmp:
                        args = ["--model", target, "--retain-model", retain, "--out", f"{tmp}/out", *extra]
                        stages: dict = {}
                        runs[who].append((eval_cli(tree, args, env, Path(tmp) / "cache", Path(tmp), stages), stages))
            best = {who: min(items, key=lambda item: item[0]) for who, items in runs.items()}
            out[name] = {
                "floor": floor(extra, target, retain, rounds),
                "ours_s": best["ours"][0],
                "baseline_s": best["baseline"][0],
                "ours_stages": best["ours"][1],
                "baseline_stages": best["baseline"][1],
                "speedup": best["baseline"][0] / best["ours"][0],
            }
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)], capture_output=True)
    return out


IMPORTS = r"""
import time
start = time.perf_counter()
import torch
from transformers import AutoTokenizer, LlamaForCausalLM
from scipy import stats
from rouge_score import rouge_scorer
print("BENCH", time.perf_counter() - start)
"""


def floor(extra: list[str], target: str, retain: str, rounds: int) -> dict:
    """Measurement 8 for the case `extra` (eval's --set/--forget/--holdout arguments), on the models given."""
    from unlearn_lab.commands import make_plan
    from unlearn_lab.config import load_experiment
    from unlearn_lab.evaluation import REFERENCE_METRICS, eval_data, load_for_eval
    from unlearn_lab.metrics import suite
    from unlearn_lab.metrics.scoring import Scorer

    sets = [extra[i + 1] for i, a in enumerate(extra) if a == "--set"]
    splits = {a: extra[i + 1] for i, a in enumerate(extra) if a in ("--forget", "--holdout")}
    sets += [f"data.{k[2:]}_split={v}" for k, v in splits.items()]
    plan = make_plan("eval", load_experiment(None, sets), device="cpu", evaluated="target")
    data = eval_data(plan)
    cfg = plan.cfg
    # the reference metrics (truth ratio through its pre-computes, the MIAs) read the forget and holdout parts
    ref_parts = {"forget", "holdout"}
    assert set(REFERENCE_METRICS) == {"forget_truth_ratio", "mia_min_k", "mia_loss"}, REFERENCE_METRICS
    out: dict = {}
    for role, spec, parts in (
        ("target_scoring_s", target, suite.PART_KEYS),
        ("reference_scoring_s", retain, {p: k for p, k in suite.PART_KEYS.items() if p in ref_parts}),
    ):
        model, tokenizer = load_for_eval(plan, spec)
        scorer = Scorer(model, tokenizer, cfg.prompt, cfg.eval.batch_size)
        pairs = [suite_pairs(data, {p: keys}) for p, keys in parts.items()]
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            for part in pairs:
                scorer.score_pairs(part)
            times.append(time.perf_counter() - t)
        out[role] = min(times)
        if role == "target_scoring_s":
            questions = [data.question(p, r) for p in ("forget", "retain", "ra", "wf") for r in getattr(data, p)]
            budget = scorer.generation_budget(questions, cfg.eval.max_new_tokens)
            times = []
            for _ in range(rounds):
                t = time.perf_counter()
                scorer.generate(questions, budget)
                times.append(time.perf_counter() - t)
            out["target_generation_s"] = min(times)
    imports = []
    for _ in range(rounds):
        done = subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, text=True, check=True)
        imports.append(float(done.stdout.split()[-1]))
    out["imports_s"] = min(imports)
    out["floor_s"] = sum(out.values())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline-commit", default="bd7398e")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--skip-load", action="store_true", help="skip the collapsed-model and busy-machine runs")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    quiet_env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "UNLEARN_LAB_THREADS")}
    quiet_env["TQDM_DISABLE"] = "1"
    env = {**quiet_env, "OMP_NUM_THREADS": str(args.threads)}

    from unlearn_lab.commands import make_plan
    from unlearn_lab.config import load_experiment
    from unlearn_lab.models.prepare import prepare
    from unlearn_lab.runtime import configure_threads

    cfg = load_experiment(None)
    prepare(make_plan("prepare", cfg, device="cpu"), log=lambda m: print(m, file=sys.stderr))
    plan = make_plan("eval", cfg, device="cpu", evaluated="target")
    configure_threads(threads=args.threads)
    results = in_process(plan, args.rounds)

    from unlearn_lab.models.load import cache_root

    with tempfile.TemporaryDirectory() as tmp:  # reference cached first, so the probe times start-up only
        eval_cli(REPO, ["--model", "target", "--out", f"{tmp}/out"], env, cache_root(), Path(tmp))
        took, loaded = min(
            startup(["eval", "--model", "target", "--out", f"{tmp}/out"], env, tmp) for _ in range(args.rounds)
        )
    results["startup"] = {"first_forward_s": took, "tracking_or_sweep_modules_imported": loaded}
    if not args.skip_load:
        results["collapsed"] = collapsed_vs_healthy(env, quiet_env)
        results["load"] = under_load(quiet_env)
    if not args.skip_e2e:
        results["end_to_end"] = end_to_end(args.baseline_commit, plan.target.spec, plan.retain.spec, args.rounds, env)

    s, g, p, st = results["scoring"], results["generation"], results["passes"], results["startup"]
    print(json.dumps(results, indent=1))
    print(
        f"scoring     {s['ours_tok_s']:8.0f} answer tok/s vs bare forward {s['bare_tok_s']:8.0f}: ratio "
        f"{s['ratio']:.2f} (want >= 0.70)"
    )
    print(
        f"generation  {g['ours_s']:.2f} s vs bare generate {g['bare_generate_s']:.2f} s ({g['prompts']} prompts, "
        f"{g['new_tokens']} new tokens): ratio {g['ratio']:.2f} (want >= 0.70)"
    )
    print(
        f"passes      {p['pairs_scored']} pairs scored for {p['distinct_pairs_needed']} distinct, "
        f"{p['pairs_scored_twice']} twice; gradnorm {p['gradnorm_backward']} backward for "
        f"{p['gradnorm_samples']} samples"
    )
    print(
        f"start-up    first forward after {st['first_forward_s']:.2f} s (want <= 5); tracking/sweep modules "
        f"imported: {st['tracking_or_sweep_modules_imported']}"
    )
    if "collapsed" in results:
        c, ld = results["collapsed"], results["load"]
        print(
            f"collapsed   eval {c['collapsed_s']:.1f} s vs healthy {c['healthy_s']:.1f} s: ratio {c['ratio']:.2f} "
            f"(want <= 2.0; collapsed model_utility {c['collapsed_model_utility']:.3f})"
        )
        print(
            f"load        eval beside one busy process {ld['busy_policy_s']:.1f} s "
            f"vs quiet {ld['quiet_policy_s']:.1f} s: "
            f"ratio {ld['ratio_policy']:.2f} (want <= 2.0); threads forced to every core: "
            f"{ld['ratio_every_core']:.2f}"
        )
    for name, e in results.get("end_to_end", {}).items():
        b, o = e["baseline_stages"], e["ours_stages"]
        print(
            f"end to end  {name}: {args.baseline_commit} {e['baseline_s']:.1f} s, now {e['ours_s']:.1f} s: "
            f"speed-up {e['speedup']:.2f}x (want >= 1.8)"
        )
        print(
            f"              start-up + loading {b['startup_and_loading_s']:.1f} -> {o['startup_and_loading_s']:.1f} s;"
            f" reference + evaluation {b['evaluation_s']:.1f} -> {o['reference_s'] + o['evaluation_s']:.1f} s "
            f"(reference {o['reference_s']:.1f} s, evaluation {o['evaluation_s']:.1f} s)"
        )
        f = e["floor"]
        print(
            f"  floor     {f['floor_s']:.1f} s = imports {f['imports_s']:.1f} + target scoring "
            f"{f['target_scoring_s']:.1f} + generation {f['target_generation_s']:.1f} + reference scoring "
            f"{f['reference_scoring_s']:.1f}: the most any evaluator could gain over {args.baseline_commit} is "
            f"{e['baseline_s'] / f['floor_s']:.2f}x; ours is {e['ours_s'] / f['floor_s']:.2f}x the floor"
        )


if __name__ == "__main__":
    main()
