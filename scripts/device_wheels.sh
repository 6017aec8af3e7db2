#!/usr/bin/env bash
# Builds .whl/ (git-ignored): the wheels benchmarks/gpu_check.py needs that the `device` tool's lent GPU machines
# lack. Their image has Python 3.12, torch, transformers, accelerate, peft, numpy, scipy, scikit-learn, matplotlib,
# click, tqdm, regex, joblib, absl-py, six and pyyaml, but not rouge-score nor nltk, and it reaches no package
# registry. Every wheel here is pure Python (py3-none-any), so one built on this machine installs there; --no-deps
# everywhere, each need listed by hand:
#   rouge-score (ROUGE-L, metrics/functions.py) needs absl-py, nltk, numpy, six;
#   nltk (its Porter stemmer, for rouge-score) needs click, joblib, regex, tqdm and defusedxml.
# The device check imports nothing else that the image lacks (no mlflow, optuna, datasets or gguf:
# tests/test_gpu_check.py runs it with those blocked). About 2 MB, far under the 64 MiB a device call carries.
#
#   bash scripts/device_wheels.sh            # then, on the device: see docs/real-models.md, "GPU check"
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
rm -rf .whl && mkdir -p .whl
# the versions the project's own environment is tested with (pip show rouge-score nltk defusedxml)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation py --abi none \
  --platform any -d .whl nltk==3.10.4 defusedxml==0.7.1
# rouge-score is published as a source archive only: build its pure-Python wheel here
"$PY" -m pip wheel -q --no-deps --no-binary=rouge-score -w .whl rouge-score==0.1.2
ls -1 .whl
du -sh .whl
