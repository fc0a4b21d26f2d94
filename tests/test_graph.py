"""Graph extraction and block partition (paper §4.1)."""
from __future__ import annotations

import pytest
import torch
import torch.fx
from torch import nn

from gnsched.errors import GNSError
from gnsched.graph import OP_TYPES, build_graph, op_type

from conftest import TinyResNet, param_owners


# ----------------------------------------------------------------------------- ResNet
def test_resnet_one_node_per_parameterised_module(resnet, resnet_graph):
    owners = param_owners(resnet)
    # stem conv+bn, 4 blocks x (conv1, bn1, conv2, bn2), 1x1 shortcut conv+bn, fc
    assert len(owners) == 2 + 4 * 4 + 2 + 1 == 21
    assert resnet_graph.num_nodes == 21
    assert sorted(resnet_graph.names) == sorted(owners)
    assert len(set(resnet_graph.names)) == len(resnet_graph.names)
    # every parameter of the model belongs to exactly one node
    all_params = sorted(n for n, _ in resnet.named_parameters())
    assert sorted(p for ps in resnet_graph.param_names for p in ps) == all_params


def test_resnet_op_types(resnet_graph):
    by_name = dict(zip(resnet_graph.names, resnet_graph.op_types))
    assert by_name["stem.0"] == "conv"
    assert by_name["stem.1"] == "norm"
    assert by_name["layer2.0.downsample.0"] == "conv"
    assert by_name["fc"] == "linear"
    assert resnet_graph.op_types.count("conv") == 10
    assert resnet_graph.op_types.count("norm") == 10
    assert resnet_graph.type_ids().tolist() == [OP_TYPES.index(t) for t in resnet_graph.op_types]


def test_resnet_repeated_blocks(resnet_graph):
    g = resnet_graph
    assert g.partition == "repeated"
    assert g.num_repeated == 4
    assert g.block_kinds == ["input", "repeated", "repeated", "repeated", "repeated", "output"]
    assert g.block_names == ["input", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "output"]
    names = lambda b: sorted(g.names[i] for i in g.blocks[b])  # noqa: E731
    assert names(0) == ["stem.0", "stem.1"]
    assert names(-1) == ["fc"]
    assert names(1) == ["layer1.0.bn1", "layer1.0.bn2", "layer1.0.conv1", "layer1.0.conv2"]
    assert names(3) == sorted(["layer2.0.conv1", "layer2.0.bn1", "layer2.0.conv2", "layer2.0.bn2",
                               "layer2.0.downsample.0", "layer2.0.downsample.1"])
    # the blocks partition the nodes
    assert sorted(i for b in g.blocks for i in b) == list(range(g.num_nodes))


def _fx_edges(model: nn.Module) -> set[tuple[str, str]]:
    """Edges between parameter-owning modules according to torch.fx."""
    gm = torch.fx.symbolic_trace(model)
    mods = dict(model.named_modules())

    def owns_params(node) -> bool:
        return node.op == "call_module" and any(True for _ in mods[node.target].parameters(recurse=False))

    edges: set[tuple[str, str]] = set()
    for node in gm.graph.nodes:
        if not owns_params(node):
            continue
        stack, seen = list(node.all_input_nodes), set()
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if owns_params(n):
                edges.add((n.target, node.target))
            elif n.op != "placeholder" and n.op != "get_attr":
                stack.extend(n.all_input_nodes)
    return edges


def test_hook_graph_equals_fx_graph(resnet, resnet_graph):
    fx_edges = _fx_edges(resnet)
    hook_edges = {(resnet_graph.names[u], resnet_graph.names[v]) for u, v in resnet_graph.edges}
    assert len(fx_edges) == 28  # sanity: the fx walk itself finds the residual edges
    assert ("layer1.0.bn2", "layer2.0.downsample.0") in fx_edges  # skip over layer1.1's identity path
    assert hook_edges == fx_edges


def test_hook_graph_equals_fx_graph_on_mlp(mlp_model, mlp_graph):
    hook_edges = {(mlp_graph.names[u], mlp_graph.names[v]) for u, v in mlp_graph.edges}
    assert hook_edges == _fx_edges(mlp_model) == {("0", "2"), ("2", "4")}


def test_edge_index_layout(resnet_graph):
    ei = resnet_graph.edge_index()
    assert ei.dtype == torch.long
    assert ei.shape == (2, len(resnet_graph.edges))
    assert [tuple(e) for e in ei.t().tolist()] == resnet_graph.edges


# ----------------------------------------------------------------------------- BERT
@pytest.fixture(scope="module")
def bert_graph():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=32, num_labels=2)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg)
    ids = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(0))
    return model, build_graph(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})


def test_bert_one_repeated_block_per_layer(bert_graph):
    model, g = bert_graph
    assert sorted(g.names) == sorted(param_owners(model))
    assert g.partition == "repeated"
    assert g.num_repeated == 3
    assert g.block_names[1:-1] == ["bert.encoder.layer.0", "bert.encoder.layer.1", "bert.encoder.layer.2"]
    for b in (1, 2, 3):
        layer = g.block_names[b]
        # query, key, value, attention output dense + LN, intermediate dense, output dense + LN
        assert len(g.blocks[b]) == 8
        assert all(g.names[i].startswith(layer + ".") for i in g.blocks[b])


