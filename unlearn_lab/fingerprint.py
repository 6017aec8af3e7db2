"""The numerics fingerprint of this platform: which CPU (or GPU) kernels torch runs, in one short hash.

Runs are bit-for-bit reproducible for a seed on one platform, and only there: the same code, seed and data give
other weights on a CPU whose kernels are vectorised differently (AVX2 vs AVX-512, another BLAS path, another torch
build), because summation order changes the last bits, and unlearning near a utility collapse amplifies them
(docs/seeds.md has the measured figures). The fingerprint is the hash of a fixed tiny training computation (RMSNorm,
SiLU MLP, log-softmax, AdamW: the operations the models use) run on the device: two machines with equal
fingerprints run the same kernels for these operations; it does not depend on the thread count. Runs record it
(tag `numerics`), as do the docs tables and the README's quick-start check.
"""

from __future__ import annotations

import hashlib


def numerics_fingerprint(device: str = "cpu") -> str:
    """12 hex digits identifying the kernels `device` runs (the first call also warms torch up: ~10 ms after)."""
    import torch

    g = torch.Generator().manual_seed(0)
    w1 = (torch.randn(128, 512, generator=g) * 0.05).to(device).requires_grad_()
    w2 = (torch.randn(512, 128, generator=g) * 0.05).to(device).requires_grad_()
    x = torch.randn(16, 48, 128, generator=g).to(device)
    optimizer = torch.optim.AdamW([w1, w2], lr=1e-3)
    for _ in range(5):
        h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
        loss = torch.log_softmax(torch.nn.functional.silu(h @ w1) @ w2, -1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    data = b"".join(p.detach().cpu().numpy().tobytes() for p in (w1, w2))
    return hashlib.sha256(data).hexdigest()[:12]


def platform_line(device: str = "cpu") -> str:
    """A readable provenance line: torch version, CPU capability torch dispatches to, the fingerprint."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    return f"torch {torch.__version__}, CPU kernels {capability}, numerics {numerics_fingerprint(device)}"


def software_tags(numerics: bool = True) -> dict[str, str]:
    """The software and platform a run ran on: library versions, the commit and, with `numerics`, the numerics
    fingerprint and CPU kernels (runs reproduce bit for bit only where they are the same). Without it nothing is
    imported or computed (a `report` run, which trains nothing, records its versions in milliseconds)."""
    import subprocess
    from importlib import metadata
    from pathlib import Path

    tags = {name: metadata.version(name) for name in ("torch", "transformers", "accelerate")}
    if numerics:
        import torch

        tags["numerics"] = numerics_fingerprint()
        tags["cpu_kernels"] = torch.backends.cpu.get_cpu_capability()
    try:
        git = ["git", "rev-parse", "HEAD"]
        found = subprocess.run(git, cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5, check=False)
        commit = found.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    tags["git_commit"] = commit or "unknown"
    return tags
