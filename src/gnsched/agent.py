"""The GNS actor-critic (paper §4.3, Eq. 4) and its safe file format.

Given the state embedding ``h = E(G)`` of the hierarchical encoder::

    V(s) = m_s(h)                       (critic)
    a ~ N(mu, sigma²),  mu = 0.1 · tanh(m_f(h))   (actor, Eq. 4)
    lr <- lr · (1 + a)                  (action, §4.2)

``m_s`` and ``m_f`` are MLPs with one hidden layer of 32 units; ``sigma`` is fixed
(0.05, as in the authors' code). Encoder and heads are shared by actor and critic; the
encoder is optimised with the actor's learning rate.

Files: an agent is saved as ``<stem>.safetensors`` (tensors only: nothing executes on
load) and ``<stem>.json`` (its :class:`AgentConfig`, its ``kind``, feature names, operator
types and format version). Loading checks all of it and raises :class:`GNSError` on any
mismatch. ``kind`` names the agent class (:mod:`gnsched.agent_kinds`: ``gns``, ``frs``,
``srls``, ``css``); :meth:`GNSAgent.load` rebuilds whichever class the file names (a file
without ``kind``, written before kinds existed, is a ``gns`` agent).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from torch.distributions import Normal

from .config import AgentConfig, from_dict
from .encoder import BlockStructure, HierarchicalEncoder
from .errors import GNSError
from .features import FEATURE_NAMES, NUM_FEATURES
from .graph import OP_TYPES
from .inference import folded

FORMAT_VERSION = 1


def pretrained_names() -> list[str]:
    """Names of the agents shipped inside the package (``gnsched/pretrained/*.safetensors``)."""
    from importlib.resources import files

    return sorted(p.name[: -len(".safetensors")] for p in files("gnsched.pretrained").iterdir()
                  if p.name.endswith(".safetensors"))


def agent_file(path: str | Path) -> Path:
    """The ``.safetensors`` file meant by ``path``: the file itself, its ``.json`` twin, a
    stem without suffix, an output folder of ``gnsched train``, or the name of a shipped
    agent (:func:`pretrained_names`)."""
    path = Path(path)
    if not path.exists() and str(path) in pretrained_names():  # a shipped agent, by name
        from importlib.resources import files

        return Path(str(files("gnsched.pretrained") / f"{path}.safetensors"))
    if path.is_dir():
        path = path / "agent.safetensors"
    if path.suffix == ".json":
        return path.with_suffix(".safetensors")
    # "agent_v1.2" keeps its dots: the extension is appended, never substituted
    return path if path.suffix == ".safetensors" else path.with_name(path.name + ".safetensors")


def _mlp(in_dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))


class GNSAgent(nn.Module):
    """Actor-critic over graph states; works on any model's :class:`BlockStructure`.

    Subclasses (the baselines of :mod:`gnsched.baseline_agents`) replace only the state
    encoder (:meth:`_make_encoder`); heads, acting, PPO and files are shared.
    """

    #: Registry name of the agent (saved in its file; ``frs`` agents are GNS agents).
    kind: str = "gns"

    def __init__(self, cfg: AgentConfig | None = None, in_dim: int = NUM_FEATURES):
        super().__init__()
        self.cfg = cfg or AgentConfig()
        self.cfg.validate()
        self.in_dim = in_dim
        #: How the agent was trained (task, K, episodes, ...): saved in its JSON file.
        self.recipe: dict = {}
        self.encoder, state_dim = self._make_encoder()
        self.actor = _mlp(state_dim, self.cfg.head_hidden)
        self.critic = _mlp(state_dim, self.cfg.head_hidden)
        # Start near "keep the learning rate": a small last layer gives mu ≈ 0.
        nn.init.zeros_(self.actor[-1].bias)
        self.actor[-1].weight.data.mul_(0.01)

    def _make_encoder(self) -> tuple[nn.Module, int]:
        """The state encoder ``[B, N, F] -> [B, D]`` and its output width ``D``."""
        return HierarchicalEncoder(self.in_dim, self.cfg), self.cfg.hidden

    def _meta(self) -> dict:
        """Kind-specific fields of the JSON file (none for GNS)."""
        return {}

    @classmethod
    def _from_meta(cls, cfg: AgentConfig, in_dim: int, meta: dict) -> "GNSAgent":
        """An untrained agent of this class with the architecture a JSON file describes."""
        return cls(cfg, in_dim=in_dim)

    def forward(self, x: torch.Tensor, s: BlockStructure) -> tuple[torch.Tensor, torch.Tensor]:
        """Actor mean and state value for states ``x`` of shape ``[B, N, F]`` (or ``[N, F]``).

        Returns ``mu [B]`` and ``value [B]``.
        """
        if x.dim() == 2:
            x = x.unsqueeze(0)
        h = self.encoder(x, s)
        mu = self.cfg.action_scale * torch.tanh(self.actor(h).squeeze(-1))
        return mu, self.critic(h).squeeze(-1)

    def distribution(self, mu: torch.Tensor) -> Normal:
        return Normal(mu, torch.full_like(mu, self.cfg.sigma))

    def act(self, obs: torch.Tensor, s: BlockStructure, deterministic: bool = True,
            generator: torch.Generator | None = None) -> tuple[float, float, float]:
        """One decision for state ``obs [N, F]``: (action, its log-probability, value).
        ``deterministic`` takes the policy mean, else samples ``a ~ N(mu, sigma²)``.

        A single CPU state with the GCN encoder goes through the numpy fast path of
        :mod:`gnsched.inference` (the same function, ~7× faster); PPO's re-evaluation
        always uses :meth:`forward`.
        """
        fast = folded(self) if obs.dim() == 2 and obs.device.type == "cpu" else None
        if fast is None:
            with torch.no_grad():
                mu_t, value_t = self(obs, s)
            mu, value = float(mu_t), float(value_t)
        else:
            mu, value = fast(obs.double().numpy(), s)
        sigma = self.cfg.sigma
        a = mu if deterministic else mu + sigma * float(torch.randn((1,), generator=generator))
        log_prob = -((a - mu) ** 2) / (2 * sigma ** 2) - math.log(sigma) - 0.5 * math.log(2 * math.pi)
        return a, log_prob, value

    def invalidate(self) -> None:
        """Drop the cached numpy snapshot of the weights (:mod:`gnsched.inference`); needed
        only after replacing tensors without an in-place write (e.g. assigning ``.data``)."""
        self.__dict__.pop("_folded", None)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self.invalidate()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def param_groups(self, actor_lr: float, critic_lr: float) -> list[dict]:
        """Adam groups: encoder + actor at ``actor_lr``, critic at ``critic_lr`` (§5.1)."""
        actor = list(self.encoder.parameters()) + list(self.actor.parameters())
        return [{"params": actor, "lr": actor_lr}, {"params": list(self.critic.parameters()), "lr": critic_lr}]

    # ----------------------------------------------------------------- files
    def save(self, path: str | Path) -> Path:
        """Write ``<stem>.safetensors`` and ``<stem>.json``; returns the tensor file."""
        from safetensors.torch import save_file

        path = Path(path)
        path = path if path.suffix == ".safetensors" else path.with_name(path.name + ".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(tensors, str(path))
        os.chmod(path, 0o644)  # safetensors creates the file private; an agent is meant to be shared
        meta = {"format": "gnsched-agent", "version": FORMAT_VERSION, "kind": self.kind,
                "agent": asdict(self.cfg), "in_dim": self.in_dim, "features": list(FEATURE_NAMES),
                "op_types": list(OP_TYPES), **self._meta(), "recipe": self.recipe}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "GNSAgent":
        """Load an agent written by :meth:`save`; clear errors for bad files.

        Returns an instance of the class the file's ``kind`` names (``GNSAgent.load`` loads
        every kind; ``SRLSAgent.load`` refuses a file of another class).
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from .agent_kinds import agent_class

        tensor_file = agent_file(path)
        meta_file = tensor_file.with_suffix(".json")
        for f in (tensor_file, meta_file):
            if not f.is_file():
                raise GNSError(f"agent file {f} does not exist; an agent is a .safetensors file "
                               "with a .json file of the same name beside it.")
        try:
            meta = json.loads(meta_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise GNSError(f"agent config {meta_file} is not valid JSON ({e}).") from None
        if not isinstance(meta, dict) or meta.get("format") != "gnsched-agent":
            raise GNSError(f"{meta_file} is not a gnsched agent config (its 'format' is not 'gnsched-agent').")
        if meta.get("version") != FORMAT_VERSION:
            raise GNSError(f"agent {meta_file} has format version {meta.get('version')!r}; "
                           f"this gnsched reads version {FORMAT_VERSION}.")
        if meta.get("features") != list(FEATURE_NAMES) or meta.get("op_types") != list(OP_TYPES):
            raise GNSError(f"agent {meta_file} was trained with other features or operator types "
                           "and is incompatible with this gnsched.")
        if not isinstance(meta.get("agent"), dict):
            raise GNSError(f"agent config {meta_file} has no 'agent' section (a JSON object).")
        kind = meta.get("kind", "gns")
        try:
            klass = agent_class(kind)
        except GNSError as e:
            raise GNSError(f"agent config {meta_file}: {e}") from None
        if not issubclass(klass, cls):
            raise GNSError(f"agent {meta_file} is a {kind!r} agent, not a {cls.kind!r} one; "
                           "load it with gnsched.agent.GNSAgent.load.")
        try:
            agent = klass._from_meta(from_dict(AgentConfig, meta["agent"]), int(meta["in_dim"]), meta)
            agent.kind = kind
        except GNSError as e:
            raise GNSError(f"agent config {meta_file} is invalid: {e}") from None
        except (KeyError, TypeError, ValueError) as e:
            raise GNSError(f"agent config {meta_file} is incomplete or invalid ({e}).") from None
        try:
            tensors = load_file(str(tensor_file))
        except (SafetensorError, OSError, ValueError) as e:
            raise GNSError(f"agent weights {tensor_file} are corrupt or not safetensors ({e}).") from None
        try:
            agent.load_state_dict(tensors, strict=True)
        except RuntimeError as e:
            detail = " ".join(str(e).split())
            detail = detail if len(detail) < 400 else detail[:400] + " ..."
            raise GNSError(f"agent weights {tensor_file} do not match its config: {detail}") from None
        if not all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()):
            raise GNSError(f"agent weights {tensor_file} contain NaN or Inf values.")
        recipe = meta.get("recipe", {})
        agent.recipe = recipe if isinstance(recipe, dict) else {}
        return agent
