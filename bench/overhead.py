"""Overhead of GNSScheduler: wall time of a training run with it vs the same run with
ConstantLR, in one process, alternating, several repeats (issue: drop-in use, speed).

Two figures: the ratio of median end-to-end wall times (noisy on a shared 2-core machine:
runs vary by ±10 %), and the ratio measured inside each run, (total) / (total - time spent
in scheduler.step() and in its optimizer pre-step hook), which is what the scheduler adds
to that very run.

    .venv/bin/python bench/overhead.py --data-dir ../shared/data/fashion-mnist --epochs 2 --repeats 3
    .venv/bin/python bench/overhead.py --task glue-rte --data-dir ../shared/data/glue_data \
        --steps 60 --repeats 1 --out bench/results/overhead-minilm

Any registered task: its model, optimizer (e.g. AdamW in two param groups for GLUE), batch
size, loss and default K, through the task's ``batch`` / ``compute_loss`` hooks.
Writes ``--out``/{results.json,README.md}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from gnsched.agent import GNSAgent
from gnsched.scheduler import GNSScheduler
from gnsched.tasks import get_task


HOOK_SECONDS = [0.0, 0.0]  # wall, CPU (this thread)


def _timed(method):
    def wrapper(self, *args, **kwargs):
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return method(self, *args, **kwargs)
        finally:
            HOOK_SECONDS[0] += time.perf_counter() - t0
            HOOK_SECONDS[1] += time.thread_time() - c0
    return wrapper


# The gradient statistics are taken in the optimizer's pre-step hook: count that time too.
GNSScheduler._before_optimizer_step = _timed(GNSScheduler._before_optimizer_step)


def train(task, steps: int, scheduler: str, agent: GNSAgent, interval: int) -> tuple[float, float, int, float, float]:
    """One run; returns (wall s, wall s in the scheduler, decisions, CPU s, CPU s in the scheduler)."""
    torch.manual_seed(0)
    model = task.make_model()
    opt = task.make_optimizer(model, task.default_lr)
    if scheduler == "gns":
        sched = GNSScheduler(opt, model, agent, interval=interval, total_steps=steps,
                             example_input=task.example_input())
    else:
        sched = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
    g = torch.Generator().manual_seed(0)
    n = task.num_train()
    order = torch.randperm(n, generator=g)
    t0, c0 = time.perf_counter(), time.thread_time()
    in_sched = cpu_sched = 0.0
    HOOK_SECONDS[:] = [0.0, 0.0]
    pos = 0
    for _ in range(steps):
        if pos >= n:
            order, pos = torch.randperm(n, generator=g), 0
        idx = order[pos:pos + task.batch_size]
        pos += task.batch_size
        loss = task.compute_loss(model, task.batch(idx))
        opt.zero_grad()
        loss.backward()
        opt.step()
        ts, cs = time.perf_counter(), time.thread_time()
        sched.step(loss) if scheduler == "gns" else sched.step()
        in_sched += time.perf_counter() - ts
        cpu_sched += time.thread_time() - cs
    return (time.perf_counter() - t0, in_sched + HOOK_SECONDS[0], getattr(sched, "decisions", 0),
            time.thread_time() - c0, cpu_sched + HOOK_SECONDS[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="fashion-mnist-mlp")
    ap.add_argument("--data-dir", default="../shared/data/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=0, help="optimizer steps per run (0: --epochs epochs)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--agent", default="fashion-mnist")
    ap.add_argument("--out", default="bench/results/overhead")
    args = ap.parse_args()
    torch.set_num_threads(1)
    task = get_task(args.task, args.data_dir)
    agent = GNSAgent.load(args.agent)
    steps = args.steps or args.epochs * task.steps_per_epoch()
    train(task, min(steps, task.steps_per_epoch(), 3 * task.interval), "constant", agent, task.interval)  # warm-up
    times: dict[str, list[float]] = {"constant": [], "gns": []}
    inner: dict[str, list[float]] = {"constant": [], "gns": []}
    inner_cpu: dict[str, list[float]] = {"constant": [], "gns": []}
    decisions = 0
    for _ in range(args.repeats):
        for name in ("constant", "gns"):
            secs, in_sched, d, cpu, cpu_sched = train(task, steps, name, agent, task.interval)
            times[name].append(secs)
            inner[name].append(secs / (secs - in_sched))
            inner_cpu[name].append(cpu / (cpu - cpu_sched))
            decisions = d or decisions
    ratio = statistics.median(times["gns"]) / statistics.median(times["constant"])
    inner_ratio = statistics.median(inner["gns"]) / statistics.median(inner["constant"])
    cpu_ratio = statistics.median(inner_cpu["gns"]) / statistics.median(inner_cpu["constant"])
    result = {"task": task.name, "epochs": args.epochs, "interval": task.interval, "decisions_per_run": decisions,
              "steps_per_run": steps, "threads": 1, "repeats": args.repeats,
              "seconds": times, "median_ratio_gns_over_constant": ratio,
              "in_run_ratio_gns": statistics.median(inner["gns"]),
              "in_run_ratio_constant": statistics.median(inner["constant"]),
              "in_run_ratio_gns_over_constant": inner_ratio,
              "cpu_in_run_ratio_gns": statistics.median(inner_cpu["gns"]),
              "cpu_in_run_ratio_constant": statistics.median(inner_cpu["constant"]),
              "cpu_in_run_ratio_gns_over_constant": cpu_ratio, "load_average": os.getloadavg(), "machine": platform.processor() or
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
        f"their ratio **{inner_ratio:.4f}**.\n\n"
        f"The same in CPU time of the training thread (immune to time slices lost to other processes; "
        f"load average during the run {', '.join(f'{v:.1f}' for v in result['load_average'])}): GNSScheduler "
        f"**{result['cpu_in_run_ratio_gns']:.4f}**, ConstantLR {result['cpu_in_run_ratio_constant']:.4f}; "
        f"their ratio **{cpu_ratio:.4f}**.\n")
    print(json.dumps({k: v for k, v in result.items() if "ratio" in k}, indent=1))


if __name__ == "__main__":
    main()
