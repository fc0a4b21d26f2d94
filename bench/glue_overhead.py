"""Cost of GLUE fine-tuning on MiniLM and of the GNS scheduler itself (issue 4, Speed).

Three measurements at a GLUE profile (default ``cpu``):

1. seconds per optimizer step of each task (after one warm-up step);
2. on one task, the same run (same seed, data order and model) trained ``--windows``
   windows of K steps twice, alternating: with a constant learning rate, and with the GNS
   decision loop after every window (node features + graph encoder + agent + action,
   exactly what :class:`~gnsched.env.SchedulingEnv` does between windows, timed apart).
   Reported: the scheduler's seconds per decision, and its cost relative to training,
   ``in-run ratio = total / (total - scheduler time)``, and end-to-end ratio of the two runs;
3. seconds of one validation pass, and of one episode: measured with ``--episode``,
   otherwise derived as ``T × s/step + validations × s/validation + scheduler``, with the
   expected ``2 + p (L - 2)`` validations of an episode.

    PYTHONPATH=src .venv/bin/python bench/glue_overhead.py --data-dir ../shared/data/glue_data

Writes ``--out`` (default bench/results/glue-overhead/) README.md and results.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gnsched.agent import GNSAgent
from gnsched.config import AgentConfig, EnvConfig
from gnsched.encoder import BlockStructure
from gnsched.env import SchedulingEnv, apply_action
from gnsched.features import NodeFeatures
from gnsched.glue_task import glue_task
from gnsched.graph import build_graph
from gnsched.target import TargetRun


def step_seconds(task, steps: int) -> float:
    run = TargetRun(task, task.default_lr, seed=0, epochs=task.epochs)
    run.train(1)  # warm-up
    t0 = time.perf_counter()
    run.train(steps)
    return (time.perf_counter() - t0) / steps


def timed_run(task, graph, agent, windows: int, gns: bool) -> dict:
    """Train ``windows`` windows of K steps; with ``gns`` decide after each window."""
    structure = BlockStructure.from_graph(graph)
    run = TargetRun(task, task.default_lr, seed=0, epochs=task.epochs)
    feats = NodeFeatures(run.model, graph)
    cfg = EnvConfig()
    train_s = sched_s = 0.0
    for w in range(windows):
        t0 = time.perf_counter()
        loss, _ = run.train(task.interval)
        t1 = time.perf_counter()
        train_s += t1 - t0
        if gns:
            x = torch.nan_to_num(feats(run.lr, loss, run.step_count / run.total_steps), nan=0.0)
            a, _, _ = agent.act(x, structure)
            apply_action(run.optimizer, float(np.clip(a, -0.5, 0.5)), cfg.lr_min, cfg.lr_max)
            sched_s += time.perf_counter() - t1
    return {"train_s": train_s, "sched_s": sched_s, "total_s": train_s + sched_s, "decisions": windows if gns else 0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="../shared/data/glue_data")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--task", default="RTE", help="task of the overhead and episode measurements")
    ap.add_argument("--step-tasks", default="RTE,MRPC,CoLA,SST-2")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per task (after one warm-up step)")
    ap.add_argument("--windows", type=int, default=5, help="windows of K steps in the overhead runs")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--episode", action="store_true", help="also time one real episode (SchedulingEnv)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench/results/glue-overhead")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    command = "PYTHONPATH=src python bench/glue_overhead.py " + " ".join(sys.argv[1:])
    res: dict = {"command": command, "profile": args.profile, "threads": args.threads, "torch": torch.__version__,
                 "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), "
                            f"{'cuda' if torch.cuda.is_available() else 'cpu'}", "step_seconds": {}}
    for name in args.step_tasks.split(","):
        t0 = time.perf_counter()
        task = glue_task(name, args.data_dir, args.profile)
        build = time.perf_counter() - t0
        res["step_seconds"][name] = {"seconds_per_step": step_seconds(task, args.steps), "batch_size": task.batch_size,
                                     "updates_T": task.epochs * task.steps_per_epoch(), "interval_K": task.interval,
                                     "task_build_s": build, "train_examples": task.num_train()}
        print(name, res["step_seconds"][name], flush=True)

    task = glue_task(args.task, args.data_dir, args.profile)
    torch.manual_seed(0)
    graph = build_graph(task.make_model(), task.example_input())
    torch.manual_seed(0)
    agent = GNSAgent(AgentConfig())  # default size; its cost does not depend on its weights
    agent.eval()
    runs: dict[str, list[dict]] = {"constant": [], "gns": []}
    for _ in range(args.repeats):
        for name in ("constant", "gns"):
            runs[name].append(timed_run(task, graph, agent, args.windows, name == "gns"))
            print(name, runs[name][-1], flush=True)
    per_decision = statistics.median(r["sched_s"] / r["decisions"] for r in runs["gns"])
    in_run = statistics.median(r["total_s"] / r["train_s"] for r in runs["gns"])
    end_to_end = statistics.median(r["total_s"] for r in runs["gns"]) / statistics.median(
        r["total_s"] for r in runs["constant"])
    sps = statistics.median(r["train_s"] for r in runs["constant"] + runs["gns"]) / (args.windows * task.interval)

    run = TargetRun(task, task.default_lr, seed=0, epochs=task.epochs)
    t0 = time.perf_counter()
    task.evaluate(run.model, "val")
    val_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    task.evaluate(run.model, "test")
    test_s = time.perf_counter() - t0
    total_steps = task.epochs * task.steps_per_epoch()
    windows = total_steps // task.interval
    p = EnvConfig().val_prob
    derived = total_steps * sps + (2 + p * (windows - 2)) * val_s + (windows - 1) * per_decision
    res["overhead"] = {
        "task": task.name, "interval_K": task.interval, "windows": args.windows, "repeats": args.repeats,
        "runs": runs, "seconds_per_step": sps, "scheduler_seconds_per_decision": per_decision,
        "scheduler_share_of_a_window": per_decision / (task.interval * sps),
        "in_run_ratio_gns": in_run, "end_to_end_ratio_gns_over_constant": end_to_end,
        "graph_nodes": graph.num_nodes, "validation_examples": len(task.splits.val_y),
        "validation_seconds": val_s, "test_examples": len(task.splits.test_y), "test_seconds": test_s}
    res["episode"] = {"task": task.name, "updates_T": total_steps, "decisions_L": windows, "val_prob": p,
                      "derived_seconds": derived}
    if args.episode:
        env = SchedulingEnv(task, EnvConfig(), seed=0, graph=graph)
        t0 = time.perf_counter()
        obs, _ = env.reset(seed=0, options={"lr": task.default_lr})
        done = False
        while not done:
            a, _, _ = agent.act(torch.as_tensor(obs), env.structure)
            obs, _, done, _, info = env.step([a])
        res["episode"]["measured_seconds"] = time.perf_counter() - t0
        res["episode"]["validations"] = sum(m is not None for m in info["metrics"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2))
    (out / "README.md").write_text(readme(res))
    print(json.dumps(res["overhead"] | {"runs": None}, indent=1), json.dumps(res["episode"]))


def readme(res: dict) -> str:
    o, e = res["overhead"], res["episode"]
    lines = [f"# GLUE fine-tuning cost and GNS overhead ({res['profile']} profile)", "",
             f"Command: `{res['command']}`", "", f"Machine: {res['machine']}, torch {res['torch']}; the 2 cores "
             "were shared with other jobs, so absolute times vary run to run.", "",
             "| task | batch | T | K | train examples | s / optimizer step | s to build the task (read + tokenise) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, s in res["step_seconds"].items():
        lines.append(f"| {name} | {s['batch_size']} | {s['updates_T']} | {s['interval_K']} | {s['train_examples']} | "
                     f"{s['seconds_per_step']:.2f} | {s['task_build_s']:.1f} |")
    lines += ["", f"## Scheduler overhead on {o['task']} (K = {o['interval_K']}, {o['windows']} windows, "
              f"{o['repeats']} repeat(s), graph of {o['graph_nodes']} nodes)", "",
              f"- seconds per optimizer step: {o['seconds_per_step']:.3f}",
              f"- scheduler (features + encoder + agent + action) per decision: "
              f"{1000 * o['scheduler_seconds_per_decision']:.1f} ms = "
              f"**{100 * o['scheduler_share_of_a_window']:.2f} %** of a window of K steps",
              f"- in-run ratio total / (total - scheduler): **{o['in_run_ratio_gns']:.4f}**",
              f"- end-to-end ratio GNS run / constant run: {o['end_to_end_ratio_gns_over_constant']:.3f} "
              "(includes machine noise)",
              f"- one validation pass ({o['validation_examples']} examples): {o['validation_seconds']:.1f} s; "
              f"test pass ({o['test_examples']}): {o['test_seconds']:.1f} s", "",
              f"## Episode ({e['task']}: T = {e['updates_T']}, L = {e['decisions_L']}, p = {e['val_prob']})", "",
              f"- derived (T × s/step + expected validations + scheduler): {e['derived_seconds']:.0f} s"]
    if "measured_seconds" in e:
        lines.append(f"- measured: {e['measured_seconds']:.0f} s ({e['validations']} validations)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
