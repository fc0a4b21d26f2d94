"""Classic learning-rate schedules, as ``torch.optim.lr_scheduler.LRScheduler`` classes.

:class:`WarmupDecayLR` is the paper's Eq. 7 with ``alpha_max`` = each group's initial
learning rate (ratios between param groups are kept), ``alpha_min = mu · alpha_max``,
``T_warm = eta1 · T`` and ``T_decay = eta2 · T``::

    t < T_warm            : alpha = t / T_warm · alpha_max
    T_warm <= t < T_decay : polynomial  (alpha_max - alpha_min)(1 - u)^p + alpha_min
                            cosine      ½ (alpha_max - alpha_min)(1 + cos(pi u)) + alpha_min
                            constant    alpha_max
    t >= T_decay          : alpha_min (alpha_max for constant)

with ``u = (t - T_warm) / (T_decay - T_warm)``.
"""
from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from .errors import GNSError

SHAPES = ("constant", "polynomial", "cosine")


def warmup_decay_factor(t: int, total: int, shape: str, eta1: float = 0.0, eta2: float = 1.0,
                        mu: float = 0.0, power: float = 1.0) -> float:
    """Eq. 7 as a factor of ``alpha_max`` at step ``t`` of ``total``."""
    t_warm, t_decay = eta1 * total, eta2 * total
    if t < t_warm:
        return t / t_warm
    if shape == "constant":
        return 1.0
    if t >= t_decay:
        return mu
    u = (t - t_warm) / (t_decay - t_warm)
    if shape == "polynomial":
        return (1 - mu) * (1 - u) ** power + mu
    return 0.5 * (1 - mu) * (1 + math.cos(math.pi * u)) + mu


class WarmupDecayLR(LRScheduler):
    """Eq. 7 of the paper: linear warmup then constant, polynomial or cosine decay.

    Args:
        optimizer: wrapped optimizer; each group's ``lr`` at construction is its alpha_max.
        total_steps: T, the number of optimizer steps of the run.
        shape: ``"constant"``, ``"polynomial"`` or ``"cosine"``.
        eta1, eta2: warmup end and decay end as fractions of T (``0 <= eta1 < eta2 <= 1``).
        mu: alpha_min / alpha_max.
        power: exponent of the polynomial decay.
    """

    def __init__(self, optimizer: Optimizer, total_steps: int, shape: str = "cosine", eta1: float = 0.0,
                 eta2: float = 1.0, mu: float = 0.0, power: float = 1.0, last_epoch: int = -1):
        if shape not in SHAPES:
            raise GNSError(f"unknown schedule shape {shape!r}; allowed: {', '.join(SHAPES)}.")
        if not (isinstance(total_steps, int) and total_steps > 0):
            raise GNSError(f"total_steps must be a positive integer, got {total_steps!r}.")
        if not 0.0 <= eta1 < eta2 <= 1.0:
            raise GNSError(f"need 0 <= eta1 < eta2 <= 1, got eta1={eta1}, eta2={eta2}.")
        if not 0.0 <= mu <= 1.0:
            raise GNSError(f"mu must lie in [0, 1], got {mu}.")
        self.total_steps, self.shape, self.eta1, self.eta2, self.mu, self.power = total_steps, shape, eta1, eta2, mu, power
        super().__init__(optimizer, last_epoch)

    def factor(self, t: int) -> float:
        return warmup_decay_factor(t, self.total_steps, self.shape, self.eta1, self.eta2, self.mu, self.power)

    def get_lr(self) -> list[float]:
        f = self.factor(self.last_epoch)
        return [base * f for base in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()


class WarmupStableDecayLR(LRScheduler):
    """Warmup-stable-decay (WSD): linear warmup to each group's initial lr over
    ``warmup`` · T steps, constant until ``(1 - decay)`` · T, then linear decay to
    ``mu`` · lr at T (and ``mu`` · lr after).

    Args:
        optimizer: wrapped optimizer; each group's ``lr`` at construction is its peak.
        total_steps: T.
        warmup: fraction of T spent warming up.
        decay: fraction of T spent decaying at the end (``warmup + decay <= 1``).
        mu: final lr / peak lr.
    """

    def __init__(self, optimizer: Optimizer, total_steps: int, warmup: float = 0.0, decay: float = 0.2,
                 mu: float = 0.0, last_epoch: int = -1):
        if not (isinstance(total_steps, int) and total_steps > 0):
            raise GNSError(f"total_steps must be a positive integer, got {total_steps!r}.")
        if not (0.0 <= warmup and 0.0 <= decay and warmup + decay <= 1.0):
            raise GNSError(f"need warmup >= 0, decay >= 0 and warmup + decay <= 1, got {warmup}, {decay}.")
        if not 0.0 <= mu <= 1.0:
            raise GNSError(f"mu must lie in [0, 1], got {mu}.")
        self.total_steps, self.warmup, self.decay, self.mu = total_steps, warmup, decay, mu
        super().__init__(optimizer, last_epoch)

    def factor(self, t: int) -> float:
        t_warm, t_decay = self.warmup * self.total_steps, (1.0 - self.decay) * self.total_steps
        if t < t_warm:
            return t / t_warm
        if t < t_decay:
            return 1.0
        if t >= self.total_steps:
            return self.mu
        return 1.0 - (1.0 - self.mu) * (t - t_decay) / (self.total_steps - t_decay)

    def get_lr(self) -> list[float]:
        f = self.factor(self.last_epoch)
        return [base * f for base in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()
