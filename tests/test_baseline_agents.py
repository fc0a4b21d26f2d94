"""The learned baselines and ablations as agents: SRLS, CSS, FRS (paper §5.2, §5.6, B.5)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from gnsched.agent import GNSAgent
from gnsched.agent_kinds import (AGENT_KINDS, load_agent, make_agent, make_agent_for_task, task_structure,
                                 training_env_config)
from gnsched.baseline_agents import CSSAgent, SRLSAgent, css_state_size, final_node, srls_state_size
from gnsched.cli import app
from gnsched.config import AgentConfig, EnvConfig, PPOConfig, TrainConfig
from gnsched.encoder import BlockStructure
from gnsched.errors import GNSError
from gnsched.features import NUM_FEATURES
from gnsched.graph import build_graph
from gnsched.train import apply_agent, train_agent


def _obs(n_nodes: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, n_nodes, NUM_FEATURES, generator=torch.Generator().manual_seed(seed))


class TwoHeads(nn.Module):
    """A trunk and two output heads: the output block (sink nodes) holds two nodes."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Linear(6, 8)
        self.head_a = nn.Linear(8, 3)
        self.head_b = nn.Linear(8, 2, bias=False)

    def forward(self, x):
        h = torch.relu(self.trunk(x))
        return self.head_a(h), self.head_b(h)


@pytest.fixture(scope="module")
def two_heads_structure():
    g = build_graph(TwoHeads(), torch.randn(4, 6))
    assert g.blocks[-1] == [1, 2] and g.block_kinds[-1] == "output"  # the premise of the test
    return BlockStructure.from_graph(g)


# ----------------------------------------------------------------------------- state sizes
def test_srls_state_has_the_declared_size_mlp(mlp_graph):
    s = BlockStructure.from_graph(mlp_graph)
    agent = SRLSAgent(AgentConfig())
    x = _obs(s.num_nodes)
    state = agent.encoder(x, s)
    assert srls_state_size() == NUM_FEATURES == 10
    assert state.shape == (2, 10) and agent.actor[0].in_features == 10 == agent.critic[0].in_features
    assert final_node(s) == 2  # the MLP's last Linear
    assert torch.equal(state, x[:, 2])


def test_srls_state_has_the_declared_size_several_output_nodes(two_heads_structure, resnet_graph):
    agent = SRLSAgent(AgentConfig())
    x = _obs(3)
    state = agent.encoder(x, two_heads_structure)
    assert state.shape == (2, srls_state_size())
    assert torch.equal(state, x[:, 2])  # head_b: the output block's last node, without bias
    mu, value = agent(x, two_heads_structure)
    assert mu.shape == value.shape == (2,)
    # the same agent runs on another architecture (a ResNet: its fc is the final node)
    s = BlockStructure.from_graph(resnet_graph)
    assert resnet_graph.names[final_node(s)] == "fc"
    assert agent(_obs(s.num_nodes), s)[0].shape == (2,)


def test_css_input_size_and_layout(mlp_graph, resnet_graph):
    s = BlockStructure.from_graph(mlp_graph)
    agent = make_agent("css", AgentConfig(), s)
    assert isinstance(agent, CSSAgent) and agent.num_nodes == 3
    # N × (F - 3) node statistics + the 3 global features once
    assert css_state_size(3) == 3 * 7 + 3 == 24 == agent.actor[0].in_features
    x = _obs(3)
    state = agent.encoder(x, s)
    assert state.shape == (2, 24)
    assert torch.equal(state, torch.cat([x[:, 0, :7], x[:, 1, :7], x[:, 2, :7], x[:, 0, 7:]], dim=1))
    n = resnet_graph.num_nodes
    assert make_agent("css", AgentConfig(), BlockStructure.from_graph(resnet_graph)).actor[0].in_features == n * 7 + 3
    # tied to one architecture: a clear error on another node count
    rs = BlockStructure.from_graph(resnet_graph)
    with pytest.raises(GNSError, match=f"built for a model graph of 3 nodes.*one of {n} nodes"):
        agent.act(_obs(n, batch=1)[0], rs)


