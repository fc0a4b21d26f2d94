"""Proximal Policy Optimization for the scheduler (paper §4.3, appendix D).

Read top to bottom, CleanRL style. For a trajectory of decisions ``t = 0..L-1`` with
rewards ``r_t`` and values ``V_t``::

    delta_t = r_t + gamma · V_{t+1} · (1 - done_t) - V_t
    A_t     = delta_t + gamma · lambda · (1 - done_t) · A_{t+1}          (GAE, Eq. 9)
    R_t     = A_t + V_t                                                   (value target)

    ratio_t = exp(log pi(a_t|s_t) - log pi_old(a_t|s_t))
    L_clip  = E[min(ratio_t A_t, clip(ratio_t, 1-eps, 1+eps) A_t)]       (Eq. 8)
    L       = -L_clip - c_ent · entropy + c_v · E[(V(s_t) - R_t)²]         (Eq. 10, 11)

minimised with Adam (actor and encoder at 1e-3, critic at 5e-3) for ``epochs`` passes
of ``minibatches`` shuffled minibatches at the end of each episode (Algorithm 1, l.14).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .agent import GNSAgent
from .config import PPOConfig
from .encoder import BlockStructure


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor,
                last_value: float, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and value targets (appendix D, Eq. 9).

    Args:
        rewards, values, dones: ``[L]`` tensors; ``dones[t] = 1`` when the episode ended
            after action ``t`` (then ``V_{t+1}`` is not used).
        last_value: ``V(s_L)`` for a trajectory cut before its end (0 when it ended).
    Returns:
        ``(advantages, returns)``, each ``[L]``.
    """
    n = rewards.shape[0]
    adv = torch.zeros(n, dtype=torch.float32)
    next_adv, next_value = 0.0, float(last_value)
    for t in reversed(range(n)):
        nonterminal = 1.0 - float(dones[t])
        delta = float(rewards[t]) + gamma * next_value * nonterminal - float(values[t])
        next_adv = delta + gamma * lam * nonterminal * next_adv
        adv[t] = next_adv
        next_value = float(values[t])
    return adv, adv + values.float()


@dataclass
class Rollout:
    """Decisions collected with one policy on one graph structure."""

    structure: BlockStructure
    obs: list[torch.Tensor] = field(default_factory=list)       # each [N, F]
    actions: list[float] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    dones: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.actions)


def make_optimizer(agent: GNSAgent, cfg: PPOConfig) -> torch.optim.Adam:
    return torch.optim.Adam(agent.param_groups(cfg.actor_lr, cfg.critic_lr))


def ppo_loss(agent: GNSAgent, obs: torch.Tensor, s: BlockStructure, actions: torch.Tensor,
             old_logprobs: torch.Tensor, advantages: torch.Tensor, returns: torch.Tensor,
             cfg: PPOConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """The PPO objective of the module docstring on one minibatch; returns (loss, stats)."""
    mu, value = agent(obs, s)
    dist = agent.distribution(mu)
    logprob = dist.log_prob(actions)
    ratio = (logprob - old_logprobs).exp()
    pg = -torch.min(ratio * advantages, ratio.clamp(1 - cfg.clip_eps, 1 + cfg.clip_eps) * advantages).mean()
    v_loss = (value - returns).pow(2).mean()
    entropy = dist.entropy().mean()
    loss = pg - cfg.entropy_coef * entropy + cfg.value_coef * v_loss
    with torch.no_grad():
        stats = {"policy_loss": float(pg), "value_loss": float(v_loss), "entropy": float(entropy),
                 "approx_kl": float(((ratio - 1) - (logprob - old_logprobs)).mean()),
                 "clipfrac": float(((ratio - 1).abs() > cfg.clip_eps).float().mean())}
    return loss, stats


def ppo_update(agent: GNSAgent, optimizer: torch.optim.Optimizer, rollouts: list[Rollout],
               cfg: PPOConfig, generator: torch.Generator | None = None) -> dict[str, float]:
    """One PPO update over all decisions in ``rollouts`` (same graph structure each).

    Returns the mean of each loss statistic over the last epoch.
    """
    rollouts = [r for r in rollouts if len(r)]
    if not rollouts:
        return {}
    s = rollouts[0].structure
    obs = torch.stack([o for r in rollouts for o in r.obs])
    actions = torch.tensor([a for r in rollouts for a in r.actions])
    old_lp = torch.tensor([a for r in rollouts for a in r.logprobs])
    advs, rets = [], []
    for r in rollouts:
        a, ret = compute_gae(torch.tensor(r.rewards), torch.tensor(r.values), torch.tensor(r.dones),
                             0.0, cfg.gamma, cfg.gae_lambda)
        advs.append(a)
        rets.append(ret)
    adv, ret = torch.cat(advs), torch.cat(rets)
    if cfg.normalize_advantages and adv.numel() > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)

    n = obs.shape[0]
    agent.train()
    last: list[dict[str, float]] = []
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=generator)
        last = []
        for idx in perm.tensor_split(min(cfg.minibatches, n)):
            loss, stats = ppo_loss(agent, obs[idx], s, actions[idx], old_lp[idx], adv[idx], ret[idx], cfg)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
            optimizer.step()
            last.append(stats)
    agent.eval()
    return {k: sum(d[k] for d in last) / len(last) for k in last[0]}
