"""Config: strict YAML, typed overrides, stable hashes."""

from __future__ import annotations

import pytest

from unlearn_lab.config import ExperimentConfig, config_hash, flatten, load_experiment, to_dict
from unlearn_lab.errors import UsageError


def test_shipped_experiments_load():
    assert load_experiment(None).data.source == "synthetic"
    ref = load_experiment("tofu/default.yaml")
    assert (ref.unlearn.lr, ref.unlearn.epochs, ref.unlearn.weight_decay) == (1e-5, 10, 0.01)
    assert ref.unlearn.batch_size * ref.unlearn.grad_accum == 32 and ref.model.dtype == "bfloat16"
    assert ref.model.target == "open-unlearning/tofu_Llama-3.2-1B-Instruct_full"
    assert ref.model.retain == "open-unlearning/tofu_Llama-3.2-1B-Instruct_retain90"
    assert load_experiment("smollm2/tofu.yaml").model.base == "smollm2"


def test_overrides_are_typed():
    cfg = load_experiment(None, ["unlearn.lr=3e-4", "unlearn.epochs=2", "unlearn.method_args.beta=0.5"])
    assert cfg.unlearn.lr == 3e-4 and cfg.unlearn.epochs == 2 and cfg.unlearn.method_args == {"beta": 0.5}
    with pytest.raises(UsageError, match="expected an integer"):
        load_experiment(None, ["unlearn.epochs=two"])
    with pytest.raises(UsageError, match="did you mean 'lr'"):
        load_experiment(None, ["unlearn.lrr=1"])
    with pytest.raises(UsageError, match="unlearn.lr must be > 0"):
        load_experiment(None, ["unlearn.lr=-1e-5"])


def test_unknown_yaml_key(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("unlearn:\n  methd: NPO\n")
    with pytest.raises(UsageError, match="unknown config key 'unlearn.methd'; did you mean 'method'"):
        load_experiment(str(path))


def test_hash_is_stable_and_sensitive():
    a, b = ExperimentConfig(), ExperimentConfig()
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(load_experiment(None, ["unlearn.lr=2e-4"]))
    assert flatten(to_dict(a))["unlearn.lr"] == a.unlearn.lr
