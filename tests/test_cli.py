"""The command line: the demo end to end at a tiny size, train/run/graph, and bad input."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from gnsched.agent import GNSAgent
from gnsched.cli import app
from gnsched.config import AgentConfig

from conftest import fake_fashion, idx_bytes


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


def _no_output(parent, name):
    """Neither the output folder nor a temporary sibling of it exists."""
    return not (parent / name).exists() and not any(p.name.startswith(f".{name}.") for p in parent.iterdir())


# ----------------------------------------------------------------------------- demo
@pytest.fixture(scope="module")
def demo_out(runner, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "demo"
    res = runner.invoke(app, ["demo", "--out", str(out), "--episodes", "2", "--epochs", "3", "--seeds", "1", "--quiet"])
    return res, out


def test_demo_end_to_end(demo_out):
    res, out = demo_out
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert sorted(p.name for p in out.iterdir()) == [".gnsched-output", "agent.json", "agent.safetensors", "plot.png", "results.json"]
    assert [p.name for p in out.parent.iterdir()] == ["demo"]  # no temporary folder is left behind
    assert "results, agent and plot written to" in res.stdout


def test_demo_results(demo_out):
    _, out = demo_out
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "digits-mlp"
    assert list(results["summary"]) == ["constant", "cosine", "gns"]
    for s in results["summary"].values():
        assert s["runs"] == 1 and 0.0 <= s["test_mean"] <= 1.0 and s["test_std"] == 0.0
    assert results["split_sizes"] == {"train": 1149, "val": 288, "test": 360}
    assert len(results["training"]) == 2
    assert results["config"]["epochs"] == 3 and results["config"]["episodes"] == 2
    assert [r["name"] for r in results["runs"]] == ["constant", "cosine", "gns"]
    assert results["baseline_lr"] == 1e-3
    assert all(r["steps"][-1] == 54 for r in results["runs"])


def test_demo_plot_and_agent(demo_out):
    _, out = demo_out
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    agent = GNSAgent.load(out / "agent.safetensors")
    assert agent.cfg == AgentConfig()
    assert json.loads((out / "agent.json").read_text())["format"] == "gnsched-agent"


# ----------------------------------------------------------------------------- train / run --agent / graph
def test_train_then_run_with_agent(runner, tmp_path):
    res = runner.invoke(app, ["train", "--out", str(tmp_path / "ag"), "--episodes", "1", "--epochs", "3",
                              "--ppo-epochs", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "ag").iterdir()) == [".gnsched-output", "agent.json", "agent.safetensors", "training.json"]
    log = json.loads((tmp_path / "ag" / "training.json").read_text())
    assert log["task"] == "digits-mlp" and len(log["episodes"]) == 1
    res = runner.invoke(app, ["run", "--agent", str(tmp_path / "ag" / "agent.safetensors"), "--schedule", "gns",
                              "--epochs", "3", "--seeds", "2", "--candidates", "1", "--out", str(tmp_path / "r"),
                              "--quiet"])
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["summary"]["gns"]["runs"] == 2 and "training" not in results
    assert not (tmp_path / "r" / "agent.safetensors").exists()  # a given agent is not copied


def test_graph_command(runner):
    res = runner.invoke(app, ["graph"])
    assert res.exit_code == 0
    assert res.stdout.splitlines()[0] == "3 nodes, 2 edges, 3 blocks (0 repeated; partition: layerwise)"


# ----------------------------------------------------------------------------- bad input
def _bad(runner, tmp_path, args, *needles):
    res = runner.invoke(app, args + ["--out", str(tmp_path / "out")])
    assert res.exit_code == 2, (res.output, res.exception)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for n in needles:
        assert n in lines[0]
    assert "Traceback" not in res.output
    assert _no_output(tmp_path, "out")
    return lines[0]


@pytest.mark.parametrize("args, needles", [
    (["--task", "nope"], ["unknown task 'nope'"]),
    (["-K", "0"], ["interval K", "got 0"]),
    (["-p", "0"], ["val_prob p", "got 0.0"]),
    (["-p", "1.5"], ["val_prob p", "got 1.5"]),
    (["--lr", "-1"], ["--lr must lie in", "got -1.0"]),
    (["--schedule", "step"], ["unknown schedule 'step'"]),
    (["--seeds", "0"], ["seeds"]),
    (["--lr-min", "1", "--lr-max", "0.5"], ["lr_min"]),
    (["--encoder", "mlp"], ["encoder"]),
])
def test_run_bad_options(runner, tmp_path, args, needles):
    _bad(runner, tmp_path, ["run"] + args, *needles)


def test_run_missing_agent_file(runner, tmp_path):
    _bad(runner, tmp_path, ["run", "--agent", str(tmp_path / "none.safetensors")], "does not exist")


def test_fashion_without_files(runner, tmp_path):
    (tmp_path / "empty").mkdir()
    _bad(runner, tmp_path, ["run", "--task", "fashion-mnist-mlp", "--data-dir", str(tmp_path / "empty"),
                            "--schedule", "constant"], "missing IDX file")
    _bad(runner, tmp_path, ["run", "--task", "fashion-mnist-mlp", "--schedule", "constant"], "--data-dir")


def test_fashion_truncated_file(runner, tmp_path):
    data = tmp_path / "data"
    fake_fashion(data)
    raw = (data / "train-labels-idx1-ubyte.gz").read_bytes()
    (data / "train-labels-idx1-ubyte.gz").write_bytes(raw[:-10])
    _bad(runner, tmp_path, ["run", "--task", "fashion-mnist-mlp", "--data-dir", str(data), "--schedule", "constant"],
         "train-labels-idx1-ubyte.gz")


def test_fashion_corrupt_gzip_exits_2(runner, tmp_path):
    data = tmp_path / "data"
    fake_fashion(data)
    raw = bytearray(gzip.compress(idx_bytes(np.zeros((30, 28, 28), dtype=np.uint8))))
    for i in range(12, len(raw) - 8):
        raw[i] ^= 0xFF
    (data / "train-images-idx3-ubyte.gz").write_bytes(bytes(raw))
    _bad(runner, tmp_path, ["run", "--task", "fashion-mnist-mlp", "--data-dir", str(data), "--schedule", "constant"],
         "train-images-idx3-ubyte.gz")


def test_train_bad_task(runner, tmp_path):
    _bad(runner, tmp_path, ["train", "--task", "nope"], "unknown task")


# ----------------------------------------------------------------------------- output folders are safe
@pytest.mark.parametrize("args, needles", [
    (["--seed", "-1"], ["seed", "got -1"]),
    (["--sigma", "1e308"], ["sigma", "[1e-4, 1]"]),
    (["--lr-max", "1e308"], ["lr_max", "got 1e+308"]),
    (["--ppo-epochs", "0"], ["PPO epochs"]),
    (["--candidates", "1000"], ["candidates", "1..64"]),
])
def test_run_more_bad_options(runner, tmp_path, args, needles):
    _bad(runner, tmp_path, ["run"] + args, *needles)


def _run_small(out, *extra):
    return ["run", "--schedule", "constant", "--epochs", "1", "--seeds", "1", "--quiet", "--out", str(out), *extra]


def test_out_refuses_foreign_folder_and_files(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    res = runner.invoke(app, _run_small(mine))
    assert res.exit_code == 2 and "not written by gnsched" in res.stderr
    assert (mine / "thesis.tex").read_text() == "precious"
    for target, needle in ((tmp_path, "current, home or a parent"), (tmp_path.parent, "current, home or a parent")):
        res = runner.invoke(app, _run_small(target))
        assert res.exit_code == 2 and needle in res.stderr, res.output
    afile = tmp_path / "afile"
    afile.write_text("x")
    res = runner.invoke(app, _run_small(afile))
    assert res.exit_code == 2 and "is a file" in res.stderr
    assert afile.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["afile", "mine"]


def test_out_replaces_its_own_folder(runner, tmp_path):
    out = tmp_path / "out"
    for _ in range(2):
        res = runner.invoke(app, _run_small(out))
        assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (out / ".gnsched-output").exists() and (out / "results.json").exists()


def test_out_must_not_hold_the_applied_agent(runner, tmp_path):
    ag = tmp_path / "ag"
    res = runner.invoke(app, ["train", "--episodes", "1", "--epochs", "2", "--quiet", "--out", str(ag)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["run", "--schedule", "gns", "--agent", str(ag / "agent.safetensors"),
                              "--epochs", "2", "--seeds", "1", "--quiet", "--out", str(ag)])
    assert res.exit_code == 2 and "holds the input" in res.stderr
    assert (ag / "agent.safetensors").exists() and (ag / "training.json").exists()
    # a training output folder is accepted as --agent, and results record the agent applied
    res = runner.invoke(app, ["run", "--schedule", "gns", "--agent", str(ag), "--encoder", "gat",
                              "--epochs", "2", "--seeds", "1", "--quiet", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["config"]["agent"]["encoder"] == "gcn"
    assert results["agent_file"] == str((ag / "agent.safetensors").resolve())
    assert "results and plot written" in res.stdout


def test_plot_command_redraws_a_run(runner, demo_out, tmp_path):
    _, out = demo_out
    res = runner.invoke(app, ["plot", str(out), "--out", str(tmp_path / "p.png")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = runner.invoke(app, ["plot", str(tmp_path)])
    assert res.exit_code == 2 and "neither results.json nor training.json" in res.stderr


def test_plot_command_draws_a_training_folder(runner, tmp_path):
    """A `gnsched train` folder has no lr trajectories but a training log: its learning
    curve is drawn; a log without episodes or with a broken entry is a clear error."""
    log = {"task": "digits-mlp", "episodes": [
        {"episode": i, "final_val": 0.9 + i / 100, "episode_return": 5.0 + i, "lr0": 1e-3 * (i + 1)} for i in range(4)]}
    (tmp_path / "training.json").write_text(json.dumps(log))
    res = runner.invoke(app, ["plot", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "training.json").write_text(json.dumps({"episodes": []}))
    res = runner.invoke(app, ["plot", str(tmp_path)])
    assert res.exit_code == 2 and "holds no episodes" in res.stderr
    (tmp_path / "training.json").write_text(json.dumps({"episodes": [{"episode": 0}]}))
    res = runner.invoke(app, ["plot", str(tmp_path)])
    assert res.exit_code == 2 and "not a gnsched training log" in res.stderr
