"""One explicit training loop (fine-tuning and unlearning share it), readable top to bottom.

Step arithmetic follows the reference (spec 5.1): update steps per epoch = floor(micro-batches per
epoch / grad_accum) (at least 1); total = epochs x that; accumulation windows run across epoch
boundaries and training stops at the total. The linear schedule warms up over
floor(warmup_epochs x items / (batch x accum x processes)) steps and the FIRST update uses lr 0,
as HF's scheduler does. Each micro-batch loss is its own mean; gradients are averaged over the
window (loss / grad_accum). AdamW decouples weight decay and skips biases and norm weights.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from unlearn_lab.config import TrainingConfig
from unlearn_lab.runtime import progress_bar


class DivergedError(RuntimeError):
    """The loss became NaN or infinite; `step` is the optimizer step it happened at."""

    def __init__(self, step: int, epoch: float, value: float):
        super().__init__(f"loss diverged to {value} at step {step} (epoch {epoch:.2f}); lower the learning rate")
        self.step, self.epoch, self.value = step, epoch, value


@dataclass(frozen=True)
class Schedule:
    steps_per_epoch: int
    total_steps: int  # training stops here
    warmup_steps: int
    schedule_steps: int  # the linear decay reaches 0 here (= total_steps unless schedule_epochs is set)

    @classmethod
    def of(cls, n_items: int, s: TrainingConfig, processes: int = 1, schedule_epochs: int | None = None) -> Schedule:
        """`schedule_epochs`: plan the lr schedule over this many epochs while training stops after s.epochs."""
        micro = math.ceil(n_items / (s.batch_size * processes))
        per_epoch = max(1, micro // s.grad_accum)
        warmup = math.floor(s.warmup_epochs * n_items / (s.batch_size * s.grad_accum * processes))
        planned = schedule_epochs or s.epochs
        return cls(per_epoch, math.ceil(s.epochs * per_epoch), warmup, math.ceil(planned * per_epoch))


def lr_factor(step: int, warmup: int, total: int) -> float:
    """HF linear schedule: step/warmup during warm-up, then linear decay to 0 at `total`."""
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or name.endswith(".bias") else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)


@dataclass
class StepLog:
    step: int
    epoch: float
    loss: float
    forget_loss: float | None
    retain_loss: float | None
    grad_norm: float
    learning_rate: float
    extra: dict[str, float]


LossFn = Callable[[torch.nn.Module, Any, float], Any]  # (model, batch, epoch) -> object with .loss etc.


def fit(
    model: torch.nn.Module,
    *,
    settings: TrainingConfig,
    n_items: int,
    epoch_batches: Callable[[int], Iterable[Any]],
    loss_fn: LossFn,
    accelerator: Any = None,
    schedule_epochs: int | None = None,
    on_step: Callable[[StepLog], None] | None = None,
    on_epoch_end: Callable[[int, int], bool | None] | None = None,
    progress: bool = True,
    desc: str = "train",
) -> Schedule:
    """Train `model` in place. `epoch_batches(epoch)` yields the micro-batches of that epoch.

    `on_epoch_end(epoch, step)` may return True to stop training after that epoch (early stopping)."""
    processes = accelerator.num_processes if accelerator is not None else 1
    schedule = Schedule.of(n_items, settings, processes, schedule_epochs)
    model, optimizer, backward, no_sync = _prepare(model, settings, accelerator)
    step, micro, window = 0, 0, []
    bar = progress_bar(schedule.total_steps, desc, progress)
    for epoch in range(settings.epochs):
        for batch in epoch_batches(epoch):
            epoch_now = step / schedule.steps_per_epoch
            out = loss_fn(model, batch, epoch_now)
            value = float(out.loss.detach())
            if not math.isfinite(value):
                raise DivergedError(step, epoch_now, value)
            final = (micro + 1) % settings.grad_accum == 0
            with contextlib.nullcontext() if final else no_sync(model):
                backward(out.loss / settings.grad_accum)
            window.append(out)
            micro += 1
            if not final:
                continue
            grad_norm, lr = _update(model, optimizer, settings, schedule, step)
            step += 1
            log = _window_log(window, step, step / schedule.steps_per_epoch, grad_norm, lr)
            window = []
            bar.update(1)
            bar.set_postfix(loss=f"{log.loss:.4f}")
            if on_step is not None:
                on_step(log)
            if step >= schedule.total_steps:
                break
        if (on_epoch_end is not None and on_epoch_end(epoch + 1, step)) or step >= schedule.total_steps:
            break
    bar.close()
    model.eval()
    return schedule


def _prepare(model: Any, settings: TrainingConfig, accelerator: Any) -> tuple[Any, Any, Any, Any]:
    """Checkpointing if asked, the optimizer, and (model, optimizer, backward, no_sync) through accelerate."""
    if settings.gradient_checkpointing:  # transformers 5 calls it activation checkpointing; 4.x has the old name
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = build_optimizer(model, settings.lr, settings.weight_decay)
    if accelerator is not None:
        model, optimizer = accelerator.prepare(model, optimizer)
    backward = accelerator.backward if accelerator is not None else (lambda loss: loss.backward())
    # Under DDP, gradients are all-reduced only on the window's last micro-batch (no_sync on the others)
    no_sync = accelerator.no_sync if accelerator is not None else (lambda m: contextlib.nullcontext())
    model.train()
    return model, optimizer, backward, no_sync


def _update(model: Any, optimizer: Any, settings: TrainingConfig, schedule: Schedule, step: int) -> tuple[float, float]:
    """One optimizer step at the scheduled lr, after clipping; returns (grad norm before clipping, lr)."""
    clip = settings.max_grad_norm if settings.max_grad_norm else float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
    lr = settings.lr * lr_factor(step, schedule.warmup_steps, schedule.schedule_steps)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm, lr


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _window_log(window: list, step: int, epoch: float, grad_norm: float, lr: float) -> StepLog:
    def item(x):
        return None if x is None else float(x.detach())

    extras: dict[str, list[float]] = {}
    for out in window:
        for key, value in (getattr(out, "extra", None) or {}).items():
            extras.setdefault(key, []).append(float(value))
    return StepLog(
        step=step,
        epoch=epoch,
        loss=sum(float(o.loss.detach()) for o in window) / len(window),
        forget_loss=_mean([item(getattr(o, "forget_loss", None)) for o in window]),
        retain_loss=_mean([item(getattr(o, "retain_loss", None)) for o in window]),
        grad_norm=grad_norm,
        learning_rate=lr,
        extra={k: sum(v) / len(v) for k, v in extras.items()},
    )
