"""Rendering the benchmark from its records (whatever exists: partial results render too).

Writes into the benchmark folder:

* ``results.json``: per task and method, test mean ± std over evaluation seeds, the tuning
  cost (optimizer steps of the target network and wall seconds), the chosen configuration
  and the tuning curve;
* ``results.md``: the table, like the paper's Tables 2, 3 and 20;
* ``lr.png`` (like Figure 3): learning-rate trajectory of every method (first seed);
* ``loss.png`` (like Figure 6): training loss per window, mean over seeds;
* ``tuning.png`` (like Figure 5): best validation metric found so far against tuning cost in
  optimizer steps (grid searches, CMA-ES evaluations, agent training episodes).
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from .bench import METHODS, RecordStore


def summarize(records: list[dict]) -> dict:
    """``{task: {method: row}}`` from the record files (see the module docstring)."""
    tuning = {(r["key"]["task"], r["key"]["method"]): r for r in records if r["key"]["kind"] == "tuning"}
    out: dict[str, dict] = {}
    for r in records:
        key = r["key"]
        if key["kind"] not in ("seed", "transfer"):
            continue
        row = out.setdefault(key["task"], {}).setdefault(key["method"], {
            "kind": key["kind"], "tuned_on": key["config"].get("tuned_on"), "choice": key["config"].get("choice"),
            "epochs": key["epochs"], "seeds": [], "test": [], "seconds": [], "runs": []})
        row["seeds"].append(key["seed"])
        row["test"].append(r["test"])
        row["seconds"].append(r["seconds"])
        row["runs"].append(r["run"])
    for task, methods in out.items():
        for method, row in methods.items():
            vals = [v for v in row["test"] if v is not None and math.isfinite(v)]
            row["test_mean"] = statistics.fmean(vals) if vals else float("nan")
            row["test_std"] = statistics.pstdev(vals) if len(vals) > 1 else 0.0
            row["seconds_per_run"] = statistics.fmean(row["seconds"])
            t = tuning.get((row["tuned_on"] or task, method))
            row["tuning"] = None if t is None else {k: t[k] for k in (
                "family", "best", "best_val", "best_so_far", "cum_steps", "cost_steps", "cost_seconds")} | {
                "runs": len(t["trials"])}
    # tuned but not yet evaluated: still show the tuning
    for (task, method), t in tuning.items():
        if method not in out.get(task, {}):
            out.setdefault(task, {})[method] = {"kind": "tuning-only", "test": [], "seeds": [], "runs": [],
                                                "test_mean": float("nan"), "test_std": 0.0, "seconds_per_run": 0.0,
                                                "choice": t["best"], "tuned_on": task, "epochs": None,
                                                "tuning": {k: t[k] for k in ("family", "best", "best_val", "best_so_far",
                                                                             "cum_steps", "cost_steps", "cost_seconds")}
                                                | {"runs": len(t["trials"])}}
    order = {m: i for i, m in enumerate(METHODS)}
    return {task: dict(sorted(methods.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
            for task, methods in sorted(out.items())}


def _fmt_choice(choice) -> str:
    if isinstance(choice, dict) and "agent" in choice:
        return f"agent, {choice['agent'].get('episodes')} episodes"
    if isinstance(choice, dict):
        return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in choice.items())
    return str(choice)


def markdown(summary: dict) -> str:
    lines = []
    for task, methods in summary.items():
        first = next(iter(methods.values()))
        transfer = first.get("kind") == "transfer"
        title = f"### {task}" + (f" (transfer: choices tuned on {first['tuned_on']})" if transfer else "")
        lines += [title, "", "| method | test accuracy (%) | seeds | tuning runs | tuning cost (steps) | "
                  "tuning cost (s) | chosen |", "| --- | --- | --- | --- | --- | --- | --- |"]
        best = max((r["test_mean"] for r in methods.values() if math.isfinite(r["test_mean"])), default=None)
        for method, r in methods.items():
            acc = "—" if not r["test"] else f"{100 * r['test_mean']:.2f} ± {100 * r['test_std']:.2f}"
            if best is not None and r["test"] and r["test_mean"] == best:
                acc = f"**{acc}**"
            t = r["tuning"]
            cost = ("—", "—", "—") if t is None else (str(t["runs"]), f"{t['cost_steps']:,}", f"{t['cost_seconds']:.1f}")
            choice = _fmt_choice(r["choice"] if t is None or t["family"] == "agent" else t["best"])
            lines.append(f"| {method} | {acc} | {len(r['test'])} | {cost[0]} | {cost[1]} | {cost[2]} | {choice} |")
        lines.append("")
    return "\n".join(lines)


def _subplots(n: int, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(n, 1), figsize=(5.5 * max(n, 1), 4), squeeze=False)
    fig.suptitle(title)
    return plt, fig, axes[0]


def _save(plt, fig, axes, path: Path) -> None:
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _style(i: int) -> dict:
    """Line style of the i-th method: tab10's colours, dashed after the tenth, so that no two
    of up to 20 methods look alike."""
    return {"color": f"C{i % 10}", "ls": "-" if i < 10 else "--"}


def plot_lr(summary: dict, path: Path) -> None:
    plt, fig, axes = _subplots(len(summary), "learning-rate trajectories (first evaluation seed)")
    for ax, (task, methods) in zip(axes, summary.items()):
        for i, (method, r) in enumerate(methods.items()):
            if r["runs"]:
                run = r["runs"][r["seeds"].index(min(r["seeds"]))]
                ax.step(run["steps"], run["lrs"], where="pre", label=method, alpha=0.85, **_style(i))
        ax.set(yscale="log", xlabel="optimizer step", ylabel="learning rate", title=task)
    _save(plt, fig, axes, path)


def plot_loss(summary: dict, path: Path) -> None:
    plt, fig, axes = _subplots(len(summary), "training loss (window mean, mean over seeds)")
    for ax, (task, methods) in zip(axes, summary.items()):
        for i, (method, r) in enumerate(methods.items()):
            runs = [run for run in r["runs"] if run["train_losses"]]
            if not runs:
                continue
            n = min(len(run["train_losses"]) for run in runs)
            mean = [statistics.fmean(run["train_losses"][j] for run in runs) for j in range(n)]
            ax.plot(runs[0]["steps"][:n], mean, label=method, alpha=0.85, **_style(i))
        ax.set(yscale="log", xlabel="optimizer step", ylabel="training loss", title=task)
    _save(plt, fig, axes, path)


def plot_tuning(summary: dict, path: Path) -> None:
    tuned = {task: {m: r for m, r in methods.items() if r["tuning"] and r.get("kind") != "transfer"}
             for task, methods in summary.items()}
    tuned = {t: m for t, m in tuned.items() if m}
    plt, fig, axes = _subplots(len(tuned), "tuning cost vs best validation metric so far")
    styles = {"grid": "-", "cma-es": "--", "agent": "-"}
    for ax, (task, methods) in zip(axes, tuned.items()):
        for method, r in methods.items():
            t = r["tuning"]
            ys = [100 * v if math.isfinite(v) else float("nan") for v in t["best_so_far"]]
            ax.plot(t["cum_steps"], ys, styles.get(t["family"], "-"), marker="." if t["family"] != "agent" else "o",
                    ms=3, lw=2.2 if t["family"] == "agent" else 1.2, label=f"{method} ({t['family']}, {t['runs']})")
        ax.set(xlabel="tuning cost (optimizer steps of the target network)", ylabel="best validation accuracy (%)",
               title=task)
        finals = [100 * r["tuning"]["best_so_far"][-1] for r in methods.values()
                  if r["tuning"]["best_so_far"] and math.isfinite(r["tuning"]["best_so_far"][-1])]
        if finals:  # every method's final best in view; early very bad trials may be cut off
            ax.set_ylim(min(finals) - 1.0, max(finals) + 0.5)
    _save(plt, fig, axes, path)


def render(out: str | Path) -> dict:
    """Render whatever records exist under ``out``; returns the summary."""
    out = Path(out)
    summary = summarize(RecordStore(out).all())
    public = {task: {m: {k: v for k, v in r.items() if k != "runs"} for m, r in methods.items()}
              for task, methods in summary.items()}
    head, prof = "", None
    if (out / "profile.json").is_file():
        prof = json.loads((out / "profile.json").read_text())
        head = (f"Profile `{prof['name']}`: epochs {prof['epochs']}, {prof['seeds']} evaluation seeds, "
                f"CMA-ES {prof['cma_budget']} evaluations, GNS {prof['gns_episodes']} training episodes, "
                f"grid overrides {prof['grid'] or 'none (the paper’s grids)'}. Test accuracy: mean ± std over "
                "evaluation seeds; tuning cost: optimizer steps of the target network and wall seconds of all "
                "tuning runs.\n\n")
    (out / "results.json").write_text(json.dumps({"profile": prof, "tasks": public}, indent=2, default=float))
    (out / "results.md").write_text(head + markdown(summary))
    if summary:
        plot_lr(summary, out / "lr.png")
        plot_loss(summary, out / "loss.png")
        plot_tuning(summary, out / "tuning.png")
    return summary
