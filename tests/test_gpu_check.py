"""The device check's dry mode in CI: benchmarks/gpu_check.py --dry-run runs its one code path (random base ->
prepare -> run -> eval, fp32 and bf16) on the CPU with tiny shapes, as the lent GPU machine would run it at full
size: started as a file from the repository root, with the packages that machine lacks made unimportable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ABSENT_ON_DEVICE = ("mlflow", "optuna", "datasets", "gguf")  # KINDS.md's image; rouge-score and nltk travel as wheels

# A None in sys.modules is what an uninstalled package looks like to `import` (ModuleNotFoundError) and to the
# optional-dependency probes of transformers and accelerate (importlib.util.find_spec -> None)
BLOCK = """
import runpy, sys

sys.modules.update(dict.fromkeys({absent!r}))
sys.argv = ["benchmarks/gpu_check.py", *sys.argv[1:]]
runpy.run_path("benchmarks/gpu_check.py", run_name="__main__")
"""


@pytest.mark.slow
def test_gpu_check_dry_run_on_the_cpu(tmp_path):
    out, scratch = tmp_path / "report.json", tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "UNLEARN_LAB_CACHE")}
    env.update(UNLEARN_LAB_THREADS="1", TMPDIR=str(scratch), TQDM_DISABLE="1")
    code = BLOCK.format(absent=ABSENT_ON_DEVICE)
    done = subprocess.run(
        [sys.executable, "-c", code, "--dry-run", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["unlearn_lab"] == str(REPO / "unlearn_lab")  # the checkout's package, run as a file
    assert report["parity"] == {"float32": True, "bfloat16": True}
    stages = [s["stage"] for s in report["stages"]]
    assert stages[:2] == ["random base model", "prepare (fine-tune target + retain)"] and len(stages) == 8
    assert "| run: NPO + evaluation (bfloat16) |" in done.stdout
    # its temporary folder (models, cache, saves) is gone; torch may leave its own compiler cache there
    assert [p.name for p in scratch.iterdir() if not p.name.startswith("torchinductor")] == []
