"""The resolved plan: roles, cache keys, names, paths, cached vs to-build, device policy, preflight, --dry-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY, make_plan
from unlearn_lab.config import load_experiment
from unlearn_lab.errors import UsageError
from unlearn_lab.estimates import describe

CLI = [sys.executable, "-m", "unlearn_lab.cli"]


def cli(args, cwd, **env):
    full_env = {**os.environ, "MLFLOW_TRACKING_URI": "", **env}
    return subprocess.run([*CLI, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------------------------------- resolution


def test_eval_dtype_and_ready_models_do_not_change_what_prepare_builds():
    """model.dtype says how models are scored, not how they are built; model.target names a ready-made target and
    leaves the base and retain models (which do not depend on it) where they are."""
    plan = make_plan(load_experiment(None), "prepare")
    bf16 = make_plan(load_experiment(None, ["model.dtype=bfloat16"]), "prepare")
    assert (plan.base.key, plan.target.key, plan.retain.key) == (bf16.base.key, bf16.target.key, bf16.retain.key)
    other = make_plan(load_experiment(None, ["model.target=/some/folder"]), "prepare")
    assert (other.base.key, other.retain.key) == (plan.base.key, plan.retain.key)
    assert other.target.origin == "folder" and other.target.spec == "/some/folder"
    # what shapes the weights does change the keys
    tuned = make_plan(load_experiment(None, ["finetune.lr=1e-3"]), "prepare")
    assert tuned.target.key != plan.target.key and tuned.base.key == plan.base.key
    world = make_plan(load_experiment(None, ["data.seed=1"]), "prepare")
    assert world.base.key != plan.base.key


def test_reference_key_holds_the_evaluation_dtype_and_device():
    cfg, bf16 = load_experiment(None), load_experiment(None, ["model.dtype=bfloat16"])
    fp32_ref = make_plan(cfg, "eval", evaluated="target").reference
    bf16_ref = make_plan(bf16, "eval", evaluated="target").reference
    assert fp32_ref.kind == bf16_ref.kind == "retain model"
    assert fp32_ref.key != bf16_ref.key
    from unlearn_lab.plan import resolve

    gpu_ref = resolve("eval", cfg, device="cuda", evaluated="target").reference
    assert gpu_ref.key != fp32_ref.key


def test_names_identify_model_method_split_and_config():
    cfg = load_experiment(None, ["unlearn.method=NPO", "data.forget_split=forget05"])
    plan = make_plan(cfg, "run")
    name = plan.task_name
    assert name.startswith("embedded_NPO_forget05_") and name.endswith(plan.config_hash[:8])
    assert plan.save_dir == Path("saves/unlearn") / name and plan.eval_dir == Path("saves/eval") / name
    # another model, another name (they no longer overwrite each other's saves/)
    other = make_plan(
        load_experiment(
            None,
            [
                "unlearn.method=NPO",
                "data.forget_split=forget05",
                "model.target=/models/llama-tofu-full",
                "model.retain=/models/r",
            ],
        ),
        "run",
    )
    assert other.task_name.startswith("llama-tofu-full_NPO_forget05_") and other.task_name != name
    assert make_plan(cfg, "run", task_name="mine").save_dir == Path("saves/unlearn/mine")
    assert make_plan(cfg, "eval", evaluated="/x/my-model").task_name.startswith("my-model_forget05_")


def test_relative_paths_resolve_against_the_experiment_file(tmp_path, monkeypatch):
    folder = tmp_path / "exp"
    (folder / "data").mkdir(parents=True)
    (folder / "models" / "t").mkdir(parents=True)
    (folder / "e.yaml").write_text("data: {source: ./data, authors: null}\nmodel: {base: ./models/t}\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_experiment(str(folder / "e.yaml"))
    assert cfg.data.source == str((folder / "data").resolve())
    assert cfg.model.base == str((folder / "models" / "t").resolve())
    # given on the command line, a relative path means the working directory
    cfg = load_experiment(str(folder / "e.yaml"), ["data.source=mydata"])
    assert cfg.data.source == str((elsewhere / "mydata").resolve())
    # hub ids and the built-in names are not paths
    cfg = load_experiment(str(folder / "e.yaml"), ["model.base=org/name", "data.source=hf:locuslab/TOFU"])
    assert cfg.model.base == "org/name" and cfg.data.source == "hf:locuslab/TOFU"


def test_cached_versus_to_build(tiny_cfg, prepared):
    plan = make_plan(tiny_cfg, "run")
    assert plan.target.cached and plan.retain.cached and not plan.to_build
    fresh = make_plan(load_experiment(None, [*TINY, "data.seed=7"]), "run")
    assert {m.role for m in fresh.to_build} == {"base", "target", "retain"}
    # eval of a folder with --no-reference needs nothing built, and names the metrics it skips
    lean = make_plan(
        load_experiment(None, [*TINY, "data.seed=7"]), "eval", evaluated=prepared.target, no_reference=True
    )
    assert not lean.to_build and lean.reference.skipped == ("forget_quality", "privleak")
    # eval of a folder with the experiment's reference: only what the reference needs is built
    ref = make_plan(load_experiment(None, [*TINY, "data.seed=7"]), "eval", evaluated=prepared.target)
    assert {m.role for m in ref.to_build} == {"base", "retain"}
    assert "retain" in describe(ref) and "to build now" in describe(ref)


def test_step_counts_follow_the_reference_arithmetic():
    """Embedded default: 20 authors, forget10 = 40 rows, batch 4 x accum 2 -> 10 micro-batches -> 5 steps/epoch."""
    plan = make_plan(load_experiment(None), "run")
    assert plan.steps["unlearn"] == 5 * 10


# ------------------------------------------------------------------------------------------ device policy


def test_device_policy(monkeypatch):
    import torch

    from unlearn_lab import runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert runtime.choose_device(None) == "cpu" and runtime.choose_device("auto") == "cpu"
    with pytest.raises(UsageError, match="no CUDA device"):
        runtime.choose_device("cuda")
    with pytest.raises(UsageError, match="accepted: auto, cpu, cuda, mps"):
        runtime.choose_device("tpu")
    assert not runtime.bf16_autocast("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert runtime.choose_device("auto") == "mps" and not runtime.bf16_autocast("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert runtime.choose_device("auto") == "cuda" and runtime.choose_device("cpu") == "cpu"
    assert runtime.bf16_autocast("cuda") and not runtime.bf16_autocast("cpu")
    plan = make_plan(load_experiment(None), "run")  # make_plan pins the CPU: precision follows the plan's device
    assert plan.train_precision == "fp32"
    from unlearn_lab.plan import resolve

    gpu = resolve("run", load_experiment(None), device="cuda")
    assert gpu.train_precision == "fp32 master weights + bf16 autocast" and gpu.eval_dtype == "float32"


def test_bf16_autocast_only_where_the_gpu_has_native_bf16(monkeypatch):
    """T4 / V100 emulate bf16 (torch's default `is_bf16_supported()` says yes there, at emulated speed): fp32."""
    import torch

    from unlearn_lab import runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for native in (True, False):
        monkeypatch.setattr(
            torch.cuda, "is_bf16_supported", lambda including_emulation=True, n=native: n or including_emulation
        )
        assert runtime.bf16_autocast("cuda") is native

    def old_torch():
        return True  # a torch without the including_emulation argument: compute capability decides

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", old_torch)
    for capability, native in (((7, 5), False), ((8, 0), True), ((9, 0), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, c=capability: c)
        assert runtime.bf16_autocast("cuda") is native


def test_sweep_workers_spread_over_the_visible_gpus(monkeypatch):
    """Worker i of a sweep on visible GPU i % count (indices among CUDA_VISIBLE_DEVICES' cards), not all on GPU 0."""
    import torch

    from unlearn_lab import runtime

    assert [runtime.worker_gpu(i, 2) for i in range(5)] == [0, 1, 0, 1, 0]
    assert runtime.worker_gpu(3, 1) == 0 and runtime.worker_gpu(0, 0) is None
    chosen: list[int] = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    for worker in range(4):
        runtime.use_worker_gpu(worker, "cuda")
    runtime.use_worker_gpu(1, "cpu")  # a CPU sweep touches no GPU
    assert chosen == [0, 1, 2, 0]


def test_release_memory_never_starts_cuda(monkeypatch):
    import torch

    from unlearn_lab import runtime

    emptied: list[bool] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    runtime.release_memory()
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    runtime.release_memory()
    assert emptied == [True]


def test_plan_counts_the_steps_of_each_rank_under_torchrun(monkeypatch):
    """20 forget rows at batch 4 x accumulation 2: 2 steps per epoch alone, 1 per rank with two processes."""
    from tests.conftest import TINY

    cfg = load_experiment(None, TINY)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert make_plan(cfg, "run").steps["unlearn"] == 4
    monkeypatch.setenv("WORLD_SIZE", "2")
    plan = make_plan(cfg, "run")
    assert plan.steps["unlearn"] == 2 and "batch 4 x accum 2 x 2 processes: 2 steps" in describe(plan)


def test_cpu_accelerator_runs_on_the_cpu():
    from unlearn_lab.runtime import make_accelerator

    acc = make_accelerator("cpu")
    assert acc.device.type == "cpu" and acc.mixed_precision == "no"


def test_thread_policy(monkeypatch):
    """OMP_NUM_THREADS is honoured (UNLEARN_LAB_THREADS wins); otherwise each worker takes its share of the cores,
    less the cores other processes keep busy."""
    from unlearn_lab import runtime

    monkeypatch.delenv("UNLEARN_LAB_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert runtime.thread_count(workers=1, load=0.0) == 1
    monkeypatch.setenv("UNLEARN_LAB_THREADS", "3")
    assert runtime.thread_count(load=0.0) == 3  # the project's own variable wins
    monkeypatch.delenv("UNLEARN_LAB_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(runtime, "cores", lambda: 8)
    assert runtime.thread_count(workers=1, load=0.0) == 8  # a quiet machine: every core
    assert runtime.thread_count(workers=2, load=0.0) == 4  # two sweep workers split the cores
    assert runtime.thread_count(workers=1, load=3.2) == 5  # three cores kept busy by others
    assert runtime.thread_count(workers=2, load=6.0) == 2
    assert runtime.thread_count(workers=1, load=20.0) == 1  # never below one
    monkeypatch.setattr(runtime, "cores", lambda: 2)
    assert runtime.thread_count(workers=1, load=1.0) == 1  # this machine beside one busy process


def test_no_sync_on_non_final_micro_batches():
    """Under DDP the gradient all-reduce happens once per optimizer step: `no_sync` wraps the forward and the
    backward of every micro-batch but the last of each accumulation window (DDP decides at forward time whether
    a backward all-reduces), counted with a fake accelerator; accelerate's references go when fit returns."""
    import contextlib

    import torch

    from unlearn_lab.config import TrainingConfig
    from unlearn_lab.train import fit

    class Fake:
        num_processes, device = 1, torch.device("cpu")

        def __init__(self):
            self.skipped, self.inside, self.freed = 0, False, False

        def prepare_model(self, model):
            return model

        def backward(self, loss):
            loss.backward()

        @contextlib.contextmanager
        def no_sync(self, model):
            self.skipped, self.inside = self.skipped + 1, True
            yield
            self.inside = False

        def free_memory(self):
            self.freed = True

    model = torch.nn.Linear(3, 1)

    class Out:
        def __init__(self, loss):
            self.loss = loss

    acc = Fake()
    unsynced_forwards = []

    def loss_fn(m, b, e):
        unsynced_forwards.append(acc.inside)
        return Out(m(b).sum())

    settings = TrainingConfig(
        lr=0.1, epochs=1, batch_size=1, grad_accum=4, weight_decay=0.0, warmup_epochs=0.0, max_grad_norm=None, seed=0
    )
    batches = lambda epoch: [torch.ones(1, 3)] * 8
    fit(model, settings=settings, n_items=8, epoch_batches=batches, accelerator=acc, progress=False, loss_fn=loss_fn)
    assert acc.skipped == 6  # 2 windows x 3 non-final micro-batches
    assert unsynced_forwards == [True, True, True, False] * 2  # the forwards too, not only the backwards
    assert acc.freed and all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------------------------------------- preflight


def test_unreachable_hub_id_fails_fast_and_opens_no_run(tmp_path):
    """The reference experiment on a machine without the hub: every missing piece in one message, exit 2, and no
    tracking store or run created (nothing was loaded)."""
    done = cli(["run", "--experiment", "tofu/default.yaml", "--method", "NPO"], tmp_path, HF_HUB_OFFLINE="1")
    assert done.returncode == 2, done.stderr
    err = done.stderr
    assert "Traceback" not in err and "pieces are missing" in err
    for piece in (
        "locuslab/TOFU",
        "open-unlearning/tofu_Llama-3.2-1B-Instruct_full",
        "open-unlearning/tofu_Llama-3.2-1B-Instruct_retain90",
        "meta-llama/Llama-3.2-1B-Instruct",
    ):
        assert piece in err, piece
    assert "--set model.target=PATH" in err and "hf download" in err
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "saves").exists()


def test_preflight_probes_the_hub_once_per_piece_without_offline_mode(tmp_path):
    """Without HF_HUB_OFFLINE a missing hub id is probed with one short request (this machine has no hub): still one
    message and exit 2, no retry noise."""
    done = cli(["eval", "--model", "no-such-org/no-such-model", "--no-reference"], tmp_path, HF_HUB_OFFLINE="")
    assert done.returncode == 2
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no-such-org/no-such-model" in lines[0] and "--model PATH" in lines[0]


def test_author_subset_larger_than_the_source_fails_before_any_model(tmp_path, synthetic_folder):
    done = cli(
        [
            "eval",
            "--model",
            "target",
            "--data",
            str(synthetic_folder),
            "--set",
            "data.authors=20",
            "--no-reference",
            "--dry-run",
        ],
        tmp_path,
    )
    assert done.returncode == 2
    assert str(synthetic_folder) in done.stderr and "which has 10" in done.stderr and "data.authors" in done.stderr


def test_dry_run_prints_the_plan_and_touches_nothing(tmp_path):
    cache = tmp_path / "cache"
    done = cli(["run", "--method", "GradDiff", "--dry-run"], tmp_path, UNLEARN_LAB_CACHE=str(cache))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for text in (
        "plan for `run`",
        "device    cpu",
        "evaluation float32",
        "to build now",
        "1.2 M params",
        "GradDiff lr 0.0002, 10 epochs",
        "saves/unlearn/embedded_GradDiff_forget10_",
        "peak",
    ):
        assert text in out, text
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "saves").exists()
    assert not any(cache.rglob("*.safetensors"))


@pytest.fixture(scope="module")
def synthetic_folder(tmp_path_factory):
    """The 10-author synthetic world written out as a folder of TOFU files (a folder source)."""
    from unlearn_lab.data.tofu import SPLITS, SyntheticSource

    folder = tmp_path_factory.mktemp("tofu10")
    source = SyntheticSource(10, seed=0)
    for split in SPLITS:
        if split in (
            "idk",
            "forget01",
            "forget01_perturbed",
            "retain99",
            "forget05",
            "forget05_perturbed",
            "retain95",
            "holdout01",
            "holdout05",
        ):
            continue
        records = [{k: v for k, v in r.items() if k != "index"} for r in source.load(split)]
        (folder / f"{split}.json").write_text(json.dumps(records))
    return folder


def test_sweep_dry_run_creates_no_study(tmp_path):
    done = cli(["sweep", "--trials", "4", "--dry-run"], tmp_path, UNLEARN_LAB_CACHE=str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    assert "plan for `sweep`" in done.stdout and "study embedded_default_GradAscent_forget10: 4 trials" in done.stdout
    assert not (tmp_path / "mlruns").exists()


def test_gradient_checkpointing_gives_the_same_update(prepared):
    """Recomputing activations in the backward pass changes memory, not the gradients (fp32, same data)."""
    import torch

    from unlearn_lab.config import TrainingConfig
    from unlearn_lab.data.prompts import Encoded, collate
    from unlearn_lab.models import load
    from unlearn_lab.train import fit

    gen = torch.Generator().manual_seed(0)
    items = [Encoded(ids, [-100] * 4 + ids[4:], 4) for ids in torch.randint(5, 300, (4, 12), generator=gen).tolist()]
    params = {}
    for checkpointing in (False, True):
        model = load.load_model(prepared.target)
        settings = TrainingConfig(
            lr=1e-3,
            epochs=1,
            batch_size=2,
            grad_accum=1,
            weight_decay=0.0,
            warmup_epochs=0.0,
            max_grad_norm=None,
            seed=0,
            gradient_checkpointing=checkpointing,
        )
        fit(
            model,
            settings=settings,
            n_items=4,
            epoch_batches=lambda e: [collate(items[:2], 0), collate(items[2:], 0)],
            loss_fn=lambda m, b, e: m(**b),
            progress=False,
        )
        on = getattr(type(model), "is_activation_checkpointing", None)
        assert (
            model.is_activation_checkpointing if on is not None else model.is_gradient_checkpointing
        ) == checkpointing
        params[checkpointing] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.allclose(params[False], params[True], atol=1e-6)


def test_step_counts_for_a_hub_source_use_tofu_sizes():
    """The hub TOFU is not read before the preflight: 200 authors x 20 QAs -> forget10 = 400 rows; with the
    reference's batch 4 x accumulation 4 over 10 epochs that is floor(100 / 4) = 25 steps per epoch."""
    cfg = load_experiment(
        REPO / "experiments" / "tofu" / "default.yaml",
        ["unlearn.batch_size=4", "unlearn.grad_accum=4", "unlearn.epochs=10"],
    )
    from unlearn_lab.plan import _item_counts

    counts = _item_counts(cfg)
    assert counts == {"target": 4000, "retain": 3600, "forget": 400}  # full, retain90, forget10


def test_lora_prepare_merges_low_rank_updates_into_a_plain_folder(tmp_path):
    """finetune.lora_rank: only rank-r updates on the linear layers, merged before saving, so the saved folder
    loads with plain transformers (no adapter files) and differs from the base by a matrix of rank <= r."""
    import torch
    from safetensors.torch import load_file

    from unlearn_lab.models.prepare import prepare

    cfg = load_experiment(None, [*TINY, "finetune.lora_rank=2", "finetune.lora_alpha=4", "finetune.lr=1e-2"])
    plan = make_plan(cfg, "prepare")
    prepare(plan, log=lambda _: None)
    target = Path(plan.target.spec)
    assert not list(target.glob("adapter_*")), "the adapter must be merged, not saved beside the model"
    assert json.loads((target / "unlearn_lab.json").read_text())["lora_rank"] == 2
    base, tuned = load_file(Path(plan.base.spec) / "model.safetensors"), load_file(target / "model.safetensors")
    linear = [k for k in base if k.endswith("proj.weight")]
    assert linear and base.keys() == tuned.keys()
    for k in base:
        delta = (tuned[k] - base[k]).double()
        if k in linear:
            assert 0 < torch.linalg.matrix_rank(delta, atol=1e-6) <= 2, k
        else:  # embeddings, norms and the output head stay frozen
            assert torch.equal(tuned[k], base[k]), k


def test_rmu_layer_is_checked_against_the_target_config(prepared):
    """RMU's method.layer is checked before anything runs against the layers of the model it unlearns: a folder
    target's config.json (2 layers here) wins over the embedded settings (4 layers)."""
    from unlearn_lab.preflight import _layer_problem

    def problem(layer: int, *sets: str) -> str | None:
        cfg = load_experiment(None, ["unlearn.method=RMU", f"unlearn.method_args.layer={layer}", *sets])
        return _layer_problem(make_plan(cfg, "run"))

    folder = f"model.target={prepared.target}"
    assert problem(2, folder) == (
        "method.layer 2 is past the model's 2 layers; accepted: 0..1, or null for the middle layer (0)"
    )
    assert problem(1, folder) is None
    assert problem(2) is None  # the embedded default: 4 layers
    assert "past the model's 4 layers" in problem(4)
