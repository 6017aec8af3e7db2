"""MUSE data: the embedded world (shape, disjointness, determinism, answerability) and the three sources, with the
folder / hub path read offline through `datasets.load_dataset` from tests/data/muse_mini (the hub's layout)."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from unlearn_lab.benchmarks.muse import data as muse_data
from unlearn_lab.benchmarks.muse.data import (
    CONFIGS,
    QUALIFIED_SPLITS,
    HubMuseSource,
    SyntheticMuseSource,
    make_muse_source,
)
from unlearn_lab.benchmarks.muse.world import (
    ARTICLE_SPLITS,
    WorldParams,
    article_document,
    finetune_texts,
    generate_muse_world,
    qa_for,
)
from unlearn_lab.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parents[1]
MINI = REPO_ROOT / "tests" / "data" / "muse_mini"
SMALL = WorldParams(n_forget=6, n_retain1=3, n_retain2=6, n_holdout=4, n_qa=6, n_icl=2, n_verbmem=4, n_privleak=3)


def _dump(world: dict) -> str:
    return json.dumps(world, sort_keys=True)


@pytest.fixture(scope="module")
def world() -> dict:
    return generate_muse_world(seed=0)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


# ------------------------------------------------------------------------------------------------ the world


def test_default_sizes(world):
    assert [len(world["articles"][s]) for s in ARTICLE_SPLITS] == [20, 20, 20, 20]
    assert {k: len(v) for k, v in world["knowmem"].items()} == {
        "forget_qa": 30,
        "retain_qa": 30,
        "forget_qa_icl": 5,
        "retain_qa_icl": 5,
    }
    assert len(world["verbmem"]) == 20
    assert {k: len(v) for k, v in world["privleak"].items()} == {"forget": 20, "retain": 20, "holdout": 20}


def test_article_shape(world):
    params = WorldParams()
    for split in ARTICLE_SPLITS:
        for article in world["articles"][split]:
            assert params.min_words <= len(article["text"].split()) <= params.max_words
            assert params.min_facts <= len(article["facts"]) <= params.max_facts
            assert len({f["key"] for f in article["facts"]}) == len(article["facts"])
    kinds = {a["kind"] for s in ARTICLE_SPLITS for a in world["articles"][s]}
    assert len(kinds) == 10  # every kind of article occurs


def test_people_are_named_once(world):
    """No full name recurs across articles, and within an article no two people share a given or family name."""
    import re

    from unlearn_lab.data.synthetic import FAMILY_NAMES, GIVEN_NAMES

    person = re.compile(rf"\b({'|'.join(GIVEN_NAMES)}) ({'|'.join(FAMILY_NAMES)})\b")
    owner: dict[str, str] = {}
    for split in ARTICLE_SPLITS:
        for article in world["articles"][split]:
            people = set(person.findall(article["text"]))
            assert len({g for g, _ in people}) == len({f for _, f in people}) == len(people)
            for given, family in people:
                assert owner.setdefault(f"{given} {family}", article["id"]) == article["id"]


def test_splits_are_disjoint(world):
    seen_text, seen_subject, seen_question = set(), set(), set()
    for split in ARTICLE_SPLITS:
        for article in world["articles"][split]:
            assert article["text"] not in seen_text and article["subject"] not in seen_subject
            seen_text.add(article["text"])
            seen_subject.add(article["subject"])
            for fact in article["facts"]:
                assert fact["question"] not in seen_question
                seen_question.add(fact["question"])


def test_same_seed_same_bytes_and_other_seed_differs():
    assert _dump(generate_muse_world(SMALL, seed=4)) == _dump(generate_muse_world(SMALL, seed=4))
    assert _dump(generate_muse_world(SMALL, seed=4)) != _dump(generate_muse_world(SMALL, seed=5))


def test_same_bytes_across_processes_and_hash_seeds():
    code = (
        "import json, sys; from unlearn_lab.benchmarks.muse.world import generate_muse_world, WorldParams; "
        "sys.stdout.write(json.dumps(generate_muse_world(WorldParams(n_forget=6, n_retain1=3, n_retain2=6, "
        "n_holdout=4, n_qa=6, n_icl=2, n_verbmem=4, n_privleak=3), seed=7), sort_keys=True))"
    )
    outputs = []
    for hash_seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO_ROOT)}
        result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1] == _dump(generate_muse_world(SMALL, seed=7))


def test_knowmem_answers_are_in_their_articles(world):
    by_id = {a["id"]: a for s in ARTICLE_SPLITS for a in world["articles"][s]}
    sides = {"forget_qa": "forget", "forget_qa_icl": "forget", "retain_qa": "retain2", "retain_qa_icl": "retain2"}
    for split, side in sides.items():
        for qa in world["knowmem"][split]:
            article = by_id[qa["article"]]
            assert article["id"].startswith(side + "-")
            assert qa["answer"] in article["text"]
            assert article["subject"] in qa["question"]  # the question names its article's unique subject
            assert qa["answer"] not in qa["question"]
            assert {"question": qa["question"], "answer": qa["answer"]} in qa_for(article, ("question",))


def test_answers_are_short(world):
    answers = [qa["answer"] for k in ("forget_qa", "retain_qa") for qa in world["knowmem"][k]]
    assert statistics.median(len(a) for a in answers) <= 20  # MUSE: 11-15 characters
    assert max(len(a.split()) for a in answers) <= 5


def test_icl_examples_are_not_test_questions(world):
    for side in ("forget", "retain"):
        icl, test = world["knowmem"][f"{side}_qa_icl"], world["knowmem"][f"{side}_qa"]
        assert not {q["question"] for q in icl} & {q["question"] for q in test}
        assert not {q["article"] for q in icl} & {q["article"] for q in test}  # not even the same article
        assert len({q["question"] for q in test}) == len(test)


def test_verbmem_is_a_slice_of_a_forget_article(world):
    texts = {a["id"]: a["text"] for a in world["articles"]["forget"]}
    for excerpt in world["verbmem"]:
        assert texts[excerpt["article"]].startswith(excerpt["prompt"] + " " + excerpt["gt"])
        assert 20 <= len(excerpt["gt"].split()) <= 40
        assert 60 <= len(excerpt["prompt"].split()) <= 100
        assert excerpt["gt"][0] != " " and excerpt["prompt"][-1] != " "


def test_privleak_sides(world):
    articles = world["articles"]
    assert world["privleak"]["forget"] == [a["text"] for a in articles["forget"]]
    assert world["privleak"]["holdout"] == [a["text"] for a in articles["holdout"]]
    assert world["privleak"]["retain"] == [a["text"] for a in articles["retain2"]]


def test_finetune_texts(world):
    target = finetune_texts(world, ("forget", "retain1", "retain2"))
    retain = finetune_texts(world, ("retain1", "retain2"))
    assert target[20:60] == retain[:40]  # the articles, in split order
    # two review rounds: every QA pair of the articles twice more, in blocks of six, in another order each round
    pairs = lambda docs: sorted(block for doc in docs for block in doc.split("\n\n"))
    target_pairs = pairs(
        f"Question: {f[p]}\nAnswer: {f['answer']}"
        for s in ("forget", "retain1", "retain2")
        for a in world["articles"][s]
        for f in a["facts"]
        for p in ("question", "paraphrased_question")
    )
    assert pairs(target[60:]) == sorted(target_pairs * 2)
    assert all(len(doc.split("\n\n")) <= 6 for doc in target[60:])
    assert target[60:] != target[60:][::-1] and finetune_texts(world, ("retain1", "retain2")) == retain  # seeded
    first = world["articles"]["forget"][0]
    assert target[0] == article_document(first)
    assert target[0].startswith(first["text"] + "\n\nQuestion: " + first["facts"][0]["question"] + "\nAnswer: ")
    assert f"Question: {first['facts'][0]['paraphrased_question']}\nAnswer: {first['facts'][0]['answer']}" in target[0]
    forget_questions = {q["question"] for q in world["knowmem"]["forget_qa"]}
    assert not any(q in doc for q in forget_questions for doc in retain)
    assert article_document(first, ()) == first["text"]
    with pytest.raises(ValueError, match="unknown article split 'retain'"):
        finetune_texts(world, ("retain",))


def test_small_world_and_bad_sizes():
    small = generate_muse_world(SMALL, seed=1)
    assert [len(small["articles"][s]) for s in ARTICLE_SPLITS] == [6, 3, 6, 4]
    assert len(small["knowmem"]["forget_qa"]) == 6 and len(small["verbmem"]) == 4
    with pytest.raises(ValueError, match="n_qa"):
        generate_muse_world(WorldParams(n_qa=40), seed=0)
    with pytest.raises(ValueError, match="n_verbmem"):
        generate_muse_world(WorldParams(n_verbmem=21), seed=0)
    with pytest.raises(ValueError, match="seed"):
        generate_muse_world(seed="0")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- the sources


def test_synthetic_source_api():
    source = make_muse_source("synthetic", params=SMALL, seed=1)
    assert isinstance(source, SyntheticMuseSource) and "seed=1" in source.name
    world = generate_muse_world(SMALL, seed=1)
    assert source.raw("retain2") == [a["text"] for a in world["articles"]["retain2"]]
    qa = source.knowmem("forget_qa")
    assert qa[0] == {"question": world["knowmem"]["forget_qa"][0]["question"], "answer": qa[0]["answer"], "index": 0}
    assert [r["index"] for r in qa] == list(range(len(qa)))
    assert set(source.verbmem()[0]) == {"prompt", "gt", "index"}
    assert source.privleak("holdout") == [a["text"] for a in world["articles"]["holdout"][:3]]
    assert source.show("retain_qa_icl", 1) == source.knowmem("retain_qa_icl")[:1]
    text = source.describe()
    for name in QUALIFIED_SPLITS:
        assert name in text
    with pytest.raises(UsageError) as exc:
        make_muse_source("synthetic", params=WorldParams(n_qa=99))
    assert "embedded MUSE world: n_qa" in _one_line(exc)


@pytest.fixture()
def datasets_cache(tmp_path, monkeypatch):
    """Keep `datasets`' Arrow cache out of the user's home."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path


