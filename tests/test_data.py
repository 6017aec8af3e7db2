"""Data layer: the real TOFU files, the synthetic world, author subsets, bad input."""

from __future__ import annotations

import json

import pytest

from unlearn_lab.data.tofu import SPLITS, AuthorSubset, FolderSource, SyntheticSource, make_source
from unlearn_lab.errors import UsageError

QA = lambda rows: [(r["question"], r["answer"]) for r in rows]


def test_real_tofu_sizes_and_invariants(tofu_dir):
    """Spec 1.1: sizes, retain90 = full[:3600], forget10 = full[3600:], holdout disjoint from full."""
    src = FolderSource(tofu_dir)
    sizes = {
        s: len(src.load(s))
        for s in (
            "full",
            "retain90",
            "forget10",
            "holdout10",
            "real_authors",
            "world_facts",
            "forget10_perturbed",
            "retain_perturbed",
            "idk",
        )
    }
    assert sizes == {
        "full": 4000,
        "retain90": 3600,
        "forget10": 400,
        "holdout10": 400,
        "real_authors": 100,
        "world_facts": 117,
        "forget10_perturbed": 400,
        "retain_perturbed": 400,
        "idk": 100,
    }
    full = src.load("full")
    assert QA(src.load("retain90")) == QA(full[:3600])
    assert QA(src.load("forget10")) == QA(full[3600:])  # file uses prompt/response keys: mapped
    assert QA(src.load("forget01")) == QA(full[3960:])
    assert QA(src.load("forget10_perturbed")) == QA(full[3600:])
    assert QA(src.load("retain_perturbed")) == QA(full[:400])
    assert QA(src.load("holdout05")) == QA(src.load("holdout10")[:200])
    assert not {q for q, _ in QA(src.load("holdout10"))} & {q for q, _ in QA(full)}
    assert [r["index"] for r in src.load("forget10")] == list(range(400))
    assert all(len(r["perturbed_answer"]) == 3 for r in src.load("world_facts_perturbed"))


def test_every_real_split_loads(tofu_dir):
    src = FolderSource(tofu_dir)
    for split in SPLITS:
        assert len(src.load(split)) > 0, split


def test_author_subset_keeps_split_meaning(tofu_dir):
    """40 authors: 36 retain authors from the front, 4 forget authors from the back of full."""
    base = FolderSource(tofu_dir)
    sub = AuthorSubset(base, 40)
    full = sub.load("full")
    assert len(full) == 800
    assert QA(full[:720]) == QA(base.load("full")[:720])
    assert QA(sub.load("forget10")) == QA(base.load("full")[-80:]) == QA(full[720:])
    assert QA(sub.load("forget10_perturbed")) == QA(sub.load("forget10"))
    assert QA(sub.load("forget05")) == QA(full[-40:])
    assert QA(sub.load("retain90")) == QA(full[:720])
    assert QA(sub.load("retain_perturbed")) == QA(full[:80])
    assert len(sub.load("holdout10")) == 80
    with pytest.raises(UsageError, match="multiple of 100"):
        sub.load("forget01")