def test_bert_input_and_output_blocks(bert_graph):
    _, g = bert_graph
    inp = {g.names[i] for i in g.blocks[0]}
    out = {g.names[i] for i in g.blocks[-1]}
    assert g.block_kinds[0] == "input" and g.block_kinds[-1] == "output"
    assert inp == {"bert.embeddings.word_embeddings", "bert.embeddings.position_embeddings",
                   "bert.embeddings.token_type_embeddings", "bert.embeddings.LayerNorm"}
    assert out == {"bert.pooler.dense", "classifier"}
    by_name = dict(zip(g.names, g.op_types))
    assert by_name["bert.embeddings.word_embeddings"] == "embedding"
    assert by_name["bert.embeddings.LayerNorm"] == "norm"


def test_bert_attention_edges(bert_graph):
    _, g = bert_graph
    idx = {n: i for i, n in enumerate(g.names)}
    p = "bert.encoder.layer.1."
    ln_prev = idx["bert.encoder.layer.0.output.LayerNorm"]
    out_dense = idx[p + "attention.output.dense"]
    for k in ("query", "key", "value"):
        assert (ln_prev, idx[p + "attention.self." + k]) in g.edges
        assert (idx[p + "attention.self." + k], out_dense) in g.edges
    # residual: the previous layer's output LayerNorm feeds the attention LayerNorm
    assert (ln_prev, idx[p + "attention.output.LayerNorm"]) in g.edges


# ----------------------------------------------------------------------------- layerwise
def test_mlp_layerwise_partition(mlp_graph):
    g = mlp_graph
    assert g.names == ["0", "2", "4"]
    assert g.edges == [(0, 1), (1, 2)]
    assert g.partition == "layerwise"
    assert g.num_repeated == 0
    assert g.blocks == [[0], [1], [2]]
    assert g.block_kinds == ["input", "middle", "output"]
    assert g.block_names == ["input", "middle", "output"]


def test_two_layer_mlp_has_no_middle_block():
    from gnsched.tasks import mlp

    g = build_graph(mlp(6, hidden=5, out_dim=3, layers=2), torch.randn(2, 6))
    assert g.names == ["0", "2"]
    assert g.blocks == [[0], [1]] and g.block_kinds == ["input", "output"]
    assert g.partition == "layerwise"


class TwoBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 8), nn.Linear(4, 8)
        self.c, self.d, self.e = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x):
        h = torch.relu(self.a(x) + self.b(x))
        return self.e(self.d(torch.relu(self.c(h))))


def test_layerwise_sources_and_sinks():
    g = build_graph(TwoBranch(), torch.randn(3, 4))
    assert g.partition == "layerwise"
    named = [[g.names[i] for i in b] for b in g.blocks]
    assert named == [["a", "b"], ["c", "d"], ["e"]]
    assert {(g.names[u], g.names[v]) for u, v in g.edges} == {("a", "c"), ("b", "c"), ("c", "d"), ("d", "e")}


def test_single_layer_model_has_only_an_input_block():
    g = build_graph(nn.Linear(3, 2), torch.randn(1, 3))
    assert g.names == [""]
    assert g.param_names == [["weight", "bias"]]
    assert g.blocks == [[0]] and g.block_kinds == ["input"]


def test_repeated_containers_inside_modulelist():
    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(4, 8)
            self.layers = nn.ModuleList(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8)) for _ in range(3))
            self.out = nn.Linear(8, 2)

        def forward(self, x):
            x = self.inp(x)
            for layer in self.layers:
                x = x + layer(x)
            return self.out(x)

    g = build_graph(Stack(), torch.randn(2, 4))
    assert g.partition == "repeated"
    assert g.block_names == ["input", "layers.0", "layers.1", "layers.2", "output"]
    assert [len(b) for b in g.blocks] == [1, 2, 2, 2, 1]


# ----------------------------------------------------------------------------- misc
def test_frozen_parameters_still_nodes_and_stay_frozen():
    from gnsched.tasks import mlp

    model = mlp(6, hidden=5, out_dim=3)
    for p in model[0].parameters():
        p.requires_grad_(False)
    g = build_graph(model, torch.randn(2, 6))
    assert g.names == ["0", "2", "4"]
    assert g.edges == [(0, 1), (1, 2)]
    assert [p.requires_grad for p in model.parameters()] == [False, False, True, True, True, True]


def test_model_without_parameters_raises():
    with pytest.raises(GNSError, match="no parameters"):
        build_graph(nn.Sequential(nn.ReLU(), nn.Flatten()), torch.randn(2, 3))


def test_unused_parameterised_module_raises_when_nothing_runs():
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x):
            return x * 2

    with pytest.raises(GNSError, match="no parameterised module"):
        build_graph(Unused(), torch.randn(2, 3))


@pytest.mark.parametrize("module, kind", [
    (nn.Conv1d(2, 2, 3), "conv"), (nn.ConvTranspose2d(2, 2, 3), "conv"), (nn.BatchNorm1d(3), "norm"),
    (nn.LayerNorm(3), "norm"), (nn.GroupNorm(1, 2), "norm"), (nn.Embedding(5, 2), "embedding"),
    (nn.MultiheadAttention(4, 2), "attention"), (nn.Linear(2, 2), "linear"), (nn.PReLU(), "other"),
])
def test_op_type(module, kind):
    assert op_type(module) == kind


def test_summary_mentions_counts(resnet_graph):
    first = resnet_graph.summary().splitlines()[0]
    assert first == "21 nodes, 28 edges, 6 blocks (4 repeated; partition: repeated)"


def test_graph_is_independent_of_weights():
    torch.manual_seed(1)
    a = build_graph(TinyResNet(), torch.randn(2, 3, 8, 8))
    torch.manual_seed(2)
    b = build_graph(TinyResNet(), torch.randn(2, 3, 8, 8))
    assert (a.names, a.edges, a.blocks) == (b.names, b.edges, b.blocks)
