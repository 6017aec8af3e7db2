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

from unlearn_lab import distributed
from unlearn_lab.config import TrainingConfig
from unlearn_lab.runtime import check_interrupted, progress_bar


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


def lr_factor(step: int, warmup: int, total: int, kind: str = "linear") -> float:
    """HF's schedules: step/warmup during warm-up, then linear decay to 0 at `total` (linear) or 1 (constant)."""
    if step < warmup:
        return step / max(1, warmup)
    if kind == "constant":
        return 1.0
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


@dataclass(frozen=True)
class _Micro:
    """What the step log needs of one micro-batch: plain floats. The loss function's output (the model's logits
    over the full vocabulary, the method's tensors) is freed as soon as its backward has run, not kept until the
    accumulation window ends."""

    loss: float
    forget_loss: float | None
    retain_loss: float | None
    extra: dict[str, float]
    epoch: float

    @classmethod
    def of(cls, out: Any, loss: float, epoch: float) -> _Micro:
        def item(x):
            return None if x is None else float(x.detach())

        extra = {key: float(value) for key, value in (getattr(out, "extra", None) or {}).items()}
        return cls(loss, item(getattr(out, "forget_loss", None)), item(getattr(out, "retain_loss", None)), extra, epoch)


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
    """Train `model` in place. `epoch_batches(epoch)` yields this process's micro-batches of that epoch (the
    same number on every process: `distributed.shard`).

    `on_epoch_end(epoch, step)` runs on every process and may return True to stop training after that epoch
    (early stopping); the main process's answer is the one every process follows. The optimizer (AdamW's two
    moments per parameter) and any gradients are released when this returns, before saving and evaluation."""
    schedule = Schedule.of(n_items, settings, distributed.processes(accelerator), schedule_epochs)
    wrapped, optimizer, backward, no_sync = _prepare(model, settings, accelerator)
    step, micro, window = 0, 0, []
    bar = progress_bar(schedule.total_steps, desc, progress)
    try:
        for epoch in range(settings.epochs):
            for batch in epoch_batches(epoch):
                check_interrupted()  # a Ctrl-C Python dropped in a finaliser stops training here
                epoch_now = step / schedule.steps_per_epoch
                final = (micro + 1) % settings.grad_accum == 0
                # Under DDP, gradients are all-reduced once per optimizer step: DDP decides whether a backward
                # all-reduces when the forward runs, so no_sync covers forward and backward of the other micro-batches
                with contextlib.nullcontext() if final else no_sync(wrapped):
                    record = _micro_batch(wrapped, batch, epoch_now, loss_fn, backward, settings, step, accelerator)
                window.append(record)
                micro += 1
                if not final:
                    continue
                _agree_finite(accelerator, window, step)
                grad_norm, lr = _update(wrapped, optimizer, settings, schedule, step)
                step += 1
                log = _window_log(window, step, step / schedule.steps_per_epoch, grad_norm, lr)
                window = []
                bar.update(1)
                bar.set_postfix(loss=f"{log.loss:.4f}")
                if on_step is not None:
                    on_step(log)
                if step >= schedule.total_steps:
                    break
            stop = bool(on_epoch_end(epoch + 1, step)) if on_epoch_end is not None else False
            if distributed.main_decides(accelerator, stop) or step >= schedule.total_steps:
                break
        _agree_finite(accelerator, window, step)  # a last, incomplete window
    finally:
        bar.close()
        del wrapped, optimizer  # AdamW's state goes now (accelerate's references to the model below)
        _release(model, accelerator)
    model.eval()
    return schedule


def _micro_batch(
    model: Any, batch: Any, epoch: float, loss_fn: LossFn, backward: Any, s: TrainingConfig, step: int, acc: Any
) -> _Micro:
    """Forward and backward of one micro-batch (each micro-batch loss is its own mean; the window averages)."""
    out = loss_fn(model, batch, epoch)
    value = float(out.loss.detach())
    if not math.isfinite(value) and distributed.processes(acc) == 1:
        raise DivergedError(step, epoch, value)
    # several processes: the backward runs anyway (the others are in this all-reduce); _agree_finite stops them all
    backward(out.loss / s.grad_accum)
    return _Micro.of(out, value, epoch)


def _agree_finite(accelerator: Any, window: list[_Micro], step: int) -> None:
    """Before an optimizer step, every process raises DivergedError if any process saw a non-finite loss in this
    window (one small all-gather per step; with one process the micro-batch raised already)."""
    if distributed.processes(accelerator) == 1:
        return
    bad = next(((m.loss, m.epoch) for m in window if not math.isfinite(m.loss)), None)
    first = distributed.first_flagged(accelerator, bad)
    if first is not None:
        raise DivergedError(step, first[1], first[0])


def _release(model: Any, accelerator: Any) -> None:
    """Gradients of an incomplete last window are dropped (nothing reads them), and accelerate forgets the
    prepared (DDP) model, so nothing but the caller's reference keeps the trained model or its training state."""
    model.zero_grad(set_to_none=True)
    if accelerator is not None:
        accelerator.free_memory()


def _prepare(model: Any, settings: TrainingConfig, accelerator: Any) -> tuple[Any, Any, Any, Any]:
    """Checkpointing if asked, the optimizer, and (model, optimizer, backward, no_sync) through accelerate.

    Only the model goes through accelerate (DDP under several processes; no mixed-precision wrapper: callers
    apply `runtime.autocast`); the optimizer stays a plain AdamW that nothing else references."""
    if settings.gradient_checkpointing:  # transformers 5 calls it activation checkpointing; 4.x has the old name
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = build_optimizer(model, settings.lr, settings.weight_decay)
    if accelerator is not None:
        model = accelerator.prepare_model(model)
    backward = accelerator.backward if accelerator is not None else (lambda loss: loss.backward())
    no_sync = accelerator.no_sync if accelerator is not None else (lambda m: contextlib.nullcontext())
    model.train()
    return model, optimizer, backward, no_sync


def _update(model: Any, optimizer: Any, settings: TrainingConfig, schedule: Schedule, step: int) -> tuple[float, float]:
    """One optimizer step at the scheduled lr, after clipping; returns (grad norm before clipping, lr)."""
    clip = settings.max_grad_norm if settings.max_grad_norm else float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
    lr = settings.lr * lr_factor(step, schedule.warmup_steps, schedule.schedule_steps, settings.lr_schedule)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm, lr


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _window_log(window: list[_Micro], step: int, epoch: float, grad_norm: float, lr: float) -> StepLog:
    extras: dict[str, list[float]] = {}
    for m in window:
        for key, value in m.extra.items():
            extras.setdefault(key, []).append(value)
    return StepLog(
        step=step,
        epoch=epoch,
        loss=sum(m.loss for m in window) / len(window),
        forget_loss=_mean([m.forget_loss for m in window]),
        retain_loss=_mean([m.retain_loss for m in window]),
        grad_norm=grad_norm,
        learning_rate=lr,
        extra={k: sum(v) / len(v) for k, v in extras.items()},
    )
