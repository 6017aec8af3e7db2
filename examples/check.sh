#!/usr/bin/env bash
# CI: the example plugins installed into the project's environment, each through `run`, a 3-trial `sweep` and
# `eval` on a tiny embedded world (seconds per run), as a researcher would use them (docs/extending.md).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
unlearn="$repo/.venv/bin/unlearn-lab"
"$repo/.venv/bin/uv" pip install --python "$repo/.venv/bin/python" -q --no-deps --no-build-isolation \
  -e "$repo/examples/gakl_method" -e "$repo/examples/refusal_metric"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export UNLEARN_LAB_CACHE="$work/cache" MLFLOW_TRACKING_URI="sqlite:///$work/mlruns/mlflow.db" UNLEARN_LAB_THREADS=1
TINY=(--set data.authors=10 --set model.tiny.vocab_size=400 --set model.tiny.hidden_size=32 --set model.tiny.num_layers=2
      --set model.tiny.num_heads=2 --set model.tiny.intermediate_size=64 --set finetune.epochs=2
      --set finetune.pretrain_epochs=1 --set finetune.batch_size=32 --set eval.max_new_tokens=8 --set unlearn.epochs=2
      --set sweep.collapse_utility=0)
"$unlearn" methods | grep -q "GAKL .*\[plugin: unlearn-lab-gakl 0.1.0\]"
"$unlearn" run --method GAKL "${TINY[@]}" --set eval.metrics=default,forget_refusal_rate | tee run.txt
grep -q forget_refusal_rate run.txt
"$unlearn" sweep --method GAKL "${TINY[@]}" --trials 3 --repeats 2 --lr-range 1e-4:1e-3 --epochs-range 1:2 | tee sweep.txt
grep -q "unlearn-lab run --method GAKL" sweep.txt
"$unlearn" eval --model target "${TINY[@]}" --metrics forget_refusal_rate,forget_Q_A_ROUGE --no-reference | tee eval.txt
grep -q forget_refusal_rate eval.txt
echo "examples: the GAKL method and the forget_refusal_rate metric ran through run, sweep and eval"
