"""A trained GNS agent as a drop-in learning-rate scheduler for your own training loop.

::

    sched = GNSScheduler(optimizer, model, GNSAgent.load("agent.safetensors"),
                         interval=10, total_steps=len(loader) * epochs)
    for x, y in loader:
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        sched.step(loss)          # once per optimizer step
        optimizer.zero_grad()

Every ``interval`` optimizer steps the scheduler computes the node features of the
model's graph (the gradients of the last step, the mean training loss of the window, the
current learning rate and the fraction of ``total_steps`` done), asks the agent for
``a`` (the policy mean unless ``deterministic=False``) and sets
``lr <- clamp(lr · (1 + a))`` on every param group with one factor, so their ratios are
kept. The graph is extracted once, from ``example_input`` or, if that is not given, from
the first forward call of ``model`` after the scheduler was created (a forward pre-hook
records it, then removes itself).

Only real optimizer steps count: the scheduler registers a step post-hook on the
optimizer, so a step that ``torch.cuda.amp.GradScaler`` skips (inf gradients) or the
micro-batches of gradient accumulation do not advance the decision clock, even if
``step()`` is called for them.

``state_dict()`` holds everything needed to continue bit-exactly: the step and decision
counters, the loss window, every group's learning rate, the sampling RNG state and a
fingerprint of the agent; ``load_state_dict`` refuses a state made with another agent and
writes its learning rates into the optimizer, so a restored optimizer's param groups cannot
silently override the schedule (nor the reverse).
"""
from __future__ import annotations

import hashlib
import math
import warnings
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from .agent import GNSAgent
from .encoder import BlockStructure
from .env import apply_action
from .errors import GNSError
from .features import NodeFeatures
from .graph import Inputs, build_graph


