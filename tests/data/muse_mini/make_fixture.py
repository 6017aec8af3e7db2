"""Writes this folder: a miniature MUSE dataset in the hub's own layout (README.md `configs:` + one parquet file per
config/split, named as on the hub), so `datasets.load_dataset(<this folder>, name=..., split=...)` reads it exactly as
it reads `muse-bench/MUSE-News`. Rerun after editing the rows: `python tests/data/muse_mini/make_fixture.py`."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
A = "Storm Brisa reached the coast of Tarsk on 3 May. About 4100 homes lost power."
B = "The Oakhurst Library opened in Velmora. Mayor Corvin Dale cut the ribbon."
C = "Quenby Otters beat Tarsk Comets 2-1 in the Dunlow Shield final."
ROWS = {
    ("raw", "forget"): [{"text": A}, {"text": B}, {"text": C}],
    ("raw", "retain1"): [
        {"text": "Pellmar Foods will open a factory in Lorrin."},
        {"text": "A kite festival drew 900 visitors."},
    ],
    ("raw", "retain2"): [
        {"text": "Harwick Hospital will get a new eye clinic."},
        {"text": "A rail line will link Oskeln and Ulmsby."},
    ],
    ("raw", "holdout"): [
        {"text": "Scientists found the ash-tailed moth in the Merrow Hills."},
        {"text": "Nerys Fane won the Kelmont mayoral election."},
    ],
    ("verbmem", "forget"): [
        {"prompt": "Storm Brisa reached the coast of Tarsk on 3 May.", "gt": "About 4100 homes lost power."},
        {"prompt": "The Oakhurst Library opened in Velmora.", "gt": "Mayor Corvin Dale cut the ribbon."},
    ],
    ("knowmem", "forget_qa"): [
        {"question": "How many homes lost power during Storm Brisa?", "answer": "4100"},
        {"question": "Who cut the ribbon at the Oakhurst Library?", "answer": "Corvin Dale"},
        {"question": "What was the score in the Dunlow Shield final?", "answer": "2-1"},
    ],
    ("knowmem", "retain_qa"): [
        {"question": "What will Harwick Hospital get?", "answer": "a new eye clinic"},
        {"question": "Which towns will the new rail line link?", "answer": "Oskeln and Ulmsby"},
    ],
    ("knowmem", "forget_qa_icl"): [
        {"question": "Where did Storm Brisa reach the coast?", "answer": "Tarsk"},
        {"question": "In which city did the Oakhurst Library open?", "answer": "Velmora"},
    ],
    ("knowmem", "retain_qa_icl"): [
        {"question": "Which hospital gets an eye clinic?", "answer": "Harwick Hospital"},
        {"question": "Where does the rail line start?", "answer": "Oskeln"},
    ],
    ("privleak", "forget"): [{"text": A}, {"text": B}],
    ("privleak", "retain"): [
        {"text": "Harwick Hospital will get a new eye clinic."},
        {"text": "A rail line will link Oskeln and Ulmsby."},
    ],
    ("privleak", "holdout"): [
        {"text": "Scientists found the ash-tailed moth in the Merrow Hills."},
        {"text": "Nerys Fane won the Kelmont mayoral election."},
    ],
}


def main() -> None:
    configs: dict[str, list[str]] = {}
    for (config, split), rows in ROWS.items():
        (HERE / config).mkdir(exist_ok=True)
        table = pa.Table.from_pylist(rows)
        pq.write_table(table, HERE / config / f"{split}-00000-of-00001.parquet", compression="zstd")
        configs.setdefault(config, []).append(split)
    lines = ["---", "configs:"]
    for config, splits in configs.items():
        lines += [f"- config_name: {config}", "  data_files:"]
        for split in splits:
            lines += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    lines += ["---", "", "Miniature MUSE in the hub's layout, for offline tests (written by make_fixture.py).", ""]
    (HERE / "README.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
