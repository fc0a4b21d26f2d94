"""Command-line interface: ``gnsched demo | train | run | graph``.

Options map one to one onto the fields of :mod:`gnsched.config`. Errors in user input
print one sentence on stderr and exit with code 2; an output folder is written under a
temporary name and renamed only when complete, so a failed run leaves nothing behind.
"""
from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import Optional

import typer

from .config import AgentConfig, EnvConfig, ParallelConfig, PPOConfig, TrainConfig
from .errors import GNSError
from .output import MARKER, atomic_output, check_output, partial_dir, promote

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="gnsched: learn a learning-rate schedule with a graph network (GNS, ICLR 2022).")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _config(episodes: int, epochs: Optional[int], seed: int, interval: Optional[int], val_prob: float,
            lr_min: float, lr_max: float, encoder: str, sigma: float, ppo_epochs: int, candidates: int,
            sample: bool) -> TrainConfig:
    cfg = TrainConfig(episodes=episodes, epochs=epochs, seed=seed, candidates=candidates, deterministic=not sample,
                      env=EnvConfig(interval=interval, val_prob=val_prob, lr_min=lr_min, lr_max=lr_max),
                      agent=AgentConfig(encoder=encoder, sigma=sigma), ppo=PPOConfig(epochs=ppo_epochs))
    cfg.validate()
    return cfg


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="ep", file=sys.stderr, dynamic_ncols=True)


LR_RANGE = (1e-12, 1e3)


def _task(name: str, data_dir: Optional[Path]):
    from .tasks import TASKS, TASKS_WITH_FILES, get_task

    if data_dir is not None and name in TASKS and name not in TASKS_WITH_FILES:
        typer.echo(f"note: task {name} uses embedded data; --data-dir is ignored.", err=True)
    return get_task(name, data_dir)


def _set_threads(task, threads: int) -> None:
    import torch

    if not 0 <= threads <= 1024:
        raise GNSError(f"threads must lie in 0..1024 (0: the task's default), got {threads}.")
    torch.set_num_threads(threads or task.threads)


_THREADS = typer.Option(0, help="torch threads (0: the task's default, 1 for the small MLP tasks)")


def _writer(tensorboard: Optional[Path]):
    if tensorboard is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise GNSError("--tensorboard needs the tensorboard package (pip install gnsched[tb]).") from None
    return SummaryWriter(str(tensorboard))


def _train(task, cfg: TrainConfig, quiet: bool = False, tensorboard: Optional[Path] = None, done: int = 0,
           kind: str = "gns", **kw):
    from .train import train_agent

    bar = None if quiet else _progress(cfg.episodes, f"training {kind.upper()} on {task.name}")
    if bar is not None and done:
        bar.update(done)

    def on_episode(log):
        if bar is not None:
            bar.update(1)
            bar.set_postfix(val=f"{log.final_val:.4f}", ret=f"{log.episode_return:.1f}", lr0=f"{log.lr0:.1e}")

    writer = _writer(tensorboard)
    agent, logs = train_agent(task, cfg, on_episode=on_episode, writer=writer, kind=kind, **kw)
    if writer is not None:
        writer.close()
    if bar is not None:
        bar.close()
    return agent, logs


def _compare(task, agents: dict, cfg: TrainConfig, schedules: list[str], lr: float, seeds: int, seed0: int,
             quiet: bool = False):
    from .train import apply_agent, run_schedule

    records = []
    jobs = [(s, k) for s in schedules for k in range(seeds)]
    bar = None if quiet else _progress(len(jobs), "evaluating schedules")
    for sched, k in jobs:
        seed = seed0 + k
        if sched in agents:  # a learned schedule: its agent
            records.append(apply_agent(agents[sched], task, cfg, seed=seed))
        else:
            records.append(run_schedule(task, sched, lr, seed=seed, epochs=cfg.epochs))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return records


def _summary(records) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name in dict.fromkeys(r.name for r in records):
        vals = [r.test_metric for r in records if r.name == name]
        secs = [r.seconds for r in records if r.name == name]
        out[name] = {"test_mean": statistics.fmean(vals), "test_std": statistics.pstdev(vals) if len(vals) > 1 else 0.0,
                     "runs": len(vals), "seconds_per_run": statistics.fmean(secs),
                     "diverged": sum(r.diverged for r in records if r.name == name)}
    return out


