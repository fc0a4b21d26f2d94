"""Checkpoints of agent training, written after every PPO update.

A checkpoint holds everything :func:`gnsched.train.train_agent` needs to continue as if
it had never stopped: agent weights (policy, critic, encoder and its norm statistics),
the PPO optimizer state, the driver's PPO generator and torch's global RNG state, the
number of episodes done, the episode log, the agent's recipe and the training config.
Per-episode randomness is derived from (seed, episode index) and needs no state, so a
resumed run gives the same agent as an uninterrupted one.

The file ``checkpoint.pt`` is written with ``torch.save`` to a temporary file in the same
folder and moved into place with ``os.replace``: at every moment the folder holds either
the previous or the new checkpoint, whole. It is read back with ``weights_only=True``
(tensors, numbers, strings and containers only: nothing executes on load).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from .config import AgentConfig, EnvConfig, ParallelConfig, PPOConfig, TrainConfig, from_dict
from .errors import GNSError

CHECKPOINT = "checkpoint.pt"
#: Marker of a folder that holds a training run in progress (see ``gnsched.output``).
PARTIAL_MARKER = ".gnsched-partial"
FORMAT = "gnsched-checkpoint"
VERSION = 1


def check_checkpoint_dir(folder: str | Path) -> None:
    """Refuse a non-empty folder without the marker (gnsched did not write it); called before
    training starts, so that no episode is played for a checkpoint that cannot be written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise GNSError(f"checkpoint folder {folder} is a file; give a folder.")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / PARTIAL_MARKER).exists():
        raise GNSError(f"checkpoint folder {folder} exists and was not written by gnsched; give another folder.")


def save_checkpoint(folder: str | Path, state: dict) -> Path:
    """Write ``state`` to ``folder/checkpoint.pt`` atomically (temp file + ``os.replace``).

    Creates ``folder`` (with its marker) if needed; refuses a non-empty folder without the
    marker, which gnsched did not write.
    """
    folder = Path(folder)
    check_checkpoint_dir(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / PARTIAL_MARKER
    if not marker.exists():
        marker.write_text("a gnsched training run in progress; resume it with gnsched train --resume\n")
    fd, tmp = tempfile.mkstemp(prefix=f".{CHECKPOINT}.tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / CHECKPOINT)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return folder / CHECKPOINT


def load_checkpoint(folder: str | Path) -> dict | None:
    """The checkpoint in ``folder``, or ``None`` when there is none yet."""
    path = Path(folder) / CHECKPOINT
    for stale in Path(folder).glob(f".{CHECKPOINT}.tmp-*"):  # left by a kill during a save
        stale.unlink(missing_ok=True)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise GNSError(f"checkpoint {path} is corrupt or not a gnsched checkpoint ({type(e).__name__}).") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise GNSError(f"{path} is not a gnsched checkpoint.")
    if state.get("version") != VERSION:
        raise GNSError(f"checkpoint {path} has version {state.get('version')!r}; this gnsched reads {VERSION}.")
    return state


def config_from_dict(data: dict) -> TrainConfig:
    """A :class:`TrainConfig` from its ``to_dict()`` form (as stored in checkpoints)."""
    data = dict(data)
    try:
        nested = {"env": from_dict(EnvConfig, data.pop("env")), "agent": from_dict(AgentConfig, data.pop("agent")),
                  "ppo": from_dict(PPOConfig, data.pop("ppo")),
                  "parallel": from_dict(ParallelConfig, data.pop("parallel", {"workers": 1, "address": None,
                                                                               "gpus_per_worker": 0.0}))}
        cfg = from_dict(TrainConfig, {**data, **{k: None for k in nested}})
    except KeyError as e:
        raise GNSError(f"the stored training config lacks its {e.args[0]!r} section.") from None
    for k, v in nested.items():
        setattr(cfg, k, v)
    cfg.validate()
    return cfg
