"""Training the target network: one run of a task, advanced a window of steps at a time.

Kept separate from the RL environment so that the baselines (constant, cosine, ...)
train with exactly the same loop, data order and initialisation as the learned schedule.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch

from .tasks import Task


@dataclass
class RunRecord:
    """What one training run produced: per-window learning rate and training loss, the
    validation measurements, the final test metric and the wall time."""

    name: str
    steps: list[int] = field(default_factory=list)          # optimizer steps at window end
    lrs: list[float] = field(default_factory=list)           # lr used during the window
    train_losses: list[float] = field(default_factory=list)  # mean training loss of the window
    val: list[tuple[int, float]] = field(default_factory=list)
    test_metric: float = float("nan")
    seconds: float = 0.0
    diverged: bool = False
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("name", "steps", "lrs", "train_losses", "val",
                                                "test_metric", "seconds", "diverged", "extra")}


class TargetRun:
    """A freshly initialised model of ``task`` with its optimizer at learning rate ``lr``.

    ``seed`` fixes the model initialisation and the order of minibatches, so two runs with
    the same seed differ only in their learning-rate schedule.
    """

    def __init__(self, task: Task, lr: float, seed: int, epochs: int):
        self.task = task
        torch.manual_seed(seed)
        self.model = task.make_model()
        self.model.train()
        #: where the task put the model (a task that uses the GPU builds its model there)
        self.device = next(self.model.parameters()).device
        self.optimizer = task.make_optimizer(self.model, lr)
        self.total_steps = epochs * task.steps_per_epoch()
        self.step_count = 0
        self._gen = torch.Generator().manual_seed(seed)
        self._order = torch.empty(0, dtype=torch.long)
        self._pos = 0

    @property
    def lr(self) -> float:
        """The global learning rate (the first param group's)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def snapshot(self) -> dict:
        """Everything a window changes (weights, optimizer state, data position), for
        :meth:`restore` after a divergence (``EnvConfig.rollback``)."""
        return {"model": copy.deepcopy(self.model.state_dict()),
                "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "step_count": self.step_count, "pos": self._pos, "order": self._order.clone(),
                "gen": self._gen.get_state()}

    def restore(self, snap: dict) -> None:
        """Return to the state of :meth:`snapshot` (the same batches come next)."""
        self.model.load_state_dict(snap["model"])
        self.optimizer.load_state_dict(snap["optimizer"])
        self.step_count, self._pos, self._order = snap["step_count"], snap["pos"], snap["order"].clone()
        self._gen.set_state(snap["gen"])

    def _next_batch(self):
        n, bs = self.task.num_train(), self.task.batch_size
        if self._pos >= n:
            self._pos = 0
        if self._pos == 0:
            self._order = torch.randperm(n, generator=self._gen)
        idx = self._order[self._pos:self._pos + bs]
        self._pos += bs
        return self.task.batch(idx)

    def train(self, steps: int, scheduler=None) -> tuple[float, bool]:
        """Run ``steps`` optimizer steps; returns (mean training loss, diverged).

        Gradients are zeroed at the *start* of a step so that the last step's gradients
        are still there for the node features. A non-finite loss stops the window before
        the bad gradient is applied and reports ``diverged = True``.
        """
        total = torch.zeros((), device=self.device)
        done = 0
        for _ in range(steps):
            batch = self._next_batch()
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.task.compute_loss(self.model, batch)
            if not torch.isfinite(loss):
                return float("nan"), True
            loss.backward()
            self.optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total += loss.detach()
            done += 1
            self.step_count += 1
        mean = float(total) / max(done, 1)
        return mean, not math.isfinite(mean)