def _print_table(task, summary: dict[str, dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{task.name}: test {task.metric} (mean ± std over seeds)")
    for col in ("schedule", f"test {task.metric} (%)", "runs", "diverged", "s / run"):
        table.add_column(col, justify="right" if col != "schedule" else "left")
    for name, s in summary.items():
        table.add_row(name, f"{100 * s['test_mean']:.2f} ± {100 * s['test_std']:.2f}", str(s["runs"]),
                      str(s["diverged"]), f"{s['seconds_per_run']:.1f}")
    Console().print(table)


def _write_results(out: Path, task, cfg: TrainConfig, records, logs=None, extra: dict | None = None) -> dict:
    from .plot import plot_runs

    summary = _summary(records)
    results = {"task": task.name, "description": task.description, "config": cfg.to_dict(),
               "split_sizes": dict(zip(("train", "val", "test"), task.splits.sizes())),
               "summary": summary, "runs": [r.to_dict() for r in records], **(extra or {})}
    if logs is not None:
        results["training"] = [vars(l) for l in logs]
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    plot_runs(records, out / "plot.png", title=f"{task.name}")
    return summary


# --------------------------------------------------------------------------- commands
_TASK = typer.Option("digits-mlp", "--task", help="task name: digits-mlp, fashion-mnist-mlp, glue-<task>[-paper|-3l]")
_DATA = typer.Option(None, "--data-dir", help="folder with the task's data files (IDX .gz for Fashion-MNIST; the GLUE folder holding RTE/, CoLA/, ... for glue-*)")


@app.command()
def demo(out: Path = typer.Option(Path("runs/demo"), help="output folder (replaced when complete)"),
         episodes: int = typer.Option(20, help="training episodes of the agent"),
         epochs: int = typer.Option(20, help="target-network epochs per episode"),
         seeds: int = typer.Option(3, help="evaluation seeds per schedule"),
         seed: int = typer.Option(0, help="base random seed"),
         threads: int = _THREADS,
         quiet: bool = typer.Option(False, help="no progress bars")):
    """Train a GNS agent on the embedded digits task, apply it, compare with constant and cosine."""
    run(task_name="digits-mlp", data_dir=None, out=out, schedule=["constant", "cosine", "gns"], agent_path=None,
        episodes=episodes, epochs=epochs, seeds=seeds, seed=seed, lr=None, interval=None, val_prob=0.2,
        lr_min=1e-7, lr_max=1.0, encoder="gcn", sigma=0.05, ppo_epochs=20, candidates=4, sample=False,
        threads=threads, quiet=quiet)


@app.command()
def train(task_name: str = _TASK, data_dir: Optional[Path] = _DATA,
          out: Optional[Path] = typer.Option(None, "--out", help="output folder for agent.safetensors/json and the "
                                             "log (required unless --resume)"),
          episodes: int = typer.Option(30, help="training episodes (30 in the paper)"),
          epochs: Optional[int] = typer.Option(None, help="target-network epochs per episode (task default)"),
          seed: int = typer.Option(0, help="base random seed"),
          interval: Optional[int] = typer.Option(None, "--interval", "-K", help="decision interval K (task default)"),
          val_prob: float = typer.Option(0.2, "--val-prob", "-p", help="validation probability p in (0, 1]"),
          lr_min: float = typer.Option(1e-7, help="lower learning-rate clamp"),
          lr_max: float = typer.Option(1.0, help="upper learning-rate clamp"),
          encoder: str = typer.Option("gcn", help="graph encoder: gcn or gat"),
          sigma: float = typer.Option(0.05, help="policy standard deviation"),
          ppo_epochs: int = typer.Option(20, help="PPO epochs per update"),
          episodes_per_update: Optional[int] = typer.Option(None, help="episodes per PPO update (default: --workers)"),
          rollback: bool = typer.Option(False, help="on a NaN/Inf loss or metric, restore the last good window "
                                        "and halve the lr instead of ending the episode"),
          max_rollbacks: int = typer.Option(3, help="rollbacks allowed per episode with --rollback"),
          workers: int = typer.Option(1, help="episodes played at once; > 1 runs them on Ray workers"),
          address: Optional[str] = typer.Option(None, help="Ray cluster to join (default: start Ray locally)"),
          gpus_per_worker: float = typer.Option(0.0, help="GPUs reserved per Ray worker"),
          resume: Optional[Path] = typer.Option(None, help="continue the interrupted run whose --out was DIR "
                                                "(its stored config is used)", metavar="DIR"),
          threads: int = _THREADS,
          tensorboard: Optional[Path] = typer.Option(None, help="TensorBoard log folder for episode returns "
                                                     "and PPO losses"),
          agent_kind: str = typer.Option("gns", "--agent-kind", help="agent: gns, frs (gns trained with p = 1), "
                                         "srls (final layer + MLP, p = 1), css (all nodes concatenated + MLP)"),
          quiet: bool = typer.Option(False, help="no progress bar")):
    """Train a GNS agent (or a baseline agent, --agent-kind) on a task (Algorithm 1) and save it;
    checkpoints after every PPO update."""
    try:
        from .agent_kinds import agent_class

        agent_class(agent_kind)  # an unknown kind fails before anything runs
        par = ParallelConfig(workers=workers, address=address, gpus_per_worker=gpus_per_worker)
        par.validate()
        if resume is not None:
            if out is not None and out.resolve() != resume.resolve():
                raise GNSError(f"--out {out} and --resume {resume} differ; give only --resume.")
            return _resume(resume, par, threads, quiet, tensorboard)
        if out is None:
            raise GNSError("give --out DIR for a new training run, or --resume DIR to continue one.")
        cfg = _config(episodes, epochs, seed, interval, val_prob, lr_min, lr_max, encoder, sigma, ppo_epochs, 4, False)
        # episodes per update: one per worker unless given; stored, so a resume keeps it
        cfg.ppo.episodes_per_update = workers if episodes_per_update is None else episodes_per_update
        cfg.env.rollback, cfg.env.max_rollbacks, cfg.parallel = rollback, max_rollbacks, par
        cfg.validate()
        out = check_output(out)
        _drop_empty_partial(out)
        if partial_dir(out).exists():
            raise GNSError(f"an interrupted training run of {out} exists ({partial_dir(out)}); continue it with "
                           f"--resume {out} or delete that folder.")
        task = _task(task_name, data_dir)
        _set_threads(task, threads)
        _train_to(out, task, cfg, data_dir, quiet, tensorboard, kind=agent_kind)
    except GNSError as e:
        _fail(str(e))


def _drop_empty_partial(out: Path) -> None:
    """Remove ``partial_dir(out)`` if a run was killed before its first checkpoint (nothing to resume)."""
    import shutil

    from .checkpoint import CHECKPOINT, PARTIAL_MARKER

    work = partial_dir(out)
    if (work / PARTIAL_MARKER).is_file() and not (work / CHECKPOINT).is_file():
        shutil.rmtree(work, ignore_errors=True)


def _train_to(out: Path, task, cfg: TrainConfig, data_dir: Optional[Path], quiet: bool,
              tensorboard: Optional[Path], done: int = 0, kind: str = "gns") -> None:
    """Train with checkpoints in ``partial_dir(out)``, then write the agent and move it to ``out``."""
    import functools

    from .checkpoint import CHECKPOINT, PARTIAL_MARKER
    from .tasks import get_task

    work = partial_dir(out)
    data = str(data_dir.resolve()) if data_dir is not None else None
    agent, logs = _train(task, cfg, quiet, tensorboard, done=done, kind=kind, checkpoint_dir=work,
                         task_factory=functools.partial(get_task, task.name, data),
                         checkpoint_meta={"data_dir": data})
    try:
        agent.save(work / "agent.safetensors")
        (work / "training.json").write_text(json.dumps(
            {"task": task.name, "config": cfg.to_dict(), "episodes": [vars(l) for l in logs]}, indent=2, default=float))
    except OSError as e:
        raise GNSError(f"cannot write the output folder {work}: {e.strerror or e}.") from None
    promote(work, out)
    for name in (CHECKPOINT, PARTIAL_MARKER):  # a finished run needs no checkpoint
        (out / name).unlink(missing_ok=True)
    typer.echo(f"agent written to {out / 'agent.safetensors'}")


def _resume(resume: Path, par: ParallelConfig, threads: int, quiet: bool, tensorboard: Optional[Path]) -> None:
    from .checkpoint import PARTIAL_MARKER, config_from_dict, load_checkpoint

    given = resume.expanduser().resolve()
    if given.name.startswith(".") and given.name.endswith(".partial") and (given / PARTIAL_MARKER).is_file():
        meant = given.parent / given.name[1:-len(".partial")]
        raise GNSError(f"{given} is the working folder of an interrupted run; resume it with --resume {meant}.")
    out = check_output(resume)
    work = partial_dir(out)
    if not work.is_dir():
        log_file = out / "training.json"
        if (out / MARKER).is_file() and log_file.is_file():
            try:
                n = len(json.loads(log_file.read_text())["episodes"])
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                n = "?"
            typer.echo(f"training run {out} already finished ({n} episodes); nothing to resume.")
            return
        raise GNSError(f"{out} holds no interrupted training run to resume (no {work.name} beside it).")
    if not (work / PARTIAL_MARKER).is_file():
        raise GNSError(f"{work} was not written by gnsched train; refusing to resume from it.")
    state = load_checkpoint(work)
    if state is None:
        raise GNSError(f"{work} holds no checkpoint (it is written after the first PPO update); "
                       "delete it and start again without --resume.")
    cfg = config_from_dict(state["config"])
    cfg.parallel = par
    cfg.validate()
    data_dir = state.get("meta", {}).get("data_dir")
    task = _task(state["task"], Path(data_dir) if data_dir else None)
    _set_threads(task, threads)
    typer.echo(f"resuming {out} at episode {state['episode']} of {cfg.episodes}", err=True)
    _train_to(out, task, cfg, Path(data_dir) if data_dir else None, quiet, tensorboard, done=state["episode"],
              kind=state.get("kind", "gns"))


@app.command()
def run(task_name: str = _TASK, data_dir: Optional[Path] = _DATA,
        out: Path = typer.Option(Path("runs/run"), help="output folder (replaced when complete)"),
        schedule: list[str] = typer.Option(["constant", "cosine", "gns"], help="schedules: constant, cosine, "
                                           "polynomial, wsd, adam-hd, schedule-free, and the learned gns, frs, "
                                           "srls, css (repeat the option)"),
        agent_path: Optional[Path] = typer.Option(None, "--agent", help="trained agent (.safetensors); "
                                                  "without it, gns trains one first"),
        episodes: int = typer.Option(30, help="training episodes when no --agent is given"),
        epochs: Optional[int] = typer.Option(None, help="target-network epochs (task default)"),
        seeds: int = typer.Option(3, help="evaluation seeds per schedule"),
        seed: int = typer.Option(0, help="base random seed"),
        lr: Optional[float] = typer.Option(None, help="learning rate of constant/cosine (task default)"),
        interval: Optional[int] = typer.Option(None, "--interval", "-K", help="decision interval K"),
        val_prob: float = typer.Option(0.2, "--val-prob", "-p", help="validation probability p in (0, 1]"),
        lr_min: float = typer.Option(1e-7, help="lower learning-rate clamp"),
        lr_max: float = typer.Option(1.0, help="upper learning-rate clamp"),
        encoder: str = typer.Option("gcn", help="graph encoder: gcn or gat (ignored with --agent)"),
        sigma: float = typer.Option(0.05, help="policy standard deviation (ignored with --agent)"),
        ppo_epochs: int = typer.Option(20, help="PPO epochs per update"),
        candidates: int = typer.Option(4, help="initial learning rates tried when applying the agent"),
        sample: bool = typer.Option(False, help="sample actions instead of the policy mean"),
        threads: int = _THREADS,
        quiet: bool = typer.Option(False, help="no progress bars")):
    """Train the target network with named schedules (and a GNS agent) and compare them."""
    try:
        from .agent import GNSAgent, agent_file
        cfg = _config(episodes, epochs, seed, interval, val_prob, lr_min, lr_max, encoder, sigma, ppo_epochs,
                      candidates, sample)
        from .train import LEARNED_SCHEDULES, SCHEDULES

        bad = [s for s in schedule if s not in SCHEDULES]
        if bad:
            raise GNSError(f"unknown schedule {bad[0]!r}; allowed: {', '.join(SCHEDULES)}.")
        if not (isinstance(seeds, int) and 0 < seeds <= 1000):
            raise GNSError(f"seeds must be an integer in 1..1000, got {seeds!r}.")
        if lr is not None and not (math.isfinite(lr) and LR_RANGE[0] <= lr <= LR_RANGE[1]):
            raise GNSError(f"--lr must lie in [{LR_RANGE[0]:g}, {LR_RANGE[1]:g}], got {lr!r}.")
        check_output(out, protect=(agent_path,) if agent_path is not None else ())
        agent = GNSAgent.load(agent_path) if agent_path is not None else None
        learned = [s for s in dict.fromkeys(schedule) if s in LEARNED_SCHEDULES]
        agents = {}
        if agent is not None:
            cfg.agent = agent.cfg  # the applied agent's own architecture, recorded as such
            if learned and agent.kind not in learned:
                raise GNSError(f"--agent {agent_path} is a {agent.kind!r} agent; select it with "
                               f"--schedule {agent.kind}.")
            agents[agent.kind] = agent
        task = _task(task_name, data_dir)
        _set_threads(task, threads)
        lr = lr or task.default_lr
        logs: dict = {}
        for kind in learned:  # learned schedules without a given agent: train one each
            if kind not in agents:
                agents[kind], logs[kind] = _train(task, cfg, quiet, kind=kind)
        # Evaluation seeds differ from the training episodes' seeds.
        records = _compare(task, agents, cfg, list(dict.fromkeys(schedule)), lr, seeds, 10_000 + seed, quiet)
        files = {k: "agent.safetensors" if k == "gns" else f"agent-{k}.safetensors" for k in logs}
        wrote_agent = bool(files)
        with atomic_output(out) as tmp:
            for kind, name in files.items():
                agents[kind].save(tmp / name)
            extra = {"baseline_lr": lr, "agent_file": str(agent_file(agent_path).resolve()) if agent_path else
                     files.get("gns", next(iter(files.values()), None))}
            extra.update({f"training_{k}": [vars(l) for l in v] for k, v in logs.items() if k != "gns"})
            if len(files) > 1 or (files and "gns" not in files):
                extra["agent_files"] = files
            summary = _write_results(tmp, task, cfg, records, logs.get("gns"), extra)
        _print_table(task, summary)
        typer.echo(f"results{', agent' if wrote_agent else ''} and plot written to {out}/")
    except GNSError as e:
        _fail(str(e))


@app.command()
def graph(task_name: str = _TASK, data_dir: Optional[Path] = _DATA):
    """Print the operator graph of a task's model and its blocks."""
    try:
        from .graph import build_graph
        task = _task(task_name, data_dir)
        typer.echo(build_graph(task.make_model(), task.example_input()).summary())
    except GNSError as e:
        _fail(str(e))


@app.command()
def plot(run_dir: Path = typer.Argument(..., help="an output folder of gnsched run/demo (results.json) or of "
                                          "gnsched train (training.json)"),
         out: Optional[Path] = typer.Option(None, help="PNG file to write (default: RUN_DIR/plot.png)")):
    """Draw the learning-rate trajectories and loss curves of a run folder, or the learning
    curve (final validation metric, return, initial lr per episode) of a training folder."""
    try:
        from .plot import plot_runs, plot_training
        from .target import RunRecord

        results_file, training_file = run_dir / "results.json", run_dir / "training.json"
        if results_file.is_file():
            try:
                results = json.loads(results_file.read_text())
                records = [RunRecord(**r) for r in results["runs"]]
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
                raise GNSError(f"{results_file} is not a gnsched results file ({e}).") from None
            draw = lambda path: plot_runs(records, path, title=results.get("task", ""))  # noqa: E731
        elif training_file.is_file():
            try:
                training = json.loads(training_file.read_text())
                episodes = training["episodes"]
                _ = [(e["episode"], float(e["final_val"]), float(e["episode_return"]), float(e["lr0"]))
                     for e in episodes]
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
                raise GNSError(f"{training_file} is not a gnsched training log ({e}).") from None
            if not episodes:
                raise GNSError(f"{training_file} holds no episodes.")
            draw = lambda path: plot_training(episodes, path, title=f"agent training on {training.get('task', '')}")  # noqa: E731
        else:
            raise GNSError(f"{run_dir} holds neither results.json nor training.json; give an output folder of "
                           "'gnsched run', 'gnsched demo' or 'gnsched train'.")
        target = out or run_dir / "plot.png"
        if target.suffix.lower() != ".png":
            raise GNSError(f"--out must be a .png file, got {target}.")
        tmp = target.with_name(f".{target.name}.tmp.png")
        try:
            draw(tmp)
            tmp.replace(target)
        except OSError as e:
            raise GNSError(f"cannot write {target}: {e.strerror or e}.") from None
        typer.echo(f"plot written to {target}")
    except GNSError as e:
        _fail(str(e))


@app.command()
def bench(profile: str = typer.Option("quick", help="quick (minutes, smoke test) or full (the real benchmark)"),
          data_dir: Optional[Path] = _DATA,
          out: Optional[Path] = typer.Option(None, help="benchmark folder (default runs/bench-PROFILE); "
                                             "rerunning resumes in it"),
          task: list[str] = typer.Option([], "--task", help="only these tasks of the profile (repeat the option)"),
          epochs: list[str] = typer.Option([], "--epochs", help="override a task's epochs as TASK=N, e.g. "
                                           "fashion-mnist-mlp=10 (repeat the option)"),
          method: list[str] = typer.Option([], "--method", help="run these methods instead of the profile's "
                                           "(repeat the option; e.g. srls, css, frs on a finished folder)"),
          render_only: bool = typer.Option(False, help="only render the existing records")):
    """Tune and compare all methods on the profile's tasks (resumable), then render tables and plots."""
    try:
        from dataclasses import replace

        from .bench import PROFILES, run_bench
        from .output import MARKER
        from .report import markdown, render

        if profile not in PROFILES:
            raise GNSError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}.")
        prof = PROFILES[profile]
        bad = [t for t in task if t not in prof.tasks]
        if bad:
            raise GNSError(f"task {bad[0]!r} is not in profile {profile}; allowed: {', '.join(prof.tasks)}.")
        if task:
            prof = replace(prof, tasks=tuple(task), transfer=tuple(p for p in prof.transfer if p[0] in task))
        if method:
            from .bench import METHODS

            bad = [m for m in method if m not in METHODS]
            if bad:
                raise GNSError(f"unknown method {bad[0]!r}; allowed: {', '.join(METHODS)}.")
            prof = replace(prof, methods=tuple(dict.fromkeys(method)))
        overrides = dict(prof.epochs)
        for item in epochs:
            name, _, n = item.partition("=")
            if not (n.isdigit() and 0 < int(n) <= 100_000):
                raise GNSError(f"--epochs {item!r} must look like TASK=N with N a positive integer.")
            overrides[name] = int(n)
        prof = replace(prof, epochs=overrides)
        out = out or Path("runs") / f"bench-{profile}"
        check_output(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).write_text("gnsched bench folder; rerun the same command to resume\n")
        if not render_only:
            store = run_bench(prof, out, data_dir, on_event=lambda msg: typer.echo(msg, err=True))
            typer.echo(f"{store.computed} runs computed now, {store.reused} finished runs reused from {out}", err=True)
        summary = render(out)
        typer.echo(markdown(summary))
        typer.echo(f"results.md, results.json and plots written to {out}/")
    except GNSError as e:
        _fail(str(e))


def main() -> None:
    """Entry point: usage errors (a malformed or missing option) also come out as one line
    ``error: ...`` with exit code 2, like every other user error."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        typer.echo("aborted.", err=True)
        code = 1
    except Exception as e:
        # typer's (vendored) click usage errors: BadParameter, NoSuchOption, UsageError, ...
        if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
            raise
        if type(e).__name__ == "NoArgsIsHelpError":  # "gnsched" alone: the help text
            ctx = getattr(e, "ctx", None)
            typer.echo(ctx.get_help() if ctx is not None else e.format_message())
            code = 0
        else:
            typer.echo(f"error: {' '.join(e.format_message().split())}", err=True)
            code = e.exit_code
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
