"""The learning-rate scheduling MDP as a gymnasium environment (paper §3.2, §4.2, Alg. 1).

One episode is one training run of the target network, ``T = epochs × steps/epoch``
optimizer steps, cut into ``L = T // K`` windows (the last absorbs ``T mod K``):

* ``reset``: sample ``alpha_0`` log-uniformly from the task's prior ``D_alpha`` (or take
  ``options={"lr": ...}``), build a fresh model, train the first window, return the graph
  state ``s_0`` (node features ``[N, F]``) and always measure ``P_0`` on validation.
* ``step(a)``: ``lr <- clamp(lr · (1 + a), lr_min, lr_max)`` for every param group (ratios
  preserved, §4.2), train the next window, return ``s_{t+1}``. The validation metric is
  measured with probability ``p`` and always after the last window (§4.2).
* reward: the environment returns the *delayed* reward ``(P_t2 - P_t1) · scale`` at each
  measurement ``t2`` (0 in between); it sums to the same return as the spread of Eq. 3,
  which :func:`spread_rewards` computes from ``info["metrics"]`` for training (§4.2).
* a non-finite training loss or validation metric ends the episode: the metric is taken
  as ``P_last + divergence_penalty`` (a penalty reward) and ``info["diverged"]`` names why.
  With ``EnvConfig.rollback`` the window is instead trained again from the last good
  state (weights, optimizer, data position) at half the learning rate, up to
  ``max_rollbacks`` times per episode; ``info["rollbacks"]`` counts them. A non-finite
  first metric ``P_0`` (nothing to fall back on) is taken as 0.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch.optim import Optimizer

from .config import EnvConfig
from .encoder import BlockStructure
from .errors import GNSError
from .features import NUM_FEATURES, NodeFeatures
from .graph import ModelGraph, build_graph
from .target import RunRecord, TargetRun
from .tasks import Task

ACTION_LOW, ACTION_HIGH = -0.5, 0.5
log = logging.getLogger("gnsched")


def spread_rewards(metrics: Sequence[float | None]) -> list[float]:
    """Eq. 3: spread each difference of measured metrics linearly over the decisions between.

    ``metrics[t]`` is ``P_t`` when validation ran at decision ``t`` and ``None`` otherwise;
    the first and last entries must be measured. Returns ``r_t`` for ``t = 0..len-2``, with
    ``r_t = (P_t2 - P_t1) / (t2 - t1)`` for ``t1 <= t < t2`` (consecutive measurements).
    """
    if len(metrics) < 2 or metrics[0] is None or metrics[-1] is None:
        raise ValueError("the first and the last decision must have a measured metric")
    measured = [t for t, m in enumerate(metrics) if m is not None]
    rewards = [0.0] * (len(metrics) - 1)
    for t1, t2 in zip(measured[:-1], measured[1:]):
        r = (metrics[t2] - metrics[t1]) / (t2 - t1)
        for t in range(t1, t2):
            rewards[t] = r
    return rewards


def apply_action(optimizer: Optimizer, action: float, lr_min: float, lr_max: float) -> float:
    """``lr <- clamp(lr · (1 + a))`` on every param group with one common factor (§4.2).

    The clamp acts on the global learning rate (group 0); all groups get the same factor,
    so their ratios are preserved. Returns the new global learning rate.
    """
    if not math.isfinite(action) or action <= -1.0:
        raise GNSError(f"action must be a finite number above -1, got {action!r}.")
    lr = float(optimizer.param_groups[0]["lr"])
    new = min(max(lr * (1.0 + action), lr_min), lr_max)
    factor = new / lr
    scaled: set[int] = set()  # a tensor lr can be one object shared by several groups: scale it once
    for g in optimizer.param_groups:
        if isinstance(g["lr"], torch.Tensor):
            if id(g["lr"]) not in scaled:
                scaled.add(id(g["lr"]))
                g["lr"].mul_(factor)
        else:
            g["lr"] = g["lr"] * factor
    return new


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


class SchedulingEnv(gym.Env):
    """Learning-rate scheduling of one task as a gymnasium ``Env``.

    Observation: node features ``[N, F]`` of the target network's graph (``self.graph``
    and ``self.structure`` describe it). Action: ``a`` in ``[-0.5, 0.5]`` (clipped), the
    relative learning-rate change.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, task: Task, cfg: EnvConfig | None = None, epochs: int | None = None, seed: int = 0,
                 graph: ModelGraph | None = None):
        """``graph``: the task model's graph, when already extracted (it is the same for
        every run of a task), else it is built from a fresh model."""
        self.task = task
        self.cfg = cfg or EnvConfig()
        self.cfg.validate()
        self.interval = self.cfg.interval or task.interval
        self.epochs = epochs or task.epochs
        self.total_steps = self.epochs * task.steps_per_epoch()
        self.num_windows = self.total_steps // self.interval
        if self.num_windows < 2:
            raise GNSError(f"an episode of {self.total_steps} steps ({self.epochs} epochs) is shorter than two "
                           f"decision intervals (K = {self.interval}); lower K or add epochs.")
        self._seed = seed
        if graph is None:
            torch.manual_seed(seed)
            graph = build_graph(task.make_model(), task.example_input())
        self.graph: ModelGraph = graph
        self.structure = BlockStructure.from_graph(self.graph)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.graph.num_nodes, NUM_FEATURES), np.float32)
        self.action_space = gym.spaces.Box(ACTION_LOW, ACTION_HIGH, (1,), np.float32)
        self.run: TargetRun | None = None

    # ------------------------------------------------------------------ helpers
    def _window(self, t: int) -> int:
        return self.interval if t < self.num_windows - 1 else self.total_steps - self.interval * (self.num_windows - 1)

    def _observe(self, loss: float) -> torch.Tensor:
        progress = self.run.step_count / self.total_steps if self.cfg.progress_feature else 0.0
        x = self._features(self.run.lr, loss, progress)
        return torch.nan_to_num(x, nan=0.0, posinf=10.0, neginf=-10.0)

    def _info(self, **kw) -> dict:
        return {"t": self.t, "lr": self.run.lr, "step": self.run.step_count, "metrics": list(self.metrics),
                "rollbacks": self.rollbacks, **kw}

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        ep_seed = self._seed if seed is None else seed
        self._seed = ep_seed + 1  # the next reset without a seed gets a fresh episode
        rng = np.random.default_rng(ep_seed)
        lr0 = (options or {}).get("lr")
        if lr0 is None:
            lr0 = log_uniform(rng, *self.task.lr_prior)
        if not (isinstance(lr0, (int, float)) and math.isfinite(lr0) and lr0 > 0):
            raise GNSError(f"initial learning rate must be a positive finite number, got {lr0!r}.")
        lr0 = min(max(float(lr0), self.cfg.lr_min), self.cfg.lr_max)
        self._rng = rng
        self.run = TargetRun(self.task, lr0, ep_seed, self.epochs)
        self._features = NodeFeatures(self.run.model, self.graph)
        self.t = 0
        self.metrics: list[float | None] = []
        self.record = RunRecord(name="gns", extra={"lr0": lr0, "seed": ep_seed})
        self.rollbacks = 0
        loss, metric, reason = self._advance(0, measure=True)
        self._diverged_in_reset = reason is not None
        self._log_window(loss)
        if metric is None:  # the loss diverged: the model before the bad step is still measured
            metric = self.task.evaluate(self.run.model, "val")
        self._last_metric = metric if math.isfinite(metric) else 0.0
        self.metrics.append(self._last_metric)
        self.record.val.append((self.run.step_count, self._last_metric))
        if reason:
            log.warning(reason + " (the next step ends the episode)")
        return self._observe(loss).numpy(), self._info(validated=True, metric=self._last_metric, diverged=reason)

    def _divergence_reason(self, metric: float | None = None) -> str:
        what = (f"validation metric became {metric} after step {self.run.step_count}" if metric is not None
                else f"training loss became non-finite at step {self.run.step_count + 1}")
        return f"{what} with lr={self.run.lr:.3g}; episode ended with penalty {self.cfg.divergence_penalty}"

    def _advance(self, t: int, measure: bool) -> tuple[float, float | None, str | None]:
        """Train window ``t`` (and measure the validation metric if ``measure``).

        Returns ``(mean loss, metric or None, divergence reason or None)``. With rollback
        on, a divergence restores the state from before the window, halves the learning
        rate (clamped to ``lr_min``) and trains the window again, while rollbacks are left.
        """
        while True:
            can_roll_back = self.cfg.rollback and self.rollbacks < self.cfg.max_rollbacks
            snap = self.run.snapshot() if can_roll_back else None
            loss, diverged = self.run.train(self._window(t))
            metric, reason = None, None
            if diverged:
                reason = self._divergence_reason()
            elif measure:
                metric = self.task.evaluate(self.run.model, "val")
                if not math.isfinite(metric):
                    reason = self._divergence_reason(metric)
            if reason is None or snap is None:
                return loss, metric, reason
            self.run.restore(snap)
            new_lr = apply_action(self.run.optimizer, -0.5, self.cfg.lr_min, self.cfg.lr_max)
            self.rollbacks += 1
            log.warning(reason.split(";")[0] + f"; rolled back to step {self.run.step_count} and halved the "
                        f"learning rate to {new_lr:.3g} (rollback {self.rollbacks} of {self.cfg.max_rollbacks})")

    def _log_window(self, loss: float) -> None:
        self.record.steps.append(self.run.step_count)
        self.record.lrs.append(self.run.lr)
        self.record.train_losses.append(loss)

    def step(self, action):
        if self.run is None:
            raise RuntimeError("call reset() before step()")
        a = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], ACTION_LOW, ACTION_HIGH))
        apply_action(self.run.optimizer, a, self.cfg.lr_min, self.cfg.lr_max)
        self.t += 1
        last = self.t == self.num_windows - 1
        if self._diverged_in_reset:  # the first window already diverged: end now, train no further
            loss, metric, reason = float("nan"), None, self._divergence_reason()
        else:
            validated = last or self._rng.random() < self.cfg.val_prob
            loss, metric, reason = self._advance(self.t, measure=validated)
        self._log_window(loss)
        scale = self.cfg.reward_scale
        if reason is not None:
            metric = self._last_metric + self.cfg.divergence_penalty
            self.metrics.append(metric)
            self.record.diverged = True
            reward = (metric - self._last_metric) * scale
            log.warning(reason)
            return (self._observe(loss).numpy(), reward, True, False,
                    self._info(validated=False, metric=metric, diverged=reason))
        reward = 0.0
        if validated:
            reward = (metric - self._last_metric) * scale
            self._last_metric = metric
            self.record.val.append((self.run.step_count, metric))
        self.metrics.append(metric)
        return self._observe(loss).numpy(), reward, last, False, self._info(validated=validated, metric=metric,
                                                                         diverged=None)
