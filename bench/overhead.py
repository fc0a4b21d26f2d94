"""Overhead of GNSScheduler: wall time of a training run with it vs the same run with
ConstantLR, in one process, alternating, several repeats (issue: drop-in use, speed).

Two figures: the ratio of median end-to-end wall times (noisy on a shared 2-core machine:
runs vary by ±10 %), and the ratio measured inside each run, (total) / (total - time spent
in scheduler.step() and in its optimizer pre-step hook), which is what the scheduler adds
to that very run.

    .venv/bin/python bench/overhead.py --data-dir ../shared/data/fashion-mnist --epochs 2 --repeats 3

Writes bench/results/overhead/{results.json,README.md}.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from gnsched.agent import GNSAgent
from gnsched.scheduler import GNSScheduler
from gnsched.tasks import get_task


HOOK_SECONDS = [0.0]


def _timed(method):
    def wrapper(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            HOOK_SECONDS[0] += time.perf_counter() - t0
    return wrapper


# The gradient statistics are taken in the optimizer's pre-step hook: count that time too.
GNSScheduler._before_optimizer_step = _timed(GNSScheduler._before_optimizer_step)


def train(task, epochs: int, scheduler: str, agent: GNSAgent, interval: int) -> tuple[float, float, int]:
    torch.manual_seed(0)
    model = task.make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = epochs * task.steps_per_epoch()
    if scheduler == "gns":
        sched = GNSScheduler(opt, model, agent, interval=interval, total_steps=steps,
                             example_input=task.example_input())
    else:
        sched = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
    g = torch.Generator().manual_seed(0)
    x_all, y_all = task.splits.train_x, task.splits.train_y
    t0 = time.perf_counter()
    in_sched = 0.0
    HOOK_SECONDS[0] = 0.0
    for _ in range(epochs):
        order = torch.randperm(len(y_all), generator=g)
        for i in range(0, len(order), task.batch_size):
            idx = order[i:i + task.batch_size]
            loss = nn.functional.cross_entropy(model(x_all[idx]), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            ts = time.perf_counter()
            sched.step(loss) if scheduler == "gns" else sched.step()
            in_sched += time.perf_counter() - ts
    return time.perf_counter() - t0, in_sched + HOOK_SECONDS[0], getattr(sched, "decisions", 0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="../shared/data/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--agent", default="fashion-mnist")
    ap.add_argument("--out", default="bench/results/overhead")
    args = ap.parse_args()
    torch.set_num_threads(1)
    task = get_task("fashion-mnist-mlp", args.data_dir)
    agent = GNSAgent.load(args.agent)
    train(task, 1, "constant", agent, task.interval)  # warm-up
    times: dict[str, list[float]] = {"constant": [], "gns": []}
    inner: dict[str, list[float]] = {"constant": [], "gns": []}
    decisions = 0
    for _ in range(args.repeats):
        for name in ("constant", "gns"):
            secs, in_sched, d = train(task, args.epochs, name, agent, task.interval)
            times[name].append(secs)
            inner[name].append(secs / (secs - in_sched))
            decisions = d or decisions
    ratio = statistics.median(times["gns"]) / statistics.median(times["constant"])
    inner_ratio = statistics.median(inner["gns"]) / statistics.median(inner["constant"])
    result = {"task": task.name, "epochs": args.epochs, "interval": task.interval, "decisions_per_run": decisions,
              "steps_per_run": args.epochs * task.steps_per_epoch(), "threads": 1, "repeats": args.repeats,
              "seconds": times, "median_ratio_gns_over_constant": ratio,
              "in_run_ratio_gns": statistics.median(inner["gns"]),
              "in_run_ratio_constant": statistics.median(inner["constant"]),
              "in_run_ratio_gns_over_constant": inner_ratio, "machine": platform.processor() or
              platform.machine(), "torch": torch.__version__, "command": "python bench/overhead.py " +
              " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items())}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    med = {k: statistics.median(v) for k, v in times.items()}
    (out / "README.md").write_text(
        f"# GNSScheduler overhead\n\nCommand: `{result['command']}` (1 torch thread, 2-core machine).\n\n"
        f"{task.name}: {result['steps_per_run']} optimizer steps per run, K = {task.interval} "
        f"({decisions} decisions), {args.repeats} alternating repeats.\n\n"
        "| scheduler | median seconds per run |\n| --- | --- |\n"
        f"| ConstantLR | {med['constant']:.2f} |\n| GNSScheduler | {med['gns']:.2f} |\n\n"
        f"End-to-end ratio of medians GNSScheduler / ConstantLR: {ratio:.3f} (run-to-run noise on this "
        "machine is about ±10 %, so this figure cannot resolve 1 %).\n\n"
        f"Measured inside each run, total / (total - time in scheduler.step() and its hooks): GNSScheduler "
        f"**{result['in_run_ratio_gns']:.4f}**, ConstantLR {result['in_run_ratio_constant']:.4f}; "
        f"their ratio **{inner_ratio:.4f}**.\n")
    print(json.dumps({k: v for k, v in result.items() if "ratio" in k}, indent=1))


if __name__ == "__main__":
    main()
