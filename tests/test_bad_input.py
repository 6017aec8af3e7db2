"""Bad input, command by command: every case must end with exit code 2 and exactly one line on stderr,
`error: ...`, naming what is wrong and what is accepted; no traceback, nothing on stdout, nothing written in
the working folder or the model cache, and within seconds (before any model is prepared or loaded).

Cases marked `proc` run `python -m unlearn_lab.cli` in a fresh process (the real entry point, import-time
noise on stderr included). The others run in this process with click's CliRunner, because a fresh process of
the heavy commands spends 3-6 s importing torch; there, guards replace model building, model loading and
`exec` so that input which slipped through validation fails the test at once instead of training.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once
CACHE = ".case-cache"  # UNLEARN_LAB_CACHE of each case, inside its tmp_path (must stay empty)


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    expect: tuple[str, ...]  # substrings of the one error line: what is wrong, and what is accepted
    proc: bool = False  # run in a fresh process
    files: dict = field(default_factory=dict)  # name -> text, written in the working folder first
    setup: Callable[[Path], None] | None = None
    absent: tuple[str, ...] = ()  # substrings the line must not hold (a misleading hint)


def case(id, argv, *expect, proc=False, files=None, setup=None, absent=()):
    argv = tuple(argv.split()) if isinstance(argv, str) else tuple(argv)
    return Case(id, argv, expect, proc, files or {}, setup, tuple(absent))


def optuna_db(tmp_path: Path) -> None:
    """An Optuna SQLite storage holding no study."""
    import optuna

    optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")


def foreign_study(tmp_path: Path) -> None:
    """A journal holding a study that `unlearn-lab sweep` did not create (no stored spec)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name="other", storage=JournalStorage(JournalFileBackend(str(tmp_path / "study.log"))))


MALFORMED_YAML = "unlearn:\n  lr: [1e-5\n"
UNKNOWN_KEY_YAML = "unlearn:\n  lrr: 1e-5\n"
TOFU_FULL = {"tofu/full.json": json.dumps([{"question": "Who?", "answer": "Her."}] * 20)}
JOURNAL = {"study.log": ""}  # an existing (empty) study journal

