"""Algorithm 1 (train_agent), applying an agent (§4.3) and reproducibility."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from conftest import exploding
from gnsched.agent import GNSAgent
from gnsched.config import AgentConfig, EnvConfig, PPOConfig, TrainConfig
from gnsched.env import SchedulingEnv
from gnsched.errors import GNSError
from gnsched.train import apply_agent, candidate_lrs, collect_episode, train_agent


def _cfg(seed: int = 0, **kw) -> TrainConfig:
    return TrainConfig(episodes=2, epochs=3, seed=seed, ppo=PPOConfig(epochs=2), **kw)


def _log_dict(log) -> dict:
    d = dict(vars(log))
    d.pop("seconds")  # wall time, the only thing allowed to differ
    return d


@pytest.fixture(scope="module")
def two_trainings(digits_task):
    return [train_agent(digits_task, _cfg(seed=0)) for _ in range(2)]


def test_training_is_reproducible(two_trainings):
    (agent_a, logs_a), (agent_b, logs_b) = two_trainings
    assert len(logs_a) == len(logs_b) == 2
    assert [_log_dict(l) for l in logs_a] == [_log_dict(l) for l in logs_b]
    sd_a, sd_b = agent_a.state_dict(), agent_b.state_dict()
    assert sd_a.keys() == sd_b.keys()
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)


def test_training_logs_and_update(two_trainings):
    agent, logs = two_trainings[0]
    # digits at 3 epochs: 54 steps, K = 10 -> 5 windows, 4 decisions after reset
    assert [l.decisions for l in logs] == [4, 4]
    assert all(2 <= l.validations <= 5 for l in logs)
    assert logs[0].lr0 != logs[1].lr0  # a fresh initial lr each episode
    assert all(1e-4 <= l.lr0 <= 1e-2 for l in logs)
    assert logs[0].ppo and set(logs[0].ppo) >= {"policy_loss", "value_loss"}  # episodes_per_update = 1
    assert all(0.0 <= l.final_val <= 1.0 and l.diverged is None for l in logs)
    # the PPO updates changed the agent: compare with its seeded initialisation
    torch.manual_seed(0)
    fresh = GNSAgent(AgentConfig())
    assert not torch.equal(fresh.actor[0].weight, agent.actor[0].weight)


def test_apply_agent_is_reproducible(two_trainings, digits_task):
    agent = two_trainings[0][0]
    cfg = _cfg(candidates=2)
    a = apply_agent(agent, digits_task, cfg, seed=10_000)
    b = apply_agent(agent, digits_task, cfg, seed=10_000)
    assert a.lrs == b.lrs and a.steps == b.steps
    assert a.train_losses == b.train_losses and a.test_metric == b.test_metric
    assert a.steps == [10, 20, 30, 40, 54]
    assert a.extra["candidates"] == pytest.approx([10 ** -3.5, 10 ** -2.5])
    assert a.extra["t_pre"] == 1
    assert a.extra["lr0"] in a.extra["candidates"]
    assert all(math.isfinite(s) for s in a.extra["candidate_scores"])
    assert 0.0 <= a.test_metric <= 1.0


def test_apply_agent_with_given_lr(two_trainings, digits_task):
    rec = apply_agent(two_trainings[0][0], digits_task, _cfg(), seed=3, lr=2e-3)
    assert rec.lrs[0] == pytest.approx(2e-3)
    assert rec.extra["candidates"] == [2e-3] and rec.extra["t_pre"] == 0
    # every decision changes the lr by a factor in [0.5, 1.5] (here: |mu| <= 0.1)
    ratios = [b / a for a, b in zip(rec.lrs[:-1], rec.lrs[1:])]
    assert len(ratios) == 4 and all(0.9 - 1e-9 <= r <= 1.1 + 1e-9 for r in ratios)


def test_candidate_lrs_quantiles(digits_task):
    assert candidate_lrs(digits_task, 4) == pytest.approx([10 ** -3.75, 10 ** -3.25, 10 ** -2.75, 10 ** -2.25])
    assert candidate_lrs(digits_task, 1) == pytest.approx([1e-3])


def test_collect_episode_with_divergence(digits_task, small_agent_cfg):
    task = dataclasses.replace(digits_task)
    calls = {"n": 0}
    base = task.loss

    def loss(logits, y):  # NaN from step 31 on: the third decision's window
        calls["n"] += 1
        return base(logits, y) * (float("nan") if calls["n"] > 30 else 1.0)

    task.loss = loss
    env = SchedulingEnv(task, EnvConfig(val_prob=1.0), epochs=3)
    agent = GNSAgent(small_agent_cfg).eval()
    ro, info = collect_episode(env, agent, seed=0, generator=torch.Generator().manual_seed(0), lr=1e-3)
    assert len(ro) == 3 and len(ro.obs) == 3 and len(ro.rewards) == 3
    assert ro.dones == [0.0, 0.0, 1.0]
    assert ro.rewards[-1] == pytest.approx(-100.0)  # divergence_penalty * reward_scale
    assert info["diverged"]
    assert all(math.isfinite(v) for v in ro.logprobs + ro.values + ro.actions)


def test_train_config_validation(digits_task):
    with pytest.raises(GNSError, match="episodes"):
        train_agent(digits_task, TrainConfig(episodes=0))
    with pytest.raises(GNSError, match="pre_fraction"):
        TrainConfig(pre_fraction=1.0).validate()


# ----------------------------------------------------------------------------- regressions (bugs found and fixed)
def test_train_config_overrides():
    base = TrainConfig()
    cfg = base.with_overrides({"ppo.gamma": 1.0, "env.val_prob": 1.0, "agent.action_scale": 0.25, "episodes": 60})
    assert (cfg.ppo.gamma, cfg.env.val_prob, cfg.agent.action_scale, cfg.episodes) == (1.0, 1.0, 0.25, 60)
    assert (base.ppo.gamma, base.episodes) == (0.99, 30)  # a copy: the original is untouched
    for bad, says in [({"ppo.gama": 1.0}, "PPOConfig has the fields"), ({"ppo": 1.0}, "TrainConfig has the fields"),
                      ({"optim.lr": 1.0}, "section one of"), ({"a.b.c": 1}, "section one of")]:
        with pytest.raises(GNSError, match=says):
            base.with_overrides(bad)
    with pytest.raises(GNSError, match="gamma must lie in"):  # values are validated too
        base.with_overrides({"ppo.gamma": 2.0})


def test_one_decision_per_episode_trains(digits_task):
    # epochs=1 -> 18 steps; K=9 -> 2 windows -> exactly one decision per episode (a valid config)
    cfg = TrainConfig(episodes=1, epochs=1, env=EnvConfig(interval=9), ppo=PPOConfig(epochs=1),
                      agent=AgentConfig(hidden=16, head_hidden=8, type_dim=4))
    _, logs = train_agent(digits_task, cfg)
    assert [l.decisions for l in logs] == [1]


def test_divergence_at_first_decision_does_not_crash_training(digits_task):
    task = exploding(dataclasses.replace(digits_task, lr_prior=(1e2, 1e3)))
    cfg = TrainConfig(episodes=1, epochs=3, env=EnvConfig(lr_max=1e3), ppo=PPOConfig(epochs=1),
                      agent=AgentConfig(hidden=16, head_hidden=8, type_dim=4))
    _, logs = train_agent(task, cfg)
    assert logs[0].diverged and logs[0].decisions == 1
    assert logs[0].episode_return == pytest.approx(-100.0)


def test_ppo_update_starts_at_behaviour_policy(digits_task, monkeypatch):
    import gnsched.train as train_mod

    real_update, ratios = train_mod.ppo_update, []

    def spy(agent, optimizer, rollouts, cfg, generator=None):
        r = rollouts[0]
        with torch.no_grad():
            mu, _ = agent(torch.stack(r.obs), r.structure)
            lp = agent.distribution(mu).log_prob(torch.tensor(r.actions))
        ratios.append((lp - torch.tensor(r.logprobs)).exp())
        return real_update(agent, optimizer, rollouts, cfg, generator)

    monkeypatch.setattr(train_mod, "ppo_update", spy)
    torch.manual_seed(0)
    agent = GNSAgent(AgentConfig(hidden=16, head_hidden=8, type_dim=4))
    with torch.no_grad():  # an actor whose mean depends visibly on the state (as after some training)
        agent.actor[-1].weight.mul_(100)
    train_agent(digits_task, TrainConfig(episodes=1, epochs=3, ppo=PPOConfig(epochs=1)), agent=agent)
    assert len(ratios) == 1 and len(ratios[0]) == 4
    assert torch.allclose(ratios[0], torch.ones(4), atol=1e-4), ratios[0]


def test_apply_agent_does_not_step_finished_episodes(digits_task, monkeypatch, small_agent_cfg):
    import gnsched.env as env_mod

    real_step, real_reset, after_done = env_mod.SchedulingEnv.step, env_mod.SchedulingEnv.reset, []

    def reset(self, **kw):
        self._test_done = False
        return real_reset(self, **kw)

    def step(self, action):
        after_done.append(self._test_done)
        out = real_step(self, action)
        self._test_done = out[2]
        return out

    monkeypatch.setattr(env_mod.SchedulingEnv, "reset", reset)
    monkeypatch.setattr(env_mod.SchedulingEnv, "step", step)
    task = exploding(dataclasses.replace(digits_task, lr_prior=(1e2, 1e3)))  # every candidate diverges
    cfg = TrainConfig(epochs=3, candidates=2, pre_fraction=0.5, env=EnvConfig(lr_max=1e3))
    rec = apply_agent(GNSAgent(small_agent_cfg), task, cfg, seed=0)
    assert rec.diverged
    assert after_done and not any(after_done)


def test_recipe_is_recorded_and_saved(two_trainings, tmp_path):
    agent = two_trainings[0][0]
    assert agent.recipe == {"task": "digits-mlp", "interval": 10, "epochs": 3, "episodes": 2, "seed": 0,
                            "val_prob": 0.2, "lr_prior": [1e-4, 1e-2],
                            "ppo": dataclasses.asdict(PPOConfig(epochs=2, episodes_per_update=1))}
    agent.save(tmp_path / "a.safetensors")
    assert GNSAgent.load(tmp_path / "a.safetensors").recipe == agent.recipe