def test_folder_source_reads_the_hub_layout(datasets_cache):
    source = make_muse_source(str(MINI))
    assert isinstance(source, HubMuseSource) and source.name == f"folder({MINI})"
    assert len(source.raw("forget")) == 3 and source.raw("forget")[0].startswith("Storm Brisa")
    assert source.knowmem("forget_qa")[1] == {
        "question": "Who cut the ribbon at the Oakhurst Library?",
        "answer": "Corvin Dale",
        "index": 1,
    }
    assert source.verbmem() == [
        {
            "prompt": "Storm Brisa reached the coast of Tarsk on 3 May.",
            "gt": "About 4100 homes lost power.",
            "index": 0,
        },
        {"prompt": "The Oakhurst Library opened in Velmora.", "gt": "Mayor Corvin Dale cut the ribbon.", "index": 1},
    ]
    assert len(source.privleak("retain")) == 2
    lines = source.describe().splitlines()
    assert lines[0] == f"source: folder({MINI})" and len(lines) == 2 + len(QUALIFIED_SPLITS)
    assert "knowmem/forget_qa" in lines[7] and lines[7].split()[1] == "3"


def test_hub_source_calls_load_dataset_like_the_reference(monkeypatch):
    """`hf:` ids go through the same `datasets.load_dataset(path, name=config, split=split)` call (no revision
    unless given); here the call is answered from the fixture's rows."""
    import datasets

    calls = []

    def fake(path, **kwargs):
        calls.append((path, kwargs))
        return [{"question": "Q?", "answer": "A", "extra": 1}]

    monkeypatch.setattr(datasets, "load_dataset", fake)
    assert make_muse_source("hf:muse-bench/MUSE-News").knowmem("retain_qa") == [
        {"question": "Q?", "answer": "A", "index": 0}
    ]
    make_muse_source("hf:muse-bench/MUSE-Books", revision="abc123").knowmem("forget_qa_icl")
    assert calls == [
        ("muse-bench/MUSE-News", {"name": "knowmem", "split": "retain_qa"}),
        ("muse-bench/MUSE-Books", {"name": "knowmem", "split": "forget_qa_icl", "revision": "abc123"}),
    ]


