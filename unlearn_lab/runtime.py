"""Process-level runtime policy: the device every stage runs on, the training precision, torch threads.

One policy for every stage (prepare's fine-tune, unlearning, the in-run evaluation, `eval`, the retain
reference): the accelerator when there is one (CUDA; Apple MPS where torch has it), else the CPU;
`--device` overrides. Applied once by the CLI, never on import.
"""
from __future__ import annotations

import os

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
        raise UsageError("--device cuda, but torch sees no CUDA device (a CPU build of torch, or no GPU); "
                         "accepted here: auto, cpu" + (", mps" if mps else ""))
    if requested == "mps" and not mps:
        raise UsageError("--device mps, but this torch build has no MPS backend; accepted here: auto, cpu"
                         + (", cuda" if cuda else ""))
    return requested


def bf16_autocast(device: str) -> bool:
    """Training keeps fp32 master weights; on a CUDA GPU with bf16 support the forward runs under bf16 autocast.
    Never on the CPU (19-36x slower there, machine notes) and not on MPS (autocast support is partial)."""
    import torch

    return device == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def thread_count(workers: int = 1) -> int:
    """torch threads: UNLEARN_LAB_THREADS, else OMP_NUM_THREADS, else cores // workers (at least 1).

    Oversubscribed threads collapse throughput on small CPU machines (machine notes: generation fell
    from ~115 to ~3 samples/s with 2 threads while another process kept a core busy)."""
    for name in ("UNLEARN_LAB_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def configure_threads(workers: int = 1) -> int:
    import torch

    threads = thread_count(workers)
    torch.set_num_threads(threads)
    return threads


def interrupt_on_sigterm() -> None:
    """SIGTERM (Slurm's scancel, a Kubernetes pod deletion, `kill`) behaves like Ctrl-C: the running trial or
    run is marked (FAIL / KILLED) before the process exits, instead of being left RUNNING."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
