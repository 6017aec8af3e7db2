"""Screenshots of the MLflow UI as a researcher sees it, taken in a real headless Chromium.

Starts `unlearn-lab ui` on a free loopback port against a tracking store, waits for its first answer (timed),
opens the experiment's runs table, one run's page and the compare view of the top-level runs in Debian's
Chromium driven by Playwright, and writes PNGs (docs/img/ by default) plus the server's first-answer time and
memory. Playwright's own browser download is not needed: `executable_path` points at the system binary.

    .venv/bin/python scripts/ui_screenshots.py --tracking-uri sqlite:///mlruns/mlflow.db [--out docs/img]

Needs `pip install playwright` (the Python package only) and a Chromium binary (Debian: `apt-get install
chromium`); tests/test_ui.py uses the same helpers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Chromium on a machine without network: no background fetches, no sandbox (root in containers)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the server's workers), in MB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return total / 1024


@contextlib.contextmanager
def ui_server(tracking_uri: str, port: int | None = None, timeout: float = 120.0):
    """`unlearn-lab ui` on 127.0.0.1; yields (experiment page URL, seconds to the first answer, process)."""
    port = port or free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "unlearn_lab.cli", "ui", "--tracking-uri", tracking_uri, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"unlearn-lab ui exited ({proc.returncode}): {proc.stderr.read()[-2000:]}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"unlearn-lab ui did not answer within {timeout:.0f} s")
            time.sleep(0.2)
        first_answer = time.monotonic() - started
        url = f"http://127.0.0.1:{port}"
        yield url, first_answer, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)


@contextlib.contextmanager
def browser_page(width: int = 1500, height: int = 900):
    from playwright.sync_api import sync_playwright

    binary = chromium_path()
    if binary is None:
        raise RuntimeError("no Chromium binary found (Debian: apt-get install chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=binary, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


def top_level_runs(tracking_uri: str) -> tuple[str, list]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("unlearn-lab")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    return experiment.experiment_id, [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def runs_table_text(page, base: str, experiment_id: str, wait_for: str, timeout_ms: int = 60000) -> str:
    """The experiment's runs table as the browser renders it, once `wait_for` (a run name) is on screen."""
    page.goto(f"{base}/#/experiments/{experiment_id}/runs")
    page.get_by_text(wait_for, exact=True).first.wait_for(timeout=timeout_ms)
    page.wait_for_timeout(1500)  # the metric columns fill in after the names
    return page.inner_text("body")


HEADLINE_COLUMNS = ("forget_quality", "log10_forget_quality", "model_utility", "privleak", "forget_Q_A_ROUGE")
# a repeated run's (and a confirmed sweep trial's) spread, next to the central values
SPREAD_COLUMNS = ("log10_forget_quality.sd", "model_utility.sd")


def show_metric_columns(page, names=HEADLINE_COLUMNS, hide=("Dataset", "Source", "Models")) -> None:
    """Columns menu: tick the headline metrics, untick attributes that take room. MLflow 3.17 keeps the chosen
    columns in the browser's own UI state (there is no server-side default), so a first visit shows none."""
    page.get_by_role("button", name="Columns").click()
    menu = page.locator("[role=dialog], [role=listbox], [role=menu]").filter(has_text="Metrics (").last
    menu.wait_for(timeout=10000)
    for name in (*hide, *names):
        with contextlib.suppress(Exception):
            menu.get_by_text(name, exact=True).first.click(timeout=3000)
    page.keyboard.press("Escape")
    page.wait_for_timeout(1000)


def training_mode(page) -> None:
    """MLflow 3.17's sidebar switch between its GenAI and model-training modes (kept in the browser): run pages
    say "Evaluations" in GenAI mode whatever the experiment's kind. A researcher clicks it once."""
    with contextlib.suppress(Exception):
        page.get_by_text("Model training", exact=True).first.click(timeout=5000)
        page.wait_for_timeout(1000)


def close_assistant(page) -> None:
    """The MLflow Assistant panel takes a third of the screen; close it when it is there."""
    with contextlib.suppress(Exception):
        page.get_by_role("button", name="Close", exact=True).last.click(timeout=3000)
        page.wait_for_timeout(500)


def seeds_and_front(page, base: str, experiment_id: str, runs: list, out: Path) -> None:
    """A repeated run's page (its metrics' mean, sd and interval on the parent, a nested run per seed) and a sweep's
    confirmed front (pareto_front.png in the run's artifact view), when the store holds them."""
    repeated = next((r for r in runs if r.data.tags.get("kind") == "repeated"), None)
    if repeated is not None:
        page.goto(f"{base}/#/experiments/{experiment_id}/runs/{repeated.info.run_id}")
        page.get_by_text(repeated.info.run_name).first.wait_for(timeout=60000)
        page.wait_for_timeout(2500)
        page.screenshot(path=str(out / "ui-repeated-run.png"), full_page=True)
    sweep = next((r for r in runs if r.data.tags.get("kind") == "sweep" and "repeats" in r.data.tags), None)
    if sweep is not None:
        page.goto(f"{base}/#/experiments/{experiment_id}/runs/{sweep.info.run_id}/artifacts/pareto_front.png")
        page.wait_for_timeout(5000)
        page.screenshot(path=str(out / "ui-sweep-front.png"), full_page=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tracking-uri", default=f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")
    parser.add_argument("--out", default=str(REPO / "docs" / "img"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    experiment_id, runs = top_level_runs(args.tracking_uri)
    if not runs:
        raise SystemExit(f"no runs in {args.tracking_uri}: run `unlearn-lab run` (and a sweep) first")
    with ui_server(args.tracking_uri) as (base, first_answer, proc), browser_page() as page:
        runs_table_text(page, base, experiment_id, runs[0].info.run_name)
        training_mode(page)
        close_assistant(page)
        show_metric_columns(page, names=HEADLINE_COLUMNS + SPREAD_COLUMNS)
        page.screenshot(path=str(out / "ui-runs-table.png"))
        seeds_and_front(page, base, experiment_id, runs, out)
        run = next((r for r in runs if r.data.tags.get("kind") != "sweep"), runs[0])
        page.goto(f"{base}/#/experiments/{experiment_id}/runs/{run.info.run_id}")
        page.get_by_text(run.info.run_name).first.wait_for(timeout=60000)
        page.wait_for_timeout(2000)
        page.screenshot(path=str(out / "ui-run-page.png"), full_page=True)
        compared = [r.info.run_id for r in runs if r.data.tags.get("kind") != "sweep"][:6]
        page.goto(f"{base}/#/compare-runs?runs={json.dumps(compared)}&experiments={json.dumps([experiment_id])}")
        page.wait_for_timeout(4000)
        page.screenshot(path=str(out / "ui-compare.png"), full_page=True)
        memory = server_rss_mb(proc.pid)
    print(
        json.dumps(
            {
                "first_answer_s": round(first_answer, 1),
                "server_rss_mb": round(memory),
                "screenshots": sorted(p.name for p in out.glob("ui-*.png")),
            }
        )
    )


if __name__ == "__main__":
    main()