CASES = [
    # ---------------------------------------------------------------------------------------- data splits
    case(
        "data-splits/empty-folder",
        "data splits --data empty",
        "data folder empty holds no TOFU split files",
        "expected files named after the splits: full.json, forget10.json",
        "each .json, .jsonl or .parquet",
        setup=lambda p: (p / "empty").mkdir(),
    ),
    case(
        "data-splits/empty-data-file",
        "data splits --data tofu",
        "tofu/full.json holds no records",
        "expected TOFU records: a JSON array, JSON lines or parquet",
        files={"tofu/full.json": ""},
    ),
    case(
        "data-splits/unknown-option",
        "data splits --bogus",
        "no such option '--bogus'",
        "accepted: --data, --authors, --experiment",
        proc=True,
    ),
    case(
        "data-splits/malformed-record",
        "data splits --data tofu",
        "tofu/full.json: record 1 has no field 'answer'",
        files={"tofu/full.json": json.dumps([{"question": "Who?", "answer": "Her."}, {"question": "What?"}])},
    ),
    case(
        "data-splits/missing-folder",
        "data splits --data /nonexistent/tofu",
        "data folder not found: /nonexistent/tofu",
        "expected a folder of TOFU files",
        proc=True,
    ),
    case(
        "data-splits/hub-id-without-hf",
        "data splits --data locuslab/TOFU",
        "neither a folder nor 'synthetic'",
        "hf:locuslab/TOFU",
        proc=True,
    ),
    case("data-splits/negative-authors", "data splits --authors -3", "needs at least 1 author, got -3", proc=True),
    case(
        "data-splits/missing-experiment",
        "data splits -e missing.yaml",
        "experiment file not found: missing.yaml",
        "known experiments: embedded/default.yaml",
        proc=True,
    ),
    case(
        "data-splits/non-integer-authors",
        "data splits --authors many",
        "invalid value for '--authors': 'many' is not a valid integer",
        proc=True,
    ),
    # ------------------------------------------------------------------------------------------ data show
    case(
        "data-show/unknown-split",
        "data show forget99",
        "unknown split 'forget99'",
        "did you mean 'forget10'?",
        "accepted: full, forget01",
        proc=True,
    ),
    case(
        "data-show/split-needs-more-authors",
        "data show forget01",
        "split forget01 needs the number of authors to be a multiple of 100",
        "possible forget splits: forget05, forget10",
        proc=True,
    ),
    case(
        "data-show/malformed-data-file",
        "data show full --data tofu",
        "tofu/full.json: line 1 is not valid JSON",
        proc=True,
        files={"tofu/full.json": "{not json\n"},
    ),
    case(
        "data-show/record-missing-field",
        "data show full --data tofu",
        "record 0 has no field 'answer'",
        "split full needs: question, answer",
        proc=True,
        files={"tofu/full.json": '[{"question": "Who?"}]'},
    ),
    case(
        "data-show/split-missing-from-folder",
        "data show forget10 --data tofu",
        "split forget10 is missing from tofu",
        "looked for forget10.json/.jsonl/.parquet",
        proc=True,
        files=TOFU_FULL,
    ),
    case(
        "eval/data-folder-without-the-split",
        "eval --model target --data tofu",
        "error: split forget10 is missing from /",
        "looked for forget10.json/.jsonl/.parquet",
        files={"tofu/full.json": json.dumps([{"question": f"Who {i}?", "answer": "Her."} for i in range(400)])},
        absent=("data.authors",),  # the embedded experiment's 20 authors are there; the split file is not
    ),
    case(
        "data-show/author-subset-not-multiple-of-10",
        "data show full --data tofu --authors 15",
        "an author subset needs a multiple of 10 authors (>= 10), got 15",
        proc=True,
        files=TOFU_FULL,
    ),
    case(
        "data-show/empty-json-array",
        "data show full --data tofu",
        "tofu/full.json holds no records",
        files={"tofu/full.json": "[]"},
    ),
    case(
        "data-show/empty-idk-file",
        "data show idk --data tofu",
        "tofu/idk.jsonl holds no answers",
        "expected one",
        files={**TOFU_FULL, "tofu/idk.jsonl": "\n"},
    ),
    case("data-show/zero-records", "data show full -n 0", "'-n': 0 is not in the range x>=1", proc=True),
    case("data-show/missing-split-argument", "data show", "missing argument 'SPLIT'", "data show --help'", proc=True),
    case(
        "data/unknown-subcommand",
        "data frobnicate",
        "no such command 'frobnicate'",
        "accepted: show, splits",
        proc=True,
    ),
    # -------------------------------------------------------------------------------------------- prepare
    case(
        "prepare/malformed-yaml",
        "prepare -e bad.yaml",
        "experiment file bad.yaml is not valid YAML",
        files={"bad.yaml": MALFORMED_YAML},
    ),
    case(
        "prepare/unknown-yaml-key",
        "prepare -e exp.yaml",
        "unknown config key 'unlearn.lrr'",
        "did you mean 'lr'?",
        "accepted: ",
        "method, method_args",
        files={"exp.yaml": UNKNOWN_KEY_YAML},
    ),
    case(
        "prepare/yaml-not-a-mapping",
        "prepare -e list.yaml",
        "experiment file list.yaml must be a YAML mapping",
        files={"list.yaml": "- data\n- model\n"},
    ),
    case(
        "prepare/unknown-device",
        "prepare --device tpu",
        "invalid value for '--device': 'tpu' is not one of 'auto', 'cpu', 'cuda', 'mps'",
        proc=True,
    ),
    case(
        "prepare/set-without-equals",
        "prepare --set finetune.epochs",
        "--set expects key=value (e.g. unlearn.lr=1e-5), got 'finetune.epochs'",
    ),
    case(
        "prepare/set-wrong-type",
        "prepare --set finetune.epochs=many",
        "finetune.epochs: expected an integer, got 'many'",
    ),
    case(
        "prepare/set-negative-epochs",
        "prepare --set finetune.epochs=-1",
        "finetune.epochs/batch_size/grad_accum must be > 0",
    ),
    case(
        "prepare/set-unknown-dtype",
        "prepare --set model.dtype=float16",
        "model.dtype must be float32 or bfloat16, got float16",
    ),
    case(
        "prepare/authors-not-dividing-retain-split",
        "prepare --set data.authors=15",
        "needs the number of authors to be a multiple of 10; this world has 15 authors",
        proc=True,
    ),
    case(
        "prepare/no-authors",
        "prepare --set data.authors=0",
        "data.authors must be a number of authors >= 1, or null for all of them; got 0",
    ),
    case("run/seeds-not-integers", "run --seeds 0,x", "--seeds takes comma-separated integers such as 0,1,2"),
    case("run/seeds-and-repeats", "run --seeds 0,1 --repeats 2", "give --seeds 0,1,2 or --repeats K, not both"),
    case("run/seed-twice", "run --seeds 1,1", "--seeds lists a seed twice"),
    case("run/repeats-zero", "run --repeats 0", "0 is not in the range x>=1"),
    case("sweep/repeats-zero", "sweep --repeats 0", "0 is not in the range x>=1"),
    case(
        "report/no-store",
        "report --tracking-uri sqlite:///nowhere/m.db",
        "no tracking database at nowhere/m.db; give the store with --tracking-uri",
    ),
    case("report/bad-tag", "report --tag nokey", "--tag expects KEY=VALUE"),
    case("report/bad-date", "report --since yesterday", "'yesterday' does not match the formats"),
    case("sweep/set-repeats-zero", "sweep --set sweep.repeats=0", "sweep.repeats must be >= 1 (1: single draws)"),
    # ----------------------------------------------------------------------------------------------- eval
    case(
        "eval/gguf-cut-short",
        "eval --model broken.gguf --no-reference",
        "broken.gguf is not a readable GGUF file (cut short, or not GGUF",
        # a GGUF v3 header announcing 5 tensors and 2 metadata entries, then the end of the file
        setup=lambda p: (p / "broken.gguf").write_bytes(struct.pack("<4sIQQ", b"GGUF", 3, 5, 2)),
    ),
    case(
        "eval/gguf-without-a-model",
        "eval --model empty.gguf --no-reference",
        "empty.gguf is not a GGUF model file (its metadata names no general.architecture)",
        setup=lambda p: (p / "empty.gguf").write_bytes(struct.pack("<4sIQQ", b"GGUF", 3, 0, 0)),
    ),
    case(
        "eval/model-not-found",
        "eval --model /nonexistent/model",
        "model folder not found: /nonexistent/model",
        "give an existing model folder, .gguf file or hub id",
        proc=True,
    ),
    case(
        "eval/registered-model-without-a-store",
        "eval --model models:/nope@best --no-reference",
        "cannot fetch models:/nope@best: no tracking database at",
        "--tracking-uri",
    ),
    case(
        "eval/model-folder-without-config",
        "eval --model model",
        "model folder",
        "has no config.json (expected a Hugging Face model folder)",
        setup=lambda p: (p / "model").mkdir(),
    ),
    case(
        "eval/empty-data-folder",
        "eval --model target --data empty",
        "has no full.* file",
        "a folder of TOFU files (full.json",
        setup=lambda p: (p / "empty").mkdir(),
    ),
    case(
        "eval/out-under-a-file",
        "eval --model target --out taken/eval",
        "cannot write the evaluation to taken/eval: taken is a file, not a folder",
        "accepted: a folder that can be created there",
        files={"taken": "x"},
    ),
    case(
        "eval/registered-model-unreachable-tracking-server",
        ["eval", "--model", "models:/m@best", "--tracking-uri", UNREACHABLE],
        f"tracking server unreachable at {UNREACHABLE}",
        "pass another --tracking-uri",
    ),
    case("eval/missing-model-option", "eval", "missing option '--model'", "Model folder, hub id", proc=True),
    case(
        "eval/unknown-metric",
        "eval --model target --metrics forget_qualty",
        "unknown metric 'forget_qualty'",
        "did you mean 'forget_quality'?",
        "accepted: default, all",
    ),
    case(
        "eval/empty-metrics",
        ["eval", "--model", "target", "--metrics", ","],
        "--metrics is empty; accepted: default, all",
    ),
    case(
        "eval/not-a-forget-split",
        "eval --model target --forget retain90",
        "'retain90' is not a forget split; accepted: forget01, forget05, forget10",
    ),
    case(
        "eval/unknown-holdout",
        "eval --model target --holdout holdout11",
        "data.holdout_split must be holdout01, holdout05 or holdout10, got holdout11",
    ),
    case(
        "eval/unknown-question-key",
        "eval --model target --set data.question_key=questoin",
        "data.question_key must be question or paraphrased_question",
    ),
    case(
        "eval/retain-model-and-logs",
        "eval --model target --retain-model retain --retain-logs eval.json",
        "give at most one of --retain-model, --retain-logs, --no-reference",
    ),
    case(
        "eval/no-reference-leaves-nothing",
        "eval --model target --metrics forget_quality,privleak --no-reference",
        "--no-reference leaves nothing to compute: forget_quality, privleak need the retain model's reference",
        "give --retain-model or --retain-logs instead",
    ),
    case(
        "eval/retain-logs-missing",
        "eval --model target --retain-logs missing.json",
        "file not found: missing.json",
        "expected a TOFU_EVAL.json",
    ),
    case(
        "eval/retain-logs-not-json",
        "eval --model target --retain-logs eval.json",
        "eval.json is not valid JSON",
        "expected a TOFU_EVAL.json",
        files={"eval.json": "forget_quality: 1\n"},
    ),
    case(
        "eval/retain-logs-not-an-object",
        "eval --model target --retain-logs eval.json",
        "must hold a JSON object of metrics (a TOFU_EVAL.json)",
        files={"eval.json": "[1, 2]"},
    ),
    case(
        "eval/retain-logs-other-split",
        "eval --model target --retain-logs eval.json",
        "was computed on forget05/holdout10, not forget10/holdout10",
        files={"eval.json": json.dumps({"_unlearn_lab_reference": {"forget": "forget05", "holdout": "holdout10"}})},
    ),
    # ------------------------------------------------------------------------------------------------ run
    case(
        "run/unknown-method",
        "run --method GradAscnt",
        "unknown method 'GradAscnt'; did you mean 'GradAscent'?",
        "accepted: GradAscent, GradDiff, NPO",
    ),
    case(
        "run/unknown-hyperparameter",
        "run --method NPO --set method.betaa=1",
        "unknown hyperparameter 'betaa' for NPO; did you mean 'beta'?",
        "accepted: beta",
    ),
    case(
        "run/hyperparameter-wrong-type",
        "run --method NPO --set method.beta=high",
        "NPO hyperparameter 'beta' must be float, got 'high'",
    ),
    case(
        "run/hyperparameter-out-of-bounds",
        "run --method NPO --set method.beta=-1",
        "NPO hyperparameter 'beta' must be > 0, got -1",
    ),
    case(
        "run/rmu-layer-past-the-model",
        "run --method RMU --set method.layer=4",
        "method.layer 4 is past the model's 4 layers; accepted: 0..3, or null for the middle layer (1)",
    ),
    case(
        "sweep/rmu-layer-past-the-model",
        "sweep --method RMU --set method.layer=9",
        "method.layer 9 is past the model's 4 layers",
    ),
    case(
        "sweep/space-outside-the-method's-bounds",
        "sweep --method NPO --space space.yaml",
        "space parameter beta in [-1, 1]: NPO hyperparameter 'beta' must be > 0, got -1.0",
        files={"space.yaml": 'beta: "-1:1"\n'},
    ),
    case(
        "run/set-unknown-key",
        "run --set unlearn.lrr=1",
        "unknown config key 'unlearn.lrr'",
        "did you mean 'lr'?",
        "accepted: ",
        "method, method_args",
    ),
    case("run/zero-lr", "run --lr 0", "unlearn.lr must be > 0, got 0.0"),
    case("run/negative-lr", "run --lr -1e-5", "unlearn.lr must be > 0, got -1e-05"),
    case("run/zero-epochs", "run --epochs 0", "unlearn.epochs must be > 0, got 0"),
    case(
        "run/negative-batch-size",
        "run --set unlearn.batch_size=-4",
        "unlearn.batch_size and unlearn.grad_accum must be > 0",
    ),
    case(
        "run/malformed-data-record",
        "run --set data.source=tofu",
        "tofu/full.json: record 1 has no field 'answer'",
        "split full needs: question, answer",
        files={"tofu/full.json": json.dumps([{"question": "Who?", "answer": "Her."}, {"question": "What?"}])},
    ),
    case(
        "run/saves-is-a-file",
        "run",
        "cannot write the unlearned model to saves/unlearn/",
        "saves is a file, not a folder",
        files={"saves": "x"},
    ),
    case(
        "run/tracking-store-under-a-file",
        "run --tracking-uri sqlite:///taken/mlflow.db",
        "cannot write the tracking store to taken: taken is a file, not a folder",
        files={"taken": "x"},
    ),
    case(
        "run/mismatched-pair",
        "run --forget forget10 --retain retain95",
        "--retain retain95 does not complement --forget forget10; accepted: retain90",
    ),
    case(
        "run/unknown-forget-split",
        "run --forget forget11",
        "unknown split 'forget11'",
        "did you mean 'forget10'?",
        "accepted: full, forget01",
    ),
    case(
        "run/authors-not-dividing-forget-split",
        "run --set data.authors=15",
        "split forget10 needs the number of authors to be a multiple of 10",
    ),
    case(
        "run/unreachable-tracking-server",
        ["run", "--tracking-uri", UNREACHABLE],
        f"tracking server unreachable at {UNREACHABLE}",
        "pass another --tracking-uri",
        proc=True,
    ),
    case(
        "run/unsupported-tracking-scheme",
        "run --tracking-uri ftp://example.org/store",
        "unsupported tracking URI 'ftp://example.org/store'",
        "accepted: sqlite:///path/mlflow.db, http(s)://",
    ),
    case(
        "run/non-integer-epochs",
        "run --epochs abc",
        "invalid value for '--epochs': 'abc' is not a valid integer",
        proc=True,
    ),
    case(
        "run/unknown-option",
        "run --lrr 1e-5",
        "no such option '--lrr'",
        "Did you mean '--lr'?",
        "accepted: --method, -m, --forget",
        proc=True,
    ),
    case(
        "run/unknown-eval-every",
        "run --eval-every weekly",
        "invalid value for '--eval-every': 'weekly' is not one of 'epoch', 'none'",
        proc=True,
    ),
    # ---------------------------------------------------------------------------------------------- sweep
    case(
        "sweep/inverted-lr-range",
        "sweep --lr-range 1e-3:1e-6",
        "range for lr is empty or inverted",
        "write LOW:HIGH with LOW < HIGH",
    ),
    case("sweep/non-positive-lr-range", "sweep --lr-range 0:1e-3", "range for lr must be positive (log scale)"),
    case("sweep/lr-range-without-colon", "sweep --lr-range 1e-3", "range for lr must look like LOW:HIGH"),
    case("sweep/non-positive-epochs-range", "sweep --epochs-range 0:3", "range for epochs must be positive"),
    case(
        "sweep/empty-epochs-range",
        "sweep --epochs-range 5:5",
        "range for epochs is empty or inverted (5 >= 5)",
        "LOW < HIGH",
    ),
    case(
        "sweep/non-integer-epochs-range",
        "sweep --epochs-range a:b",
        "range for epochs must be two integers LOW:HIGH, got 'a:b'",
    ),
    case("sweep/zero-trials", "sweep --trials 0", "invalid value for '--trials': 0 is not in the range x>=1"),
    case("sweep/zero-workers", "sweep --workers 0", "invalid value for '--workers': 0 is not in the range x>=1"),
    case(
        "sweep/min-utility-above-1",
        "sweep --min-utility 2",
        "invalid value for '--min-utility': 2.0 is not in the range 0<=x<=1",
    ),
    case(
        "sweep/zero-heartbeat",
        "sweep --heartbeat-seconds 0",
        "invalid value for '--heartbeat-seconds': 0 is not in the range x>=1",
    ),
    case(
        "sweep/tracking-store-under-a-file",
        "sweep --tracking-uri sqlite:///taken/mlflow.db",
        "cannot write the tracking store to taken: taken is a file, not a folder",
        files={"taken": "x"},
    ),
    case(
        "sweep/unknown-storage-scheme",
        "sweep --storage redis://x",
        "malformed storage URL 'redis://x'; accepted: journal:PATH, sqlite:///PATH",
    ),
    case(
        "sweep/journal-without-path",
        "sweep --storage journal:",
        "malformed storage URL 'journal:': journal:PATH needs a file path",
    ),
    case("sweep/unknown-method", "sweep --method Bogus", "unknown method 'Bogus'", "accepted: GradAscent"),
    case("sweep/space-file-missing", "sweep --space missing.yaml", "--space file not found: missing.yaml"),
    case(
        "sweep/space-file-malformed",
        "sweep --method NPO --space space.yaml",
        "--space file space.yaml is not valid YAML",
        files={"space.yaml": "beta: [0.1, 1\n"},
    ),
    case(
        "sweep/unknown-space-parameter",
        "sweep --method NPO --space space.yaml",
        "unknown space parameter 'betta'; did you mean 'beta'?",
        "accepted: lr, epochs, beta",
        files={"space.yaml": "betta: 0.1:1\n"},
    ),
    case(
        "sweep/unreachable-tracking-server",
        ["sweep", "--tracking-uri", UNREACHABLE],
        f"tracking server unreachable at {UNREACHABLE}",
        proc=True,
    ),
    case(
        "sweep/non-integer-trials",
        "sweep --trials many",
        "invalid value for '--trials': 'many' is not a valid integer",
        proc=True,
    ),
    # --------------------------------------------------------------------------------------------- worker
    case(
        "worker/missing-journal",
        "worker --study s --storage journal:missing.log",
        "no study journal at missing.log",
        "start the study with unlearn-lab sweep",
        proc=True,
    ),
    case(
        "worker/missing-sqlite-db",
        "worker --study s --storage sqlite:///missing.db",
        "no study database at missing.db",
        "start the study with unlearn-lab sweep",
        proc=True,
    ),
    case(
        "worker/sqlite-db-without-study",
        "worker --study s --storage sqlite:///study.db",
        "no study 's' in sqlite:///study.db",
        "start it with unlearn-lab sweep --study s",
        proc=True,
        setup=optuna_db,
    ),
    case(
        "worker/journal-without-study",
        "worker --study s --storage journal:study.log",
        "no study 's' in journal:study.log",
        "start it with unlearn-lab sweep --study s",
        proc=True,
        files=JOURNAL,
    ),
    case(
        "worker/study-not-from-sweep",
        "worker --study other --storage journal:study.log",
        "study 'other' was not created by unlearn-lab sweep",
        proc=True,
        setup=foreign_study,
    ),
    case(
        "worker/unknown-storage-scheme",
        "worker --study s --storage redis://x",
        "malformed storage URL 'redis://x'; accepted: journal:PATH",
        proc=True,
    ),
    case(
        "worker/zero-heartbeat",
        "worker --study s --storage journal:study.log --heartbeat-seconds 0",
        "invalid value for '--heartbeat-seconds': 0 is not in the range x>=1",
        proc=True,
        files=JOURNAL,
    ),
    case(
        "worker/unreachable-tracking-server",
        ["worker", "--study", "s", "--storage", "journal:study.log", "--tracking-uri", UNREACHABLE],
        f"tracking server unreachable at {UNREACHABLE}",
        proc=True,
        files=JOURNAL,
    ),
    case(
        "worker/unsupported-tracking-scheme",
        "worker --study s --storage journal:study.log --tracking-uri ftp://example.org/store",
        "unsupported tracking URI 'ftp://example.org/store'; accepted: sqlite:///",
        proc=True,
        files=JOURNAL,
    ),
    case(
        "worker/negative-wait",
        "worker --study s --storage journal:study.log --wait -1",
        "invalid value for '--wait': -1 is not in the range x>=0",
        proc=True,
    ),
    case(
        "worker/missing-study-option",
        "worker --storage journal:study.log",
        "missing option '--study'",
        "The study a `sweep` command created",
        proc=True,
    ),
    # -------------------------------------------------------------------------------------------- methods
    case(
        "methods/unknown-option", "methods --verbose", "no such option '--verbose'", "accepted: -h, --help", proc=True
    ),
    case(
        "methods/unexpected-argument",
        "methods NPO",
        "got unexpected extra argument (NPO)",
        "methods --help'",
        proc=True,
    ),
    # ------------------------------------------------------------------------------------------------- ui
    case("ui/port-out-of-range", "ui --port 70000", "'--port': 70000 is not in the range 1<=x<=65535", proc=True),
    case("ui/port-zero", "ui --port 0", "'--port': 0 is not in the range 1<=x<=65535", proc=True),
    case("ui/port-not-an-integer", "ui --port http", "'--port': 'http' is not a valid integer", proc=True),
    case(
        "ui/unreachable-tracking-server",
        ["ui", "--tracking-uri", UNREACHABLE],
        f"tracking server unreachable at {UNREACHABLE}",
        proc=True,
    ),
    case(
        "ui/unsupported-tracking-scheme",
        "ui --tracking-uri ftp://example.org/store",
        "unsupported tracking URI 'ftp://example.org/store'; accepted: sqlite:///",
        proc=True,
    ),
    # ------------------------------------------------------------------------------------------ top level
    case(
        "main/unknown-command",
        "frobnicate",
        "no such command 'frobnicate'",
        "accepted: data, eval, methods, prepare, report, run, sweep, ui, worker",
        proc=True,
    ),
    case("main/unknown-option", "--verbose run", "no such option '--verbose'", "accepted: -h, --help", proc=True),
]

