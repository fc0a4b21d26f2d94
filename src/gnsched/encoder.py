"""Hierarchical graph encoder (paper §4.1, Eq. 1 and the four steps below it).

Within a block, ``L`` graph-convolution layers (Kipf & Welling) compute::

    H^{l+1} = ReLU(BN(Â H^l W^l)),   Â = D^{-1/2} (A + Aᵀ + I) D^{-1/2}

with PyTorch Geometric's ``GCNConv`` (or ``GATConv``, appendix E.5). The data-flow graph
is directed; GCN's normalisation is defined for a symmetric adjacency, so messages flow
along both directions of every edge inside a block.

The hierarchy (steps i–iv): blocks are encoded in order ``G0, G1, ..., G(M+1)`` with
*one* set of weights shared by all blocks; the summary of block ``i``,
``h_Gi = mean{h_v : v in Gi}``, is fed into block ``i+1`` by concatenating it to the
input features of every node of that block (zeros for ``G0``); the state embedding is
``h_G = mean{h_v : v in V}`` over all nodes. Mean aggregation keeps the encoder
independent of the model's size, so an agent transfers across architectures.

Speed: for GCN the propagation ``Â (H W) + b`` is computed with the ``GCNConv`` layers'
own weights and a dense ``Â`` per block, precomputed once with PyG's ``gcn_norm``, as one
batched matmul. Blocks hold tens of nodes, and PyG's generic message passing costs
~0.2 ms per call on such graphs, which made a decision 4× slower; the tests check that both
paths give the same result. GAT uses PyG's message passing as is.

Batch normalisation runs over the nodes of all states in a batch. To keep the policy a
deterministic function of the state (identical log-probabilities when acting and when
PPO re-evaluates), the norms are used with their running statistics (eval mode) and
refreshed from the collected states once per PPO update: :meth:`refresh_norm_stats`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from .config import AgentConfig
from .graph import OP_TYPES, ModelGraph


@dataclass
class BlockStructure:
    """What the encoder needs of a :class:`ModelGraph`: per block, its node indices, its
    local (undirected) edge index and its dense GCN-normalised adjacency ``Â`` (with self
    loops), plus the operator type of every node."""

    nodes: list[torch.Tensor]
    edges: list[torch.Tensor]
    type_ids: torch.Tensor
    num_nodes: int
    adj: list[torch.Tensor] = field(default_factory=list)

    def __post_init__(self):
        if not self.adj:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                from torch_geometric.nn.conv.gcn_conv import gcn_norm

            for ei, idx in zip(self.edges, self.nodes):
                n = idx.numel()
                loops_ei, w = gcn_norm(ei, None, num_nodes=n, add_self_loops=True)
                dense = torch.zeros(n, n)
                # message passing adds w · x[source] into target: Â[target, source] = w
                dense.index_put_((loops_ei[1], loops_ei[0]), w, accumulate=True)
                self.adj.append(dense)

    @classmethod
    def from_graph(cls, graph: ModelGraph) -> "BlockStructure":
        nodes, edges = [], []
        for block in graph.blocks:
            local = {v: i for i, v in enumerate(block)}
            pairs = [(local[u], local[v]) for u, v in graph.edges if u in local and v in local]
            pairs += [(b, a) for a, b in pairs]
            ei = torch.tensor(sorted(set(pairs)), dtype=torch.long).t().reshape(2, -1)
            nodes.append(torch.tensor(block, dtype=torch.long))
            edges.append(ei)
        return cls(nodes, edges, graph.type_ids(), graph.num_nodes)

    def batched_edges(self, block: int, batch: int) -> torch.Tensor:
        """Disjoint union of ``batch`` copies of block ``block``'s edges."""
        ei, n = self.edges[block], len(self.nodes[block])
        if batch == 1 or ei.numel() == 0:
            return ei if batch == 1 else ei.new_zeros(2, 0)
        offsets = (torch.arange(batch) * n).repeat_interleave(ei.shape[1])
        return ei.repeat(1, batch) + offsets


def _make_conv(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    with warnings.catch_warnings():  # PyG's import warns about torch.jit.script; not ours to fix
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch_geometric.nn import GATConv, GCNConv  # lazy: importing PyG takes seconds

    if kind == "gat":
        return GATConv(in_dim, out_dim, heads=4, concat=False)
    return GCNConv(in_dim, out_dim)


class HierarchicalEncoder(nn.Module):
    """Maps node features ``[B, N, F]`` to state embeddings ``[B, hidden]``."""

    def __init__(self, in_dim: int, cfg: AgentConfig):
        super().__init__()
        self.hidden = cfg.hidden
        #: GCN propagation as a dense matmul (see module docstring); False: PyG message passing.
        self.dense = cfg.encoder == "gcn"
        self.type_emb = nn.Embedding(len(OP_TYPES), cfg.type_dim)
        dims = [in_dim + cfg.type_dim + cfg.hidden] + [cfg.hidden] * cfg.layers
        self.convs = nn.ModuleList(_make_conv(cfg.encoder, a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(cfg.hidden, momentum=0.3) for _ in range(cfg.layers))
        self.norms.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.norms.eval()  # see module docstring: norms only change in refresh_norm_stats
        return self

    def forward(self, x: torch.Tensor, s: BlockStructure) -> torch.Tensor:
        # x: [B, N, F]
        batch = x.shape[0]
        types = self.type_emb(s.type_ids.to(x.device))  # [N, type_dim]
        summary = x.new_zeros(batch, self.hidden)  # h_{G_{i-1}}, zeros before G0
        total = x.new_zeros(batch, self.hidden)
        for b, idx in enumerate(s.nodes):
            idx = idx.to(x.device)
            n = idx.numel()
            h = torch.cat([x[:, idx], types[idx].expand(batch, n, -1),
                           summary[:, None, :].expand(batch, n, self.hidden)], dim=-1)
            if self.dense:
                adj = s.adj[b].to(x)  # [n, n]
                for conv, norm in zip(self.convs, self.norms):
                    h = adj @ conv.lin(h) + conv.bias  # [B, n, hidden], Eq. 1 before the norm
                    h = torch.relu(norm(h.reshape(batch * n, -1))).reshape(batch, n, -1)
            else:
                h = h.reshape(batch * n, -1)  # [B*n, F + type_dim + hidden]
                ei = s.batched_edges(b, batch).to(x.device)
                for conv, norm in zip(self.convs, self.norms):
                    h = torch.relu(norm(conv(h, ei)))
                h = h.reshape(batch, n, self.hidden)
            summary = h.mean(dim=1)  # step (ii): block summary by mean
            total = total + h.sum(dim=1)
        return total / s.num_nodes  # step (iv): graph summary by mean over all nodes

    @torch.no_grad()
    def refresh_norm_stats(self, x: torch.Tensor, s: BlockStructure) -> None:
        """Update the norms' running statistics from a batch of states ``[B, N, F]``."""
        self.norms.train()
        try:
            self.forward(x, s)
        finally:
            self.norms.eval()
        # The running statistics change inside the kernel, which bumps no version counter
        # of theirs; num_batches_tracked does move, and the fast path keys on it too.