@pytest.mark.parametrize("n", [20, 40])
def test_synthetic_invariants(n):
    """The same structural invariants as real TOFU, on the embedded world."""
    src = SyntheticSource(n, seed=3)
    full = src.load("full")
    assert len(full) == n * 20
    forget = src.load("forget10")
    assert QA(forget) == QA(full[-len(forget) :]) and len(forget) == n * 2
    assert QA(src.load("retain90")) == QA(full[: len(full) - len(forget)])
    assert QA(src.load("forget10_perturbed")) == QA(forget)
    assert QA(src.load("retain_perturbed")) == QA(full[: max(1, n // 10) * 20])
    assert QA(src.load("holdout05")) == QA(src.load("holdout10")[: len(src.load("holdout05"))])
    assert not {q for q, _ in QA(src.load("holdout10"))} & {q for q, _ in QA(full)}
    for rec in src.load("forget10_perturbed"):
        assert len(rec["perturbed_answer"]) == 5 and rec["paraphrased_answer"] not in rec["perturbed_answer"]
    for rec in src.load("real_authors_perturbed"):
        assert len(rec["perturbed_answer"]) == 3 and rec["answer"] not in rec["perturbed_answer"]


def test_synthetic_is_deterministic():
    a = json.dumps({s: SyntheticSource(20, 7).load(s) for s in ("full", "forget10_perturbed", "holdout10")})
    b = json.dumps({s: SyntheticSource(20, 7).load(s) for s in ("full", "forget10_perturbed", "holdout10")})
    c = json.dumps({s: SyntheticSource(20, 8).load(s) for s in ("full", "forget10_perturbed", "holdout10")})
    assert a == b and a != c


def test_world_too_small_for_split():
    with pytest.raises(
        UsageError, match="forget01 needs the number of authors to be a multiple of 100; this world has 20"
    ):
        SyntheticSource(20).load("forget01")
    with pytest.raises(UsageError, match="retain99"):
        SyntheticSource(20).load("retain99")


def test_unknown_split_suggests():
    with pytest.raises(UsageError, match="did you mean 'forget10'"):
        SyntheticSource(20).load("forget1O")


def test_missing_folder():
    with pytest.raises(UsageError, match="data folder not found"):
        make_source("/nonexistent/tofu")


def test_layouts_and_malformed_record(tmp_path):
    """JSON array, JSON lines, lines of arrays and parquet all load; a bad record names file, index, field."""
    rows = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(4)]
    (tmp_path / "full.json").write_text(json.dumps(rows[:2]) + "\n" + json.dumps(rows[2:]) + "\n")
    (tmp_path / "holdout10.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "forget10.json").write_text(json.dumps([{"prompt": "p", "response": "r"}], indent=2))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "retain90.parquet")
    src = FolderSource(tmp_path)
    assert QA(src.load("full")) == QA(rows) == QA(src.load("holdout10")) == QA(src.load("retain90"))
    assert QA(src.load("forget10")) == [("p", "r")]
    (tmp_path / "world_facts.json").write_text(json.dumps([{"question": "q", "answer": "a", "option1": "x"}]))
    with pytest.raises(UsageError, match=r"world_facts.json: record 0 has no field 'option2'"):
        src.load("world_facts")
    (tmp_path / "forget05.json").write_text(json.dumps([rows[0], {"question": "q"}]))
    with pytest.raises(UsageError, match=r"forget05.json: record 1 has no field 'answer'"):
        src.load("forget05")


def test_empty_and_unreadable_files_are_errors(tmp_path):
    """A split file with no record (empty, `[]`, blank lines), an idk file with no answer, a parquet file that is
    not one: each is an error naming the file, never an empty split."""
    (tmp_path / "full.json").write_text("")
    (tmp_path / "forget10.json").write_text("[]")
    (tmp_path / "holdout10.jsonl").write_text("\n\n")
    (tmp_path / "idk.jsonl").write_text("\n")
    (tmp_path / "retain90.parquet").write_text("not parquet")
    src = FolderSource(tmp_path)
    for split, name in (("full", "full.json"), ("forget10", "forget10.json"), ("holdout10", "holdout10.jsonl")):
        with pytest.raises(UsageError, match=f"{name} holds no records"):
            src.load(split)
    with pytest.raises(UsageError, match="idk.jsonl holds no answers"):
        src.load("idk")
    with pytest.raises(UsageError, match="retain90.parquet is not a readable parquet file"):
        src.load("retain90")


def test_describe_splits_lists_missing_splits_and_refuses_an_empty_folder(tmp_path):
    """`data splits`: a folder with only full.json lists every other split as missing (idk falls back to the
    built-in answers); a folder with no split file at all is an error that names the files expected."""
    from unlearn_lab.data.tofu import describe_splits

    with pytest.raises(UsageError, match=r"holds no TOFU split files \(expected files named after the splits"):
        describe_splits(FolderSource(tmp_path))
    (tmp_path / "full.json").write_text(json.dumps([{"question": "q", "answer": "a"}] * 20))
    lines = describe_splits(FolderSource(tmp_path)).splitlines()
    rows = {line.split()[0]: line for line in lines[2:]}
    assert set(rows) == set(SPLITS)
    assert rows["full"].split()[1] == "20" and "answer, question" in rows["full"]
    assert "split forget10 is missing" in rows["forget10"] and rows["idk"].split()[1] == "10"
