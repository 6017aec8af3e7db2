"""The MLflow UI in a real headless Chromium: the runs table lists the runs by name with their headline metrics.

Needs a Chromium binary and the playwright package; skips cleanly without them unless
UNLEARN_LAB_REQUIRE_BROWSER=1 (.ci/run installs both and sets it).
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from tests.conftest import REPO


def _helpers():
    spec = importlib.util.spec_from_file_location("ui_screenshots", REPO / "scripts" / "ui_screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ui():
    helpers = _helpers()
    missing = [
        what
        for what, ok in (
            ("a Chromium binary", helpers.chromium_path() is not None),
            ("playwright", importlib.util.find_spec("playwright") is not None),
        )
        if not ok
    ]
    if missing:
        if os.environ.get("UNLEARN_LAB_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser test required but {', '.join(missing)} missing")
        pytest.skip(f"{', '.join(missing)} not installed")
    return helpers


def test_runs_table_lists_runs_by_name_with_headline_metrics(ui, tmp_path):
    from unlearn_lab.benchmarks import get_benchmark
    from unlearn_lab.records import headline
    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = MlflowTracker(uri)
    runs = {
        "GradAscent-forget10-lr1e-4-ep5": {
            "forget_quality": 5.0151e-07,
            "model_utility": 0.6123,
            "privleak": 12.5,
            "forget_Q_A_ROUGE": 0.31,
        },
        "NPO-forget10-lr1e-5-ep10": {
            "forget_quality": 0.0227,
            "model_utility": 0.8814,
            "privleak": -40.25,
            "forget_Q_A_ROUGE": 0.52,
        },
    }
    for name, summary in runs.items():
        run_id = tracker.start_run(name, tags={"method": name.split("-")[0]})
        tracker.log_params(run_id, {"unlearn.lr": name.split("-lr")[1].split("-ep")[0]})
        tracker.log_metrics(run_id, headline(summary, get_benchmark("tofu")), step=10)
        child = tracker.start_run("eval-final", parent_id=run_id, tags={"kind": "eval"})
        tracker.log_metrics(child, summary, step=10)
        tracker.end_run(child)
        tracker.end_run(run_id)
    with ui.ui_server(uri) as (base, first_answer, _), ui.browser_page() as page:
        first = ui.runs_table_text(page, base, tracker.experiment_id, "NPO-forget10-lr1e-5-ep10")
        ui.training_mode(page)
        ui.show_metric_columns(page)
        text = page.inner_text("body")
        page.screenshot(path=str(tmp_path / "runs.png"))
    assert all(name in first for name in runs), first[:2000]
    assert "Training runs" in first  # the experiment's kind opens its runs in the training view
    table = text[text.index("Run Name") :]
    for column in ("forget_quality", "log10_forget_quality", "model_utility", "privleak", "forget_Q_A_ROUGE"):
        assert column in table, f"{column} not shown in the runs table:\n{table[:3000]}"
    assert "0.8814" in table and "-40.25" in table
    assert "-6.299" in table  # log10(5.0151e-07) = -6.2997: the scale a truncated "5.0151..." hides
    assert first_answer < 60
