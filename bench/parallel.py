"""Episodes per hour of agent training with 1 worker (in-process) vs N Ray workers, and
Ray's start-up overhead (issue 6: scale out).

Both runs use the same seeds and ``episodes_per_update = N``, so they must give the same
agent (checked and recorded); only the wall time may differ. Workers are single-threaded
(1 torch thread each), as is the in-process run.

Start-up is measured on its own: ``ray.init`` (local, N CPUs), then N actors until each has
imported gnsched and loaded the task's data (``EpisodeWorker``), i.e. what a Ray run pays
before its first episode.

    .venv/bin/python bench/parallel.py --data-dir ../shared/data/fashion-mnist --epochs 2 --episodes 8

Writes bench/results/parallel/{results.json,README.md}. Takes ~3 min on 2 cores.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from gnsched.config import ParallelConfig, PPOConfig, TrainConfig
from gnsched.parallel import EpisodeWorker
from gnsched.tasks import get_task
from gnsched.train import train_agent


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _train(task, cfg: TrainConfig, factory) -> tuple[float, object, list]:
    t0 = time.perf_counter()
    agent, logs = train_agent(task, cfg, task_factory=factory)
    return time.perf_counter() - t0, agent, logs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="fashion-mnist-mlp")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--ppo-epochs", type=int, default=20)
    p.add_argument("--out", type=Path, default=Path("bench/results/parallel"))
    args = p.parse_args()
    import ray

    torch.set_num_threads(1)
    data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else None
    factory = functools.partial(get_task, args.task, data_dir)
    task = factory()

    def cfg(workers: int) -> TrainConfig:
        return TrainConfig(episodes=args.episodes, epochs=args.epochs, seed=0,
                           ppo=PPOConfig(epochs=args.ppo_epochs, episodes_per_update=args.workers),
                           parallel=ParallelConfig(workers=workers))

    load_before = _load()
    # 1. in-process
    t1, agent1, logs1 = _train(task, cfg(1), factory)
    print(f"1 worker: {t1:.1f} s for {args.episodes} episodes", flush=True)

    # 2. Ray start-up: init, then actors ready (imports + task data loaded)
    t0 = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
    t_init = time.perf_counter() - t0
    from gnsched.agent import GNSAgent

    probe = GNSAgent(cfg(1).agent)
    t0 = time.perf_counter()
    actor = ray.remote(num_cpus=1)(EpisodeWorker)
    actors = [actor.remote(factory, cfg(1), probe.cfg, probe.in_dim, 1) for _ in range(args.workers)]
    ray.get([a.where.remote() for a in actors])
    t_actors = time.perf_counter() - t0
    for a in actors:
        ray.kill(a)
    print(f"ray.init {t_init:.1f} s, {args.workers} actors ready {t_actors:.1f} s", flush=True)

    # 3. N Ray workers (fresh actors: their start-up is inside this wall time)
    tn, agentn, logsn = _train(task, cfg(args.workers), factory)
    ray.shutdown()
    print(f"{args.workers} workers: {tn:.1f} s", flush=True)
    load_after = _load()

    same = all(torch.equal(a, b) for a, b in zip(agent1.state_dict().values(), agentn.state_dict().values()))
    eph1, ephn = 3600 * args.episodes / t1, 3600 * args.episodes / tn
    steady = tn - t_actors  # the N-worker run without its actors' start-up
    results = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "machine": {"cpus": os.cpu_count(), "cpu": _cpu_model(), "python": platform.python_version(),
                    "torch": torch.__version__, "ray": ray.__version__, "torch_threads_per_worker": 1},
        "load_average_before": load_before, "load_average_after": load_after,
        "task": args.task, "epochs": args.epochs, "episodes": args.episodes, "workers": args.workers,
        "episodes_per_update": args.workers, "ppo_epochs": args.ppo_epochs,
        "seconds_1_worker": t1, f"seconds_{args.workers}_workers": tn,
        "episodes_per_hour_1_worker": eph1, f"episodes_per_hour_{args.workers}_workers": ephn,
        "speedup": t1 / tn, "speedup_without_actor_startup": t1 / steady,
        "ray_init_seconds": t_init, "actor_startup_seconds": t_actors,
        "mean_episode_seconds_1_worker": sum(l.seconds for l in logs1) / len(logs1),
        f"mean_episode_seconds_{args.workers}_workers": sum(l.seconds for l in logsn) / len(logsn),
        "same_agent": same,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    n = args.workers
    (args.out / "README.md").write_text(f"""# Parallel episode collection (Ray)

Command: `{results['command']}`

Machine: {os.cpu_count()} CPU cores ({results['machine']['cpu']}), shared with other jobs; Python
{results['machine']['python']}, torch {torch.__version__}, Ray {ray.__version__}; 1 torch thread per
worker. Load average (1, 5, 15 min) before: {load_before}, after: {load_after}.

{args.task}, {args.epochs} epochs per episode, {args.episodes} episodes, {n} episodes per PPO update
({args.ppo_epochs} PPO epochs), seed 0.

| | wall time (s) | episodes / hour | mean episode (s) |
| --- | --- | --- | --- |
| 1 worker (in-process) | {t1:.1f} | {eph1:.0f} | {results['mean_episode_seconds_1_worker']:.1f} |
| {n} Ray workers | {tn:.1f} | {ephn:.0f} | {results[f'mean_episode_seconds_{n}_workers']:.1f} |

Speed-up {n} vs 1 workers: **{t1 / tn:.2f}x** end to end (including the actors' start-up and
data loading), {t1 / steady:.2f}x without the actors' start-up.

Ray start-up: `ray.init(num_cpus={n})` {t_init:.1f} s; {n} actors ready (process start, imports,
task data loaded) {t_actors:.1f} s.

Same agent from both runs (bit-identical weights): {same}.
""")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