# Empty experiment / space files and corrupt weights: one line each, found before anything loads.
FILES = [
    case(
        "prepare/empty-yaml",
        "prepare -e empty.yaml",
        "experiment file empty.yaml is empty",
        files={"empty.yaml": ""},
    ),
    case(
        "prepare/comment-only-yaml",
        "prepare -e notes.yaml",
        "experiment file notes.yaml is empty",
        files={"notes.yaml": "# nothing set yet\n"},
    ),
    case(
        "eval/model-folder-without-config-with-corrupt-weights",
        "eval --model model",
        "has no config.json (expected a Hugging Face model folder)",
        files={"model/model.safetensors": "not safetensors"},
    ),
    case(
        "eval/model-folder-with-corrupt-weights",
        "eval --model model",
        "model.safetensors is not a readable safetensors file",
        files={"model/config.json": "{}", "model/model.safetensors": "not safetensors"},
    ),
    case(
        "sweep/empty-space-file",
        "sweep --method NPO --space space.yaml",
        "--space file space.yaml is empty",
        files={"space.yaml": ""},
    ),
]
PARAMS = [pytest.param(c, id=c.id) for c in CASES + FILES]


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.relative_to(root).parts[0] != CACHE)


class PastValidation(Exception):
    """Raised by the in-process guards: the input got as far as building, loading or starting something."""


