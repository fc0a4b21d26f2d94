"""The benchmark: a tiny profile on the digits task runs every method, resumes without
recomputing anything, transfers, and renders (also from partial records)."""
from __future__ import annotations

import dataclasses
import json

import pytest

from gnsched import bench
from gnsched.bench import Profile, RecordStore, run_bench
from gnsched.report import render

TINY = Profile("tiny", ("digits-mlp",), epochs={"digits-mlp": 1, "digits-copy": 1}, seeds=2,
               methods=("constant", "cosine", "schedule-free", "cma-es", "gns", "srls"),
               grid={"lr": (1e-2, 1e-3), "mu": (1e-2,), "eta2": (1.0,)}, cma_budget=3, gns_episodes=1,
               transfer=(("digits-mlp", "digits-copy"),))


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory, digits_task):
    out = tmp_path_factory.mktemp("bench")
    task = dataclasses.replace(digits_task, interval=6)  # 3 decisions in the 18-step episode
    tasks = {"digits-mlp": task, "digits-copy": dataclasses.replace(task, name="digits-copy")}
    store = run_bench(TINY, out, load_task=tasks.__getitem__)
    return out, tasks, store


def test_first_run_computes_every_run_once(bench_dir):
    _, _, store = bench_dir
    # trials: constant 2 + cosine 2 + schedule-free 2 (the profile's lr list) + CMA-ES 3; GNS 1
    # training + SRLS 1 training; evaluation: 6 methods × 2 seeds on the task and 6 × 2 on the
    # transfer target
    assert store.computed == 2 + 2 + 2 + 3 + 1 + 1 + 12 + 12


def test_second_invocation_recomputes_nothing(bench_dir, monkeypatch):
    out, tasks, _ = bench_dir
    calls = []
    import gnsched.train as train

    for name in ("run_schedule", "train_agent", "apply_agent"):
        real = getattr(train, name)
        monkeypatch.setattr(train, name, lambda *a, _r=real, _n=name, **k: calls.append(_n) or _r(*a, **k))
    store = run_bench(TINY, out, load_task=tasks.__getitem__)
    assert store.computed == 0 and calls == []
    assert store.reused == 2 + 2 + 2 + 3 + 1 + 1 + 12 + 12  # every run of the first invocation, once


def test_records_are_keyed_and_complete(bench_dir):
    out, _, store = bench_dir
    recs = store.all()
    kinds = {(r["key"]["task"], r["key"]["method"], r["key"]["kind"]) for r in recs}
    assert ("digits-copy", "gns", "transfer") in kinds and ("digits-mlp", "cma-es", "trial") in kinds
    seed_runs = [r for r in recs if r["key"]["kind"] == "seed"]
    assert sorted({r["key"]["seed"] for r in seed_runs}) == [10_000, 10_001]
    assert all(0.0 <= r["test"] <= 1.0 and r["steps"] == 18 for r in seed_runs)


def test_render_table_costs_and_plots(bench_dir):
    out, _, _ = bench_dir
    summary = render(out)
    rows = summary["digits-mlp"]
    assert list(rows) == ["constant", "cosine", "schedule-free", "cma-es", "gns", "srls"]  # registry order
    assert rows["cosine"]["tuning"]["cost_steps"] == 2 * 18 and rows["cosine"]["tuning"]["runs"] == 2
    assert rows["cma-es"]["tuning"]["cost_steps"] == 3 * 18
    assert rows["gns"]["tuning"]["cost_steps"] == 1 * 18  # episodes × T
    assert summary["digits-copy"]["gns"]["kind"] == "transfer"
    assert summary["digits-copy"]["constant"]["tuning"]["cost_steps"] == 2 * 18  # the source's tuning
    best = max(v for c, v in json.loads(next((out / "records/digits-mlp/cosine").glob("tuning-*.json")).read_text())
               ["trials"])
    assert rows["cosine"]["tuning"]["best_val"] == best
    md = (out / "results.md").read_text()
    assert "| gns |" in md and "± " in md
    for f in ("results.json", "lr.png", "loss.png", "tuning.png"):
        assert (out / f).stat().st_size > 0


def test_partial_records_render(tmp_path, bench_dir):
    out, _, _ = bench_dir
    part = tmp_path / "part"
    for p in (out / "records" / "digits-mlp" / "cosine").glob("*.json"):
        dst = part / p.relative_to(out)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(p.read_text())
    next(part.rglob("seed-10001-*.json")).unlink()
    summary = render(part)
    assert list(summary) == ["digits-mlp"] and len(summary["digits-mlp"]["cosine"]["test"]) == 1


