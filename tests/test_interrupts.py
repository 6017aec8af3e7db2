"""Ctrl-C and SIGTERM in a CLI process (runtime.interrupt_on_signals): a store call finishes before the interrupt
lands, a second signal does not wait, and an interrupt Python dropped in a finaliser still stops the work."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import sys
import time

import pytest

from unlearn_lab import runtime


@pytest.fixture
def handlers():
    """The CLI's handlers for this test only; the process-wide interrupt state starts and ends clean (a leftover
    `requested` would stop every later training loop of the test session)."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    hook = sys.unraisablehook
    runtime._Interrupts.depth, runtime._Interrupts.pending, runtime._Interrupts.requested = 0, None, None
    runtime.interrupt_on_signals()
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    for s, handler in saved.items():
        signal.signal(s, handler)
    sys.unraisablehook = hook
    runtime._Interrupts.depth, runtime._Interrupts.pending, runtime._Interrupts.requested = 0, None, None


def signal_self(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.01)  # the handler runs in the main thread at the next bytecode: here, not later


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_outside_a_deferred_section_interrupts_at_once(handlers, sig):
    with pytest.raises(KeyboardInterrupt) as raised:
        signal_self(sig)
    assert raised.value.args == (sig.name,)


def test_a_signal_inside_a_deferred_section_lands_when_it_ends(handlers):
    done = []
    with pytest.raises(KeyboardInterrupt) as raised, runtime.deferred():
        signal_self(signal.SIGTERM)
        with runtime.deferred():  # nested sections: the outermost one decides
            done.append("inner")
        done.append("outer")
    assert done == ["inner", "outer"] and raised.value.args == ("SIGTERM",)
    with runtime.deferred():  # delivered once: the next section runs undisturbed
        done.append("after")
    assert done[-1] == "after"


def test_a_second_signal_does_not_wait_for_the_section(handlers):
    done = []
    with pytest.raises(KeyboardInterrupt) as raised, runtime.deferred():
        signal_self(signal.SIGINT)
        done.append("first held")
        signal_self(signal.SIGINT)
        done.append("never")
    assert done == ["first held"] and raised.value.args == ("SIGINT",)


def test_an_interrupt_python_dropped_in_a_finaliser_is_raised_at_the_next_check(handlers, capsys):
    class Finalised:
        def __del__(self):
            signal_self(signal.SIGINT)  # raised inside __del__: Python prints "Exception ignored" and goes on

    class Broken:
        def __del__(self):
            raise ValueError("a finaliser's own error")

    runtime.check_interrupted()  # nothing received yet
    obj = Finalised()
    del obj  # no "Exception ignored ... Traceback" printed: the CLI's one line is the whole message
    assert capsys.readouterr().err == ""
    broken = Broken()
    del broken  # any other error in a finaliser is still reported, by Python's own hook
    assert "ValueError: a finaliser's own error" in capsys.readouterr().err
    with pytest.raises(KeyboardInterrupt) as raised:
        runtime.check_interrupted()
    assert raised.value.args == ("SIGINT",)


def test_without_the_handlers_a_section_is_plain():
    """In-process use (tests, notebooks): Python's own handler raises inside the section, nothing is remembered.
    (Set here: a test run in a background job inherits SIGINT ignored.)"""
    saved = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), runtime.deferred():
            signal_self(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, saved)
    runtime.check_interrupted()  # nothing left pending


@pytest.mark.slow
def test_timed_interrupts_never_leave_the_tracking_database_locked(handlers, tmp_path):
    """200 interrupts at random moments of a stream of MLflow writes (SIGALRM through the same handler). Python's
    own raise inside MLflow's SQLite session leaves a write transaction open on a connection nobody returns:
    measured without the deferral, the database stayed locked after 1 in ~20 such interrupts, and the run the
    process then marks KILLED waits out the 20 s busy timeout and fails. After each interrupt, another connection
    must be able to write at once, and the run must be markable."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from unlearn_lab.tracking.mlflow_tracker import Uninterrupted

    db = tmp_path / "mlflow.db"
    client = Uninterrupted(MlflowClient(tracking_uri=f"sqlite:///{db}"))
    run = client.create_run(client.create_experiment("x")).info.run_id
    signal.signal(signal.SIGALRM, runtime._interrupt)
    rng = random.Random(0)
    interrupted = 0
    for i in range(200):
        signal.setitimer(signal.ITIMER_REAL, rng.uniform(0.0001, 0.02))
        try:
            while True:
                client.log_batch(run, metrics=[Metric("m", float(i), int(time.time() * 1000), i)])
                client.set_tag(run, "t", str(i))
        except KeyboardInterrupt as exc:
            assert exc.args == ("SIGALRM",)
            interrupted += 1
        runtime._Interrupts.requested = None  # each interrupt is handled here, as a test of the store only
        other = sqlite3.connect(db, timeout=0.2)
        try:
            other.execute("UPDATE runs SET end_time = NULL WHERE run_uuid = ?", (run,))
            other.commit()
        finally:
            other.close()
    client.set_terminated(run, "KILLED")
    assert interrupted == 200 and client.get_run(run).info.status == "KILLED"
