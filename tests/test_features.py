"""Node features (paper §4.1): hand-computed statistics on tiny models."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gnsched.features import FEATURE_NAMES, NUM_FEATURES, NodeFeatures, lg, slog
from gnsched.graph import build_graph

F = {name: i for i, name in enumerate(FEATURE_NAMES)}


def _lg(x: float) -> float:
    return math.log10(x + 1e-12) / 6.0


def _slog(x: float) -> float:
    return math.copysign(math.log1p(abs(x) / 1e-6) / math.log1p(1e6), x) if x else 0.0


def test_transforms_closed_form():
    assert lg(torch.tensor(0.0)).item() == pytest.approx(-2.0)
    assert lg(torch.tensor(1.0)).item() == pytest.approx(0.0, abs=1e-9)
    assert lg(torch.tensor(1e-6)).item() == pytest.approx(-1.0, rel=1e-5)
    assert slog(torch.tensor(1.0)).item() == pytest.approx(1.0)
    assert slog(torch.tensor(-1.0)).item() == pytest.approx(-1.0)
    assert slog(torch.tensor(0.0)).item() == 0.0
    assert slog(torch.tensor(0.5)).item() == pytest.approx(_slog(0.5), rel=1e-6)


@pytest.fixture
def linear_with_grad():
    """Linear(3, 2) with weight 0.5 and bias 0; loss = sum of outputs for x = [1, 2, 3]."""
    lin = nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.fill_(0.5)
        lin.bias.zero_()
    x = torch.tensor([[1.0, 2.0, 3.0]])
    g = build_graph(lin, x)
    lin(x).sum().backward()  # dW = [[1,2,3],[1,2,3]], db = [1, 1]
    return lin, g


def test_linear_features_hand_computed(linear_with_grad):
    lin, g = linear_with_grad
    x = NodeFeatures(lin, g)(lr=1e-3, train_loss=2.0, progress=0.25)
    assert x.shape == (1, NUM_FEATURES) == (1, 10)
    row = x[0]
    assert row[F["weight_mean"]].item() == pytest.approx(_slog(0.5), rel=1e-6)
    assert row[F["weight_var"]].item() == pytest.approx(_lg(0.0)) == pytest.approx(-2.0)
    assert row[F["bias_mean"]].item() == 0.0
    assert row[F["bias_var"]].item() == pytest.approx(-2.0)
    assert row[F["has_bias"]].item() == 1.0
    # |g| over all 8 parameters: [1,2,3,1,2,3,1,1] -> mean 14/8, E[g^2] = 30/8
    mean = 14 / 8
    var = 30 / 8 - mean ** 2
    assert var == pytest.approx(0.6875)
    assert row[F["absgrad_mean"]].item() == pytest.approx(_lg(mean), rel=1e-5)
    assert row[F["absgrad_var"]].item() == pytest.approx(_lg(var), rel=1e-5)
    assert row[F["lr"]].item() == pytest.approx(-0.5, rel=1e-6)  # log10(1e-3) / 6
    assert row[F["progress"]].item() == pytest.approx(0.25)


def test_loss_feature_is_log10_of_loss(linear_with_grad):
    # The code uses log10(loss + 1e-8) (not divided by 6, unlike lg); a non-finite loss is read as 1e6.
    lin, g = linear_with_grad
    feats = NodeFeatures(lin, g)
    assert feats(1e-3, 2.0)[0, F["train_loss"]].item() == pytest.approx(math.log10(2.0 + 1e-8), rel=1e-6)
    assert feats(1e-3, float("nan"))[0, F["train_loss"]].item() == pytest.approx(6.0)
    assert feats(1e-3, float("inf"))[0, F["train_loss"]].item() == pytest.approx(6.0)


def test_features_follow_weight_changes(linear_with_grad):
    lin, g = linear_with_grad
    feats = NodeFeatures(lin, g)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
        lin.bias.copy_(torch.tensor([-1.0, -3.0]))
    row = feats(1e-2, 1.0)[0]
    assert row[F["weight_mean"]].item() == pytest.approx(_slog(3.5), rel=1e-6)
    assert row[F["weight_var"]].item() == pytest.approx(_lg(35 / 12), rel=1e-5)  # population variance of 1..6
    assert row[F["bias_mean"]].item() == pytest.approx(_slog(-2.0), rel=1e-6)
    assert row[F["bias_var"]].item() == pytest.approx(_lg(1.0), abs=1e-6)


def test_no_bias_and_no_grad():
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -1.0], [3.0, -3.0]]))
    g = build_graph(model, torch.randn(1, 2))
    x = NodeFeatures(model, g)(lr=1.0, train_loss=1.0)  # no backward: grads are None -> zeros
    assert x[0, F["has_bias"]].item() == 0.0 and x[1, F["has_bias"]].item() == 1.0
    assert x[0, F["bias_mean"]].item() == 0.0
    assert x[0, F["bias_var"]].item() == pytest.approx(-2.0)
    assert x[0, F["weight_mean"]].item() == 0.0
    assert x[0, F["weight_var"]].item() == pytest.approx(_lg(5.0), rel=1e-5)
    assert x[:, F["absgrad_mean"]].tolist() == pytest.approx([-2.0, -2.0])
    assert x[:, F["lr"]].tolist() == [0.0, 0.0]
    assert x[:, F["progress"]].tolist() == [0.0, 0.0]


def test_resnet_has_bias_pattern(resnet, resnet_graph):
    x = NodeFeatures(resnet, resnet_graph)(1e-3, 1.0)
    assert x.shape == (21, NUM_FEATURES)
    expected = [1.0 if t in ("norm", "linear") else 0.0 for t in resnet_graph.op_types]  # convs have bias=False
    assert x[:, F["has_bias"]].tolist() == expected
    # BatchNorm init: weight 1, bias 0 -> weight_var = lg(0), bias_mean = 0
    for i, t in enumerate(resnet_graph.op_types):
        if t == "norm":
            assert x[i, F["weight_mean"]].item() == pytest.approx(1.0)
            assert x[i, F["weight_var"]].item() == pytest.approx(-2.0)
    assert torch.isfinite(x).all()


class TiedLM(nn.Module):
    """Embedding and output projection share one weight (as in most language models)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        return self.head(self.emb(ids))


