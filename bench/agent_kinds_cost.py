"""Training cost of the agent kinds (GNS, FRS, SRLS, CSS): wall seconds per episode,
validations per episode and agent parameters, same task, seeds and episodes for each
(the paper's §5.5 running-time comparison: validating at every decision costs time).

    .venv/bin/python bench/agent_kinds_cost.py --task fashion-mnist-mlp \
        --data-dir ../shared/data/fashion-mnist --episodes 2

Writes bench/results/agent-kinds-cost/{results.json,README.md}. Quality is not measured
here (a few episodes say nothing about it): that is the benchmark's job.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path

import torch

from gnsched.agent_kinds import AGENT_KINDS
from gnsched.config import TrainConfig
from gnsched.tasks import get_task
from gnsched.train import train_agent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="fashion-mnist-mlp")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "agent-kinds-cost"))
    args = ap.parse_args()
    task = get_task(args.task, args.data_dir)
    torch.set_num_threads(task.threads)
    rows = {}
    for kind in AGENT_KINDS:
        agent, logs = train_agent(task, TrainConfig(episodes=args.episodes), kind=kind)
        rows[kind] = {"seconds_per_episode": statistics.fmean(l.seconds for l in logs),
                      "validations_per_episode": statistics.fmean(l.validations for l in logs),
                      "decisions_per_episode": statistics.fmean(l.decisions for l in logs),
                      "parameters": sum(p.numel() for p in agent.parameters()),
                      "val_prob": agent.recipe["val_prob"], "episodes": [vars(l) for l in logs]}
        print(kind, {k: v for k, v in rows[kind].items() if k != "episodes"}, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s), " \
              f"torch {torch.__version__}"
    (out / "results.json").write_text(json.dumps({"task": task.name, "episodes": args.episodes,
                                                  "machine": machine, "kinds": rows}, indent=2, default=float))
    lines = [f"# Training cost per agent kind: {task.name}", "",
             "```bash", f".venv/bin/python bench/agent_kinds_cost.py --task {task.name}"
             + (f" --data-dir {args.data_dir}" if args.data_dir else "") + f" --episodes {args.episodes}", "```",
             "", f"Machine: {machine}; task defaults (epochs, K); {args.episodes} episodes per kind, seeds 0.., "
             "the same initial learning rates for every kind.", "",
             "| kind | p | s / episode | validations / episode | decisions / episode | agent parameters |",
             "| --- | --- | --- | --- | --- | --- |"]
    for kind, r in rows.items():
        lines.append(f"| {kind} | {r['val_prob']:g} | {r['seconds_per_episode']:.1f} | "
                     f"{r['validations_per_episode']:.1f} | {r['decisions_per_episode']:.0f} | {r['parameters']} |")
    (out / "README.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
