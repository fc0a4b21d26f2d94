"""Training an agent (Algorithm 1), applying it (end of §4.3) and running fixed schedules.

``train_agent`` runs episodes of :class:`~gnsched.env.SchedulingEnv` with the current
policy (in-process or on Ray workers, :mod:`gnsched.parallel`), turns the measured metrics
into rewards with Eq. 3, makes one PPO update (appendix D) every ``episodes_per_update``
episodes and, if asked, checkpoints after each update (:mod:`gnsched.checkpoint`).

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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from .agent import GNSAgent
from .agent_kinds import AGENT_KINDS, make_agent_for_task, training_env_config
from .config import AgentConfig, TrainConfig, from_dict
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
    rollbacks: int = 0


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


def _restore(state: dict, task: Task, cfg: TrainConfig, agent: GNSAgent | None) -> GNSAgent:
    """Check that checkpoint ``state`` belongs to this run and rebuild its agent."""
    from .checkpoint import config_from_dict

    if state["task"] != task.name:
        raise GNSError(f"the checkpoint was made on task {state['task']!r}, not {task.name!r}.")
    saved = config_from_dict(state["config"]).to_dict()
    now = cfg.to_dict()
    saved.pop("parallel"), now.pop("parallel")  # where episodes run does not change the result
    if saved != now:
        diff = sorted(k for k in now if now[k] != saved.get(k))
        raise GNSError(f"the checkpoint was made with another training config (differs in: {', '.join(diff)}); "
                       "resume with the stored config.")
    kind = state.get("kind", "gns")
    if agent is not None and agent.kind != kind:
        raise GNSError(f"the checkpoint holds a {kind} agent, not a {agent.kind} one.")
    agent = agent or make_agent_for_task(kind, from_dict(AgentConfig, state["agent_cfg"]), task)
    agent.load_state_dict(state["agent"])
    agent.recipe = dict(state["recipe"])
    return agent


def train_agent(task: Task, cfg: TrainConfig, agent: GNSAgent | None = None,
                on_episode: Callable[[EpisodeLog], None] | None = None,
                writer=None, *, task_factory: Callable[[], Task] | None = None,
                checkpoint_dir: str | Path | None = None,
                checkpoint_meta: dict | None = None, kind: str = "gns") -> tuple[GNSAgent, list[EpisodeLog]]:
    """Algorithm 1: train (or continue training) a GNS agent on ``task``.

    ``kind``: the agent built when ``agent`` is None (:mod:`gnsched.agent_kinds`: gns, frs,
    srls, css); a given or resumed agent keeps its own kind. Kinds that validate at every
    decision (frs, srls) train with p = 1 whatever ``cfg.env.val_prob`` says.

    Episodes are played in batches of ``cfg.episodes_per_update()`` with the same policy
    (in-process, or on Ray workers when ``cfg.parallel.workers > 1``: see
    :mod:`gnsched.parallel`; ``task_factory`` rebuilds the task on a worker), then one PPO
    update is made here. Every random choice of episode ``i`` derives from ``(seed, i)``.

    ``checkpoint_dir``: after every PPO update the full training state is written there
    (:mod:`gnsched.checkpoint`); if it already holds a checkpoint, training continues from
    it (the config must be the same, apart from ``parallel``). ``checkpoint_meta`` is stored
    with it as ``state["meta"]`` (the CLI keeps the data folder there).
    ``writer``: an optional TensorBoard ``SummaryWriter``; per episode it logs the return,
    the final validation metric, the initial learning rate and the PPO statistics.
    """
    from .checkpoint import check_checkpoint_dir, load_checkpoint, save_checkpoint
    from .parallel import make_collector

    cfg.validate()
    if checkpoint_dir is not None:
        check_checkpoint_dir(checkpoint_dir)
    # Pin the batch size now, so that a resumed run keeps it whatever its worker count.
    cfg = replace(cfg, ppo=replace(cfg.ppo, episodes_per_update=cfg.episodes_per_update()))
    state = load_checkpoint(checkpoint_dir) if checkpoint_dir is not None else None
    torch.manual_seed(cfg.seed)
    agent = _restore(state, task, cfg, agent) if state else (agent or make_agent_for_task(kind, cfg.agent, task))
    agent.eval()
    # What the episodes are played with: the kind may prescribe p (the checkpoint keeps ``cfg``).
    play_cfg = replace(cfg, env=training_env_config(agent, cfg.env))
    optimizer = make_optimizer(agent, cfg.ppo)
    gen = torch.Generator().manual_seed(cfg.seed)  # PPO minibatch order: on the driver only
    logs: list[EpisodeLog] = []
    if state:
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["rng"]["ppo"])
        torch.set_rng_state(state["rng"]["torch"])
        logs = [EpisodeLog(**d) for d in state["logs"]]
    if len(logs) >= cfg.episodes:  # a finished run: nothing to play
        return agent, logs
    env = SchedulingEnv(task, play_cfg.env, cfg.epochs, seed=cfg.seed)  # checks the config before workers start
    collector = make_collector(env, play_cfg, agent, task_factory)
    if not state:
        agent.recipe = {"task": task.name, "interval": env.interval, "epochs": env.epochs,
                        "episodes": agent.recipe.get("episodes", 0) + cfg.episodes, "seed": cfg.seed,
                        "val_prob": env.cfg.val_prob, "lr_prior": list(task.lr_prior),
                        "ppo": asdict(cfg.ppo)}  # the agent's own config (action scale, ...) is saved with it
    per_update = cfg.episodes_per_update()
    try:
        ep = len(logs)
        while ep < cfg.episodes:
            batch = list(range(ep, min(ep + per_update, cfg.episodes)))
            results = collector.collect(agent, batch)
            rollouts = [r.rollout(env.structure) for r in results]
            # PPO must start from the behaviour policy, so the norms are refreshed *after*
            # the update; the next batch acts with the refreshed statistics.
            stats = ppo_update(agent, optimizer, rollouts, cfg.ppo, gen)
            states = [o for r in rollouts for o in r.obs]
            if len(states) >= 2:  # batch norm needs two rows per channel
                agent.encoder.refresh_norm_stats(torch.stack(states), env.structure)
            new = [EpisodeLog(r.episode, r.lr0, r.final_val, sum(r.rewards), len(r.actions), r.validations,
                              r.seconds, r.diverged, stats if r is results[-1] else {}, r.rollbacks)
                   for r in results]
            logs += new
            ep = batch[-1] + 1
            if checkpoint_dir is not None:
                save_checkpoint(checkpoint_dir, {
                    "task": task.name, "config": cfg.to_dict(), "episode": ep, "agent": agent.state_dict(),
                    "agent_cfg": asdict(agent.cfg), "in_dim": agent.in_dim, "kind": agent.kind,
                    "recipe": agent.recipe,
                    "optimizer": optimizer.state_dict(),
                    "rng": {"ppo": gen.get_state(), "torch": torch.get_rng_state()},
                    "logs": [vars(l) for l in logs], "meta": checkpoint_meta or {}})
            for log in new:
                if writer is not None:
                    scalars = {"episode/return": log.episode_return, "episode/final_val": log.final_val,
                               "episode/lr0": log.lr0, **{f"ppo/{k}": v for k, v in log.ppo.items()}}
                    for tag, v in scalars.items():
                        writer.add_scalar(tag, v, log.episode)
                if on_episode:
                    on_episode(log)
    finally:
        collector.close()
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
    rec.name = agent.kind
    rec.test_metric = task.evaluate(env.run.model, "test")
    rec.seconds = time.perf_counter() - t0
    rec.extra.update({"candidates": lrs, "candidate_scores": scores, "t_pre": t_pre if len(lrs) > 1 else 0})
    return rec


#: Fixed schedules of :func:`run_schedule` (untuned defaults; ``gns`` is the learned one).
FIXED_SCHEDULES = ("constant", "cosine", "polynomial", "wsd", "adam-hd", "schedule-free")
#: Learned schedules: an agent of that kind (:data:`~gnsched.agent_kinds.AGENT_KINDS`).
LEARNED_SCHEDULES = AGENT_KINDS
SCHEDULES = FIXED_SCHEDULES + LEARNED_SCHEDULES

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
        run.optimizer = schedulefree.AdamWScheduleFree(run.task.param_groups(run.model), lr=lr,
                                                       weight_decay=run.task.weight_decay,
                                                       warmup_steps=int(round(warmup * run.total_steps)))
        run.optimizer.train()
        return None
    run.optimizer = AdamHD(run.task.param_groups(run.model), lr=lr, beta=params.get("beta", 1e-8),
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
        run.task.compute_loss(run.model, run._next_batch())  # the forward pass updates the statistics
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