@pytest.fixture
def guarded(monkeypatch):
    """In-process runs: building or loading a model, or exec'ing the UI, fails the case at once."""
    import unlearn_lab.models.prepare as prep
    from unlearn_lab.models import load

    def guard(what):
        def fail(*args, **kwargs):
            raise PastValidation(f"bad input got past validation into {what}")

        return fail

    resolve = load.resolve

    def load_model(spec, **kwargs):  # keep the model-spec checks (model not found...), then stop
        resolve(spec)
        raise PastValidation(f"bad input got past validation into load_model({spec!r})")

    monkeypatch.setattr(prep, "_build_base", guard("building the base model"))
    monkeypatch.setattr(prep, "finetune", guard("fine-tuning"))
    monkeypatch.setattr(load, "load_model", load_model)
    monkeypatch.setattr(os, "execvpe", guard("exec"))
    sigterm = signal.getsignal(signal.SIGTERM)  # the commands install their own SIGTERM handler
    yield
    signal.signal(signal.SIGTERM, sigterm)


def run_case(c: Case, tmp_path: Path, request) -> tuple[int, str, str, float]:
    cache = tmp_path / CACHE
    cache.mkdir()
    start = time.monotonic()
    if c.proc:
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        env["UNLEARN_LAB_CACHE"] = str(cache)
        done = subprocess.run(
            [sys.executable, "-m", "unlearn_lab.cli", *c.argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.returncode, done.stdout, done.stderr, time.monotonic() - start
    from click.testing import CliRunner

    from unlearn_lab.cli import main

    request.getfixturevalue("guarded")
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, list(c.argv), env={"MLFLOW_TRACKING_URI": None, "UNLEARN_LAB_CACHE": str(cache)})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        stderr = result.stderr + "".join(traceback.format_exception(*result.exc_info))
        return result.exit_code, result.stdout, stderr, time.monotonic() - start
    return result.exit_code, result.stdout, result.stderr, time.monotonic() - start


@pytest.mark.parametrize("c", PARAMS)
def test_bad_input(c: Case, tmp_path, request):
    for name, text in c.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    if c.setup is not None:
        c.setup(tmp_path)
    before = listing(tmp_path)

    code, stdout, stderr, seconds = run_case(c, tmp_path, request)

    assert "Traceback" not in stderr, stderr
    assert code == 2, f"exit code {code}\n{stderr}"
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) > len("error: "), stderr
    for text in c.expect:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    for text in c.absent:
        assert text not in lines[0], f"{text!r} in {lines[0]!r}"
    assert stdout == ""
    assert listing(tmp_path) == before, "bad input wrote files"
    assert not any((tmp_path / CACHE).iterdir()), "bad input wrote into the model cache"
    assert seconds < 30, f"took {seconds:.1f} s: bad input must fail before any heavy work"


def test_help_still_works(tmp_path):
    """The one-line usage errors leave --help (and a bare command group's help) as click prints them."""
    from click.testing import CliRunner

    from unlearn_lab.cli import main

    runner = CliRunner()
    assert runner.invoke(main, ["--help"]).exit_code == 0
    shown = runner.invoke(main, ["run", "-h"])
    assert shown.exit_code == 0 and "--tracking-uri" in shown.stdout
    bare = runner.invoke(main, ["data"])
    assert "Usage:" in bare.output and "show" in bare.output


def test_guards_stop_valid_input(tmp_path, request):
    """The in-process guards work: valid input reaches them (and is stopped there) instead of training."""
    c = case("guard", "prepare --set data.authors=10")
    code, _, stderr, _ = run_case(c, tmp_path, request)
    assert code == 1 and "PastValidation" in stderr and "building the base model" in stderr, stderr
