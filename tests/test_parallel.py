"""Parallel episode collection on Ray: same agent as in-process, whatever the worker count.

Ray starts once for the module (a 2-CPU local instance) and is shut down at the end.
"""
from __future__ import annotations

import pytest
import torch

from gnsched.config import AgentConfig, ParallelConfig, PPOConfig, TrainConfig
from gnsched.errors import GNSError
from gnsched.parallel import episode_seeds
from gnsched.train import train_agent

ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install gnsched[ray])")


def _cfg(workers: int, per_update: int = 2) -> TrainConfig:
    return TrainConfig(episodes=4, epochs=2, seed=3, agent=AgentConfig(hidden=16, head_hidden=8, type_dim=4),
                       ppo=PPOConfig(epochs=2, episodes_per_update=per_update),
                       parallel=ParallelConfig(workers=workers))


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def in_process(digits_task):
    return train_agent(digits_task, _cfg(workers=1))


def _same_agent(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _logs(logs):
    return [{k: v for k, v in vars(l).items() if k != "seconds"} for l in logs]


def test_two_ray_workers_give_the_in_process_agent(ray_local, digits_task, in_process):
    agent, logs = train_agent(digits_task, _cfg(workers=2))
    ref_agent, ref_logs = in_process
    assert [l.episode for l in logs] == [0, 1, 2, 3]
    assert _logs(logs) == _logs(ref_logs)                 # same lr0, returns, PPO statistics
    assert [bool(l.ppo) for l in logs] == [False, True, False, True]  # one update per 2 episodes
    assert _same_agent(agent, ref_agent)                 # bit-identical weights and norm statistics


def test_episodes_per_update_defaults_to_workers():
    assert _cfg(workers=3, per_update=None).episodes_per_update() == 3
    assert _cfg(workers=1, per_update=None).episodes_per_update() == 1
    assert _cfg(workers=3, per_update=5).episodes_per_update() == 5


def test_episode_seeds_depend_on_seed_and_index_only():
    assert episode_seeds(3, 1) == episode_seeds(3, 1)
    seeds = {episode_seeds(s, i) for s in range(3) for i in range(50)}
    assert len(seeds) == 150 and all(0 <= n < 2**63 for _, n in seeds)


def test_without_ray_workers_run_in_process(digits_task, in_process, monkeypatch, caplog):
    import gnsched.parallel as par

    monkeypatch.setattr(par, "ray_available", lambda: False)
    agent, _ = train_agent(digits_task, _cfg(workers=2))
    assert "Ray is not installed" in caplog.text
    assert _same_agent(agent, in_process[0])


def test_more_local_workers_than_cpus_is_refused_before_ray_starts(digits_task, monkeypatch, tmp_path, capsys):
    import sys

    import gnsched.parallel as par
    from gnsched.cli import main

    def no_init(*a, **k):
        raise AssertionError("ray.init must not be called")

    monkeypatch.setattr(par, "_local_cpus", lambda: 1)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", no_init)
    with pytest.raises(GNSError, match="needs 2 CPUs, but this machine has 1"):
        train_agent(digits_task, _cfg(workers=2))
    monkeypatch.setattr(sys, "argv", ["gnsched", "train", "--workers", "2", "--episodes", "2", "--epochs", "2",
                                      "--quiet", "--out", str(tmp_path / "agent")])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.count("\n") == 0 and "lower --workers" in err.lower()
    assert list(tmp_path.iterdir()) == []  # no output folder, no partial folder


def test_unreachable_address_fails_fast(digits_task, monkeypatch):
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = _cfg(workers=2)
    cfg.parallel = ParallelConfig(workers=2, address=f"127.0.0.1:{port}")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(GNSError, match=f"cannot reach the Ray cluster at --address 127.0.0.1:{port}"):
        train_agent(digits_task, cfg)


def test_local_gpus_that_do_not_exist_are_refused(digits_task, monkeypatch):
    import gnsched.parallel as par

    def no_init(*a, **k):
        raise AssertionError("ray.init must not be called (it would count GPUs that are not there)")

    monkeypatch.setattr(par, "_local_cpus", lambda: 4)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", no_init)
    cfg = _cfg(workers=2)
    cfg.parallel = ParallelConfig(workers=2, gpus_per_worker=1)
    with pytest.raises(GNSError, match="needs 2 GPUs, but this machine has 0"):
        train_agent(digits_task, cfg)
