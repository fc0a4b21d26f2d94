"""Plots of runs: learning-rate trajectories (like the paper's Figure 3) and training-loss
curves (like Figure 6), one colour per schedule."""
from __future__ import annotations

from pathlib import Path

from .target import RunRecord


def _save(fig, path: str | Path, title: str) -> Path:
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_runs(records: list[RunRecord], path: str | Path, title: str = "") -> Path:
    """Write a two-panel PNG (learning rate, training loss vs optimizer step) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lr, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    colours: dict[str, str] = {}
    for rec in records:
        colour = colours.setdefault(rec.name, f"C{len(colours)}")
        first = sum(r.name == rec.name for r in records[: records.index(rec)]) == 0
        label = rec.name if first else None
        ax_lr.step(rec.steps, rec.lrs, where="pre", color=colour, alpha=0.8, label=label)
        ax_loss.plot(rec.steps, rec.train_losses, color=colour, alpha=0.8, label=label)
    ax_lr.set(yscale="log", xlabel="optimizer step", ylabel="learning rate", title="learning-rate trajectory")
    ax_loss.set(yscale="log", xlabel="optimizer step", ylabel="training loss (window mean)", title="training loss")
    for ax in (ax_lr, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path, title)


def plot_training(episodes: list[dict], path: str | Path, title: str = "") -> Path:
    """Write the learning curve of agent training (a ``gnsched train`` folder's
    ``training.json``): per episode the final validation metric, the return (Eq. 3 rewards,
    scaled) and the initial learning rate drawn from the prior, each against the episode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [e["episode"] for e in episodes]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, key, label, log in ((axes[0], "final_val", "final validation metric", False),
                                (axes[1], "episode_return", "episode return", False),
                                (axes[2], "lr0", "initial learning rate", True)):
        ax.plot(ep, [e[key] for e in episodes], "o-", ms=3)
        ax.set(xlabel="episode", ylabel=label, yscale="log" if log else "linear")
        ax.grid(alpha=0.3)
    return _save(fig, path, title)
