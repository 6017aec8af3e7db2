"""A folder saved here loads with plain AutoModelForCausalLM / AutoTokenizer on the oldest transformers that
pyproject.toml allows, and means the same there: identical token ids (chat template included) and logits.

The old transformers (with the huggingface_hub and tokenizers it needs) is installed with uv into a folder
put first on PYTHONPATH for a subprocess; torch comes from this venv. It needs the package registry: where that
is unreachable the test skips, except in CI (.ci/run sets UNLEARN_LAB_REQUIRE_COMPAT=1)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REQUIRED = os.environ.get("UNLEARN_LAB_REQUIRE_COMPAT") == "1"

PROBE = r"""
import json, sys, torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
folder = sys.argv[1]
tok = AutoTokenizer.from_pretrained(folder)
dtype_arg = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
model = AutoModelForCausalLM.from_pretrained(folder, **{dtype_arg: torch.float32})
msgs = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Who wrote it?"}]
ids = tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True, date_string="10 Apr 2025")
ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
with torch.no_grad():
    logits = model(input_ids=torch.tensor([ids])).logits[0, -1, :8].tolist()
print(json.dumps({"version": transformers.__version__, "ids": ids, "logits": logits, "pad": tok.pad_token,
                  "eos": tok.eos_token, "special": sorted(tok.all_special_tokens)}))
"""


def oldest_allowed() -> str:
    text = (REPO / "pyproject.toml").read_text()
    return re.search(r'"transformers>=([\d.]+)', text).group(1)


@pytest.fixture(scope="module")
def old_transformers(tmp_path_factory):
    version = oldest_allowed()
    target = tmp_path_factory.mktemp("transformers-old")
    uv = Path(sys.executable).parent / "uv"
    cmd = [
        str(uv) if uv.exists() else "uv",
        "pip",
        "install",
        "-q",
        "--target",
        str(target),
        f"transformers=={version}.0" if version.count(".") == 1 else f"transformers=={version}",
        "huggingface_hub<1.0",
        "tokenizers>=0.22,<0.23",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        message = f"cannot install transformers {version} from the package registry: {done.stderr[-300:]}"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return target


def probe(folder: Path, pythonpath: str | None) -> dict:
    env = {**os.environ}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(folder)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_saved_folder_loads_on_the_oldest_allowed_transformers(prepared, old_transformers):
    old = probe(Path(prepared.target), str(old_transformers))
    new = probe(Path(prepared.target), None)
    assert old["version"].startswith(oldest_allowed()) and not new["version"].startswith(oldest_allowed())
    assert old["ids"] == new["ids"]  # same tokenizer, same chat template rendering
    assert (old["pad"], old["eos"], old["special"]) == (new["pad"], new["eos"], new["special"])
    assert old["logits"] == pytest.approx(new["logits"], abs=1e-5)
