"""Agent kinds by name: GNS, its ablations (CSS, FRS, §5.6) and the SRLS baseline.

============  ==================  ==========================================  ===============
kind          class               state the policy sees                       training p
============  ==================  ==========================================  ===============
``gns``       GNSAgent            the whole graph, hierarchical GCN (§4.1)    env's (0.2)
``frs``       GNSAgent            as gns ("full-reward scheduler")            1 (every step)
``srls``      SRLSAgent           final layer's node + lr, loss, progress     1 (every step)
``css``       CSSAgent            all nodes' features concatenated (fixed N)  env's (0.2)
============  ==================  ==========================================  ===============

FRS is a configuration, not a class: a GNS agent whose training measures the validation
metric at every decision (p = 1); its files say ``kind: frs``. SRLS validates at every
decision as in Xu et al. (2019), whose reward is computed each step. The forced p applies
to training (:func:`training_env_config`); application never uses rewards.
"""
from __future__ import annotations

import dataclasses

import torch

from .agent import GNSAgent
from .baseline_agents import CSSAgent, SRLSAgent
from .config import AgentConfig, EnvConfig
from .encoder import BlockStructure
from .errors import GNSError
from .tasks import Task

#: Agent kinds, in the order the CLI lists them.
AGENT_KINDS: tuple[str, ...] = ("gns", "frs", "srls", "css")
_CLASSES: dict[str, type[GNSAgent]] = {"gns": GNSAgent, "frs": GNSAgent, "srls": SRLSAgent, "css": CSSAgent}
#: Validation probability p a kind is trained with, overriding the env config's.
TRAIN_VAL_PROB: dict[str, float] = {"frs": 1.0, "srls": 1.0}


def _check_kind(kind: object) -> str:
    if not isinstance(kind, str) or kind not in _CLASSES:
        raise GNSError(f"unknown agent kind {kind!r}; allowed: {', '.join(AGENT_KINDS)}.")
    return kind


def agent_class(kind: str) -> type[GNSAgent]:
    """The class that implements ``kind``."""
    return _CLASSES[_check_kind(kind)]


def needs_structure(kind: str) -> bool:
    """Whether building an agent of ``kind`` needs the target model's graph (CSS does)."""
    return agent_class(kind) is CSSAgent


def make_agent(kind: str, cfg: AgentConfig | None = None, structure: BlockStructure | None = None) -> GNSAgent:
    """A freshly initialised agent of ``kind`` (``structure``: the target model's graph,
    required for ``css``, ignored otherwise)."""
    klass = agent_class(kind)
    if klass is CSSAgent:
        if structure is None:
            raise GNSError("a css agent is tied to one model graph: pass the target model's structure.")
        agent = CSSAgent(cfg, num_nodes=structure.num_nodes)
    else:
        agent = klass(cfg)
    agent.kind = kind
    return agent


def task_structure(task: Task) -> BlockStructure:
    """The block structure of ``task``'s model (built without moving the global RNG)."""
    from .graph import build_graph

    with torch.random.fork_rng(devices=[]):
        return BlockStructure.from_graph(build_graph(task.make_model(), task.example_input()))


def make_agent_for_task(kind: str, cfg: AgentConfig | None, task: Task) -> GNSAgent:
    """:func:`make_agent` for the model of ``task`` (its graph is built only when needed)."""
    return make_agent(kind, cfg, task_structure(task) if needs_structure(kind) else None)


def training_env_config(agent: GNSAgent, env: EnvConfig) -> EnvConfig:
    """The env config ``agent`` is trained with: ``env`` itself, or a copy with the
    validation probability its kind prescribes (:data:`TRAIN_VAL_PROB`)."""
    p = TRAIN_VAL_PROB.get(agent.kind)
    return env if p is None or env.val_prob == p else dataclasses.replace(env, val_prob=p)


def load_agent(path) -> GNSAgent:
    """Load an agent file of any kind (same as :meth:`GNSAgent.load`)."""
    return GNSAgent.load(path)