def agent_fingerprint(agent: GNSAgent) -> str:
    """SHA-256 of the agent's tensors, identifying it in scheduler checkpoints."""
    h = hashlib.sha256()
    for k, v in sorted(agent.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _lr_value(lr: Any) -> float:
    return float(lr.item() if isinstance(lr, torch.Tensor) else lr)


class GNSScheduler(LRScheduler):
    """Learning-rate scheduler driven by a trained :class:`~gnsched.agent.GNSAgent`.

    Args:
        optimizer: the wrapped optimizer (any number of param groups).
        model: the network being trained (its graph is what the agent sees).
        agent: a trained agent.
        interval: K, optimizer steps between two decisions.
        total_steps: planned optimizer steps of the run, for the progress feature; required
            when the agent was trained with it (the default).
        example_input: one batch (tensor, tuple or dict of keyword arguments) to extract the
            graph from; by default the first forward call of ``model`` is used.
        deterministic: apply the policy mean (default) or sample ``a ~ N(mu, sigma²)``.
        lr_min, lr_max: clamps of the global learning rate.
        seed: seed of the sampling RNG (used only when ``deterministic=False``).
        writer: a ``torch.utils.tensorboard.SummaryWriter`` or a log folder; each decision
            logs ``gnsched/lr``, ``gnsched/action``, ``gnsched/value``, ``gnsched/train_loss``.
    """

    def __init__(self, optimizer: Optimizer, model: nn.Module, agent: GNSAgent, interval: int = 10,
                 total_steps: int | None = None, example_input: Any = None, deterministic: bool = True,
                 lr_min: float = 1e-7, lr_max: float = 1.0, seed: int = 0, progress_feature: bool = True,
                 writer: Any = None, last_epoch: int = -1):
        if not (isinstance(interval, int) and interval > 0):
            raise GNSError(f"interval K must be a positive integer, got {interval!r}.")
        if progress_feature and not (isinstance(total_steps, int) and total_steps > 0):
            raise GNSError("total_steps (the planned number of optimizer steps) must be a positive integer "
                           f"for the agent's progress feature, got {total_steps!r}.")
        if not (0 < lr_min < lr_max and math.isfinite(lr_max)):
            raise GNSError(f"need 0 < lr_min < lr_max, got lr_min={lr_min!r}, lr_max={lr_max!r}.")
        if not any(True for _ in model.parameters()):
            raise GNSError(f"the model {type(model).__name__} has no parameters.")
        self.model, self.agent = model, agent.eval()
        self.interval, self.total_steps = interval, total_steps
        self.deterministic, self.lr_min, self.lr_max = deterministic, lr_min, lr_max
        self.progress_feature = progress_feature
        self.fingerprint = agent_fingerprint(agent)
        if isinstance(writer, (str, bytes)) or hasattr(writer, "__fspath__"):
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(writer))
        self.writer = writer
        self.generator = torch.Generator().manual_seed(seed)
        self.optimizer_steps = 0       # real optimizer steps seen by the post-hook
        self.decisions = 0
        self._window_losses: list = []
        self._counted_steps = 0        # optimizer steps already accounted for by step()
        self.last_action: float | None = None
        self.last_value: float | None = None
        self.last_loss: float | None = None
        self._graph = self._structure = self._features = None
        self._example = example_input
        self._hook = None
        if example_input is None:
            self._hook = model.register_forward_pre_hook(self._capture, with_kwargs=True)
        self._hook_loss: torch.Tensor | None = None
        self._loss_hook = model.register_forward_hook(self._read_loss, with_kwargs=True)
        self._step_hook = optimizer.register_step_post_hook(self._on_optimizer_step)
        super().__init__(optimizer, last_epoch)

    # ---------------------------------------------------------------- hooks
    def _capture(self, module, args, kwargs):
        self._example = Inputs(tuple(args), dict(kwargs))
        self._hook.remove()
        self._hook = None

    def _read_loss(self, module, args, kwargs, output):
        # Hugging Face models return their loss on the output: use it when step() gets none.
        loss = getattr(output, "loss", None)
        if isinstance(loss, torch.Tensor) and module.training:
            self._hook_loss = loss.detach().float().mean()

    def _on_optimizer_step(self, optimizer, args, kwargs):
        self.optimizer_steps += 1

    # ---------------------------------------------------------------- LRScheduler API
    def get_lr(self) -> list[float]:
        return [_lr_value(g["lr"]) for g in self.optimizer.param_groups]

    @classmethod
    def pretrained(cls, name: str, optimizer: Optimizer, model: nn.Module, **kwargs) -> "GNSScheduler":
        """A scheduler driven by an agent shipped with gnsched (see ``gnsched.pretrained``).

        ``interval`` defaults to the K the agent was trained with; other arguments as for
        the constructor (``total_steps`` is required).
        """
        from .agent import pretrained_names

        if name not in pretrained_names():
            raise GNSError(f"unknown pretrained agent {name!r}; available: {', '.join(pretrained_names()) or 'none'}.")
        agent = GNSAgent.load(name)
        kwargs.setdefault("interval", agent.recipe.get("interval", 10))
        return cls(optimizer, model, agent, **kwargs)

    def _initial_step(self) -> None:
        # LRScheduler.__init__ calls this once: record the starting learning rates only.
        self._step_count = 1
        self.last_epoch = max(self.last_epoch, 0)
        self._last_lr = self.get_lr()

    def step(self, loss: torch.Tensor | float | None = None) -> None:  # type: ignore[override]
        """Call once after each ``optimizer.step()``, with that step's training loss (or
        nothing, for models whose output carries ``.loss``, like Hugging Face ones).

        Calls for which no optimizer step happened (a skipped AMP step, an accumulation
        micro-batch) only add their loss to the window.
        """
        self._step_count += 1
        if loss is None:
            loss, self._hook_loss = self._hook_loss, None
        if loss is not None:
            self.observe(loss)
        new_steps = self.optimizer_steps - self._counted_steps
        self._counted_steps = self.optimizer_steps
        for _ in range(new_steps):
            self.last_epoch += 1
            if self.last_epoch % self.interval == 0:
                self._decide()
        self._last_lr = self.get_lr()

    def observe(self, loss: torch.Tensor | float) -> None:
        """Add a training loss to the current window without stepping (for loops that call
        ``step()`` without arguments, e.g. Lightning's, with a model that has no ``.loss``)."""
        # Kept as tensors and summed at the decision: no device sync and ~1 µs per step.
        self._window_losses.append(loss.detach() if isinstance(loss, torch.Tensor) else float(loss))

    # ---------------------------------------------------------------- decisions
    def _ensure_graph(self) -> None:
        if self._graph is not None:
            return
        if self._example is None:
            raise GNSError("GNSScheduler has not seen a forward pass of the model; pass example_input= "
                           "or call the model before the first decision.")
        was_training = self.model.training
        with torch.random.fork_rng(devices=[]):  # graph extraction must not move the user's RNG
            self._graph = build_graph(self.model, self._example)
        self.model.train(was_training)
        self._structure = BlockStructure.from_graph(self._graph)
        self._features = NodeFeatures(self.model, self._graph)
        self._example = None  # do not keep the user's batch alive

    @torch.no_grad()
    def _decide(self) -> None:
        self._ensure_graph()
        loss = self._window_mean()
        lr = _lr_value(self.optimizer.param_groups[0]["lr"])
        progress = min(1.0, self.last_epoch / self.total_steps) if self.progress_feature else 0.0
        x = torch.nan_to_num(self._features(lr, loss, progress), nan=0.0, posinf=10.0, neginf=-10.0)
        mu, value = self.agent(x, self._structure)
        a = mu if self.deterministic else mu + self.agent.cfg.sigma * torch.randn(mu.shape, generator=self.generator)
        a = float(a.clamp(-0.5, 0.5))
        apply_action(self.optimizer, a, self.lr_min, self.lr_max)
        self.last_action, self.last_value, self.last_loss = a, float(value), loss
        if self.writer is not None:
            new_lr = _lr_value(self.optimizer.param_groups[0]["lr"])
            for tag, v in (("lr", new_lr), ("action", a), ("value", float(value)), ("train_loss", loss)):
                self.writer.add_scalar(f"gnsched/{tag}", v, self.last_epoch)
        self.decisions += 1
        self._window_losses = []

    def _window_mean(self) -> float:
        if not self._window_losses:
            return float("nan")
        return float(sum(float(v.float().mean()) if isinstance(v, torch.Tensor) else v
                         for v in self._window_losses) / len(self._window_losses))

    @property
    def graph(self):
        """The model's :class:`~gnsched.graph.ModelGraph` (after the first decision)."""
        return self._graph

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {"last_epoch": self.last_epoch, "optimizer_steps": self.optimizer_steps,
                "counted_steps": self._counted_steps, "decisions": self.decisions,
                "window_losses": [float(v.float().mean()) if isinstance(v, torch.Tensor) else v
                                  for v in self._window_losses],
                "lrs": self.get_lr(), "rng": self.generator.get_state(), "agent": self.fingerprint,
                "interval": self.interval, "total_steps": self.total_steps,
                "last_action": self.last_action, "last_value": self.last_value}

    def load_state_dict(self, state: dict) -> None:
        if state.get("agent") != self.fingerprint:
            raise GNSError(f"this scheduler state was made with agent {state.get('agent')!r}, "
                           f"not with the agent given ({self.fingerprint}); load the same agent file.")
        if state.get("interval") != self.interval:
            raise GNSError(f"this scheduler state uses interval {state.get('interval')}, not {self.interval}.")
        current = self.get_lr()
        if len(state["lrs"]) != len(current):
            raise GNSError(f"this scheduler state has {len(state['lrs'])} param groups, the optimizer {len(current)}.")
        if any(not math.isclose(a, b, rel_tol=1e-9) for a, b in zip(current, state["lrs"])):
            warnings.warn(f"GNSScheduler.load_state_dict: the optimizer's learning rates {current} differ from the "
                          f"scheduler's {state['lrs']}; the scheduler's are restored.", stacklevel=2)
        for g, lr in zip(self.optimizer.param_groups, state["lrs"]):
            if isinstance(g["lr"], torch.Tensor):
                g["lr"].fill_(lr)
            else:
                g["lr"] = lr
        self.last_epoch, self.decisions = state["last_epoch"], state["decisions"]
        self.optimizer_steps = self._counted_steps = state["counted_steps"]
        self._window_losses = list(state["window_losses"])
        self.total_steps = state["total_steps"]
        self.last_action, self.last_value = state["last_action"], state["last_value"]
        self.generator.set_state(state["rng"])
        self._last_lr = self.get_lr()
