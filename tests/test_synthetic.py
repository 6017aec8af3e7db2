"""Tests for the seeded synthetic TOFU-like world (unlearn_lab.data.synthetic)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from unlearn_lab.data.general_knowledge import REAL_AUTHOR_FACTS, WORLD_FACTS
from unlearn_lab.data.synthetic import FACT_TYPES, N_PERTURBED, generate_world

REPO_ROOT = Path(__file__).resolve().parents[1]
AUTHOR_KEYS = {"question", "answer", "paraphrased_question", "paraphrased_answer", "perturbed_answer"}
GENERAL_KEYS = {"question", "answer", "option1", "option2", "option3", "option4", "perturbed_answer"}


@pytest.fixture(scope="module")
def world() -> dict:
    return generate_world(20, seed=0)


def _dump(world: dict) -> str:
    return json.dumps(world, sort_keys=True)


def _name_of(author: list[dict]) -> str:
    match = re.fullmatch(r"The author's full name is (.+)\.", author[0]["answer"])
    assert match, author[0]["answer"]
    return match.group(1)


def _strings(record: dict) -> list[str]:
    out = []
    for value in record.values():
        out.extend(value if isinstance(value, list) else [value])
    return out


# ------------------------------------------------------------------------------------------------ determinism
def test_same_seed_same_bytes():
    assert _dump(generate_world(12, seed=5)) == _dump(generate_world(12, seed=5))


def test_same_bytes_across_processes_and_hash_seeds():
    code = (
        "import json, sys; from unlearn_lab.data.synthetic import generate_world; "
        "sys.stdout.write(json.dumps(generate_world(9, seed=3, n_holdout=2), sort_keys=True))"
    )
    outputs = []
    for hash_seed in ("1", "987654"):
        env = {
            **os.environ,
            "PYTHONHASHSEED": hash_seed,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        }
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
        )
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1] == _dump(generate_world(9, seed=3, n_holdout=2))


def test_different_seed_different_world():
    assert _dump(generate_world(10, seed=0)) != _dump(generate_world(10, seed=1))
    names0 = [_name_of(a) for a in generate_world(10, seed=0)["authors"]]
    names1 = [_name_of(a) for a in generate_world(10, seed=1)["authors"]]
    assert names0 != names1


def test_training_authors_do_not_depend_on_holdout_size():
    a = generate_world(8, seed=2, n_holdout=1)
    b = generate_world(8, seed=2, n_holdout=5)
    assert [_name_of(x) for x in a["authors"]] == [_name_of(x) for x in b["authors"]]
    assert [r["answer"] for x in a["authors"] for r in x] == [r["answer"] for x in b["authors"] for r in x]


# ------------------------------------------------------------------------------------------------------ shape
def test_top_level_keys(world):
    assert set(world) == {"authors", "holdout", "real_authors", "world_facts", "pretrain_text"}
    assert len(world["authors"]) == 20
    assert len(world["holdout"]) == 2  # default max(1, n_authors // 10)
    assert len(generate_world(3)["holdout"]) == 1
    assert generate_world(3, n_holdout=0)["holdout"] == []


@pytest.mark.parametrize("group", ["authors", "holdout"])
def test_author_records(world, group):
    for author in world[group]:
        assert len(author) == 20
        for record in author:
            assert set(record) == AUTHOR_KEYS
            perturbed = record["perturbed_answer"]
            assert isinstance(perturbed, list) and len(perturbed) == N_PERTURBED
            assert len(set(perturbed)) == N_PERTURBED
            assert record["paraphrased_answer"] not in perturbed
            assert record["answer"] not in perturbed
            assert record["paraphrased_question"] != record["question"]
            assert record["paraphrased_answer"] != record["answer"]
            for text in _strings(record):
                assert isinstance(text, str) and text.strip() == text and text
            for text in [record["answer"], record["paraphrased_answer"], *perturbed]:
                assert len(text.split()) <= 25, text


def test_perturbed_answers_keep_paraphrase_shape(world):
    # Each wrong answer is the paraphrased sentence with one fact swapped: same leading or trailing words.
    for author in world["authors"]:
        for record in author:
            para = record["paraphrased_answer"].split()
            for wrong in record["perturbed_answer"]:
                words = wrong.split()
                assert words[:2] == para[:2] or words[-2:] == para[-2:], (record["paraphrased_answer"], wrong)


def test_qa_per_author_and_question_types(world):
    for author in world["authors"]:
        questions = [r["question"] for r in author]
        assert len(set(questions)) == len(questions)
        assert author[0]["question"].startswith("What is the full name of the author born in")
        name = _name_of(author)
        assert all(name in q for q in questions[1:])
    small = generate_world(4, seed=1, qa_per_author=3)
    assert all(len(a) == 3 for a in small["authors"] + small["holdout"])
    full = generate_world(2, seed=1, qa_per_author=len(FACT_TYPES))
    assert all(len({r["question"] for r in a}) == len(FACT_TYPES) for a in full["authors"])


def test_names_unique_and_holdout_disjoint(world):
    train_names = [_name_of(a) for a in world["authors"]]
    holdout_names = [_name_of(a) for a in world["holdout"]]
    assert len(set(train_names + holdout_names)) == len(train_names) + len(holdout_names)
    train_text = [s for a in world["authors"] for r in a for s in _strings(r)]
    for name in holdout_names:
        pattern = re.compile(r"\b" + re.escape(name) + r"\b")
        assert not any(pattern.search(s) for s in train_text), name
    train_questions = {r[k] for a in world["authors"] for r in a for k in ("question", "paraphrased_question")}
    for author in world["holdout"]:
        for record in author:
            assert record["question"] not in train_questions
            assert record["paraphrased_question"] not in train_questions


def test_holdout_disjoint_for_larger_world():
    big = generate_world(150, seed=11, n_holdout=40)
    train_questions = {r["question"] for a in big["authors"] for r in a}
    names = [_name_of(a) for a in big["authors"] + big["holdout"]]
    assert len(set(names)) == 190
    assert not any(r["question"] in train_questions for a in big["holdout"] for r in a)


def test_answer_length_is_small(world):
    answers = [r["answer"] for a in world["authors"] for r in a]
    assert sum(len(a.split()) for a in answers) / len(answers) <= 12
    assert max(len(a.split()) for a in answers) <= 18


# --------------------------------------------------------------------------------------------- general facts
@pytest.mark.parametrize("key,facts", [("real_authors", REAL_AUTHOR_FACTS), ("world_facts", WORLD_FACTS)])
def test_general_records(world, key, facts):
    records = world[key]
    assert len(records) == len(facts) >= 50
    for record in records:
        assert set(record) == GENERAL_KEYS
        options = [record[f"option{i}"] for i in range(1, 5)]
        assert options.count(record["answer"]) == 1
        assert len(set(options)) == 4
        assert sorted(record["perturbed_answer"]) == sorted(o for o in options if o != record["answer"])
        assert all(isinstance(s, str) and s for s in _strings(record))
    # Options are shuffled: the answer is not always in the same slot.
    slots = {[record[f"option{i}"] for i in range(1, 5)].index(record["answer"]) for record in records}
    assert len(slots) > 1


def test_general_questions_unique():
    questions = [q for q, *_ in (*REAL_AUTHOR_FACTS, *WORLD_FACTS)]
    assert len(set(questions)) == len(questions)


def test_pretrain_text_states_every_general_fact(world):
    text = world["pretrain_text"]
    assert all(isinstance(s, str) and s for s in text)
    for record in world["real_authors"] + world["world_facts"]:
        assert f"Question: {record['question']}\nAnswer: {record['answer']}" in text
    for _, answer, _, statement in (*REAL_AUTHOR_FACTS, *WORLD_FACTS):
        assert statement in text
        assert answer.lower() in statement.lower()


# ----------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_authors": 0},
        {"n_authors": -3},
        {"n_authors": 2.5},
        {"n_authors": 5, "qa_per_author": 0},
        {"n_authors": 5, "qa_per_author": len(FACT_TYPES) + 1},
        {"n_authors": 5, "n_holdout": -1},
        {"n_authors": 3600},
        {"n_authors": 1700, "n_holdout": 101},
        {"n_authors": 5, "seed": "x"},
    ],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        generate_world(**kwargs)
