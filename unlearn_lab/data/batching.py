"""Batch order from explicit generators (no global RNG): shuffled epochs, forget-anchored pairs."""

from __future__ import annotations

import torch


def epoch_order(n: int, generator: torch.Generator, *, shuffle: bool = True) -> list[int]:
    return torch.randperm(n, generator=generator).tolist() if shuffle else list(range(n))


def chunks(order: list[int], size: int) -> list[list[int]]:
    return [order[i : i + size] for i in range(0, len(order), size)]


def retain_partners(n_forget: int, n_retain: int, generator: torch.Generator) -> list[int]:
    """One retain row per forget row, uniformly with replacement, drawn anew for every epoch (spec 4.0)."""
    return torch.randint(0, n_retain, (n_forget,), generator=generator).tolist()
