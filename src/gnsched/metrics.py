"""Evaluation metrics of the GLUE tasks, as GLUE defines them.

* accuracy: fraction of exact matches;
* F1 of the positive class (label 1; MRPC and QQP report it beside accuracy);
* Matthews correlation (CoLA), for any number of classes in Gorodkin's form
  ``(c·s − Σ_k p_k t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²))`` with ``c`` correct predictions,
  ``s`` samples, ``p_k`` / ``t_k`` predicted / true counts of class ``k`` (the binary
  ``(TP·TN − FP·FN) / sqrt(...)``);
* Pearson and Spearman correlation (STS-B; Spearman = Pearson of average ranks, so ties
  share their mean rank).

Degenerate inputs do not give NaN (the reward must never be NaN): F1 with no positive
prediction and no positive label, and a correlation whose denominator is zero (a constant
prediction or target) are 0.0, as scikit-learn does for MCC. Computed in float64.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .errors import GNSError


def _pair(pred, target) -> tuple[torch.Tensor, torch.Tensor]:
    p, t = torch.as_tensor(pred).reshape(-1), torch.as_tensor(target).reshape(-1)
    if p.shape != t.shape or p.numel() == 0:
        raise GNSError(f"a metric needs as many predictions as targets (at least one); got {p.numel()} "
                       f"predictions and {t.numel()} targets.")
    return p, t


def accuracy(pred, target) -> float:
    """Fraction of predictions equal to the target."""
    p, t = _pair(pred, target)
    return float((p == t).double().mean())


def f1(pred, target, positive: int = 1) -> float:
    """F1 of the ``positive`` class: ``2 TP / (2 TP + FP + FN)``."""
    p, t = _pair(pred, target)
    tp = int(((p == positive) & (t == positive)).sum())
    fp = int(((p == positive) & (t != positive)).sum())
    fn = int(((p != positive) & (t == positive)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def matthews(pred, target) -> float:
    """Matthews correlation coefficient (multiclass form; binary MCC for two classes)."""
    p, t = _pair(pred, target)
    p, t = p.long(), t.long()
    k = int(max(p.max(), t.max())) + 1
    if int(min(p.min(), t.min())) < 0:
        raise GNSError("Matthews correlation needs class indices >= 0.")
    s = float(len(t))
    c = float((p == t).sum())
    pk = torch.bincount(p, minlength=k).double()
    tk = torch.bincount(t, minlength=k).double()
    num = c * s - float((pk * tk).sum())
    den = math.sqrt((s * s - float((pk * pk).sum())) * (s * s - float((tk * tk).sum())))
    return num / den if den > 0 else 0.0


def pearson(pred, target) -> float:
    """Pearson correlation ``cov(x, y) / (sd(x) sd(y))``."""
    x, y = (v.double() for v in _pair(pred, target))
    dx, dy = x - x.mean(), y - y.mean()
    den = math.sqrt(float((dx * dx).sum()) * float((dy * dy).sum()))
    return float((dx * dy).sum()) / den if den > 0 else 0.0


def rank(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n with ties given their average rank."""
    x = x.reshape(-1).double()
    _, inverse, counts = torch.unique(x, sorted=True, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    avg = ends - (counts.double() - 1) / 2  # mean of ranks (end - count + 1) .. end
    return avg[inverse]


def spearman(pred, target) -> float:
    """Spearman rank correlation: Pearson of the average ranks."""
    p, t = _pair(pred, target)
    return pearson(rank(p), rank(t))


METRICS: dict[str, Callable[..., float]] = {
    "accuracy": accuracy, "f1": f1, "matthews": matthews, "pearson": pearson, "spearman": spearman}


def get_metric(name: str) -> Callable[..., float]:
    if name not in METRICS:
        raise GNSError(f"unknown metric {name!r}; allowed: {', '.join(METRICS)}.")
    return METRICS[name]