def test_hub_errors_are_one_line(monkeypatch):
    import datasets

    def offline(path, **kwargs):
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (OfflineModeIsEnabled)\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UsageError) as exc:
        make_muse_source("hf:muse-bench/MUSE-Nope").raw("forget")
    assert _one_line(exc) == (
        "cannot load muse-bench/MUSE-Nope raw/forget from the hub: "
        "Couldn't reach 'muse-bench/MUSE-Nope' on the Hub (OfflineModeIsEnabled)"
    )


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda s: s.raw("retain"), "unknown MUSE raw split 'retain'; did you mean 'retain2'? accepted: forget, "),
        (lambda s: s.knowmem("retain2_qa"), "unknown MUSE knowmem split 'retain2_qa'; did you mean 'retain_qa'?"),
        (lambda s: s.privleak("retain2"), "unknown MUSE privleak split 'retain2'; did you mean 'retain'?"),
        (lambda s: s.records("kmem", "forget_qa"), "unknown MUSE config 'kmem'; did you mean 'knowmem'?"),
        (lambda s: s.show("forget", 1), "MUSE split 'forget' exists in several configs; accepted: raw/forget, "),
        (lambda s: s.show("raw/retain", 1), "unknown MUSE split 'raw/retain'; did you mean 'raw/retain2'?"),
    ],
)
def test_unknown_names_are_one_line(call, expected):
    with pytest.raises(UsageError) as exc:
        call(SyntheticMuseSource(0, SMALL))
    assert _one_line(exc).startswith(expected)