def test_make_agent_kinds_and_errors(mlp_graph, small_agent_cfg):
    s = BlockStructure.from_graph(mlp_graph)
    agents = {k: make_agent(k, small_agent_cfg, s) for k in AGENT_KINDS}
    assert {k: type(a).__name__ for k, a in agents.items()} == {
        "gns": "GNSAgent", "frs": "GNSAgent", "srls": "SRLSAgent", "css": "CSSAgent"}
    assert all(a.kind == k for k, a in agents.items())
    env = EnvConfig()  # p = 0.2
    assert {k: training_env_config(a, env).val_prob for k, a in agents.items()} == {
        "gns": 0.2, "frs": 1.0, "srls": 1.0, "css": 0.2}
    assert training_env_config(agents["gns"], env) is env  # GNS's config is untouched
    with pytest.raises(GNSError, match="unknown agent kind 'lstm'; allowed: gns, frs, srls, css"):
        make_agent("lstm")
    with pytest.raises(GNSError, match="css agent is tied to one model graph"):
        make_agent("css", small_agent_cfg)


# ----------------------------------------------------------------------------- files
@pytest.mark.parametrize("kind", AGENT_KINDS)
def test_round_trip_per_kind(kind, tmp_path, mlp_graph, small_agent_cfg):
    s = BlockStructure.from_graph(mlp_graph)
    torch.manual_seed(1)
    agent = make_agent(kind, small_agent_cfg, s)
    with torch.no_grad():  # actions that depend visibly on the state
        agent.actor[-1].weight.mul_(100)
    agent.recipe = {"task": "t"}
    path = agent.save(tmp_path / kind)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["kind"] == kind and meta.get("num_nodes") == (3 if kind == "css" else None)
    loaded = load_agent(path)
    assert type(loaded) is type(agent) and loaded.kind == kind and loaded.recipe == {"task": "t"}
    obs = [_obs(3, batch=1, seed=i)[0] for i in range(4)]
    for deterministic in (True, False):
        g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        acts = [agent.eval().act(o, s, deterministic, g1) for o in obs]
        assert acts == [loaded.act(o, s, deterministic, g2) for o in obs]
    assert len({a for a, _, _ in acts}) == 4  # the actions differ across states


def test_tampered_kind_files(tmp_path, mlp_graph, small_agent_cfg):
    s = BlockStructure.from_graph(mlp_graph)
    srls = make_agent("srls", small_agent_cfg).save(tmp_path / "srls")
    css = make_agent("css", small_agent_cfg, s).save(tmp_path / "css")
    gns = make_agent("gns", small_agent_cfg).save(tmp_path / "gns")

    def edit(path, fn):
        meta_file = path.with_suffix(".json")
        meta = json.loads(meta_file.read_text())
        fn(meta)
        meta_file.write_text(json.dumps(meta))

    with pytest.raises(GNSError, match="is a 'gns' agent, not a 'srls' one"):
        SRLSAgent.load(gns)
    assert isinstance(GNSAgent.load(srls), SRLSAgent)  # the common loader rebuilds any kind
    edit(srls, lambda m: m.update(kind="lstm"))
    with pytest.raises(GNSError, match="unknown agent kind 'lstm'; allowed: gns, frs, srls, css"):
        GNSAgent.load(srls)
    edit(srls, lambda m: m.update(kind=["srls"]))
    with pytest.raises(GNSError, match="unknown agent kind"):
        GNSAgent.load(srls)
    edit(srls, lambda m: m.update(kind="gns"))  # SRLS weights under a GNS config
    with pytest.raises(GNSError, match="do not match its config"):
        GNSAgent.load(srls)
    edit(css, lambda m: m.update(num_nodes=4))
    with pytest.raises(GNSError, match="do not match its config"):
        GNSAgent.load(css)
    edit(css, lambda m: m.pop("num_nodes"))
    with pytest.raises(GNSError, match="incomplete or invalid"):
        GNSAgent.load(css)
    edit(css, lambda m: m.update(num_nodes=-3))
    with pytest.raises(GNSError, match="positive integer"):
        GNSAgent.load(css)
    edit(gns, lambda m: m.pop("kind"))  # files written before kinds existed are GNS agents
    assert GNSAgent.load(gns).kind == "gns"


# ----------------------------------------------------------------------------- training
def _tiny(kind_cfg=None) -> TrainConfig:
    # digits at 2 epochs: 36 steps; K = 4 -> 9 windows, 8 decisions per episode
    return TrainConfig(episodes=2, epochs=2, env=EnvConfig(interval=4), ppo=PPOConfig(epochs=2),
                       agent=AgentConfig(hidden=16, head_hidden=8, type_dim=4), candidates=1)


@pytest.fixture(scope="module")
def trained(digits_task):
    return {k: train_agent(digits_task, _tiny(), kind=k) for k in AGENT_KINDS}


