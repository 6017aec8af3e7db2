"""Process-level runtime policy: the device every stage runs on, the training precision, torch threads.

One policy for every stage (prepare's fine-tune, unlearning, the in-run evaluation, `eval`, the retain
reference): the accelerator when there is one (CUDA; Apple MPS where torch has it), else the CPU;
`--device` overrides. Applied once by the CLI, never on import.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

DEVICES = ("auto", "cpu", "cuda", "mps")


def choose_device(requested: str | None = None) -> str:
    """'auto' (or None) -> 'cuda' if torch sees a CUDA device, else 'mps' where available, else 'cpu'.

    An explicit device that is not there is a usage error (one line), not a crash deep inside a stage."""
    import torch

    from unlearn_lab.errors import UsageError

    requested = (requested or "auto").lower()
    if requested not in DEVICES:
        raise UsageError(f"unknown device '{requested}'; accepted: {', '.join(DEVICES)}")
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if requested == "cuda" and not cuda:
        raise UsageError(
            "--device cuda, but torch sees no CUDA device (a CPU build of torch, or no GPU); "
            "accepted here: auto, cpu" + (", mps" if mps else "")
        )
    if requested == "mps" and not mps:
        raise UsageError(
            "--device mps, but this torch build has no MPS backend; accepted here: auto, cpu"
            + (", cuda" if cuda else "")
        )
    return requested


def bf16_autocast(device: str) -> bool:
    """Training keeps fp32 master weights; on a CUDA GPU with native bf16 (compute capability 8.0 and up: A100,
    H100, RTX 30xx/40xx, L4...) the training forward runs under bf16 autocast. Not where bf16 is only emulated
    (T4, V100: `is_bf16_supported()` says yes there by default, at emulated speed, slower than fp32). Never on the
    CPU (19-36x slower there, machine notes) and not on MPS (autocast support is partial)."""
    import torch

    if device != "cuda" or not torch.cuda.is_available():
        return False
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch before 2.3 has no such argument: native bf16 is compute capability 8.0 and up
        return torch.cuda.get_device_capability()[0] >= 8


def autocast(device: str):
    """The context every training forward (unlearning and prepare's fine-tuning) runs in: bf16 autocast where
    `bf16_autocast(device)` says so, else nothing. Applied explicitly around the loss, never by wrapping the
    model's `forward` (accelerate's mixed precision does that, and an evaluation copy would inherit the wrapper:
    evaluation must run in the plan's eval dtype, exactly as `eval` does on the saved model)."""
    import contextlib

    import torch

    if bf16_autocast(device):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def release_memory() -> None:
    """Give back what finished stages held: collect garbage, then return the CUDA caching allocator's free blocks
    to the driver (only when CUDA was initialised: this never starts a CUDA context). Between stages and before a
    long wait (a sweep process whose workers train), not inside loops: a collection costs tens of ms."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def worker_gpu(worker: int, visible: int) -> int | None:
    """The GPU (an index among the visible ones, so `CUDA_VISIBLE_DEVICES` decides which physical cards) that
    sweep worker `worker` runs on: round robin over the `visible` GPUs; None without any."""
    return worker % visible if visible > 0 else None


def use_worker_gpu(worker: int, device: str) -> None:
    """Pin this process's CUDA work ("cuda" tensors, models moved to "cuda") to `worker_gpu`'s card."""
    import torch

    if device == "cuda":
        index = worker_gpu(worker, torch.cuda.device_count())
        if index is not None:
            torch.cuda.set_device(index)


def cores() -> int:
    """The cores this process may run on (a cpuset or `taskset` counts, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_cores(window_s: float = 0.25) -> float:
    """How many cores other processes keep busy right now: the non-idle share of all CPU time over a short window
    (/proc/stat), times the cores. Elsewhere (macOS) the 1-minute load average, which lags: a process that just
    ended still counts for a minute there."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(window_s)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    spent = max(1, total1 - total0)
    return (1 - (idle1 - idle0) / spent) * (os.cpu_count() or 1)


def thread_count(workers: int = 1, load: float | None = None) -> int:
    """torch threads: UNLEARN_LAB_THREADS, else OMP_NUM_THREADS, else this worker's share of the cores
    (cores // workers) less the cores other processes keep busy right now, at least 1.

    Oversubscription is what makes evaluation and sweeps slow on a shared machine (machine notes: beside one busy
    process, `eval` took 84 s with 2 threads but 32 s with 1; generation fell from ~115 to ~3 samples/s).
    docs/real-models.md has the measurement behind this policy."""
    for name in ("UNLEARN_LAB_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    n = cores()
    share = n // max(1, workers)
    if share <= 1:
        return 1
    busy = busy_cores() if load is None else load
    free = max(1, n - int(busy + 0.5))
    return max(1, min(share, free))


def configure_threads(workers: int = 1, threads: int | None = None) -> int:
    """Set torch's thread count (`threads`, e.g. the plan's, else the policy above); returns it."""
    import torch

    threads = threads or thread_count(workers)
    torch.set_num_threads(threads)
    return threads


class _Interrupts:
    """The main thread's interrupt state: how deep it is in store calls that must not be cut, the signal that
    arrived meanwhile, and the first signal this process received. Process-wide because signal dispositions are;
    only the handler below, `deferred` and `check_interrupted` touch it."""

    depth = 0
    pending: str | None = None
    requested: str | None = None


def _interrupt(signum, frame) -> None:
    """SIGINT / SIGTERM: KeyboardInterrupt now, or, inside `deferred`, when that section ends; a second signal
    during a deferred section interrupts at once (a store call hanging on retries can still be stopped)."""
    import signal

    name = signal.Signals(signum).name
    _Interrupts.requested = _Interrupts.requested or name
    if _Interrupts.depth and _Interrupts.pending is None:
        _Interrupts.pending = name
        return
    _Interrupts.pending = None
    raise KeyboardInterrupt(name)


def interrupt_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM (Slurm's scancel, a Kubernetes pod deletion, `kill`) raise KeyboardInterrupt
    with the signal's name, so the running trial or run is marked (FAIL / KILLED) before the process exits instead
    of being left RUNNING; and a store call in progress (`deferred`) finishes first. Python's own SIGINT handler
    raises wherever the main thread is: inside an MLflow SQLite session that leaves a write transaction open on a
    connection nobody returns, and every later write of the process, the KILLED mark included, waits out the busy
    timeout and fails "database is locked" (a clean-clone CI run showed it; tests/test_interrupts.py reproduces it
    with timed interrupts: about 1 in 10-20 locked the database)."""
    import signal
    import sys

    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    sys.unraisablehook = _unraisable


def _unraisable(unraisable: Any) -> None:
    """sys.unraisablehook: an interrupt raised in a finaliser is dropped silently (check_interrupted raises it
    again where the work can stop) instead of printing "Exception ignored ... Traceback" under the one line the
    CLI prints for an interrupt; anything else goes to Python's own hook."""
    import sys

    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _Interrupts.requested is not None:
        return
    sys.__unraisablehook__(unraisable)


def check_interrupted() -> None:
    """Raise the KeyboardInterrupt of a signal this process received but is still running after: Python drops an
    exception raised inside a finaliser or weakref callback ("Exception ignored in ..."), and the interrupt with
    it. Called between training steps, evaluation batches and sweep trials, so such a signal still stops the work
    within a step (in a loop of timed Ctrl-Cs against a sweep, one was lost that way and the sweep finished its
    study)."""
    if _Interrupts.requested is not None and not _Interrupts.depth:
        raise KeyboardInterrupt(_Interrupts.requested)


@contextmanager
def deferred() -> Iterator[None]:
    """A section an interrupt must not cut (a tracking-store or study-storage call): a SIGINT / SIGTERM arriving
    inside it is raised when it ends. Only where `interrupt_on_signals` installed the handlers (the CLI's
    processes and sweep workers); elsewhere, and off the main thread (signals reach only the main thread), a plain
    section."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _Interrupts.depth += 1
    try:
        yield
    finally:
        _Interrupts.depth -= 1
        if not _Interrupts.depth and _Interrupts.pending is not None:
            name, _Interrupts.pending = _Interrupts.pending, None
            raise KeyboardInterrupt(name)


def launched_processes() -> int:
    """The processes of this torchrun / accelerate launch, on every machine (WORLD_SIZE; 1 when not launched)."""
    value = os.environ.get("WORLD_SIZE", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else 1


DIST_TIMEOUT_S = 6 * 3600  # UNLEARN_LAB_DIST_TIMEOUT: how long a rank waits for the others at a collective


def dist_timeout_s() -> int:
    """Seconds a process waits at a barrier or collective for the others (UNLEARN_LAB_DIST_TIMEOUT, default 6 h).

    Under torchrun / accelerate launch, the main process alone computes the retain reference, evaluates after
    each epoch and saves; the other ranks wait for it at an explicit barrier. torch's default (10-30 min) is
    shorter than one evaluation of a large model, so that wait would end in a timeout error. A rank that crashes
    does not leave the others waiting that long: torchrun stops every rank when one fails."""
    value = os.environ.get("UNLEARN_LAB_DIST_TIMEOUT", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else DIST_TIMEOUT_S


def make_accelerator(device: str = "cpu", *, find_unused: bool = False):
    """The plan's device; cpu=True on the CPU: single process normally, MULTI_CPU (gloo) under torchrun.

    Mixed precision stays "no": accelerate's bf16 replaces the model's `forward` with an autocast wrapper that
    evaluation copies inherit (and that makes a reference cycle). Training applies `autocast(device)` itself.
    `find_unused`: DDP looks for parameters without a gradient in each step; needed where the loss reads a hidden
    state (RMU: the layers after it get no gradient), and costs a graph traversal per step otherwise."""
    import datetime

    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

    handlers = [
        InitProcessGroupKwargs(timeout=datetime.timedelta(seconds=dist_timeout_s())),
        DistributedDataParallelKwargs(find_unused_parameters=find_unused),
    ]
    return Accelerator(mixed_precision="no", cpu=device == "cpu", kwargs_handlers=handlers)


def progress_bar(total: int, desc: str, enabled: bool = True) -> Any:
    """A tqdm bar drawn on a terminal only, so log files and CI output stay clean; TQDM_DISABLE=1 turns it off too
    (tqdm reads that variable only for arguments left unset, and `disable=None` is what limits it to terminals)."""
    from tqdm.auto import tqdm

    off = not enabled or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")
    return tqdm(total=total, desc=desc, disable=True if off else None, leave=False)
