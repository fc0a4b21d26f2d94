"""The scheduling MDP: Eq. 3 rewards, the lr action, windows, divergence (§3.2, §4.2)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from conftest import exploding
from gnsched.config import EnvConfig
from gnsched.env import SchedulingEnv, apply_action, log_uniform, spread_rewards
from gnsched.errors import GNSError
from gnsched.features import NUM_FEATURES


# ----------------------------------------------------------------------------- Eq. 3
def test_spread_rewards_hand_computed():
    r = spread_rewards([0.5, None, None, 0.8, None, 0.7])
    assert r == pytest.approx([0.1, 0.1, 0.1, -0.05, -0.05])
    # the spread rewards sum to the total improvement P_T - P_0
    assert sum(r) == pytest.approx(0.7 - 0.5)


def test_spread_rewards_all_measured_and_two_points():
    assert spread_rewards([0.1, 0.3, 0.2, 0.2]) == pytest.approx([0.2, -0.1, 0.0])
    assert spread_rewards([0.2, None, None, None, 0.6]) == pytest.approx([0.1] * 4)
    assert spread_rewards([0.0, 1.0]) == [1.0]


@pytest.mark.parametrize("metrics", [[None, 0.5, 0.6], [0.5, 0.6, None], [0.5], [], [None, None]])
def test_spread_rewards_needs_first_and_last(metrics):
    with pytest.raises(ValueError, match="first and the last"):
        spread_rewards(metrics)


# ----------------------------------------------------------------------------- action
def _two_group_sgd(lr0=1e-3, lr1=5e-4):
    p0, p1 = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    return torch.optim.SGD([{"params": [p0], "lr": lr0}, {"params": [p1], "lr": lr1}])


def test_apply_action_all_groups():
    opt = _two_group_sgd()
    new = apply_action(opt, 0.1, lr_min=1e-7, lr_max=1.0)
    assert new == pytest.approx(1.1e-3)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1.1e-3, 5.5e-4])
    new = apply_action(opt, -0.5, lr_min=1e-7, lr_max=1.0)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([5.5e-4, 2.75e-4])


def test_apply_action_clamps_keep_ratio():
    opt = _two_group_sgd()
    assert apply_action(opt, 0.1, lr_min=1e-7, lr_max=1.05e-3) == pytest.approx(1.05e-3)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1.05e-3, 5.25e-4])
    opt = _two_group_sgd()
    assert apply_action(opt, -0.5, lr_min=8e-4, lr_max=1.0) == pytest.approx(8e-4)
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs == pytest.approx([8e-4, 4e-4])
    assert lrs[0] / lrs[1] == pytest.approx(2.0)


def test_apply_action_tensor_learning_rates():
    p0, p1 = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    t0, t1 = torch.tensor(1e-3, dtype=torch.float64), torch.tensor(5e-4, dtype=torch.float64)
    opt = torch.optim.SGD([{"params": [p0], "lr": t0}, {"params": [p1], "lr": t1}])
    assert apply_action(opt, 0.1, 1e-7, 1.0) == pytest.approx(1.1e-3)
    assert opt.param_groups[0]["lr"] is t0  # updated in place
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(1.1e-3)
    assert float(opt.param_groups[1]["lr"]) == pytest.approx(5.5e-4)


@pytest.mark.parametrize("a", [float("nan"), float("inf"), -1.0, -2.0])
def test_apply_action_rejects_bad_actions(a):
    opt = _two_group_sgd()
    with pytest.raises(GNSError, match="action"):
        apply_action(opt, a, 1e-7, 1.0)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 5e-4]  # untouched


def test_log_uniform_range_and_median():
    rng = np.random.default_rng(0)
    xs = np.array([log_uniform(rng, 1e-4, 1e-2) for _ in range(2000)])
    assert xs.min() >= 1e-4 and xs.max() <= 1e-2
    assert np.median(np.log10(xs)) == pytest.approx(-3.0, abs=0.1)


# ----------------------------------------------------------------------------- env
@pytest.fixture(scope="module")
def env(digits_task):
    # digits: 1149 training examples / 64 = 18 steps per epoch; 3 epochs = 54 steps, K = 10 -> 5 windows
    return SchedulingEnv(digits_task, EnvConfig(val_prob=1.0), epochs=3, seed=0)


def test_env_shapes_and_windows(env):
    assert env.total_steps == 54
    assert env.num_windows == 5
    assert [env._window(t) for t in range(5)] == [10, 10, 10, 10, 14]
    assert env.observation_space.shape == (3, NUM_FEATURES)
    assert env.graph.names == ["0", "2", "4"]


def test_env_episode(env):
    obs, info = env.reset(seed=5, options={"lr": 1e-3})
    assert obs.shape == (3, NUM_FEATURES) and obs.dtype == np.float32
    assert info["step"] == 10 and info["validated"] and info["lr"] == pytest.approx(1e-3)
    steps, rewards, done = [], [], False
    while not done:
        obs, r, done, truncated, info = env.step(np.array([0.0], dtype=np.float32))
        steps.append(info["step"])
        rewards.append(r)
        assert not truncated
    assert steps == [20, 30, 40, 54]
    assert info["t"] == 4
    m = info["metrics"]
    assert len(m) == 5 and all(v is not None for v in m)  # p = 1: every decision measured
    assert rewards == pytest.approx([100 * (b - a) for a, b in zip(m[:-1], m[1:])])
    assert m[-1] > 0.5  # Adam at 1e-3 learns digits in 3 epochs
    # progress feature t/T at the last state
    assert obs[0, -1] == pytest.approx(1.0)
    assert len(env.record.lrs) == 5 and env.record.steps == [10, 20, 30, 40, 54]


def test_env_delayed_rewards_sum_to_improvement(digits_task):
    env = SchedulingEnv(digits_task, EnvConfig(val_prob=0.2), epochs=3, seed=0)
    _, info = env.reset(seed=2, options={"lr": 1e-3})
    total, done = 0.0, False
    while not done:
        _, r, done, _, info = env.step([0.0])
        total += r
        assert (r == 0.0) or info["validated"]  # a reward only where the metric was measured
    m = info["metrics"]
    assert m[0] is not None and m[-1] is not None  # first and last decision always measured
    assert total == pytest.approx(100 * (m[-1] - m[0]))
    assert sum(spread_rewards(m)) == pytest.approx(m[-1] - m[0])


def test_env_action_changes_lr_and_is_clipped(env):
    env.reset(seed=1, options={"lr": 1e-3})
    _, _, _, _, info = env.step([0.2])
    assert info["lr"] == pytest.approx(1.2e-3)
    _, _, _, _, info = env.step([5.0])  # clipped to +0.5
    assert info["lr"] == pytest.approx(1.8e-3)
    _, _, _, _, info = env.step([-3.0])  # clipped to -0.5
    assert info["lr"] == pytest.approx(0.9e-3)


def test_env_reset_is_reproducible(env):
    o1, i1 = env.reset(seed=7)
    o2, i2 = env.reset(seed=7)
    assert np.array_equal(o1, o2)
    assert i1["lr"] == i2["lr"]
    assert 1e-4 <= i1["lr"] <= 1e-2  # sampled from the digits prior


def test_env_reset_lr_validation_and_clamp(digits_task):
    env = SchedulingEnv(digits_task, EnvConfig(lr_max=1e-2), epochs=3)
    with pytest.raises(GNSError, match="initial learning rate"):
        env.reset(options={"lr": -1.0})
    with pytest.raises(GNSError, match="initial learning rate"):
        env.reset(options={"lr": float("nan")})
    _, info = env.reset(options={"lr": 5.0})
    assert info["lr"] == pytest.approx(1e-2)


def test_env_needs_two_windows(digits_task):
    with pytest.raises(GNSError, match="shorter than two decision intervals"):
        SchedulingEnv(digits_task, EnvConfig(interval=12), epochs=1)  # 18 steps, K = 12 -> 1 window
    assert SchedulingEnv(digits_task, EnvConfig(interval=9), epochs=1).num_windows == 2


@pytest.mark.parametrize("cfg", [EnvConfig(interval=0), EnvConfig(val_prob=0.0), EnvConfig(val_prob=1.5),
                                 EnvConfig(lr_min=1.0, lr_max=0.1), EnvConfig(lr_max=float("inf"))])
def test_env_config_validation(cfg):
    with pytest.raises(GNSError):
        cfg.validate()


# ----------------------------------------------------------------------------- divergence
def _run_until_done(env, lr):
    obs, info = env.reset(seed=0, options={"lr": lr})
    rewards, infos, done = [], [], False
    while not done:
        obs, r, done, _, info = env.step([0.0])
        rewards.append(r)
        infos.append(info)
        assert np.isfinite(obs).all()
        assert math.isfinite(info["lr"])
    return rewards, infos


def test_huge_lr_sgd_diverges_with_penalty(digits_task):
    task = exploding(digits_task)  # SGD at lr 1e3: logits explode within a few steps
    cfg = EnvConfig(lr_max=1e3)
    env = SchedulingEnv(task, cfg, epochs=3)
    rewards, infos = _run_until_done(env, 1e3)
    last = infos[-1]
    assert isinstance(last["diverged"], str) and last["diverged"]
    assert "non-finite" in last["diverged"]
    assert rewards[-1] == pytest.approx(cfg.divergence_penalty * cfg.reward_scale) == pytest.approx(-100.0)
    assert last["lr"] == pytest.approx(1e3)
    assert env.record.diverged
    assert len(infos) < env.num_windows - 1  # ended early


def test_nan_loss_mid_episode_ends_with_penalty(digits_task):
    task = dataclasses.replace(digits_task)
    calls = {"n": 0}
    base_loss = task.loss

    def loss(logits, y):  # finite for 25 steps, then NaN (inside window 2: steps 21..30)
        calls["n"] += 1
        value = base_loss(logits, y)
        return value * float("nan") if calls["n"] > 25 else value

    task.loss = loss
    cfg = EnvConfig(val_prob=1.0, divergence_penalty=-0.5, reward_scale=10.0)
    env = SchedulingEnv(task, cfg, epochs=3)
    rewards, infos = _run_until_done(env, 1e-3)
    assert [i["diverged"] is None for i in infos] == [True, False]
    assert infos[-1]["diverged"]
    assert rewards[-1] == pytest.approx(-0.5 * 10.0)
    assert env.run.step_count == 25  # the NaN step is not applied
    metrics = infos[-1]["metrics"]
    assert metrics[-1] == pytest.approx(metrics[-2] - 0.5)
    # Eq. 3 on these metrics gives the same penalty for training
    assert spread_rewards(metrics)[-1] == pytest.approx(-0.5)


def test_readme_gym_example_with_another_agent():
    # The README's "drive the MDP with your own agent" example, verbatim apart from epochs.
    from gnsched.env import SchedulingEnv, spread_rewards
    from gnsched.tasks import get_task

    env = SchedulingEnv(get_task("digits-mlp"), epochs=3)
    obs, info = env.reset(seed=0)
    done, total = False, 0.0
    while not done:
        action = env.action_space.sample()          # your agent here
        obs, reward, done, truncated, info = env.step(action)
        total += reward
    rewards = spread_rewards(info["metrics"])       # Eq. 3, per decision
    assert obs.shape == env.observation_space.shape == (3, 10)
    assert len(rewards) == env.num_windows - 1 == 4
    assert sum(rewards) * env.cfg.reward_scale == pytest.approx(total)
