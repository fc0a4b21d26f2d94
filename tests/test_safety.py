"""Divergence safety: NaN/Inf loss or metric ends an episode with the penalty, or (with
rollback) restores the last good window at half the learning rate; never raised."""
from __future__ import annotations

import dataclasses
import logging
import math

import pytest

from conftest import exploding
from gnsched.config import AgentConfig, EnvConfig, PPOConfig, TrainConfig
from gnsched.env import SchedulingEnv
from gnsched.train import train_agent


def _nan_at(task, bad_calls: set[int]):
    """``task`` whose training loss is NaN at the listed loss calls (1-based)."""
    task = dataclasses.replace(task)
    calls = {"n": 0}
    base = task.loss

    def loss(logits, y):
        calls["n"] += 1
        return base(logits, y) * (float("nan") if calls["n"] in bad_calls else 1.0)

    task.loss = loss
    return task


def _play(env: SchedulingEnv, lr: float):
    _, info = env.reset(seed=0, options={"lr": lr})
    infos, rewards, done = [info], [], False
    while not done:
        _, r, done, _, info = env.step([0.0])
        infos.append(info)
        rewards.append(r)
    return rewards, infos


def test_rollback_retrains_the_window_at_half_the_lr(digits_task, caplog):
    # digits at 3 epochs: 54 steps, K = 10. Loss call 25 (window 2, steps 21..30) is NaN once.
    env = SchedulingEnv(_nan_at(digits_task, {25}), EnvConfig(val_prob=1.0, rollback=True), epochs=3)
    with caplog.at_level(logging.WARNING, logger="gnsched"):
        rewards, infos = _play(env, 1e-3)
    assert all(i["diverged"] is None for i in infos)       # the episode was not ended
    assert env.run.step_count == 54 and len(infos) == 5    # ... and ran to its end
    assert infos[-1]["rollbacks"] == 1 and not env.record.diverged
    assert env.record.lrs == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 5e-4])  # halved from window 2 on
    assert env.record.steps == [10, 20, 30, 40, 54]        # window 2 restarted at step 20
    assert "rolled back to step 20 and halved the learning rate to 0.0005" in caplog.text
    assert all(math.isfinite(l) for l in env.record.train_losses)


def test_rollbacks_run_out_then_the_penalty_ends_the_episode(digits_task):
    cfg = EnvConfig(val_prob=1.0, rollback=True, max_rollbacks=2, divergence_penalty=-0.5, reward_scale=10.0)
    env = SchedulingEnv(_nan_at(digits_task, set(range(25, 1000))), cfg, epochs=3)
    rewards, infos = _play(env, 1e-3)
    assert infos[-1]["rollbacks"] == 2 and infos[-1]["diverged"]
    assert rewards[-1] == pytest.approx(-5.0) and env.record.diverged
    assert env.run.lr == pytest.approx(2.5e-4)             # halved twice before giving up
    assert env.run.step_count == 20                        # back at the last good state; no NaN step applied


def test_nan_validation_metric_ends_the_episode_with_the_penalty(digits_task):
    task = dataclasses.replace(digits_task)
    real, calls = task.evaluate, {"n": 0}

    def evaluate(model, split="val", chunk=4096):
        calls["n"] += 1
        return float("nan") if calls["n"] == 3 else real(model, split, chunk)

    task.evaluate = evaluate
    env = SchedulingEnv(task, EnvConfig(val_prob=1.0), epochs=3)
    rewards, infos = _play(env, 1e-3)
    assert len(infos) == 3 and "validation metric became nan" in infos[-1]["diverged"]
    assert rewards[-1] == pytest.approx(-100.0)
    assert all(math.isfinite(m) for m in infos[-1]["metrics"])  # P_t stays finite for Eq. 3


def test_nan_metric_with_rollback_is_measured_again(digits_task):
    task = dataclasses.replace(digits_task)
    real, calls = task.evaluate, {"n": 0}

    def evaluate(model, split="val", chunk=4096):
        calls["n"] += 1
        return float("inf") if calls["n"] == 2 else real(model, split, chunk)

    task.evaluate = evaluate
    env = SchedulingEnv(task, EnvConfig(val_prob=1.0, rollback=True), epochs=3)
    _, infos = _play(env, 1e-3)
    assert infos[-1]["rollbacks"] == 1 and all(i["diverged"] is None for i in infos)
    assert all(math.isfinite(m) for m in infos[-1]["metrics"])


def test_training_with_huge_lr_never_raises_and_logs_rollbacks(digits_task):
    # SGD at lr 1e2..1e3 blows up within a window: NaN injection through the real loss.
    task = exploding(dataclasses.replace(digits_task, lr_prior=(1e2, 1e3)))
    cfg = TrainConfig(episodes=2, epochs=2, env=EnvConfig(lr_max=1e3, rollback=True, max_rollbacks=2),
                      ppo=PPOConfig(epochs=1), agent=AgentConfig(hidden=16, head_hidden=8, type_dim=4))
    _, logs = train_agent(task, cfg)
    assert len(logs) == 2 and all(l.rollbacks >= 1 for l in logs)
    assert all(math.isfinite(l.episode_return) and math.isfinite(l.final_val) for l in logs)


def test_lr_is_clamped(digits_task):
    env = SchedulingEnv(digits_task, EnvConfig(lr_min=2e-4, lr_max=2e-3), epochs=3)
    env.reset(seed=0, options={"lr": 1e-2})
    assert env.run.lr == pytest.approx(2e-3)
    for _ in range(3):
        env.step([-0.5])
    assert env.run.lr == pytest.approx(2.5e-4)
    env.step([-0.5])
    assert env.run.lr == pytest.approx(2e-4)  # 1.25e-4 clamped
