"""Process-level runtime settings, applied once by the CLI (never on import)."""
from __future__ import annotations

import os


def configure_threads(workers: int = 1) -> int:
    """Give torch cores // workers threads (UNLEARN_LAB_THREADS overrides).

    Oversubscribed threads collapse throughput on small CPU machines (machine notes: generation fell
    from ~115 to ~3 samples/s with 2 threads while another process kept a core busy).
    """
    import torch

    env = os.environ.get("UNLEARN_LAB_THREADS")
    threads = int(env) if env else max(1, (os.cpu_count() or 1) // max(1, workers))
    torch.set_num_threads(threads)
    return threads


def interrupt_on_sigterm() -> None:
    """SIGTERM (Slurm's scancel, a Kubernetes pod deletion, `kill`) behaves like Ctrl-C: the running trial or
    run is marked (FAIL / KILLED) before the process exits, instead of being left RUNNING."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
