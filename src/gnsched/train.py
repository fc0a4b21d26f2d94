"""Training an agent (Algorithm 1), applying it (end of §4.3) and running fixed schedules.

``train_agent`` runs episodes of :class:`~gnsched.env.SchedulingEnv` with the current
policy, turns the measured metrics into rewards with Eq. 3, and makes one PPO update
(appendix D) every ``episodes_per_update`` episodes.

``apply_agent`` follows §4.3: it starts ``candidates`` runs at initial learning rates
spread evenly in log space over the task's prior (quantiles ``(i + ½)/n``: a sample that
covers the prior, deterministic for a given task), follows the policy for
``T_pre = pre_fraction · L`` decisions in each, keeps the run whose state has the highest
value and follows the policy (its mean by default) to the end of that same run.

Deviation, on purpose: with the difference rewards of Eq. 2, ``V(s_t)`` estimates the
*remaining improvement* ``E[P_T - P_t]``, so a run that has learnt little so far gets a high
value; taken alone it would prefer the worst start. We rank candidates by the expected
final metric instead, ``scale · P_t + V(s_t)`` (one validation per candidate at ``T_pre``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from .agent import GNSAgent
from .config import TrainConfig
from .env import SchedulingEnv, spread_rewards
from .errors import GNSError
from .hypergradient import AdamHD
from .ppo import Rollout, make_optimizer, ppo_update
from .schedules import WarmupDecayLR, WarmupStableDecayLR
from .target import RunRecord, TargetRun
from .tasks import Task


@dataclass
class EpisodeLog:
    episode: int
    lr0: float
    final_val: float
    episode_return: float
    decisions: int
    validations: int
    seconds: float
    diverged: str | None = None
    ppo: dict = field(default_factory=dict)


def collect_episode(env: SchedulingEnv, agent: GNSAgent, seed: int, generator: torch.Generator,
                    lr: float | None = None) -> tuple[Rollout, dict]:
    """Run one episode with the stochastic policy; rewards by Eq. 3 (scaled)."""
    rollout = Rollout(env.structure)
    obs, info = env.reset(seed=seed, options={"lr": lr} if lr else None)
    done = False
    while not done:
        x = torch.as_tensor(obs)
        a, lp, v = agent.act(x, env.structure, deterministic=False, generator=generator)
        obs, _, done, _, info = env.step([a])
        rollout.obs.append(x)
        rollout.actions.append(a)
        rollout.logprobs.append(lp)
        rollout.values.append(v)
    scale = env.cfg.reward_scale
    rollout.rewards = [r * scale for r in spread_rewards(info["metrics"])]
    rollout.dones = [0.0] * (len(rollout.rewards) - 1) + [1.0]
    return rollout, info


def train_agent(task: Task, cfg: TrainConfig, agent: GNSAgent | None = None,
                on_episode: Callable[[EpisodeLog], None] | None = None,
                writer=None) -> tuple[GNSAgent, list[EpisodeLog]]:
    """Algorithm 1: train (or continue training) a GNS agent on ``task``.

    ``writer``: an optional TensorBoard ``SummaryWriter``; per episode it logs the return,
    the final validation metric, the initial learning rate and the PPO statistics.
    """
    cfg.validate()
    torch.manual_seed(cfg.seed)
    agent = agent or GNSAgent(cfg.agent)
    agent.eval()
    optimizer = make_optimizer(agent, cfg.ppo)
    env = SchedulingEnv(task, cfg.env, cfg.epochs, seed=cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    agent.recipe = {"task": task.name, "interval": env.interval, "epochs": env.epochs,
                    "episodes": agent.recipe.get("episodes", 0) + cfg.episodes, "seed": cfg.seed,
                    "val_prob": cfg.env.val_prob, "lr_prior": list(task.lr_prior)}
    logs: list[EpisodeLog] = []
    pending: list[Rollout] = []
    for ep in range(cfg.episodes):
        t0 = time.perf_counter()
        rollout, info = collect_episode(env, agent, seed=cfg.seed * 100_003 + ep, generator=gen)
        pending.append(rollout)
        stats: dict = {}
        if len(pending) == cfg.ppo.episodes_per_update or ep == cfg.episodes - 1:
            # PPO must start from the behaviour policy, so the norms are refreshed *after*
            # the update; the next episode acts with the refreshed statistics.
            stats = ppo_update(agent, optimizer, pending, cfg.ppo, gen)
            states = [o for r in pending for o in r.obs]
            if len(states) >= 2:  # batch norm needs two rows per channel
                agent.encoder.refresh_norm_stats(torch.stack(states), env.structure)
            pending = []
        measured = [m for m in info["metrics"] if m is not None]
        final_val = env.record.val[-1][1]  # last real measurement (a divergence penalty is not one)
        log = EpisodeLog(ep, env.record.extra["lr0"], final_val, sum(rollout.rewards), len(rollout),
                         len(measured), time.perf_counter() - t0, info.get("diverged"), stats)
        logs.append(log)
        if writer is not None:
            scalars = {"episode/return": log.episode_return, "episode/final_val": log.final_val,
                       "episode/lr0": log.lr0, **{f"ppo/{k}": v for k, v in stats.items()}}
            for tag, v in scalars.items():
                writer.add_scalar(tag, v, ep)
        if on_episode:
            on_episode(log)
    return agent, logs


def candidate_lrs(task: Task, n: int) -> list[float]:
    """``n`` initial learning rates at the quantiles (i + ½)/n of the log-uniform prior."""
    lo, hi = (math.log(v) for v in task.lr_prior)
    return [math.exp(lo + (hi - lo) * (i + 0.5) / n) for i in range(n)]


def apply_agent(agent: GNSAgent, task: Task, cfg: TrainConfig, seed: int,
                lr: float | None = None) -> RunRecord:
    """Train the target network of ``task`` with the agent as its scheduler (§4.3).

    With ``lr`` given, that single initial learning rate is used instead of the selection.
    """
    cfg.validate()
    agent.eval()
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    lrs = [lr] if lr else candidate_lrs(task, cfg.candidates)
    probe = SchedulingEnv(task, cfg.env, cfg.epochs, seed=seed)
    # T_pre decisions, leaving at least one decision after it (0: score the first state).
    t_pre = min(probe.num_windows - 2, max(1, round(cfg.pre_fraction * probe.num_windows)))
    best = None
    scores: list[float] = []
    for lr0 in lrs:
        env = probe if best is None else SchedulingEnv(task, cfg.env, cfg.epochs, seed=seed, graph=probe.graph)
        obs, _ = env.reset(seed=seed, options={"lr": lr0})
        done = False
        for _ in range(t_pre if len(lrs) > 1 else 0):
            a, _, _ = agent.act(torch.as_tensor(obs), env.structure, cfg.deterministic, gen)
            obs, _, done, _, _ = env.step([a])
            if done:
                break
        score = -math.inf
        if not done and len(lrs) > 1:
            value = agent.act(torch.as_tensor(obs), env.structure)[2]
            score = env.cfg.reward_scale * task.evaluate(env.run.model, "val") + value
        scores.append(score)
        if best is None or score > best[0]:
            best = (score, env, obs, done)
    _, env, obs, done = best
    while not done:
        a, _, _ = agent.act(torch.as_tensor(obs), env.structure, cfg.deterministic, gen)
        obs, _, done, _, info = env.step([a])
    rec = env.record
    rec.test_metric = task.evaluate(env.run.model, "test")
    rec.seconds = time.perf_counter() - t0
    rec.extra.update({"candidates": lrs, "candidate_scores": scores, "t_pre": t_pre if len(lrs) > 1 else 0})
    return rec


#: Fixed schedules of :func:`run_schedule` (untuned defaults; ``gns`` is the learned one).
FIXED_SCHEDULES = ("constant", "cosine", "polynomial", "wsd", "adam-hd", "schedule-free")
SCHEDULES = FIXED_SCHEDULES + ("gns",)

#: Settable parameters of each fixed schedule (keyword arguments of :func:`run_schedule`).
SCHEDULE_PARAMS: dict[str, tuple[str, ...]] = {
    "constant": ("eta1",), "cosine": ("eta1", "eta2", "mu"), "polynomial": ("eta1", "eta2", "mu", "power"),
    "wsd": ("warmup", "decay", "mu"), "adam-hd": ("beta",), "schedule-free": ("warmup",),
}


def _attach_schedule(run: TargetRun, schedule: str, lr: float, params: dict):
    """The scheduler (or optimizer) of a fixed schedule. Defaults: cosine and linear
    (polynomial, power 1) decay to 0 without warmup (Eq. 7: ``eta1`` warmup, ``eta2`` decay
    end, ``mu`` = alpha_min / alpha_max, ``power``), WSD with the last 20 % decaying linearly
    to 0, Adam-HD with hypergradient lr ``beta`` 1e-8 (appendix B.4), schedule-free AdamW
    (Defazio et al. 2024, package ``schedulefree``) with a linear warmup over ``warmup`` · T
    steps (5 %) and the task's weight decay."""
    if schedule in ("constant", "cosine", "polynomial"):
        return WarmupDecayLR(run.optimizer, run.total_steps, shape=schedule, **params)
    if schedule == "wsd":
        return WarmupStableDecayLR(run.optimizer, run.total_steps, **({"warmup": 0.0, "decay": 0.2} | params))
    if schedule == "schedule-free":
        import schedulefree

        warmup = params.get("warmup", 0.05)
        run.optimizer = schedulefree.AdamWScheduleFree(run.model.parameters(), lr=lr,
                                                       weight_decay=run.task.weight_decay,
                                                       warmup_steps=int(round(warmup * run.total_steps)))
        run.optimizer.train()
        return None
    run.optimizer = AdamHD(run.model.parameters(), lr=lr, beta=params.get("beta", 1e-8),
                           weight_decay=run.task.weight_decay, decoupled=run.task.optimizer == "adamw")
    return None


