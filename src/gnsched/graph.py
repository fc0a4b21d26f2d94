"""Graph extraction (paper §4.1): a neural network as a directed graph of operators.

One node per module that *directly* owns parameters (Linear, Conv, Embedding, norms,
MultiheadAttention, ...) and that runs in the forward pass; an edge ``u -> v`` for every
data-flow path from the output of ``u`` to an input of ``v`` that passes only through
parameter-free operations (activations, additions, reshapes, attention's softmax...).

Method: forward hooks record, for one example batch, the autograd node (``grad_fn``) that
produced each node's output and the ``grad_fn`` of each node's inputs; a walk of the
autograd graph backwards from ``v``'s inputs stops at the first recorded output it meets
and adds that edge. This works on eager models with Python control flow and on Hugging
Face transformers (whose fx tracer no longer exists); on traceable models it gives the
same graph as ``torch.fx`` (checked in the tests).

Blocks (§4.1, Figure 1): ``G0`` input block, ``G1..GM`` repeated blocks, ``G(M+1)``
output block. Repeated blocks are found automatically: children of an ``nn.ModuleList`` /
``nn.Sequential`` whose class occurs at least twice and which hold nodes without being a
node themselves (ResNet basic blocks, transformer layers); the outermost such modules win.
Nodes executed before the first repeated block form the input block, after the last one
the output block; a node executed between two repeated blocks (a transition layer)
joins the preceding one. A model without repetition (an MLP, a plain CNN) is partitioned
as: input block = source nodes (no incoming edge), output block = sink nodes (no
outgoing edge), one middle block with everything else; ``ModelGraph.partition`` says
which partition was used.

Corner case, documented rather than hidden: a module that owns parameters *and* has
parameterised children is one node; its children are nodes too, but edges leaving them
inside the parent are attributed to the parent's output.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .errors import GNSError

#: Operator types, in the order of the agent's type embedding (part of the agent format).
OP_TYPES: tuple[str, ...] = ("linear", "conv", "norm", "embedding", "attention", "other")

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def op_type(module: nn.Module) -> str:
    """Operator type of a parameter-owning module, used for the type embedding."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)):
        return "norm"
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return "embedding"
    if isinstance(module, nn.MultiheadAttention):
        return "attention"
    if isinstance(module, nn.Linear):
        return "linear"
    name = type(module).__name__.lower()
    for key, kind in (("norm", "norm"), ("conv", "conv"), ("embedding", "embedding"),
                      ("attention", "attention"), ("linear", "linear")):
        if key in name:
            return kind
    return "other"


@dataclass
class ModelGraph:
    """The directed operator graph of a model and its block partition.

    Attributes:
        names: qualified module names of the nodes, in execution order.
        op_types: operator type of each node (one of :data:`OP_TYPES`).
        edges: directed data-flow edges ``(u, v)`` between node indices.
        blocks: node indices of each block; ``blocks[0]`` is the input block, the last
            one the output block (empty blocks are dropped).
        block_kinds: ``"input"``, ``"repeated"`` or ``"output"`` (``"middle"`` for the
            partition of a model without repetition), one per block.
        block_names: module name of each repeated block, or the kind for the others.
        partition: ``"repeated"`` when repeated blocks were found, else ``"layerwise"``.
    """

    names: list[str]
    op_types: list[str]
    edges: list[tuple[int, int]]
    blocks: list[list[int]]
    block_kinds: list[str]
    block_names: list[str]
    partition: str
    param_names: list[list[str]] = field(default_factory=list)

    @property
    def num_nodes(self) -> int:
        return len(self.names)

    @property
    def num_repeated(self) -> int:
        return sum(k == "repeated" for k in self.block_kinds)

    def edge_index(self) -> torch.Tensor:
        """Edges as a ``[2, E]`` long tensor (PyTorch Geometric layout)."""
        if not self.edges:
            return torch.zeros(2, 0, dtype=torch.long)
        return torch.tensor(self.edges, dtype=torch.long).t().contiguous()

    def type_ids(self) -> torch.Tensor:
        return torch.tensor([OP_TYPES.index(t) for t in self.op_types], dtype=torch.long)

    def summary(self) -> str:
        """A human-readable listing of blocks, nodes and edges."""
        lines = [f"{self.num_nodes} nodes, {len(self.edges)} edges, {len(self.blocks)} blocks "
                 f"({self.num_repeated} repeated; partition: {self.partition})"]
        succ: dict[int, list[int]] = {}
        for u, v in self.edges:
            succ.setdefault(u, []).append(v)
        for b, (nodes, kind, bname) in enumerate(zip(self.blocks, self.block_kinds, self.block_names)):
            lines.append(f"G{b} [{kind}] {bname}: {len(nodes)} nodes")
            for i in nodes:
                outs = ", ".join(str(v) for v in succ.get(i, []))
                lines.append(f"  {i:>3} {self.op_types[i]:<9} '{self.names[i]}'" + (f" -> {outs}" if outs else ""))
        return "\n".join(lines)


