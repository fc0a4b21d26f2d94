"""Checkpointed agent training: kill -9 mid-run, --resume, and the same agent as without the kill."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import gnsched
from gnsched.agent import GNSAgent
from gnsched.checkpoint import PARTIAL_MARKER, config_from_dict, load_checkpoint, save_checkpoint
from gnsched.cli import app
from gnsched.config import PPOConfig, TrainConfig
from gnsched.errors import GNSError
from gnsched.output import MARKER, partial_dir
from gnsched.train import train_agent

TRAIN = ["train", "--episodes", "3", "--epochs", "2", "--ppo-epochs", "2", "--seed", "1", "--quiet"]


def _cli_env() -> dict:
    src = str(Path(gnsched.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_sigkill_then_resume_gives_the_uninterrupted_agent(tmp_path, digits_task):
    out = tmp_path / "agent"
    ckpt = partial_dir(out) / "checkpoint.pt"
    proc = subprocess.Popen([sys.executable, "-m", "gnsched.cli", *TRAIN, "--out", str(out)], env=_cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"training ended before its first checkpoint was seen: {proc.stderr.read()!r}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()  # the output folder appears only when complete
    state = load_checkpoint(partial_dir(out))
    assert 1 <= state["episode"] < 3 and len(state["logs"]) == state["episode"]

    runner = CliRunner()
    res = runner.invoke(app, ["train", "--resume", str(out), "--quiet"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "agent.json", "agent.safetensors", "training.json"]
    assert not partial_dir(out).exists()
    log = json.loads((out / "training.json").read_text())
    assert [e["episode"] for e in log["episodes"]] == [0, 1, 2]
    agent = GNSAgent.load(out)
    assert agent.recipe["episodes"] == 3

    ref, ref_logs = train_agent(digits_task, config_from_dict(log["config"]))
    sa, sr = agent.state_dict(), ref.state_dict()
    assert all(torch.equal(sa[k], sr[k]) for k in sr)  # bit-identical to the run never killed
    strip = lambda d: {k: v for k, v in d.items() if k != "seconds"}  # noqa: E731
    assert [strip(e) for e in log["episodes"]] == [strip(json.loads(json.dumps(vars(l), default=float)))
                                                   for l in ref_logs]

    again = runner.invoke(app, ["train", "--resume", str(out)])  # a finished run: a no-op that says so
    assert again.exit_code == 0 and "already finished (3 episodes)" in again.output


def test_new_run_refuses_to_overwrite_an_interrupted_one(tmp_path):
    out = tmp_path / "agent"
    save_checkpoint(partial_dir(out), {"episode": 1})
    res = CliRunner().invoke(app, [*TRAIN, "--out", str(out)])
    assert res.exit_code == 2 and "--resume" in res.output and not out.exists()


def test_run_killed_before_its_first_checkpoint_starts_over(tmp_path):
    out = tmp_path / "agent"
    partial_dir(out).mkdir()
    (partial_dir(out) / PARTIAL_MARKER).write_text("")  # no checkpoint.pt: nothing to resume
    res = CliRunner().invoke(app, [*TRAIN[:-1], "--episodes", "1", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert (out / "agent.safetensors").is_file() and not partial_dir(out).exists()


def test_resume_without_a_run(tmp_path):
    res = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "none")])
    assert res.exit_code == 2 and "no interrupted training run" in res.output


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(episodes=2, epochs=2, ppo=PPOConfig(epochs=1), **kw)


def test_checkpoint_of_another_config_is_refused(tmp_path, digits_task):
    save_checkpoint(tmp_path / "c", {"task": "digits-mlp", "config": _cfg(seed=5).to_dict()})
    with pytest.raises(GNSError, match="another training config .*seed"):
        train_agent(digits_task, _cfg(), checkpoint_dir=tmp_path / "c")


def test_corrupt_checkpoint_and_foreign_folder(tmp_path, digits_task):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(GNSError, match="corrupt"):
        train_agent(digits_task, _cfg(), checkpoint_dir=tmp_path / "c")
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "mine.txt").write_text("x")
    with pytest.raises(GNSError, match="not written by gnsched"):
        save_checkpoint(tmp_path / "f", {})


def test_checkpoint_round_trip_is_atomic(tmp_path):
    save_checkpoint(tmp_path / "c", {"episode": 1, "t": torch.arange(3)})
    save_checkpoint(tmp_path / "c", {"episode": 2, "t": torch.arange(4)})
    state = load_checkpoint(tmp_path / "c")
    assert state["episode"] == 2 and torch.equal(state["t"], torch.arange(4))
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [PARTIAL_MARKER, "checkpoint.pt"]
    assert config_from_dict(_cfg(seed=4).to_dict()) == _cfg(seed=4)


@pytest.mark.parametrize("kind", ["srls", "css"])
def test_checkpoint_restores_baseline_agent_kinds(tmp_path, kind):
    """A checkpoint keeps the agent's kind: the finished run read back from it is the same
    SRLS / CSS agent (class, weights), and the training env used the kind's p."""
    from gnsched.tasks import get_task

    task = get_task("digits-mlp")
    cfg = TrainConfig(episodes=2, epochs=2, seed=3, ppo=PPOConfig(epochs=2, minibatches=1))
    agent, logs = train_agent(task, cfg, kind=kind, checkpoint_dir=tmp_path)
    assert load_checkpoint(tmp_path)["kind"] == kind
    again, logs2 = train_agent(task, cfg, checkpoint_dir=tmp_path)  # finished: restored, nothing played
    assert type(again) is type(agent) and again.kind == kind
    assert [l.episode for l in logs2] == [0, 1]
    for k, v in agent.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    expected_p = 1.0 if kind == "srls" else cfg.env.val_prob
    assert again.recipe["val_prob"] == expected_p


def test_resume_given_the_partial_folder_names_the_right_one(tmp_path):
    out = tmp_path / "agent"
    save_checkpoint(partial_dir(out), {"episode": 1})
    res = CliRunner().invoke(app, ["train", "--resume", str(partial_dir(out))])
    assert res.exit_code == 2 and f"--resume {out}" in res.output


def test_foreign_checkpoint_folder_is_refused_before_any_episode(tmp_path, digits_task, monkeypatch):
    import gnsched.parallel

    def no_episode(*args, **kwargs):
        raise AssertionError("an episode was played for a checkpoint that cannot be written")

    monkeypatch.setattr(gnsched.parallel, "play_episode", no_episode)
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "mine.txt").write_text("x")
    with pytest.raises(GNSError, match="not written by gnsched"):
        train_agent(digits_task, _cfg(), checkpoint_dir=tmp_path / "f")
