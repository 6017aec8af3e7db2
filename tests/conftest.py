"""Shared fixtures: a private model cache per test session, the real TOFU folder when present."""

from __future__ import annotations

import os
from pathlib import Path

# The whole test session is CPU-only, on any machine: CLI tests do not pin --device, and on a GPU machine `auto`
# would pick CUDA (and the two-process tests would ask for a second GPU). Set before anything imports torch, so
# torch sees no GPU; subprocesses inherit it.
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_TOFU = Path(os.environ.get("UNLEARN_LAB_TOFU_DIR", REPO.parent / "shared" / "tofu"))


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Never touch the user's ~/.cache during tests."""
    old = os.environ.get("UNLEARN_LAB_CACHE")
    os.environ["UNLEARN_LAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("UNLEARN_LAB_CACHE", None)
    else:
        os.environ["UNLEARN_LAB_CACHE"] = old


@pytest.fixture(scope="session")
def tofu_dir() -> Path:
    if not (SHARED_TOFU / "full.json").is_file():
        pytest.skip(f"real TOFU files not found at {SHARED_TOFU}")
    return SHARED_TOFU


@pytest.fixture(scope="session")
def synthetic():
    from unlearn_lab.data.tofu import SyntheticSource

    return SyntheticSource(20, seed=0)


@pytest.fixture(scope="session")
def tiny_tokenizer(synthetic):
    from unlearn_lab.models import tiny

    world = synthetic.world
    texts = [qa["question"] + " " + qa["answer"] for a in world["authors"] for qa in a] + world["pretrain_text"]
    return tiny.train_tokenizer(texts + tiny.template_corpus("You are a helpful assistant.", "10 Apr 2025"), 512)


# A tiny world and model for integration tests: 10 authors (forget10 = 1 author = 20 QAs), a 2-layer Llama.
TINY = [
    "data.authors=10",
    "model.tiny.vocab_size=400",
    "model.tiny.hidden_size=32",
    "model.tiny.num_layers=2",
    "model.tiny.num_heads=2",
    "model.tiny.intermediate_size=64",
    "finetune.epochs=2",
    "finetune.pretrain_epochs=1",
    "finetune.batch_size=32",
    "eval.max_new_tokens=8",
    "unlearn.epochs=2",
    "unlearn.batch_size=4",
    "unlearn.grad_accum=2",
    "sweep.collapse_utility=0",  # the tiny model's utility is near 0 from the start: nothing counts as collapsed
]


@pytest.fixture(scope="session")
def tiny_cfg(private_cache):
    from unlearn_lab.config import load_experiment

    return load_experiment(None, TINY)


def make_plan(cfg, command: str = "run", **kw):
    """The plan a command would resolve, on the CPU with one thread (tests are device-independent)."""
    from unlearn_lab.plan import resolve

    return resolve(command, cfg, device="cpu", threads=1, **kw)


def evaluate(cfg, model: str, *, out_dir=None, **kw):
    """`unlearn-lab eval --model MODEL` in-process: plan, reference, load, score."""
    from unlearn_lab.evaluation import eval_data, evaluate_model, load_for_eval, reference_entries

    plan = make_plan(cfg, "eval", evaluated=model, **kw)
    data = eval_data(plan)
    reference = reference_entries(plan, data, log=lambda _: None, progress=False)
    net, tok = load_for_eval(plan, plan.evaluated.spec)
    return evaluate_model(plan, net, tok, reference=reference, data=data, out_dir=out_dir, progress=False)


@pytest.fixture(scope="session")
def prepared(tiny_cfg):
    """The tiny world's models, built once: .target / .retain folders, .built roles, .plan."""
    from types import SimpleNamespace

    from unlearn_lab.models.prepare import prepare

    plan = make_plan(tiny_cfg, "prepare")
    built = prepare(plan, log=lambda _: None).built
    return SimpleNamespace(target=plan.target.spec, retain=plan.retain.spec, built=built, plan=plan)


@pytest.fixture(scope="session")
def pg_server():
    """A throw-away PostgreSQL on loopback: {'optuna': url, 'mlflow': url}. Skips where PostgreSQL's server
    programs are missing, unless UNLEARN_LAB_REQUIRE_SERVERS=1 (.ci/run), where that is a failure."""
    from tests import servers

    if servers.postgres_binaries() is None:
        message = "PostgreSQL server programs (initdb, postgres) not found; install Debian's postgresql package"
        if servers.REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    with servers.postgres() as urls:
        yield urls


@pytest.fixture(scope="session")
def mlflow_pg(pg_server, tmp_path_factory):
    """`mlflow server` on loopback with the PostgreSQL backend store and a served artifact root."""
    from tests import servers

    with servers.mlflow_server(pg_server["mlflow"], tmp_path_factory.mktemp("mlflow") / "artifacts") as server:
        yield server