@pytest.mark.parametrize("kind", AGENT_KINDS)
def test_tiny_training_per_kind(kind, trained, digits_task):
    agent, logs = trained[kind]
    assert agent.kind == kind and len(logs) == 2 and [l.decisions for l in logs] == [8, 8]
    assert all(l.ppo for l in logs)
    torch.manual_seed(0)  # train_agent seeds with cfg.seed before building the agent
    fresh = make_agent_for_task(kind, _tiny().agent, digits_task)
    assert type(fresh) is type(agent)
    sd, sd0 = agent.state_dict(), fresh.state_dict()
    assert sd.keys() == sd0.keys() and not all(torch.equal(sd[k], sd0[k]) for k in sd)
    assert agent.recipe["val_prob"] == (1.0 if kind in ("frs", "srls") else 0.2)
    rec = apply_agent(agent, digits_task, _tiny(), seed=1, lr=1e-3)
    assert rec.name == kind and rec.steps[-1] == 36 and 0.0 <= rec.test_metric <= 1.0


def test_full_reward_validates_at_every_decision(trained):
    # FRS and SRLS: all 9 windows measured (reset + 8 decisions); GNS with p = 0.2 skips some
    for kind in ("frs", "srls"):
        assert [l.validations for l in trained[kind][1]] == [9, 9]
    assert all(l.validations < 9 for l in trained["gns"][1])


def test_frs_validation_count_in_env_info(digits_task):
    from gnsched.env import SchedulingEnv
    from gnsched.train import collect_episode

    agent = make_agent("frs", AgentConfig(hidden=16, head_hidden=8, type_dim=4))
    cfg = _tiny()
    env = SchedulingEnv(digits_task, training_env_config(agent, cfg.env), cfg.epochs)
    _, info = collect_episode(env, agent, seed=0, generator=torch.Generator().manual_seed(0))
    assert len(info["metrics"]) == 9 and all(m is not None for m in info["metrics"])
    assert len(env.record.val) == 9


def test_css_training_builds_agent_for_the_task(digits_task, trained):
    agent = trained["css"][0]
    assert agent.num_nodes == task_structure(digits_task).num_nodes == 3


# ----------------------------------------------------------------------------- CLI
def test_cli_train_and_run_kinds(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--agent-kind", "lstm", "--out", str(tmp_path / "x"), "--quiet"])
    assert res.exit_code == 2 and "unknown agent kind 'lstm'" in res.stderr
    assert not (tmp_path / "x").exists()
    res = runner.invoke(app, ["train", "--agent-kind", "srls", "--out", str(tmp_path / "ag"), "--episodes", "1",
                              "--epochs", "2", "--ppo-epochs", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert isinstance(GNSAgent.load(tmp_path / "ag"), SRLSAgent)
    # a given srls agent serves --schedule srls; css is trained in the run
    res = runner.invoke(app, ["run", "--agent", str(tmp_path / "ag"), "--schedule", "srls", "--schedule", "css",
                              "--schedule", "constant", "--episodes", "1", "--epochs", "2", "--seeds", "1",
                              "--candidates", "1", "--ppo-epochs", "1", "--out", str(tmp_path / "r"), "--quiet"])
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert list(results["summary"]) == ["srls", "css", "constant"]
    assert len(results["training_css"]) == 1 and "training" not in results
    assert results["agent_file"] == str((tmp_path / "ag" / "agent.safetensors").resolve())
    assert isinstance(GNSAgent.load(tmp_path / "r" / "agent-css.safetensors"), CSSAgent)
    # an agent of another kind than the selected learned schedule is refused
    res = runner.invoke(app, ["run", "--agent", str(tmp_path / "ag"), "--schedule", "gns", "--epochs", "2",
                              "--out", str(tmp_path / "r2"), "--quiet"])
    assert res.exit_code == 2 and "is a 'srls' agent; select it with --schedule srls" in res.stderr


def test_scheduler_drives_a_baseline_agent():
    from gnsched.scheduler import GNSScheduler

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = GNSScheduler(opt, model, make_agent("srls", AgentConfig()), interval=2, total_steps=8,
                         example_input=torch.randn(4, 6))
    x, y = torch.randn(4, 6), torch.tensor([0, 1, 2, 0])
    for _ in range(4):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        sched.step(loss)
    assert sched.decisions == 2 and abs(sched.last_action) <= 0.1
    assert opt.param_groups[0]["lr"] != 0.1
