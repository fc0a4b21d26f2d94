"""Project the wall time of a benchmark profile from one measured run per task.

Usage (from the repository root; one torch thread, as the benchmark uses):

    PYTHONPATH=src python bench/time_profile.py --profile full --data-dir ../shared/data/fashion-mnist

Per task it times one cosine run (a tuning trial / seed run), one GNS training episode and one
application of the agent at the profile's epochs, counts the runs the profile makes
(grids, CMA-ES budget, agent episodes, evaluation seeds, transfer) and prints the projection
as markdown and JSON, from wall seconds and from CPU seconds of this (single-threaded)
process: on a shared machine the wall time depends on the other jobs, the CPU time is what a
dedicated core would take. The projection is only as good as the one measured run.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from gnsched.bench import METHODS, PROFILES
from gnsched.config import TrainConfig
from gnsched.tasks import get_task
from gnsched.train import apply_agent, run_schedule, train_agent
from gnsched.tuning import grid_configs


def count_runs(profile) -> dict:
    trials = sum(len(grid_configs(m, profile.grid)) for m in profile.methods if METHODS[m].family == "grid")
    trials += profile.cma_budget if "cma-es" in profile.methods else 0
    agents = sum(METHODS[m].family == "agent" for m in profile.methods)
    fixed = len(profile.methods) - agents
    return {"trials": trials, "episodes": agents * profile.gns_episodes, "fixed_seed_runs": fixed * profile.seeds,
            "agent_seed_runs": agents * profile.seeds}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="full")
    ap.add_argument("--data-dir", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    prof = PROFILES[args.profile]
    counts = count_runs(prof)
    out = {"profile": prof.name, "counts": counts, "tasks": {}}
    targets = {src: dst for src, dst in prof.transfer}
    print("| task | clock | epochs | steps | s / run | s / episode | s / apply | projected min |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in prof.tasks + tuple(targets.values()):
        task = get_task(name, args.data_dir)
        epochs = prof.epochs.get(name, task.epochs)
        cfg = TrainConfig(episodes=1, epochs=epochs)
        row = {"epochs": epochs, "steps": epochs * task.steps_per_epoch()}
        for clock, now in (("wall", time.perf_counter), ("cpu", time.process_time)):
            t0 = now()
            run_schedule(task, "cosine", task.default_lr, seed=0, epochs=epochs)
            t_run = now() - t0
            t0 = now()
            agent, _ = train_agent(task, cfg)
            t_ep = now() - t0
            t0 = now()
            apply_agent(agent, task, cfg, seed=10_000)
            t_apply = now() - t0
            if name in prof.tasks:
                total = (counts["trials"] + counts["fixed_seed_runs"]) * t_run + \
                    counts["episodes"] * t_ep + counts["agent_seed_runs"] * t_apply
            else:  # a transfer target: only the evaluation seeds run on it
                total = counts["fixed_seed_runs"] * t_run + counts["agent_seed_runs"] * t_apply
            row[clock] = {"run_s": t_run, "episode_s": t_ep, "apply_s": t_apply, "projected_s": total}
            print(f"| {name} | {clock} | {epochs} | {row['steps']} | {t_run:.1f} | {t_ep:.1f} | {t_apply:.1f} | "
                  f"{total / 60:.0f} |", flush=True)
        out["tasks"][name] = row
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
