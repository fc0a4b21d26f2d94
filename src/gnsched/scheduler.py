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
the first forward call of ``model`` with autograd on after the scheduler was created (a
forward pre-hook records it, then removes itself; validation passes under ``no_grad`` or
``inference_mode`` are skipped).

Only real optimizer steps count: the scheduler registers a step post-hook on the
optimizer, so a step that ``torch.cuda.amp.GradScaler`` skips (inf gradients) or the
micro-batches of gradient accumulation do not advance the decision clock, even if
``step()`` is called for them.

Distributed data parallel (``torch.distributed``): every rank must use the same learning
rate at every step, while each rank sees its own minibatches (so its own window loss).
The decision is made on rank 0 and broadcast: rank 0 runs the agent, sends ``(a, V)`` to
all ranks with ``dist.broadcast`` and every rank applies the same ``a`` to the same lr
(same float operations, so bit-identical learning rates). This is on automatically when a
default process group is initialised (``distributed=None``); every rank must step its
scheduler for the same optimizer steps (as DDP training does anyway).

``state_dict()`` holds everything needed to continue bit-exactly: the step and decision
counters, the loss window, every group's learning rate, the sampling RNG state and a
fingerprint of the agent; ``load_state_dict`` refuses a state made with another agent and
writes its learning rates into the optimizer, so a restored optimizer's param groups cannot
silently override the schedule (nor the reverse).
"""
from __future__ import annotations

import hashlib
import math
import numbers
import warnings
import weakref
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from .agent import GNSAgent
from .encoder import BlockStructure
from .env import ACTION_HIGH, ACTION_LOW, apply_action
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


def _check_first_lr(optimizer: Optimizer) -> None:
    """Every group is scaled by the factor that takes the first group's lr to its new value,
    so that lr must be a positive finite number (a frozen group with lr 0 can come later)."""
    lr = _lr_value(optimizer.param_groups[0]["lr"])
    if not (math.isfinite(lr) and lr > 0):
        raise GNSError(f"GNSScheduler scales all param groups relative to the first param group's learning rate, "
                       f"which must be a positive finite number, got {lr!r}; put groups with lr 0 after it.")


class GNSScheduler(LRScheduler):
    """Learning-rate scheduler driven by a trained :class:`~gnsched.agent.GNSAgent`.

    Args:
        optimizer: the wrapped optimizer (any number of param groups).
        model: the network being trained (its graph is what the agent sees).
        agent: a trained agent, or what :meth:`GNSAgent.load` takes (a file, a ``gnsched
            train`` folder, a shipped agent's name).
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
        distributed: decide on rank 0 and broadcast (see the module docstring); ``None``:
            when ``torch.distributed`` is initialised.
    """

    def __init__(self, optimizer: Optimizer, model: nn.Module, agent: GNSAgent, interval: int = 10,
                 total_steps: int | None = None, example_input: Any = None, deterministic: bool = True,
                 lr_min: float = 1e-7, lr_max: float = 1.0, seed: int = 0, progress_feature: bool = True,
                 writer: Any = None, last_epoch: int = -1, distributed: bool | None = None):
        if not (isinstance(interval, numbers.Integral) and interval > 0):
            raise GNSError(f"interval K must be a positive integer, got {interval!r}.")
        interval = int(interval)
        if progress_feature and not (isinstance(total_steps, numbers.Integral) and total_steps > 0):
            raise GNSError("total_steps (the planned number of optimizer steps) must be a positive integer "
                           f"for the agent's progress feature, got {total_steps!r}.")
        if not (0 < lr_min < lr_max and math.isfinite(lr_max)):
            raise GNSError(f"need 0 < lr_min < lr_max, got lr_min={lr_min!r}, lr_max={lr_max!r}.")
        _check_first_lr(optimizer)
        model = getattr(model, "_orig_mod", model)  # torch.compile: hooks go on the original module
        if not any(True for _ in model.parameters()):
            raise GNSError(f"the model {type(model).__name__} has no parameters.")
        lr0 = _lr_value(optimizer.param_groups[0]["lr"])
        if not lr_min <= lr0 <= lr_max:
            warnings.warn(f"GNSScheduler: the learning rate {lr0:g} lies outside [lr_min, lr_max] = [{lr_min:g}, "
                          f"{lr_max:g}] and will be clamped at the first decision; widen lr_min / lr_max.",
                          stacklevel=2)
        if progress_feature and total_steps < interval:
            warnings.warn(f"GNSScheduler: total_steps={total_steps} is shorter than interval={interval}; "
                          "no decision will be made (lower interval=).", stacklevel=2)
        if isinstance(agent, (str, bytes)) or hasattr(agent, "__fspath__"):
            agent = GNSAgent.load(agent)  # a file, a gnsched train folder or a shipped agent's name
        if not isinstance(agent, GNSAgent):
            raise GNSError(f"agent must be a GNSAgent, an agent file or a shipped agent's name, got "
                           f"{type(agent).__name__}.")
        self.model, self.agent = model, agent.eval()
        self.interval, self.total_steps = interval, total_steps
        self.deterministic, self.lr_min, self.lr_max = deterministic, lr_min, lr_max
        self.progress_feature = progress_feature
        self.distributed = distributed
        self.fingerprint = agent_fingerprint(agent)
        self._own_writer = isinstance(writer, (str, bytes)) or hasattr(writer, "__fspath__")
        if self._own_writer:
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
        self._grad_stats = None
        self._example = example_input
        self._hook_losses: list[torch.Tensor] = []
        self._building = False
        self._warned: set[str] = set()
        self.optimizer = optimizer
        self._register_hooks(capture=example_input is None)
        super().__init__(optimizer, last_epoch)

    def _register_hooks(self, capture: bool) -> None:
        m, o = self.model, self.optimizer
        self._hook = m.register_forward_pre_hook(_Hook(self, "_capture"), with_kwargs=True) if capture else None
        self._loss_hook = m.register_forward_hook(_Hook(self, "_read_loss"), with_kwargs=True)
        self._pre_step_hook = o.register_step_pre_hook(_Hook(self, "_before_optimizer_step"))
        self._step_hook = o.register_step_post_hook(_Hook(self, "_on_optimizer_step"))

    def close(self) -> None:
        """Remove the scheduler's hooks from the model and optimizer and close a TensorBoard
        writer it opened itself. The scheduler must not be stepped afterwards."""
        for name in ("_hook", "_loss_hook", "_pre_step_hook", "_step_hook"):
            handle = getattr(self, name, None)
            if handle is not None:
                handle.remove()
                setattr(self, name, None)
        if self.writer is not None and self._own_writer:
            self.writer.close()

    def __getstate__(self) -> dict:
        # Hook handles and writers do not pickle; they are re-created on unpickling, so a
        # scheduler saved whole with torch.save (or deep-copied) keeps scheduling.
        state = self.__dict__.copy()
        state["_capture_pending"] = self._hook is not None
        state["_writer_dir"] = getattr(self.writer, "log_dir", None) if self.writer is not None else None
        for name in ("_hook", "_loss_hook", "_pre_step_hook", "_step_hook", "writer"):
            state[name] = None
        return state

    def __setstate__(self, state: dict) -> None:
        capture, writer_dir = state.pop("_capture_pending"), state.pop("_writer_dir")
        self.__dict__.update(state)
        self._register_hooks(capture)
        if writer_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer, self._own_writer = SummaryWriter(writer_dir), True

    # ---------------------------------------------------------------- hooks
    def _capture(self, module, args, kwargs):
        # A validation pass under no_grad / inference_mode (Lightning's sanity check) is not
        # one that autograd can follow (inference tensors cannot even enter it): wait for a
        # training forward pass.
        if not torch.is_grad_enabled() or torch.is_inference_mode_enabled():
            return
        self._example = Inputs(tuple(args), dict(kwargs))
        self._hook.remove()
        self._hook = None

    def _read_loss(self, module, args, kwargs, output):
        # Hugging Face models return their loss on the output: used when step() gets none
        # (every micro-batch's, under gradient accumulation).
        loss = getattr(output, "loss", None)
        if isinstance(loss, torch.Tensor) and module.training and not self._building:
            self._hook_losses.append(loss.detach())

    def _read_grads(self) -> None:
        # The step that completes a window: read gradient statistics at the optimizer step,
        # where gradients surely exist (a loop may clear them before calling scheduler.step()).
        if (self.optimizer_steps + 1) % self.interval == 0 and (self._graph is not None or self._example is not None):
            self._ensure_graph()
            self._grad_stats = self._features.grad_stats()

    @staticmethod
    def _has_closure(args, kwargs) -> bool:
        return kwargs.get("closure") is not None or bool(args and callable(args[0]))

    def _before_optimizer_step(self, optimizer, args, kwargs):
        if not self._has_closure(args, kwargs):
            self._read_grads()

    def _on_optimizer_step(self, optimizer, args, kwargs):
        # step(closure) (Lightning, LBFGS) computes this step's gradients inside the step:
        # they exist only now.
        if self._has_closure(args, kwargs):
            self._read_grads()
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
        hook_losses, self._hook_losses = self._hook_losses, []
        if loss is not None:
            self.observe(loss)
        else:
            for value in hook_losses:
                self.observe(value)
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
        # The extra forward pass must not change the model: keep the RNG and the buffers
        # (BatchNorm running statistics move in a training-mode forward pass).
        buffers = [(b, b.detach().clone()) for b in self.model.buffers()]
        self._building = True
        try:
            with torch.random.fork_rng(devices=[]):
                self._graph = build_graph(self.model, self._example)
        finally:
            self._building = False
            with torch.no_grad():
                for b, saved in buffers:
                    b.copy_(saved)
        self.model.train(was_training)
        self._structure = BlockStructure.from_graph(self._graph)
        self._features = NodeFeatures(self.model, self._graph)
        self._example = None  # do not keep the user's batch alive

    def _decide(self) -> None:  # no torch.no_grad(): features and agent detach what they read
        self._ensure_graph()
        loss = self._window_mean()
        if not self._window_losses:
            self._warn_once("loss", "GNSScheduler got no training loss in a window: pass it to step(loss) or "
                                    "observe(loss); the loss feature is missing meanwhile.")
        if self.progress_feature and self.last_epoch > self.total_steps:
            self._warn_once("total", f"GNSScheduler: step {self.last_epoch} is past total_steps={self.total_steps}; "
                                     "the progress feature stays at 1.")
        lr = _lr_value(self.optimizer.param_groups[0]["lr"])
        progress = min(1.0, self.last_epoch / self.total_steps) if self.progress_feature else 0.0
        x = self._features(lr, loss, progress, grad_stats=self._grad_stats)
        self._grad_stats = None
        x = torch.nan_to_num(x, nan=0.0, posinf=10.0, neginf=-10.0)
        if self._rank() <= 0:
            a, _, value = self.agent.act(x, self._structure, self.deterministic, self.generator)
            a = min(max(a, ACTION_LOW), ACTION_HIGH)
        else:
            a, value = 0.0, 0.0
        if self._rank() >= 0:
            a, value = self._broadcast(a, value)
        _check_first_lr(self.optimizer)
        apply_action(self.optimizer, a, self.lr_min, self.lr_max)
        self.last_action, self.last_value, self.last_loss = a, value, loss
        if self.writer is not None:
            new_lr = _lr_value(self.optimizer.param_groups[0]["lr"])
            for tag, v in (("lr", new_lr), ("action", a), ("value", float(value)), ("train_loss", loss)):
                self.writer.add_scalar(f"gnsched/{tag}", v, self.last_epoch)
        self.decisions += 1
        self._window_losses = []

    def _rank(self) -> int:
        """This process's rank when decisions are shared over ``torch.distributed``, else -1."""
        import torch.distributed as dist

        on = dist.is_available() and dist.is_initialized()
        if getattr(self, "distributed", None) and not on:
            raise GNSError("GNSScheduler(distributed=True) needs an initialised torch.distributed process group.")
        return dist.get_rank() if on and getattr(self, "distributed", None) is not False else -1

    @staticmethod
    def _broadcast(a: float, value: float) -> tuple[float, float]:
        """Rank 0's ``(action, value)`` on every rank (float64, so ``a`` arrives exactly)."""
        import torch.distributed as dist

        device = torch.device("cpu")
        if "nccl" in str(dist.get_backend()).lower():
            device = torch.device("cuda", torch.cuda.current_device())
        t = torch.tensor([a, value], dtype=torch.float64, device=device)
        dist.broadcast(t, src=0)
        return float(t[0]), float(t[1])

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)

    def _window_mean(self) -> float:
        if not self._window_losses:
            return float("nan")
        # One stack and one sum for the whole window instead of a float() per step. Summed in
        # float64, where sums of float32 losses are exact: a resumed window (floats from the
        # state dict) gives the same mean as an uninterrupted one (tensors).
        values = self._window_losses
        tensors = [v for v in values if isinstance(v, torch.Tensor)]
        floats = [v for v in values if not isinstance(v, torch.Tensor)]
        total = math.fsum(floats)
        if tensors:
            try:  # the usual window: scalar losses of one dtype and device, one stack
                stacked = torch.stack(tensors)
            except RuntimeError:
                stacked = torch.stack([t.detach().float().mean().cpu() for t in tensors])
            if stacked.dim() > 1:  # per-sample losses: each step's mean
                stacked = stacked.flatten(1).float().mean(1)
            total += float(stacked.double().sum())
        return total / len(values)

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
        if state["total_steps"] != self.total_steps:
            warnings.warn(f"GNSScheduler.load_state_dict: the checkpoint planned total_steps={state['total_steps']}, "
                          f"this scheduler {self.total_steps}; keeping {self.total_steps}.", stacklevel=2)
        self.last_action, self.last_value = state["last_action"], state["last_value"]
        self.generator.set_state(state["rng"])
        self._last_lr = self.get_lr()


class _Hook:
    """Calls a scheduler method through a weak reference. The model and optimizer hold only
    these, so they never keep a scheduler alive, and a copy or pickle of them carries a
    no-op instead (a copied model is not scheduled by this scheduler)."""

    def __init__(self, owner: GNSScheduler, method: str):
        self._ref, self._method = weakref.ref(owner), method

    def __call__(self, *args, **kwargs):
        owner = self._ref()
        return None if owner is None else getattr(owner, self._method)(*args, **kwargs)

    def __reduce__(self):
        return (_NoOpHook, ())


class _NoOpHook:
    def __call__(self, *args, **kwargs):
        return None
