"""Single-state inference of a GNS agent in numpy: the per-decision fast path.

A decision evaluates the hierarchical encoder and the two heads on *one* state of tens
of nodes. In PyTorch that is ~60 small ops at several microseconds of dispatch each,
~0.7 ms, which alone is ~1 % of a 50-step window of a small MLP. The same arithmetic in
numpy, with batch normalisation (always in eval mode, see :mod:`gnsched.encoder`)
folded into the graph-convolution weights, takes ~0.1 ms. It is hand-written because
no library evaluates a PyG model outside PyTorch; ``tests/test_rl.py`` checks it against
:meth:`GNSAgent.forward`.

Per block ``b`` with dense normalised adjacency ``Â_b`` and each layer ``l``::

    H <- ReLU(Â_b H W'_l + c_l),   W'_l = W_l · s_l,   c_l = b_l · s_l + β_l - μ_l · s_l,
    s_l = γ_l / sqrt(σ²_l + ε)

which equals ``ReLU(BN(Â H W_l + b_l))`` with the norm's running statistics. The block
input is ``[x_v, type_emb(v), h_{G_{b-1}}]``; ``h_G`` is the mean over all nodes and
``mu = action_scale · tanh(actor(h_G))``, ``V = critic(h_G)`` (Eq. 4). Computed in float64.

Folded weights are cached on the agent and rebuilt when any parameter or buffer changes
in place (their version counters: optimizer steps, ``load_state_dict``; the norms'
``num_batches_tracked`` moves at every refresh). Replacing tensors wholesale
(``load_state_dict(assign=True)``, assigning ``.data``) must be followed by
``agent.invalidate()``; :class:`~gnsched.agent.GNSAgent` does that for its own loads.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .agent import GNSAgent
    from .encoder import BlockStructure


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _tensors(agent: "GNSAgent") -> list[torch.Tensor]:
    return [*agent.parameters(), *agent.buffers()]


class FoldedAgent:
    """A numpy snapshot of a GCN :class:`~gnsched.agent.GNSAgent` for one state at a time."""

    def __init__(self, agent: "GNSAgent"):
        enc = agent.encoder
        self.tensors = _tensors(agent)
        self.versions = [t._version for t in self.tensors]
        self.hidden = enc.hidden
        self.layers: list[tuple[np.ndarray, np.ndarray]] = []
        for conv, norm in zip(enc.convs, enc.norms):
            scale = _np(norm.weight) / np.sqrt(_np(norm.running_var) + norm.eps)
            shift = _np(norm.bias) - _np(norm.running_mean) * scale
            self.layers.append((_np(conv.lin.weight).T * scale, _np(conv.bias) * scale + shift))
        self.type_emb = _np(enc.type_emb.weight)
        self.heads = [(_np(h[0].weight).T, _np(h[0].bias), _np(h[2].weight).T, _np(h[2].bias))
                      for h in (agent.actor, agent.critic)]
        self.action_scale = agent.cfg.action_scale

    @staticmethod
    def structure(s: "BlockStructure") -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, int]:
        """numpy views of a structure (cached on it: structures are immutable once built)."""
        cached = s.__dict__.get("_numpy")
        if cached is None:
            cached = ([a.double().numpy() for a in s.adj], [i.numpy() for i in s.nodes],
                      s.type_ids.numpy(), s.num_nodes)
            s.__dict__["_numpy"] = cached
        return cached

    def __call__(self, x: np.ndarray, s: "BlockStructure") -> tuple[float, float]:
        """``(mu, value)`` for one state ``x [N, F]``."""
        adjs, nodes, type_ids, num_nodes = self.structure(s)
        types = self.type_emb[type_ids]
        summary = np.zeros(self.hidden)
        total = np.zeros(self.hidden)
        for adj, idx in zip(adjs, nodes):
            h = np.concatenate([x[idx], types[idx], np.broadcast_to(summary, (len(idx), self.hidden))], axis=1)
            for w, c in self.layers:
                h = np.maximum(adj @ (h @ w) + c, 0.0)
            summary = h.mean(axis=0)
            total += h.sum(axis=0)
        h_g = total / num_nodes
        (a1, ab1, a2, ab2), (c1, cb1, c2, cb2) = self.heads
        mu = self.action_scale * np.tanh(np.tanh(h_g @ a1 + ab1) @ a2 + ab2)
        value = np.tanh(h_g @ c1 + cb1) @ c2 + cb2
        return float(mu[0]), float(value[0])


def folded(agent: "GNSAgent") -> FoldedAgent | None:
    """The agent's cached :class:`FoldedAgent`, rebuilt if its weights changed; ``None``
    when the fast path does not apply (GAT or baseline encoders, weights off the CPU)."""
    from .encoder import HierarchicalEncoder

    enc = agent.encoder
    # Exactly the GCN hierarchy: baseline agents (SRLS, CSS) bring encoders of their own.
    if type(enc) is not HierarchicalEncoder or not enc.dense or enc.type_emb.weight.device.type != "cpu":
        return None
    cached = agent.__dict__.get("_folded")
    if cached is None or [t._version for t in cached.tensors] != cached.versions:
        cached = FoldedAgent(agent)
        agent.__dict__["_folded"] = cached
    return cached
