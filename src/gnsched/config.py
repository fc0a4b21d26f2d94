"""Configuration dataclasses holding the paper's defaults.

The CLI maps its options one to one onto these fields. Each ``validate`` raises
:class:`~gnsched.errors.GNSError` with a sentence naming the bad value.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass

from .errors import require


def _finite(name: str, value: float) -> None:
    require(isinstance(value, (int, float)) and math.isfinite(value),
            f"{name} must be a finite number, got {value!r}.")


@dataclass
class EnvConfig:
    """The scheduling MDP (paper §3.2, §4.2, Algorithm 1).

    Attributes:
        interval: K, optimizer steps between two decisions (``None``: the task's default).
        val_prob: p, probability of measuring the validation metric at a decision (§4.2);
            the first and the last decision are always measured.
        lr_min, lr_max: clamps applied after every action ``lr <- lr * (1 + a)``.
        reward_scale: rewards are metric differences times this (100: percentage points),
            so that advantages and values are O(1) numbers.
        divergence_penalty: reward (in metric units, before scaling) given when the
            training loss becomes NaN/Inf; the episode then ends.
        progress_feature: add the fraction of training done, t/T, to the global
            features. Not in the paper; a schedule without a clock cannot learn to decay
            on time, so it is on by default (an extension, recorded in the agent config).
        rollback: on a non-finite training loss or validation metric, restore the target
            network and its optimizer to the end of the last good window, halve the
            learning rate and train that window again, instead of ending the episode
            (not in the paper; off by default). After ``max_rollbacks`` rollbacks in one
            episode the next divergence ends it with the penalty as usual.
        max_rollbacks: rollbacks allowed per episode.
    """

    interval: int | None = None
    val_prob: float = 0.2
    lr_min: float = 1e-7
    lr_max: float = 1.0
    reward_scale: float = 100.0
    divergence_penalty: float = -1.0
    progress_feature: bool = True
    rollback: bool = False
    max_rollbacks: int = 3

    def validate(self) -> None:
        if self.interval is not None:
            require(isinstance(self.interval, int) and 0 < self.interval <= 10**9,
                    f"interval K must be an integer in 1..1e9, got {self.interval!r}.")
        _finite("val_prob p", self.val_prob)
        require(0.0 < self.val_prob <= 1.0,
                f"val_prob p must lie in (0, 1], got {self.val_prob!r}.")
        for name in ("lr_min", "lr_max"):
            v = getattr(self, name)
            _finite(name, v)
            require(1e-12 <= v <= 1e3, f"{name} must lie in [1e-12, 1e3], got {v!r}.")
        require(self.lr_min < self.lr_max,
                f"lr_min ({self.lr_min}) must be smaller than lr_max ({self.lr_max}).")
        _finite("reward_scale", self.reward_scale)
        require(self.reward_scale > 0, f"reward_scale must be positive, got {self.reward_scale!r}.")
        _finite("divergence_penalty", self.divergence_penalty)
        require(isinstance(self.max_rollbacks, int) and 0 <= self.max_rollbacks <= 100,
                f"max_rollbacks must be an integer in 0..100, got {self.max_rollbacks!r}.")


@dataclass
class AgentConfig:
    """Encoder and actor-critic heads (§4.1, §4.3, §5.1).

    Attributes:
        encoder: ``"gcn"`` (paper) or ``"gat"`` (appendix E.5).
        hidden: node embedding width of the 2 graph layers (64 in the paper).
        layers: graph layers per block (2 in the paper).
        head_hidden: hidden width of the actor and critic MLPs (32 in the paper).
        type_dim: width of the operator-type embedding concatenated to node features.
        sigma: fixed standard deviation of the Gaussian policy (0.05, reference code).
        action_scale: the 0.1 of Eq. 4, mu = action_scale * tanh(m_f(h)).
    """

    encoder: str = "gcn"
    hidden: int = 64
    layers: int = 2
    head_hidden: int = 32
    type_dim: int = 8
    sigma: float = 0.05
    action_scale: float = 0.1

    def validate(self) -> None:
        require(self.encoder in ("gcn", "gat"),
                f"encoder must be 'gcn' or 'gat', got {self.encoder!r}.")
        for name in ("hidden", "layers", "head_hidden", "type_dim"):
            v = getattr(self, name)
            require(isinstance(v, int) and v > 0, f"{name} must be a positive integer, got {v!r}.")
        _finite("sigma", self.sigma)
        require(1e-4 <= self.sigma <= 1.0, f"sigma must lie in [1e-4, 1], got {self.sigma!r}.")
        _finite("action_scale", self.action_scale)
        require(self.action_scale > 0, f"action_scale must be positive, got {self.action_scale!r}.")
        require(self.action_scale < 1.0,
                f"action_scale must be below 1 so that lr*(1+a) stays positive, got {self.action_scale!r}.")


@dataclass
class PPOConfig:
    """PPO hyperparameters (appendix D, §5.1; CleanRL-style single place).

    One update of ``epochs`` passes over the collected decisions happens at the end of
    every ``episodes_per_update`` episodes (Algorithm 1 line 14). ``None`` (the default)
    means one episode per parallel worker (:class:`ParallelConfig`), i.e. 1 in-process, as
    in the paper. Results depend on this number and the seeds, never on the worker count.
    """

    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    entropy_coef: float = 0.01
    value_coef: float = 0.5
    actor_lr: float = 1e-3
    critic_lr: float = 5e-3
    epochs: int = 20
    minibatches: int = 4
    max_grad_norm: float = 0.5
    normalize_advantages: bool = True
    episodes_per_update: int | None = None

    def validate(self) -> None:
        for name in ("gamma", "gae_lambda"):
            v = getattr(self, name)
            _finite(name, v)
            require(0.0 <= v <= 1.0, f"PPO {name} must lie in [0, 1], got {v!r}.")
        for name in ("clip_eps", "actor_lr", "critic_lr", "max_grad_norm", "value_coef"):
            v = getattr(self, name)
            _finite(name, v)
            require(v > 0, f"PPO {name} must be positive, got {v!r}.")
        _finite("entropy_coef", self.entropy_coef)
        require(self.entropy_coef >= 0, f"PPO entropy_coef must be >= 0, got {self.entropy_coef!r}.")
        for name in ("epochs", "minibatches", "episodes_per_update"):
            v = getattr(self, name)
            if v is None and name == "episodes_per_update":
                continue
            require(isinstance(v, int) and 0 < v <= 100_000,
                    f"PPO {name} must be an integer in 1..100000, got {v!r}.")


@dataclass
class ParallelConfig:
    """Where the episodes of agent training run (not in the paper; see ``gnsched.parallel``).

    Attributes:
        workers: episodes run at the same time. 1: in-process. More: Ray actors, one CPU
            each (a local Ray instance with ``workers`` CPUs unless ``address`` is given).
        address: a Ray cluster to join (``"auto"``, ``"ray://host:10001"``, ...); ``None``
            starts a local Ray instance.
        gpus_per_worker: GPUs reserved for each worker actor (0: CPU only).
    """

    workers: int = 1
    address: str | None = None
    gpus_per_worker: float = 0.0

    def validate(self) -> None:
        require(isinstance(self.workers, int) and 0 < self.workers <= 4096,
                f"workers must be an integer in 1..4096, got {self.workers!r}.")
        _finite("gpus_per_worker", self.gpus_per_worker)
        require(0.0 <= self.gpus_per_worker <= 64,
                f"gpus_per_worker must lie in [0, 64], got {self.gpus_per_worker!r}.")
        require(self.address is None or (isinstance(self.address, str) and self.address.strip() != ""),
                f"address must be a Ray address such as 'auto' or 'ray://host:10001', got {self.address!r}.")


@dataclass
class TrainConfig:
    """Agent training (Algorithm 1) and application (end of §4.3).

    Attributes:
        episodes: number of training runs of the target network used to train the agent
            (30 in the paper for ResNets).
        epochs: target-network epochs per episode (``None``: the task's default).
        seed: base seed; every random choice of episode ``i`` (initial lr, model init, data
            order, action noise) derives from ``(seed, i)`` (``gnsched.parallel.episode_seeds``).
        parallel: where episodes run (:class:`ParallelConfig`); does not change the result.
        candidates: initial learning rates sampled when the agent is applied (§4.3).
        pre_fraction: T_pre as a fraction of T for that selection.
        deterministic: apply the policy mean (True) or sample actions.
    """

    episodes: int = 30
    epochs: int | None = None
    seed: int = 0
    candidates: int = 4
    pre_fraction: float = 0.1
    deterministic: bool = True
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)

    def episodes_per_update(self) -> int:
        """Episodes per PPO update: ``ppo.episodes_per_update``, by default one per worker."""
        return self.ppo.episodes_per_update or self.parallel.workers

    def validate(self) -> None:
        require(isinstance(self.episodes, int) and 0 < self.episodes <= 1_000_000,
                f"episodes must be an integer in 1..1000000, got {self.episodes!r}.")
        if self.epochs is not None:
            require(isinstance(self.epochs, int) and 0 < self.epochs <= 100_000,
                    f"epochs must be an integer in 1..100000, got {self.epochs!r}.")
        require(isinstance(self.seed, int) and 0 <= self.seed < 2**31,
                f"seed must be an integer in [0, 2**31), got {self.seed!r}.")
        require(isinstance(self.candidates, int) and 0 < self.candidates <= 64,
                f"candidates must be an integer in 1..64, got {self.candidates!r}.")
        _finite("pre_fraction", self.pre_fraction)
        require(0.0 < self.pre_fraction < 1.0,
                f"pre_fraction must lie in (0, 1), got {self.pre_fraction!r}.")
        self.env.validate()
        self.agent.validate()
        self.ppo.validate()
        self.parallel.validate()

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, overrides: dict) -> "TrainConfig":
        """This config with fields changed: ``{"ppo.gamma": 1.0, "env.val_prob": 1.0,
        "episodes": 60}`` (``section.field`` for the nested configs, ``field`` for this one's).
        An unknown name is an error, never a silently ignored setting. Returns a validated copy."""
        cfg = copy.deepcopy(self)
        sections = {f.name for f in fields(self) if is_dataclass(getattr(self, f.name))}
        for path, value in overrides.items():
            *section, name = str(path).split(".")
            require(len(section) <= 1 and (not section or section[0] in sections),
                    f"unknown config override {path!r}: use 'field' or 'section.field' with section one of "
                    f"{', '.join(sorted(sections))}.")
            target = getattr(cfg, section[0]) if section else cfg
            allowed = {f.name for f in fields(target)} - (set() if section else sections)
            require(name in allowed, f"unknown config override {path!r}: {type(target).__name__} has the fields "
                                     f"{', '.join(sorted(allowed))}.")
            setattr(target, name, value)
        cfg.validate()
        return cfg


def from_dict(cls, data: dict):
    """Build a (flat) config dataclass from a dict holding exactly its fields."""
    names = {f.name for f in fields(cls)}
    unknown, missing = sorted(set(data) - names), sorted(names - set(data))
    require(not unknown and not missing,
            f"{cls.__name__} fields do not match (unknown: {unknown or 'none'}, missing: {missing or 'none'}).")
    return cls(**data)