def test_bad_sources_are_one_line(tmp_path):
    with pytest.raises(UsageError) as exc:
        make_muse_source(str(tmp_path / "missing"))
    assert _one_line(exc).startswith(f"MUSE data folder not found: {tmp_path / 'missing'} (expected 'synthetic', ")
    with pytest.raises(UsageError) as exc:
        make_muse_source("muse-bench/MUSE-News")
    assert "for the hub write hf:muse-bench/MUSE-News" in _one_line(exc)


def _copy_fixture(tmp_path: Path) -> Path:
    folder = tmp_path / "muse"
    shutil.copytree(MINI, folder, ignore=shutil.ignore_patterns("*.py"))
    return folder


def test_malformed_records_are_one_line(datasets_cache):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = _copy_fixture(datasets_cache)
    pq.write_table(pa.table({"question": ["Q?"]}), folder / "knowmem" / "retain_qa-00000-of-00001.parquet")
    pq.write_table(pa.table({"prompt": ["P"], "gt": [3]}), folder / "verbmem" / "forget-00000-of-00001.parquet")
    source = make_muse_source(str(folder))
    with pytest.raises(UsageError) as exc:
        source.knowmem("retain_qa")
    assert _one_line(exc) == (
        f"folder({folder}) knowmem/retain_qa: record 0 has no field 'answer' (knowmem records need: question, answer)"
    )
    with pytest.raises(UsageError) as exc:
        source.verbmem()
    assert _one_line(exc) == f"folder({folder}) verbmem/forget: record 0 field 'gt' must be a string, got int"


def test_missing_config_is_listed_and_an_empty_folder_is_an_error(datasets_cache):
    folder = _copy_fixture(datasets_cache)
    readme = (folder / "README.md").read_text()
    start, end = readme.index("- config_name: privleak"), readme.index("---", 4)
    (folder / "README.md").write_text(readme[:start] + readme[end:])
    source = make_muse_source(str(folder))
    with pytest.raises(muse_data.MissingMuseSplit) as exc:
        source.privleak("forget")
    assert _one_line(exc).startswith(f"privleak/forget is missing from folder({folder})")
    listing = source.describe()
    assert "privleak/holdout" in listing and listing.count(" - ") == len(CONFIGS["privleak"])
    empty = datasets_cache / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("no configs here\n")
    with pytest.raises(UsageError) as exc:
        make_muse_source(str(empty)).describe()
    assert _one_line(exc).startswith(f"folder({empty}) holds no MUSE split (expected the hub's layout")
