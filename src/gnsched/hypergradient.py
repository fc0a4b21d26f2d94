"""Adam with hypergradient descent (Adam-HD; Baydin et al. 2018; the paper's appendix B.4).

One *global* learning rate ``alpha`` is learnt online. With ``u_{t-1}`` the previous
(unscaled) Adam direction ``m̂ / (√v̂ + eps)`` of every parameter and ``g_t`` the current
gradient, the hypergradient of the loss w.r.t. ``alpha`` is ``-g_t · u_{t-1}`` summed over all
parameters, so once per step, before the parameter update::

    h_t     = Σ_groups r_g Σ_params <g_t, u_{t-1}>
    alpha_t = alpha_{t-1} + beta · h_t
    w      <- w - alpha_t · r_g · u_t          (and, decoupled, w <- w · (1 - alpha_t r_g λ_g))

``r_g`` is each group's ratio to the first group's initial learning rate, so several param
groups keep their ratios and share one learning rate. Each group's ``lr`` always shows
``alpha_t · r_g`` (so schedulers and loggers see it).
"""
from __future__ import annotations

import math

import torch
from torch.optim import Optimizer

from .errors import GNSError


class AdamHD(Optimizer):
    """Adam (or AdamW with ``decoupled=True``) whose global learning rate follows its
    hypergradient.

    Args:
        params: parameters or param groups (each may set ``lr`` and ``weight_decay``).
        lr: alpha_0, the initial global learning rate.
        beta: hypergradient learning rate (1e-7 .. 1e-9 in the paper's search space).
        betas, eps: Adam's.
        weight_decay: L2 (Adam) or decoupled (AdamW) weight decay.
        decoupled: AdamW-style weight decay.
    """

    def __init__(self, params, lr: float = 1e-3, beta: float = 1e-8, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled: bool = False):
        if not (math.isfinite(lr) and lr > 0):
            raise GNSError(f"lr must be a positive finite number, got {lr!r}.")
        if not (math.isfinite(beta) and beta >= 0):
            raise GNSError(f"beta (hypergradient lr) must be >= 0, got {beta!r}.")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.beta, self.decoupled = beta, decoupled
        base = self.param_groups[0]["lr"]
        for g in self.param_groups:
            g["ratio"] = g["lr"] / base
        self.alpha = base
        self.hypergradients: list[float] = []

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # alpha lives in the groups' lr (so state_dict and schedulers see it): alpha = lr_0 / r_0
        g0 = self.param_groups[0]
        self.alpha = g0["lr"] / g0["ratio"]
        # 1. hypergradient from the current gradients and the previous directions
        h = 0.0
        for g in self.param_groups:
            for p in g["params"]:
                state = self.state[p]
                if p.grad is not None and "u" in state:
                    grad = p.grad if self.decoupled or g["weight_decay"] == 0 else p.grad + g["weight_decay"] * p
                    h += g["ratio"] * float(torch.sum(grad * state["u"]))
        self.alpha = max(self.alpha + self.beta * h, 0.0)
        self.hypergradients.append(h)
        # 2. Adam update with alpha · r_g
        for g in self.param_groups:
            lr = self.alpha * g["ratio"]
            g["lr"] = lr
            b1, b2 = g["betas"]
            for p in g["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                if g["weight_decay"]:
                    if self.decoupled:
                        p.mul_(1 - lr * g["weight_decay"])
                    else:
                        grad = grad + g["weight_decay"] * p
                state["step"] += 1
                state["m"].mul_(b1).add_(grad, alpha=1 - b1)
                state["v"].mul_(b2).addcmul_(grad, grad, value=1 - b2)
                m_hat = state["m"] / (1 - b1 ** state["step"])
                v_hat = state["v"] / (1 - b2 ** state["step"])
                u = m_hat / (v_hat.sqrt() + g["eps"])
                state["u"] = u
                p.add_(u, alpha=-lr)
        return loss