def _tensors(obj: Any) -> list[torch.Tensor]:
    """All tensors inside nested tuples/lists/dicts (model outputs and inputs)."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    if hasattr(obj, "to_tuple"):  # transformers ModelOutput
        return _tensors(obj.to_tuple())
    return []


@dataclass
class Inputs:
    """Positional and keyword arguments of one forward call, for :func:`build_graph`."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


def _call(model: nn.Module, example_input: Any) -> Any:
    if isinstance(example_input, Inputs):
        return model(*example_input.args, **example_input.kwargs)
    if isinstance(example_input, dict):
        return model(**example_input)
    if isinstance(example_input, (tuple, list)):
        return model(*example_input)
    return model(example_input)


def _trace(model: nn.Module, example_input: Any):
    """Run one forward pass with hooks; return executed nodes, their output grad_fns
    and the grad_fns of their inputs."""
    owners = [(n, m) for n, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    order: list[nn.Module] = []  # execution order (post-hook order)
    outputs: dict[int, int] = {}  # id(grad_fn) -> module index in `order`
    inputs: dict[int, list] = {}  # id(module) -> input grad_fns
    keep: list = []  # holds grad_fn objects alive so that their ids stay unique
    index_of: dict[int, int] = {}

    def pre_hook(mod, args, kwargs):
        fns = [t.grad_fn for t in _tensors((args, kwargs)) if t.grad_fn is not None]
        keep.extend(fns)
        inputs.setdefault(id(mod), []).extend(fns)

    def post_hook(mod, args, kwargs, out):
        if id(mod) not in index_of:
            index_of[id(mod)] = len(order)
            order.append(mod)
        for t in _tensors(out):
            if t.grad_fn is not None:
                keep.append(t.grad_fn)
                outputs[id(t.grad_fn)] = index_of[id(mod)]

    handles = []
    for _, m in owners:
        handles.append(m.register_forward_pre_hook(pre_hook, with_kwargs=True))
        handles.append(m.register_forward_hook(post_hook, with_kwargs=True))
    frozen = [p for p in model.parameters() if not p.requires_grad]
    for p in frozen:  # frozen parameters still belong to the graph
        p.requires_grad_(True)
    try:
        with torch.enable_grad():
            _call(model, example_input)
    finally:
        for h in handles:
            h.remove()
        for p in frozen:
            p.requires_grad_(False)
    return owners, order, outputs, inputs, keep


def _walk_edges(order, outputs, inputs) -> list[tuple[int, int]]:
    """Edges u -> v: walk the autograd graph back from v's inputs to recorded outputs."""
    edges: set[tuple[int, int]] = set()
    for v, mod in enumerate(order):
        stack = list(inputs.get(id(mod), []))
        seen: set[int] = set()
        while stack:
            fn = stack.pop()
            if fn is None or id(fn) in seen:
                continue
            seen.add(id(fn))
            u = outputs.get(id(fn))
            if u is not None:
                if u != v:
                    edges.add((u, v))
                continue  # the path ends at the first parameterised operator
            stack.extend(nf for nf, _ in fn.next_functions)
    return sorted(edges)


def _repeated_modules(model: nn.Module, node_names: set[str]) -> list[str]:
    """Names of the outermost repeated-block modules (see module docstring)."""
    parents = {n: m for n, m in model.named_modules()}

    def holds_nodes(name: str) -> bool:
        prefix = name + "."
        return any(n.startswith(prefix) for n in node_names)

    def candidates(allow_containers: bool) -> list[str]:
        found: dict[Any, list[str]] = {}
        for name, m in model.named_modules():
            if not name or name in node_names or not holds_nodes(name):
                continue
            parent = parents[name.rsplit(".", 1)[0]] if "." in name else model
            if not isinstance(parent, (nn.Sequential, nn.ModuleList)):
                continue
            if isinstance(m, _CONTAINERS):
                if not allow_containers:
                    continue
                key = ("container", tuple(type(c).__name__ for c in m.children()))
            else:
                key = type(m)
            found.setdefault(key, []).append(name)
        names = [n for group in found.values() if len(group) >= 2 for n in group]
        return [n for n in names if not any(n.startswith(o + ".") for o in names)]

    return candidates(False) or candidates(True)


def build_graph(model: nn.Module, example_input: Any) -> ModelGraph:
    """Extract the operator graph and block partition of ``model`` (paper §4.1).

    Args:
        model: any ``nn.Module``; it is run once, in its current train/eval mode.
        example_input: one example batch: a tensor, a tuple of positional arguments, a
            dict of keyword arguments (as for Hugging Face models) or :class:`Inputs`.
    """
    if not any(True for _ in model.parameters()):
        raise GNSError(f"the model {type(model).__name__} has no parameters; a learning-rate "
                       "schedule needs at least one trainable parameter.")
    owners, order, outputs, inputs, _keep = _trace(model, example_input)
    if not order:
        raise GNSError(f"no parameterised module of {type(model).__name__} ran in the forward pass "
                       "on the example input.")
    name_of = {id(m): n for n, m in owners}
    names = [name_of[id(m)] for m in order]
    edges = _walk_edges(order, outputs, inputs)
    types = [op_type(m) for m in order]
    param_names = [[f"{name_of[id(m)]}.{p}" if name_of[id(m)] else p
                    for p, _ in m.named_parameters(recurse=False)] for m in order]
    blocks, kinds, bnames, partition = _partition(model, names, edges)
    return ModelGraph(names, types, edges, blocks, kinds, bnames, partition, param_names)


def _partition(model: nn.Module, names: list[str], edges: list[tuple[int, int]]):
    n = len(names)
    reps = _repeated_modules(model, set(names))
    members = {r: [i for i, nm in enumerate(names) if nm.startswith(r + ".")] for r in reps}
    reps = sorted((r for r in reps if members[r]), key=lambda r: min(members[r]))
    if reps:
        assigned = {i: b for b, r in enumerate(reps) for i in members[r]}
        first, last = min(members[reps[0]]), max(max(members[r]) for r in reps)
        inp, out = [], []
        rep_nodes = [list(members[r]) for r in reps]
        for i in range(n):
            if i in assigned:
                continue
            if i < first:
                inp.append(i)
            elif i > last:
                out.append(i)
            else:  # a transition layer between repeated blocks joins the preceding block
                b = max(b for b, r in enumerate(reps) if min(members[r]) < i)
                rep_nodes[b].append(i)
        blocks = [inp] + [sorted(r) for r in rep_nodes] + [out]
        kinds = ["input"] + ["repeated"] * len(reps) + ["output"]
        bnames = ["input"] + reps + ["output"]
        partition = "repeated"
    else:
        has_in = {v for _, v in edges}
        has_out = {u for u, _ in edges}
        inp = [i for i in range(n) if i not in has_in]
        out = [i for i in range(n) if i not in has_out and i not in inp]
        mid = [i for i in range(n) if i not in inp and i not in out]
        blocks, kinds, bnames = [inp, mid, out], ["input", "middle", "output"], ["input", "middle", "output"]
        partition = "layerwise"
    keep = [b for b, nodes in enumerate(blocks) if nodes]
    return ([blocks[b] for b in keep], [kinds[b] for b in keep], [bnames[b] for b in keep], partition)