def test_unknown_method_and_profile(tmp_path):
    from typer.testing import CliRunner

    from gnsched.cli import app
    from gnsched.errors import GNSError

    with pytest.raises(GNSError, match="unknown benchmark method 'sgdr'"):
        run_bench(dataclasses.replace(TINY, methods=("sgdr",)), tmp_path)
    res = CliRunner().invoke(app, ["bench", "--profile", "huge", "--out", str(tmp_path / "b")])
    assert res.exit_code == 2 and "unknown profile 'huge'" in res.output


def test_store_ignores_corrupt_record(tmp_path):
    store = RecordStore(tmp_path)
    key = bench.record_key("t", "m", "trial", {"lr": 0.1}, 0, 1)
    store.path(key).parent.mkdir(parents=True)
    store.path(key).write_text("{not json")
    assert store.run(key, lambda: {"val": 0.5}) ["val"] == 0.5 and store.computed == 1
    assert store.run(key, lambda: {"val": 0.9})["val"] == 0.5 and store.computed == 1


def test_cli_bench_epochs_override_is_checked(tmp_path):
    from typer.testing import CliRunner

    from gnsched.cli import app

    res = CliRunner().invoke(app, ["bench", "--epochs", "fashion-mnist-mlp=ten", "--out", str(tmp_path / "b")])
    assert res.exit_code == 2 and "TASK=N" in res.output


def test_gns_g1_trains_with_its_overrides(tmp_path, digits_task):
    """The registered GNS variant trains with γ = 1, p = 1, one PPO update per 3 episodes and
    actions up to ±0.25, and its saved agent says so."""
    task = dataclasses.replace(digits_task, interval=3)  # 6 windows in the 18-step episode
    profile = dataclasses.replace(TINY, methods=("gns-g1",), seeds=1, gns_episodes=3, transfer=())
    store = run_bench(profile, tmp_path, load_task={"digits-mlp": task}.__getitem__)
    agent_rec = next(r for r in store.all() if r["key"]["kind"] == "agent")
    train_cfg = agent_rec["key"]["config"]["train"]
    assert (train_cfg["ppo"]["gamma"], train_cfg["env"]["val_prob"], train_cfg["ppo"]["episodes_per_update"],
            train_cfg["agent"]["action_scale"]) == (1.0, 1.0, 3, 0.25)
    assert agent_rec["key"]["method"] == "gns-g1" and len(agent_rec["episodes"]) == 3
    # p = 1: the initial state and every one of the 5 decisions were validated (p = 0.2
    # would skip most of the 4 in between)
    assert all((ep["decisions"], ep["validations"]) == (5, 6) for ep in agent_rec["episodes"])
    # one PPO update, after the third episode: only that episode carries its statistics
    assert [bool(ep["ppo"]) for ep in agent_rec["episodes"]] == [False, False, True]
    from gnsched.agent import GNSAgent

    agent = GNSAgent.load(tmp_path / agent_rec["agent"])
    assert agent.cfg.action_scale == 0.25
    assert agent.recipe["ppo"]["gamma"] == 1.0 and agent.recipe["ppo"]["episodes_per_update"] == 3


def test_profile_record_accumulates_single_task_runs(tmp_path):
    """A ``--task B`` run on a folder where ``--task A --epochs A=10`` ran keeps A's epochs."""
    full = Profile("p", ("a", "b"), epochs={"a": 6, "b": 3, "c": 3}, methods=("gns",), transfer=(("b", "c"),))
    bench._write_profile(tmp_path / "profile.json", dataclasses.replace(full, tasks=("a",), epochs={"a": 10, "b": 3, "c": 3}))
    assert json.loads((tmp_path / "profile.json").read_text())["epochs"] == {"a": 10}  # only what ran
    bench._write_profile(tmp_path / "profile.json", dataclasses.replace(full, tasks=("b",), methods=("gns-g1",)))
    rec = json.loads((tmp_path / "profile.json").read_text())
    assert rec["epochs"] == {"a": 10, "b": 3, "c": 3}
    assert rec["tasks"] == ["a", "b"] and rec["methods"] == ["gns", "gns-g1"] and rec["transfer"] == [["b", "c"]]
