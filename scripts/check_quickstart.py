"""Keep the README's quick-start numbers true: run the quick start's command as a new user would (after
`scripts/setup.sh`), in a scratch folder, and compare what it prints with the table the README shows.

    .venv/bin/python scripts/check_quickstart.py [--readme README.md] [--keep DIR]

Numbers are bit-for-bit reproducible on one platform only (unlearn_lab/fingerprint.py, docs/seeds.md): the README
records the numerics fingerprint of the machine that printed its table. Where this machine has the same
fingerprint, every printed metric line must equal the README's (exit 1 with a diff otherwise: code changed the
numbers, so the README must be regenerated). Where the fingerprint differs, the numbers cannot be compared exactly;
the check then says so and verifies the command ran and printed every metric the README lists (exit 0).
CI runs it after the tests (.ci/run); it uses the model cache like any run (prepare once: ~5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import difflib
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def quickstart(readme: str) -> tuple[list[str], list[str], str]:
    """(the unlearn-lab command, the README's printed metric lines, the README's numerics fingerprint)."""
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    command = next(line for line in section.splitlines() if "unlearn-lab run" in line)
    argv = shlex.split(command.split("&&")[-1].strip())
    argv[0] = str(REPO / ".venv" / "bin" / "unlearn-lab") if argv[0].endswith("unlearn-lab") else argv[0]
    printed = re.search(r"```text\n(.*?)```", section, re.S)
    fingerprint = re.search(r"numerics ([0-9a-f]{12})", section)
    if printed is None or fingerprint is None:
        raise SystemExit("README quick start: no ```text block of printed numbers or no 'numerics <fingerprint>'")
    return argv, metric_lines(printed.group(1)), fingerprint.group(1)


def metric_lines(text: str) -> list[str]:
    """The printed table: from its `metric` header through the line that says how many seeds it summarises."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("metric"))
    end = next((i for i in range(start, len(lines)) if " seeds;" in lines[i]), len(lines) - 1)
    return lines[start : end + 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", default=str(REPO / "README.md"))
    parser.add_argument("--keep", help="run in this folder (default: a temporary one)")
    args = parser.parse_args()
    argv, expected, recorded = quickstart(Path(args.readme).read_text())
    from unlearn_lab.fingerprint import numerics_fingerprint

    here = numerics_fingerprint()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        print(f"running: {shlex.join(argv)} (in {folder})", flush=True)
        done = subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0:
        print(done.stdout + done.stderr[-3000:])
        print(f"the README's quick-start command failed with exit code {done.returncode}")
        return 1
    got = metric_lines(done.stdout)
    if here != recorded:
        names = [line.split()[0] for line in expected[1:-1]]
        missing = [n for n in names if not any(line.split()[0] == n for line in got[1:])]
        print("\n".join(got))
        print(
            f"this machine's numerics fingerprint is {here}, the README's {recorded}: another platform prepares "
            "other models, so the numbers are not compared exactly (docs/seeds.md); "
            + (f"missing metrics: {', '.join(missing)}" if missing else "every metric the README lists was printed")
        )
        return 1 if missing else 0
    if got != expected:
        print("\n".join(difflib.unified_diff(expected, got, "README", "printed now", lineterm="")))
        print("the quick start prints other numbers than the README shows (same platform): regenerate the README")
        return 1
    print(f"the quick start printed exactly the README's numbers ({len(got) - 2} metrics, numerics {here})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
