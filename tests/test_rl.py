"""Encoder, actor-critic, agent files, GAE and the PPO update (§4.1, §4.3, appendix D)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from gnsched.agent import GNSAgent
from gnsched.config import AgentConfig, PPOConfig
from gnsched.encoder import BlockStructure
from gnsched.errors import GNSError
from gnsched.features import NUM_FEATURES
from gnsched.graph import ModelGraph
from gnsched.ppo import Rollout, compute_gae, make_optimizer, ppo_loss, ppo_update


def _obs(n_nodes: int, batch: int | None = None, seed: int = 0) -> torch.Tensor:
    shape = (n_nodes, NUM_FEATURES) if batch is None else (batch, n_nodes, NUM_FEATURES)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- structure
def test_block_structure_local_undirected_edges():
    g = ModelGraph(names=list("abcde"), op_types=["linear"] * 5,
                   edges=[(0, 1), (1, 2), (2, 3), (1, 3), (3, 4)],
                   blocks=[[0], [1, 2, 3], [4]], block_kinds=["input", "repeated", "output"],
                   block_names=["input", "x", "output"], partition="repeated")
    s = BlockStructure.from_graph(g)
    assert [n.tolist() for n in s.nodes] == [[0], [1, 2, 3], [4]]
    # only edges inside a block, both directions, in local indices
    assert s.edges[0].shape == (2, 0) and s.edges[2].shape == (2, 0)
    assert s.edges[1].t().tolist() == [[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]]
    b = s.batched_edges(1, 2)
    assert b.t().tolist() == [[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1],
                              [3, 4], [3, 5], [4, 3], [4, 5], [5, 3], [5, 4]]
    assert s.batched_edges(0, 3).shape == (2, 0)
    assert s.num_nodes == 5


def test_agent_batch_equals_single(resnet_graph, small_agent_cfg):
    """Batched states (block-diagonal edges) give the same outputs as one at a time."""
    torch.manual_seed(0)
    agent = GNSAgent(small_agent_cfg).eval()
    s = BlockStructure.from_graph(resnet_graph)
    x = _obs(resnet_graph.num_nodes, batch=3)
    with torch.no_grad():
        mu, v = agent(x, s)
        singles = [agent(x[i], s) for i in range(3)]
    assert mu.shape == (3,) and v.shape == (3,)
    assert torch.allclose(mu, torch.cat([m for m, _ in singles]), atol=1e-6)
    assert torch.allclose(v, torch.cat([w for _, w in singles]), atol=1e-6)
    assert (mu.abs() <= small_agent_cfg.action_scale).all()
    assert not torch.allclose(mu[0], mu[1])  # different states, different actions


def test_agent_starts_near_keep_lr(mlp_graph):
    torch.manual_seed(0)
    agent = GNSAgent(AgentConfig())
    mu, _ = agent(_obs(mlp_graph.num_nodes, batch=4), BlockStructure.from_graph(mlp_graph))
    assert mu.abs().max().item() < 0.01  # last actor layer scaled by 0.01 and zero bias


def test_agent_works_on_any_structure(small_agent_cfg, mlp_graph, resnet_graph):
    torch.manual_seed(0)
    for cfg in (small_agent_cfg, AgentConfig(encoder="gat", hidden=8, head_hidden=4, type_dim=2)):
        agent = GNSAgent(cfg)
        for g in (mlp_graph, resnet_graph):
            mu, v = agent(_obs(g.num_nodes, batch=2), BlockStructure.from_graph(g))
            assert mu.shape == v.shape == (2,)
            assert torch.isfinite(mu).all() and torch.isfinite(v).all()


def test_param_groups_cover_all_parameters(small_agent_cfg):
    agent = GNSAgent(small_agent_cfg)
    groups = agent.param_groups(1e-3, 5e-3)
    assert [g["lr"] for g in groups] == [1e-3, 5e-3]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in agent.parameters()}
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in agent.critic.parameters()}


def test_norms_stay_in_eval_and_refresh_updates_them(resnet_graph, small_agent_cfg):
    agent = GNSAgent(small_agent_cfg)
    agent.train()
    assert not any(n.training for n in agent.encoder.norms)
    before = agent.encoder.norms[0].running_mean.clone()
    agent.encoder.refresh_norm_stats(_obs(resnet_graph.num_nodes, batch=4), BlockStructure.from_graph(resnet_graph))
    assert not any(n.training for n in agent.encoder.norms)
    assert not torch.equal(before, agent.encoder.norms[0].running_mean)


def test_invalid_agent_config():
    with pytest.raises(GNSError, match="encoder"):
        GNSAgent(AgentConfig(encoder="transformer"))
    with pytest.raises(GNSError, match="action_scale"):
        GNSAgent(AgentConfig(action_scale=1.0))


# ----------------------------------------------------------------------------- files
def test_agent_round_trip(tmp_path, resnet_graph, small_agent_cfg):
    torch.manual_seed(3)
    agent = GNSAgent(small_agent_cfg)
    with torch.no_grad():  # make the norms non-trivial so that buffers are part of the check
        agent.encoder.norms[0].running_mean.add_(0.3)
    path = agent.save(tmp_path / "sub" / "agent")
    assert path == tmp_path / "sub" / "agent.safetensors"
    meta = json.loads((tmp_path / "sub" / "agent.json").read_text())
    assert meta["version"] == 1 and meta["agent"]["hidden"] == 16 and meta["in_dim"] == NUM_FEATURES
    loaded = GNSAgent.load(path)
    assert loaded.cfg == small_agent_cfg
    s = BlockStructure.from_graph(resnet_graph)
    x = _obs(resnet_graph.num_nodes, batch=2)
    with torch.no_grad():
        a, b = agent.eval()(x, s), loaded.eval()(x, s)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    sd_a, sd_b = agent.state_dict(), loaded.state_dict()
    assert sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    # loading through the .json name works too
    assert GNSAgent.load(tmp_path / "sub" / "agent.json").cfg == small_agent_cfg


@pytest.fixture
def saved_agent(tmp_path, small_agent_cfg):
    return GNSAgent(small_agent_cfg).save(tmp_path / "agent.safetensors")


def test_truncated_weights_file(saved_agent):
    raw = saved_agent.read_bytes()
    saved_agent.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(GNSError, match="corrupt or not safetensors"):
        GNSAgent.load(saved_agent)


def test_edited_version(saved_agent):
    meta_file = saved_agent.with_suffix(".json")
    meta = json.loads(meta_file.read_text())
    meta["version"] = 99
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(GNSError, match="version 99"):
        GNSAgent.load(saved_agent)


@pytest.mark.parametrize("edit, match", [
    (lambda m: m.update(features=["x"]), "incompatible"),
    (lambda m: m.update(format="other"), "not a gnsched agent"),
    (lambda m: m["agent"].update(hidden=32), "do not match"),
    (lambda m: m["agent"].update(hidden=-1), "hidden must be a positive integer"),
    (lambda m: m.pop("in_dim"), "incomplete or invalid"),
])
def test_edited_config(saved_agent, edit, match):
    meta_file = saved_agent.with_suffix(".json")
    meta = json.loads(meta_file.read_text())
    edit(meta)
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(GNSError, match=match):
        GNSAgent.load(saved_agent)


def test_bad_json_missing_file_and_nan_weights(saved_agent, small_agent_cfg):
    from safetensors.torch import load_file, save_file

    meta_file = saved_agent.with_suffix(".json")
    text = meta_file.read_text()
    meta_file.write_text("{not json")
    with pytest.raises(GNSError, match="not valid JSON"):
        GNSAgent.load(saved_agent)
    meta_file.write_text(text)
    tensors = load_file(str(saved_agent))
    key = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    save_file(tensors, str(saved_agent))
    with pytest.raises(GNSError, match="NaN"):
        GNSAgent.load(saved_agent)
    meta_file.unlink()
    with pytest.raises(GNSError, match="does not exist"):
        GNSAgent.load(saved_agent)


# ----------------------------------------------------------------------------- GAE
def test_gae_hand_computed():
    gamma, lam = 0.9, 0.8
    r, v = [1.0, 0.0, 2.0], [0.5, 0.4, 0.3]
    # episode ends after the last action: no bootstrap
    d2 = 2.0 - 0.3                         # 1.7
    d1 = 0.0 + gamma * 0.3 - 0.4           # -0.13
    d0 = 1.0 + gamma * 0.4 - 0.5           # 0.86
    a2 = d2
    a1 = d1 + gamma * lam * a2             # 1.094
    a0 = d0 + gamma * lam * a1             # 1.64768
    adv, ret = compute_gae(torch.tensor(r), torch.tensor(v), torch.tensor([0.0, 0.0, 1.0]), 0.0, gamma, lam)
    assert adv.tolist() == pytest.approx([1.64768, 1.094, 1.7], abs=1e-6)
    assert adv.tolist() == pytest.approx([a0, a1, a2], abs=1e-6)
    assert ret.tolist() == pytest.approx([a0 + 0.5, a1 + 0.4, a2 + 0.3], abs=1e-6)


def test_gae_cut_trajectory_and_inner_done():
    gamma, lam = 0.9, 0.8
    # done after action 1: no bootstrap from V_2 there; cut after action 2: bootstrap from last_value = 1
    a2 = 2.0 + gamma * 1.0 - 0.3           # 2.6
    a1 = 0.0 - 0.4                         # -0.4 (terminal, no carry of a2)
    a0 = (1.0 + gamma * 0.4 - 0.5) + gamma * lam * a1   # 0.572
    adv, ret = compute_gae(torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.5, 0.4, 0.3]),
                           torch.tensor([0.0, 1.0, 0.0]), 1.0, gamma, lam)
    assert adv.tolist() == pytest.approx([a0, a1, a2], abs=1e-6)
    assert adv.tolist() == pytest.approx([0.572, -0.4, 2.6], abs=1e-6)
    assert ret.tolist() == pytest.approx([1.072, 0.0, 2.9], abs=1e-6)


def test_gae_lambda_zero_is_td_error():
    adv, _ = compute_gae(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 2.0]), torch.tensor([0.0, 1.0]), 0.0, 0.5, 0.0)
    assert adv.tolist() == pytest.approx([1.0 + 0.5 * 2.0, 1.0 - 2.0])


# ----------------------------------------------------------------------------- PPO
def _fixed_rollout(agent: GNSAgent, s: BlockStructure, n_nodes: int, length: int = 12) -> Rollout:
    gen = torch.Generator().manual_seed(1)
    ro = Rollout(s)
    with torch.no_grad():
        for t in range(length):
            x = torch.randn(n_nodes, NUM_FEATURES, generator=gen)
            mu, v = agent(x, s)
            a = mu + agent.cfg.sigma * torch.randn(1, generator=gen)
            ro.obs.append(x)
            ro.actions.append(float(a))
            ro.logprobs.append(float(agent.distribution(mu).log_prob(a)))
            ro.values.append(float(v))
            ro.rewards.append(float(torch.randn((), generator=gen)))
            ro.dones.append(1.0 if t == length - 1 else 0.0)
    return ro


def _batch_loss(agent, ro: Rollout, cfg: PPOConfig) -> float:
    adv, ret = compute_gae(torch.tensor(ro.rewards), torch.tensor(ro.values), torch.tensor(ro.dones), 0.0,
                           cfg.gamma, cfg.gae_lambda)
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)  # as ppo_update does
    with torch.no_grad():
        loss, _ = ppo_loss(agent, torch.stack(ro.obs), ro.structure, torch.tensor(ro.actions),
                           torch.tensor(ro.logprobs), adv, ret, cfg)
    return float(loss)


def test_ppo_update_lowers_loss(mlp_graph, small_agent_cfg):
    torch.manual_seed(0)
    agent = GNSAgent(small_agent_cfg).eval()
    s = BlockStructure.from_graph(mlp_graph)
    ro = _fixed_rollout(agent, s, mlp_graph.num_nodes)
    cfg = PPOConfig(epochs=10, minibatches=1)
    before = _batch_loss(agent, ro, cfg)
    # at the old policy the ratio is 1: policy loss is -mean(adv) = 0 for normalised advantages
    stats = ppo_update(agent, make_optimizer(agent, cfg), [ro], cfg, torch.Generator().manual_seed(0))
    after = _batch_loss(agent, ro, cfg)
    assert set(stats) == {"policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac"}
    assert after < before - 0.1 * abs(before)
    assert not agent.training  # ppo_update leaves the agent in eval mode


def test_ppo_loss_at_old_policy(mlp_graph, small_agent_cfg):
    torch.manual_seed(0)
    agent = GNSAgent(small_agent_cfg).eval()
    s = BlockStructure.from_graph(mlp_graph)
    ro = _fixed_rollout(agent, s, mlp_graph.num_nodes, length=4)
    cfg = PPOConfig()
    adv = torch.tensor([1.0, -2.0, 0.5, 0.5])
    ret = torch.tensor(ro.values) + 1.0  # value error exactly 1 everywhere
    loss, stats = ppo_loss(agent, torch.stack(ro.obs), s, torch.tensor(ro.actions), torch.tensor(ro.logprobs),
                           adv, ret, cfg)
    entropy = 0.5 + 0.5 * math.log(2 * math.pi) + math.log(small_agent_cfg.sigma)  # Gaussian entropy
    assert stats["policy_loss"] == pytest.approx(-0.0, abs=1e-5)   # ratio 1: -mean(adv) = 0
    assert stats["value_loss"] == pytest.approx(1.0, abs=1e-5)
    assert stats["entropy"] == pytest.approx(entropy, abs=1e-5)
    assert stats["approx_kl"] == pytest.approx(0.0, abs=1e-6)
    assert float(loss.detach()) == pytest.approx(-cfg.entropy_coef * entropy + cfg.value_coef * 1.0, abs=1e-5)


def test_ppo_update_empty_rollouts(small_agent_cfg, mlp_graph):
    agent = GNSAgent(small_agent_cfg)
    assert ppo_update(agent, make_optimizer(agent, PPOConfig()), [Rollout(BlockStructure.from_graph(mlp_graph))],
                      PPOConfig()) == {}


def test_ppo_config_validation():
    for bad in (PPOConfig(gamma=1.5), PPOConfig(epochs=0), PPOConfig(clip_eps=0.0), PPOConfig(entropy_coef=-1.0)):
        with pytest.raises(GNSError):
            bad.validate()
    PPOConfig().validate()


@pytest.mark.parametrize("value", [None, [1, 2]])
def test_agent_section_not_a_dict(saved_agent, value):
    meta_file = saved_agent.with_suffix(".json")
    meta = json.loads(meta_file.read_text())
    meta["agent"] = value
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(GNSError):
        GNSAgent.load(saved_agent)


def test_dense_gcn_path_equals_pyg_message_passing(small_agent_cfg):
    from gnsched.encoder import BlockStructure, HierarchicalEncoder
    from gnsched.features import NUM_FEATURES
    from gnsched.graph import ModelGraph

    graph = ModelGraph(names=[f"n{i}" for i in range(5)], op_types=["linear"] * 5,
                       edges=[(0, 1), (1, 2), (0, 2), (2, 3), (3, 4)], blocks=[[0], [1, 2, 3], [4]],
                       block_kinds=["input", "middle", "output"], block_names=["input", "middle", "output"],
                       partition="layerwise")
    s = BlockStructure.from_graph(graph)
    # block [1, 2, 3] has edges 1-2, 2-3 both ways plus self loops: degrees 2, 3, 2
    a = s.adj[1]
    assert a[0, 0] == pytest.approx(1 / 2) and a[1, 1] == pytest.approx(1 / 3)
    assert a[0, 1] == pytest.approx(1 / 6 ** 0.5) and a[0, 2] == 0
    torch.manual_seed(0)
    enc = HierarchicalEncoder(NUM_FEATURES, small_agent_cfg)
    x = torch.randn(3, 5, NUM_FEATURES)
    dense = enc(x, s)
    enc.dense = False
    assert torch.allclose(dense, enc(x, s), atol=1e-5)


def test_numpy_fast_path_equals_forward_and_follows_updates(resnet_graph, small_agent_cfg):
    """GNSAgent.act evaluates one CPU state in numpy (gnsched.inference, BN folded into the
    GCN weights); it must give the torch forward's mu, value and log-probability, also
    after the norms are refreshed and after an optimizer step changes the weights."""
    torch.manual_seed(0)
    agent = GNSAgent(small_agent_cfg)
    s = BlockStructure.from_graph(resnet_graph)
    n = resnet_graph.num_nodes
    sigma = small_agent_cfg.sigma

    def check(x):
        mu, value = agent(x, s)
        a, lp, v = agent.act(x, s, deterministic=True)
        assert a == pytest.approx(float(mu), abs=1e-6)
        assert v == pytest.approx(float(value), rel=1e-5, abs=1e-6)
        assert lp == pytest.approx(-math.log(sigma) - 0.5 * math.log(2 * math.pi), rel=1e-9)
        g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        a, lp, _ = agent.act(x, s, deterministic=False, generator=g1)
        expect = float(mu) + sigma * float(torch.randn((1,), generator=g2))
        assert a == pytest.approx(expect, abs=1e-6)
        ref = float(agent.distribution(mu).log_prob(torch.tensor([a])))
        assert lp == pytest.approx(ref, abs=1e-4)

    check(_obs(n, seed=1))
    agent.encoder.refresh_norm_stats(_obs(n, batch=6, seed=2), s)  # running stats move
    check(_obs(n, seed=1))
    opt = torch.optim.SGD(agent.parameters(), lr=0.5)
    agent(_obs(n, batch=3, seed=4), s)[1].sum().backward()
    opt.step()  # in-place weight change: the cached snapshot must be rebuilt
    check(_obs(n, seed=5))
    state = {k: v * 1.5 if v.is_floating_point() else v for k, v in agent.state_dict().items()}
    agent.load_state_dict(state, assign=True)
    check(_obs(n, seed=6))
