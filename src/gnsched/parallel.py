"""Parallel episode collection for agent training (Algorithm 1, scaled out with Ray).

An *episode* is one full training run of the target network under the current policy.
:func:`gnsched.train.train_agent` asks a collector for a batch of episodes (the
``episodes_per_update`` episodes of one PPO update), all played with the same agent
weights, and makes the update on the driver.

* :class:`LocalCollector` plays them one after another in this process.
* :class:`RayCollector` plays them on Ray actors, one episode at a time per actor. Each
  actor builds the task once (``task_factory()``, e.g. ``get_task(name, data_dir)``: the
  data are loaded once per worker, not per episode), receives the agent's ``state_dict``
  once per batch (``ray.put``) and returns plain tensors and floats.

Determinism: every random choice of episode ``i`` (the initial learning rate ``alpha_0``,
model initialisation and minibatch order, and the policy's action noise) comes from
:func:`episode_seeds` ``(run seed, i)`` alone, and the PPO update's minibatch order from
a generator that lives on the driver. So the trained agent depends on the seeds and on
``episodes_per_update``, never on the number of workers or the order in which they finish.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .agent import GNSAgent
from .config import TrainConfig
from .encoder import BlockStructure
from .env import SchedulingEnv
from .errors import GNSError
from .ppo import Rollout
from .tasks import Task

log = logging.getLogger("gnsched")


def episode_seeds(run_seed: int, episode: int) -> tuple[int, int]:
    """``(environment seed, action-noise seed)`` of episode ``episode`` of a run.

    The environment seed (``alpha_0``, initialisation, data order) keeps the formula of
    earlier versions; the noise seed is drawn from ``numpy.random.SeedSequence((seed, i))``.
    """
    noise = int(np.random.SeedSequence([run_seed, episode]).generate_state(1, np.uint64)[0] >> 1)
    return run_seed * 100_003 + episode, noise


@dataclass
class EpisodeResult:
    """One played episode as plain data (what a worker sends back)."""

    episode: int
    obs: torch.Tensor                      # [L, N, F]
    actions: list[float]
    logprobs: list[float]
    values: list[float]
    rewards: list[float]
    lr0: float
    final_val: float
    validations: int
    seconds: float
    diverged: str | None = None
    rollbacks: int = 0
    extra: dict = field(default_factory=dict)

    def rollout(self, structure: BlockStructure) -> Rollout:
        n = len(self.actions)
        return Rollout(structure, list(self.obs.unbind(0)) if n else [], list(self.actions), list(self.logprobs),
                       list(self.values), list(self.rewards), [0.0] * (n - 1) + [1.0] if n else [])


def play_episode(env: SchedulingEnv, agent: GNSAgent, run_seed: int, episode: int) -> EpisodeResult:
    """Play episode ``episode`` with the stochastic policy (seeds from :func:`episode_seeds`)."""
    from .train import collect_episode

    t0 = time.perf_counter()
    env_seed, noise_seed = episode_seeds(run_seed, episode)
    rollout, info = collect_episode(env, agent, seed=env_seed, generator=torch.Generator().manual_seed(noise_seed))
    measured = [m for m in info["metrics"] if m is not None]
    obs = torch.stack(rollout.obs) if rollout.obs else torch.empty(0)
    return EpisodeResult(episode, obs, list(rollout.actions), list(rollout.logprobs), list(rollout.values),
                         list(rollout.rewards), env.record.extra["lr0"],
                         env.record.val[-1][1],  # last real measurement (a divergence penalty is not one)
                         len(measured), time.perf_counter() - t0, info.get("diverged"), info.get("rollbacks", 0))


class EpisodeWorker:
    """Plays episodes of one task; in-process or as a Ray actor (then with its own agent copy)."""

    def __init__(self, task: SchedulingEnv | Callable[[], Task], cfg: TrainConfig, agent: GNSAgent,
                 threads: int | None = None):
        """``task``: the environment to play in, or a factory of the task to build it from;
        ``agent``: a template of the agent (any kind), copied; weights arrive with :meth:`play`."""
        if threads:
            torch.set_num_threads(threads)
        self.cfg = cfg
        self.env = task if isinstance(task, SchedulingEnv) else SchedulingEnv(task(), cfg.env, cfg.epochs, seed=cfg.seed)
        self.agent = copy.deepcopy(agent).eval()

    def play(self, weights: dict | None, episodes: list[int]) -> list[EpisodeResult]:
        """Play ``episodes`` with ``weights`` (``None``: keep the current agent)."""
        if weights is not None:
            self.agent.load_state_dict(weights)
            self.agent.eval()
        return [play_episode(self.env, self.agent, self.cfg.seed, ep) for ep in episodes]

    def where(self) -> str:
        """The gnsched package this worker imported (to check the environment)."""
        import gnsched

        return gnsched.__file__


class LocalCollector:
    """Episodes one after another in this process, acting with the driver's own agent."""

    def __init__(self, env: SchedulingEnv, cfg: TrainConfig, agent: GNSAgent):
        self.worker = EpisodeWorker(env, cfg, agent)
        self.worker.agent = agent

    def collect(self, agent: GNSAgent, episodes: list[int]) -> list[EpisodeResult]:
        self.worker.agent = agent
        return self.worker.play(None, episodes)

    def close(self) -> None:
        pass


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


