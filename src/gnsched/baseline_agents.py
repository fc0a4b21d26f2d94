"""The paper's learned baselines as agents: SRLS (Xu et al., 2019) and CSS (§5.6).

Both are :class:`~gnsched.agent.GNSAgent` subclasses that swap the hierarchical graph
encoder for a fixed state vector read off the same observation ``x [N, F]`` (node
features of :mod:`gnsched.features`); the heads are GNS's (actor and critic, each a
2-layer MLP with ``head_hidden`` = 32 hidden units, Eq. 4 squashing, fixed sigma), so PPO,
acting, application and files are shared with GNS. The fields ``encoder``, ``hidden``,
``layers`` and ``type_dim`` of :class:`AgentConfig` are unused by these agents (kept in
their files for a uniform format).

Feature layout: the first ``F - 3`` columns of ``x`` are per-node statistics (weights,
biases, |grad|), the last 3 are the global ``lr``, ``train_loss`` and ``progress``
(repeated at every node; ``progress`` is 0 when the env's ``progress_feature`` is off).

SRLS state (``F = 10`` features, size 10)::

    s = x[v_last] = [ w_mean, w_var, b_mean, b_var, has_bias, |g|_mean, |g|_var,   (final layer)
                      log lr, log train loss, t/T ]                               (globals)

where ``v_last`` is the last node (in execution order) of the output block ``G(M+1)``:
the final layer for an MLP or a ResNet, the last-run head of a model with several output
nodes. Xu et al. also feed the validation loss; the observation here carries no
validation signal (it is measured only with probability p), so SRLS sees training loss
and lr, as for GNS. The policy sees every architecture through one layer, so an SRLS agent
transfers across models (as in Xu et al.). Training validates at every decision (p = 1,
:mod:`gnsched.agent_kinds`); the reward is this project's (Eq. 2, the validation-metric
difference, scaled), not Xu et al.'s validation loss, so that only the state differs from
GNS.

CSS state (size ``N · (F - 3) + 3``)::

    s = [ x[0, :F-3], x[1, :F-3], ..., x[N-1, :F-3], lr, train loss, t/T ]

every node's own statistics concatenated in node (execution) order, followed by the global
features once (they are identical at every node, so repeating them N times would add no
information). The input width depends on N: a CSS agent is tied to one architecture and
raises :class:`GNSError` on a graph with another node count (the paper's point: "cannot be
applied to different target models").
"""
from __future__ import annotations

import torch
from torch import nn

from .agent import GNSAgent
from .config import AgentConfig
from .encoder import BlockStructure
from .errors import GNSError
from .features import FEATURE_NAMES, NUM_FEATURES

#: Node features that are global (identical at every node), the last columns of ``x``.
GLOBAL_FEATURES: tuple[str, ...] = ("lr", "train_loss", "progress")
assert FEATURE_NAMES[-len(GLOBAL_FEATURES):] == GLOBAL_FEATURES
NUM_GLOBAL = len(GLOBAL_FEATURES)


def final_node(s: BlockStructure) -> int:
    """Index of the output block's last node (the highest index: nodes are numbered in
    execution order)."""
    return int(s.nodes[-1].max())


def srls_state_size(in_dim: int = NUM_FEATURES) -> int:
    """Size of the SRLS state: all ``in_dim`` features of the final layer's node."""
    return in_dim


def css_state_size(num_nodes: int, in_dim: int = NUM_FEATURES) -> int:
    """Size of the CSS state: ``N · (F - 3)`` node statistics plus the 3 global features."""
    return num_nodes * (in_dim - NUM_GLOBAL) + NUM_GLOBAL


class _NoNorm(nn.Module):
    """State extractor without parameters or norms (``refresh_norm_stats`` is a no-op)."""

    def refresh_norm_stats(self, x: torch.Tensor, s: BlockStructure) -> None:
        return None


class FinalLayerState(_NoNorm):
    """``[B, N, F] -> [B, F]``: the features of the output block's last node (SRLS)."""

    def forward(self, x: torch.Tensor, s: BlockStructure) -> torch.Tensor:
        return x[:, final_node(s)]


class ConcatState(_NoNorm):
    """``[B, N, F] -> [B, N·(F-3) + 3]``: all nodes' statistics plus the globals (CSS)."""

    def __init__(self, num_nodes: int):
        super().__init__()
        self.num_nodes = num_nodes

    def forward(self, x: torch.Tensor, s: BlockStructure) -> torch.Tensor:
        n = x.shape[1]
        if n != self.num_nodes or s.num_nodes != self.num_nodes:
            raise GNSError(f"this CSS agent was built for a model graph of {self.num_nodes} nodes and cannot be "
                           f"applied to one of {n} nodes; CSS is tied to one architecture (use gns or srls "
                           "to transfer across models).")
        local = x[:, :, : x.shape[2] - NUM_GLOBAL].flatten(1)
        return torch.cat([local, x[:, 0, x.shape[2] - NUM_GLOBAL:]], dim=1)


class SRLSAgent(GNSAgent):
    """SRLS (Xu et al., 2019): an MLP policy on the final layer's statistics plus the
    training loss, lr and progress; see the module docstring for the exact state."""

    kind = "srls"

    def _make_encoder(self) -> tuple[nn.Module, int]:
        return FinalLayerState(), srls_state_size(self.in_dim)


class CSSAgent(GNSAgent):
    """CSS (§5.6): an MLP policy on all nodes' features concatenated; fixed graph size.

    Args:
        cfg: agent config (``head_hidden``, ``sigma``, ``action_scale`` are used).
        num_nodes: node count ``N`` of the one model graph it schedules.
    """

    kind = "css"

    def __init__(self, cfg: AgentConfig | None = None, num_nodes: int = 0, in_dim: int = NUM_FEATURES):
        if not (isinstance(num_nodes, int) and num_nodes > 0):
            raise GNSError(f"a CSS agent needs the node count of its model graph (a positive integer), "
                           f"got {num_nodes!r}.")
        self.num_nodes = num_nodes
        super().__init__(cfg, in_dim=in_dim)

    def _make_encoder(self) -> tuple[nn.Module, int]:
        return ConcatState(self.num_nodes), css_state_size(self.num_nodes, self.in_dim)

    def _meta(self) -> dict:
        return {"num_nodes": self.num_nodes}

    @classmethod
    def _from_meta(cls, cfg: AgentConfig, in_dim: int, meta: dict) -> "CSSAgent":
        return cls(cfg, num_nodes=meta["num_nodes"], in_dim=in_dim)
