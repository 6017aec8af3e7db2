"""Evaluate a model on the TOFU suite, with the retain model's reference computed once and cached.

The retain reference (the retain model's per-sample forget truth ratios, its Min-K AUC and its LOSS
scores) is content-addressed by (retain model identity, data, splits, prompt and eval settings)
and stored under <cache>/references/. A reference-format TOFU_EVAL.json (e.g. the released retain
logs) is accepted instead; a reference from another split or size is an error.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from unlearn_lab.config import ExperimentConfig, config_hash
from unlearn_lab.errors import UsageError
from unlearn_lab.metrics import report, suite
from unlearn_lab.metrics.scoring import Scorer
from unlearn_lab.models import load
from unlearn_lab.models.prepare import prepare, source_for

REFERENCE_METRICS = ("forget_truth_ratio", "mia_min_k", "mia_loss")
REFERENCE_META = "_unlearn_lab_reference"


@dataclass(frozen=True)
class EvalResult:
    results: dict
    summary: dict
    out_dir: Path | None
    seconds: float


def model_identity(spec: str) -> str:
    """A local folder: path + weight files' names, sizes and mtimes; anything else: the spec itself."""
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        return f"{path.resolve()}|" + "|".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    return spec


def data_identity(cfg: ExperimentConfig) -> dict:
    d = cfg.data
    return {"source": d.source, "authors": d.authors, "seed": d.seed, "forget": d.forget_split,
            "holdout": d.holdout_split, "question_key": d.question_key}


def resolve_model(spec: str, cfg: ExperimentConfig, log=print) -> str:
    """'target' / 'retain' name the experiment's prepared models; anything else is a model spec."""
    if spec in ("target", "retain"):
        prepared = prepare(cfg, log=log)
        return getattr(prepared, spec)
    return spec


def load_for_eval(spec: str, cfg: ExperimentConfig):
    model = load.load_model(spec, dtype=cfg.model.dtype, trust_remote_code=cfg.model.trust_remote_code)
    tokenizer = load.load_tokenizer(cfg.model.tokenizer or spec, trust_remote_code=cfg.model.trust_remote_code)
    return model, tokenizer


def check_reference(reference: dict, cfg: ExperimentConfig, origin: str) -> dict:
    meta = reference.get(REFERENCE_META)
    if meta and (meta.get("forget") != cfg.data.forget_split or meta.get("holdout") != cfg.data.holdout_split):
        raise UsageError(f"retain reference {origin} was computed on {meta.get('forget')}/{meta.get('holdout')}, "
                         f"not {cfg.data.forget_split}/{cfg.data.holdout_split}")
    return reference


def retain_reference(cfg: ExperimentConfig, retain_spec: str, data: suite.EvalData, *, log=print,
                     progress: bool = True) -> dict:
    """The retain model's reference entries, from the cache or computed now (then cached)."""
    key = config_hash({"model": model_identity(retain_spec), "data": data_identity(cfg),
                       "prompt": asdict(cfg.prompt), "mink_k": cfg.eval.mink_k, "dtype": cfg.model.dtype,
                       "tokenizer": cfg.model.tokenizer})
    path = load.cache_root() / "references" / f"retain-{key}.json"
    if path.is_file():
        return check_reference(report.read_json(path), cfg, str(path))
    log(f"computing the retain reference with {retain_spec} (cached for later evals)")
    model, tokenizer = load_for_eval(retain_spec, cfg)
    scorer = Scorer(model, tokenizer, cfg.prompt, cfg.eval.batch_size)
    results = suite.evaluate(scorer, data, REFERENCE_METRICS, mink_k=cfg.eval.mink_k, progress=progress)
    results[REFERENCE_META] = {"model": retain_spec, **data_identity(cfg), "n_forget": len(data.forget)}
    report.write_json(path, results)
    return results


def evaluate_model(cfg: ExperimentConfig, model, tokenizer, *, retain_model: str | None = None,
                   retain_logs: str | None = None, out_dir: str | Path | None = None, log=print,
                   progress: bool = True, data: suite.EvalData | None = None) -> EvalResult:
    """Run the suite on an in-memory model; writes TOFU_EVAL/TOFU_SUMMARY when `out_dir` is given."""
    start = time.perf_counter()
    top_level = suite.parse_metrics(cfg.eval.metrics)
    if data is None:
        data = suite.EvalData.load(source_for(cfg), cfg.data.forget_split, cfg.data.holdout_split,
                                   cfg.data.question_key)
    needs_ref = any(m in suite.closure(top_level) for m in suite.NEEDS_REFERENCE)
    reference = None
    if needs_ref:
        if retain_logs:
            reference = check_reference(report.read_json(retain_logs), cfg, retain_logs)
        else:
            spec = retain_model or prepare(cfg, log=log).retain
            reference = retain_reference(cfg, spec, data, log=log, progress=progress)
    scorer = Scorer(model, tokenizer, cfg.prompt, cfg.eval.batch_size)
    results = suite.evaluate(scorer, data, top_level, max_new_tokens=cfg.eval.max_new_tokens,
                             mink_k=cfg.eval.mink_k, reference=reference, progress=progress)
    summary = suite.summary(results, top_level)
    if out_dir is not None:
        report.write_reports(out_dir, results, summary)
    return EvalResult(results, summary, Path(out_dir) if out_dir else None, time.perf_counter() - start)