def test_tied_weights_do_not_crash():
    model = TiedLM()
    g = build_graph(model, torch.tensor([[1, 2, 3]]))
    assert g.param_names == [["emb.weight"], ["head.weight"]]
    x = NodeFeatures(model, g)(1e-3, 1.0)
    assert x.shape == (2, NUM_FEATURES)
    assert x[0, F["weight_mean"]].item() == pytest.approx(x[1, F["weight_mean"]].item())


def test_weight_variance_is_accurate_near_one():
    model = nn.Sequential(nn.Linear(4, 64), nn.LayerNorm(64))
    with torch.no_grad():  # LayerNorm weights a few small optimizer steps away from their init of 1
        model[1].weight.copy_(1.0 + 1e-4 * torch.randn(64, generator=torch.Generator().manual_seed(0)))
    g = build_graph(model, torch.randn(2, 4))
    x = NodeFeatures(model, g)(1e-3, 1.0)
    true_var = model[1].weight.double().var(unbiased=False).item()
    assert x[1, F["weight_var"]].item() == pytest.approx(_lg(true_var), abs=0.02)


def test_variance_exact_where_single_pass_would_cancel():
    """Norm weights near 1 with a tiny spread: E[x²] - E[x]² in float32 sums would lose the
    variance; tensor_stats must fall back to the exact two-pass value for such tensors and
    keep the fast formula's result for ordinary ones."""
    from gnsched.features import tensor_stats

    g = torch.Generator().manual_seed(0)
    near_one = 1.0 + 1e-4 * torch.randn(4096, generator=g)
    ordinary = torch.randn(300, 200, generator=g)
    constant = torch.full((7,), 0.25)
    var, mean = tensor_stats([near_one, ordinary, constant])
    for i, t in enumerate([near_one, ordinary, constant]):
        ref_var, ref_mean = torch.var_mean(t.double(), correction=0)
        assert mean[i] == pytest.approx(float(ref_mean), rel=1e-6)
        assert var[i] == pytest.approx(float(ref_var), rel=1e-4, abs=1e-30)
    assert var[2] == 0.0
    avar, amean = tensor_stats([ordinary], absolute=True)
    ref_var, ref_mean = torch.var_mean(ordinary.abs().double(), correction=0)
    assert (avar[0], amean[0]) == (pytest.approx(float(ref_var), rel=1e-4), pytest.approx(float(ref_mean), rel=1e-6))


def test_sparse_gradients_count_as_their_dense_tensor():
    """nn.Embedding(sparse=True) gives sparse gradients: statistics as of the dense tensor."""
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Embedding(20, 4, sparse=sparse), nn.Flatten(), nn.Linear(12, 2))
              for sparse in (True, False)]
    models[1].load_state_dict(models[0].state_dict())
    x = torch.tensor([[1, 5, 5]])
    feats = []
    for m in models:
        m(x).sum().backward()
        feats.append(NodeFeatures(m, build_graph(m, x))(1e-3, 1.0))
    assert models[0][0].weight.grad.is_sparse
    assert torch.equal(feats[0], feats[1])