@torch.no_grad()
def _schedule_free_eval_mode(run: TargetRun, batches: int = 20) -> None:
    """Switch a schedule-free optimizer to its averaged (evaluation) weights. BatchNorm
    running statistics were collected at the training iterates, so they are recomputed
    at the averaged weights from ``batches`` training minibatches (the package's advice)."""
    run.optimizer.eval()
    norms = [m for m in run.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the refresh batches
    run.model.train()
    for _ in range(batches):
        run.model(run._next_batch()[0])
    for m, mom in zip(norms, saved):
        m.momentum = mom


def run_schedule(task: Task, schedule: str, lr: float, seed: int, epochs: int | None = None,
                 log_interval: int | None = None, test: bool = True, **params: float) -> RunRecord:
    """Train ``task``'s model with one of :data:`FIXED_SCHEDULES` from learning rate ``lr``
    (alpha_max, or alpha_0 for Adam-HD); ``params`` are the schedule's settings named in
    :data:`SCHEDULE_PARAMS` (e.g. ``eta2=0.5, mu=0.01, power=2`` for polynomial). With
    ``test=False`` (tuning trials) the test metric is not measured (left NaN)."""
    if schedule not in FIXED_SCHEDULES:
        raise GNSError(f"unknown schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}.")
    if not (math.isfinite(lr) and lr > 0):
        raise GNSError(f"learning rate must be a positive finite number, got {lr!r}.")
    bad = sorted(set(params) - set(SCHEDULE_PARAMS[schedule]))
    if bad:
        raise GNSError(f"schedule {schedule!r} has no parameter {bad[0]!r}; allowed: "
                       f"{', '.join(SCHEDULE_PARAMS[schedule])}.")
    t0 = time.perf_counter()
    epochs = epochs or task.epochs
    run = TargetRun(task, lr, seed, epochs)
    sched = _attach_schedule(run, schedule, lr, params)
    k = log_interval or task.interval
    rec = RunRecord(name=schedule, extra={"lr0": lr, "seed": seed, **params})
    while run.step_count < run.total_steps:
        window_lr = run.lr
        loss, diverged = run.train(min(k, run.total_steps - run.step_count), sched)
        rec.steps.append(run.step_count)
        rec.lrs.append(window_lr)
        rec.train_losses.append(loss)
        if diverged:
            rec.diverged = True
            break
    if schedule == "schedule-free":
        _schedule_free_eval_mode(run)
    rec.val.append((run.step_count, task.evaluate(run.model, "val")))
    if test:
        rec.test_metric = task.evaluate(run.model, "test")
    rec.seconds = time.perf_counter() - t0
    return rec