class RayCollector:
    """Episodes on ``cfg.parallel.workers`` Ray actors (1 CPU, ``gpus_per_worker`` GPUs each).

    Joins ``cfg.parallel.address`` when given, reuses an already initialised Ray, or else
    starts a local Ray instance with ``workers`` CPUs (and shuts it down in :meth:`close`).
    """

    def __init__(self, env: SchedulingEnv, cfg: TrainConfig, agent: GNSAgent, task_factory: Callable[[], Task]):
        import ray
        from ray.util import ActorPool

        par = cfg.parallel
        self._started = False
        if not ray.is_initialized():
            kw = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            try:
                if par.address:
                    ray.init(address=par.address, **kw)
                else:
                    ray.init(num_cpus=par.workers, num_gpus=math.ceil(par.gpus_per_worker * par.workers) or None,
                             **kw)
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise GNSError(f"cannot start or join Ray at {par.address or 'a local instance'}: {e}") from None
            self._started = True
        have = ray.cluster_resources()
        for res, need in (("CPU", par.workers), ("GPU", par.gpus_per_worker * par.workers)):
            if need and have.get(res, 0.0) < need:
                self.close()
                raise GNSError(f"{par.workers} workers need {need:g} {res}s but the Ray cluster has "
                               f"{have.get(res, 0.0):g}; lower --workers or --gpus-per-worker.")
        actor = ray.remote(num_cpus=1, num_gpus=par.gpus_per_worker or 0)(EpisodeWorker)
        threads = env.task.threads
        self.actors = [actor.remote(task_factory, cfg, agent, threads) for _ in range(par.workers)]
        self.pool = ActorPool(self.actors)
        self._ray = ray

    def collect(self, agent: GNSAgent, episodes: list[int]) -> list[EpisodeResult]:
        from ray.exceptions import RayActorError, RayTaskError

        weights = self._ray.put({k: v.detach().cpu() for k, v in agent.state_dict().items()})
        try:
            results = list(self.pool.map(lambda a, ep: a.play.remote(weights, [ep]), episodes))
        except RayTaskError as e:
            if isinstance(getattr(e, "cause", None), GNSError):  # a user error met on a worker
                raise GNSError(str(e.cause)) from None
            raise
        except RayActorError as e:
            raise GNSError(f"a Ray worker died ({type(e).__name__}); the last checkpoint (if any) is kept, "
                           "continue with gnsched train --resume.") from None
        return [r for batch in results for r in batch]  # map keeps the episodes' order

    def close(self) -> None:
        for a in getattr(self, "actors", []):
            self._ray.kill(a)
        self.actors = []
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


def _local_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a ``host:port`` (or ``ray://host:port``) that accepts no connection:
    ``ray.init`` would retry it for minutes, printing only log lines."""
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit() or not host:  # "auto", "local", ...: Ray's own errors are clear
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, OverflowError, ValueError) as e:
        raise GNSError(f"cannot reach the Ray cluster at --address {address} "
                       f"({getattr(e, 'strerror', None) or e}); give the head node's host:port, or auto.") from None


def make_collector(env: SchedulingEnv, cfg: TrainConfig, agent: GNSAgent,
                   task_factory: Callable[[], Task] | None = None):
    """The collector for ``cfg.parallel``: Ray actors for ``workers > 1`` when Ray is
    installed, else in-process (with a warning when workers were asked for)."""
    workers = cfg.parallel.workers
    if workers == 1 and not cfg.parallel.address:
        return LocalCollector(env, cfg, agent)
    if not ray_available():
        log.warning("Ray is not installed (pip install gnsched[ray]); running the %d workers' episodes "
                    "in-process, one after another", workers)
        return LocalCollector(env, cfg, agent)
    par = cfg.parallel
    if par.address:
        _check_reachable(par.address)
    else:
        import ray

        cpus = _local_cpus()
        if not ray.is_initialized() and workers > cpus:
            raise GNSError(f"--workers {workers} needs {workers} CPUs, but this machine has {cpus}: a local Ray "
                           f"instance runs one worker per CPU. Lower --workers (--episodes-per-update keeps the PPO "
                           "batch, and the result does not depend on the worker count) or join a cluster with "
                           "--address.")
        # ray.init(num_gpus=n) would believe in n GPUs that are not there: check them here.
        need, have = par.gpus_per_worker * workers, torch.cuda.device_count()
        if not ray.is_initialized() and need > have:
            raise GNSError(f"--gpus-per-worker {par.gpus_per_worker:g} with {workers} workers needs {need:g} GPUs, "
                           f"but this machine has {have}; lower --gpus-per-worker or join a cluster with --address.")
    task = env.task
    if task_factory is None:
        from .tasks import TASKS, TASKS_WITH_FILES, get_task

        if task.name not in TASKS or task.name in TASKS_WITH_FILES:
            raise GNSError(f"parallel workers rebuild the task from a factory; pass task_factory= for task "
                           f"{task.name!r} (e.g. functools.partial(get_task, name, data_dir)).")
        import functools

        task_factory = functools.partial(get_task, task.name)
    return RayCollector(env, cfg, agent, task_factory)


__all__ = ["EpisodeResult", "EpisodeWorker", "LocalCollector", "RayCollector", "episode_seeds", "make_collector",
           "play_episode", "ray_available"]
