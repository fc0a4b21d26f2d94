"""Tasks: what one episode trains (model factory, data splits, metric, defaults).

A :class:`Task` bundles everything the environment needs and the defaults of its
schedule (T via epochs, K, batch size, lr prior). Registered tasks:

========================  ==================================================================
``digits-mlp``            scikit-learn's bundled digits (embedded), MLP 64-128-128-10, Adam,
                          batch 64, 20 epochs, K = 10 (36 decisions).
``fashion-mnist-mlp``     Fashion-MNIST (IDX files from ``--data-dir``), 3-layer MLP hidden
                          128, Adam, batch 128 (appendix E.10), 10k validation images carved
                          from train with seed 0, 10 epochs, K = 50 (78 decisions).
``fashion-mnist-resnet``  Fashion-MNIST 2×2 average-pooled to 14×14, :class:`SmallResNet` (stem,
                          3 stages × 2 BasicBlocks, widths 8/16/32, BatchNorm), SGD momentum
                          0.9, weight decay 5e-4, batch 128; 6 000 training images (a seeded
                          subset), 3 000 validation, full 10k test; 3 epochs (T = 141), K = 5.
``fashion-mnist-vgg``     the same data and optimizer with :class:`SmallVGG` (conv-conv-pool
                          × 3, widths 8/16/32): the transfer target of Table 3.
``glue-<task>``           GLUE (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte) fine-tuning of
                          all-MiniLM-L6-v2, AdamW; CPU profile (``-paper``: Table 8;
                          ``-3l``: first 3 layers). See :mod:`gnsched.glue_task`.
========================  ==================================================================

The image tasks are sized for one CPU core (one training step of the ResNet ≈ 40 ms, of the
VGG ≈ 16 ms on the reference machine, so one 3-epoch run takes ≈ 7 s / ≈ 3 s); SGD with
momentum is the optimizer the paper's search space (alpha_max in 1e-1..1e-3) is meant for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .data import Splits, digits_splits, fashion_mnist_splits
from .errors import GNSError


def mlp(in_dim: int, hidden: int = 128, out_dim: int = 10, layers: int = 3) -> nn.Sequential:
    """A ``layers``-layer ReLU MLP (``layers`` Linear modules)."""
    dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    mods: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        mods += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*mods[:-1])


@dataclass
class Task:
    """One target problem.

    Attributes:
        name: registry name.
        make_model: builds a freshly initialised target network (seed set by the caller).
        splits: in-memory train / validation / test tensors.
        epochs: default episode length in epochs (T = epochs × steps per epoch).
        batch_size: minibatch size.
        interval: default decision interval K.
        lr_prior: (low, high) of the log-uniform prior over initial learning rates (D_alpha).
        default_lr: learning rate of the untuned constant / cosine baselines.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        weight_decay: optimizer weight decay.
        metric: validation/test metric (``"accuracy"``).
        threads: torch intra-op threads for this task. Small models run fastest on one
            thread: on the 2-core reference machine a Fashion-MNIST MLP epoch took 1.4 s
            with 1 thread and up to 23 s with 2 when the other core was busy.
    """

    name: str
    make_model: Callable[[], nn.Module]
    splits: Splits
    epochs: int
    batch_size: int
    interval: int
    lr_prior: tuple[float, float]
    default_lr: float
    optimizer: str = "adam"
    weight_decay: float = 0.0
    metric: str = "accuracy"
    description: str = ""
    threads: int = 1

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.splits.train_y) / self.batch_size)

    def num_train(self) -> int:
        """Number of training examples."""
        return len(self.splits.train_y)

    def param_groups(self, model: nn.Module):
        """What the optimizer optimises: all parameters (one group) unless a task overrides it
        (the GLUE tasks exclude biases and LayerNorm weights from weight decay)."""
        return model.parameters()

    def make_optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        params = self.param_groups(model)
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=self.weight_decay)
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=lr, weight_decay=self.weight_decay)
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=self.weight_decay)
        raise GNSError(f"unknown optimizer {self.optimizer!r}; allowed: adam, adamw, sgd.")

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits, y)

    def batch(self, idx: torch.Tensor):
        """The training minibatch of example indices ``idx``: ``(inputs, targets)``."""
        return self.splits.train_x[idx], self.splits.train_y[idx]

    def compute_loss(self, model: nn.Module, batch) -> torch.Tensor:
        """Training loss of ``model`` on a minibatch from :meth:`batch`."""
        x, y = batch
        return self.loss(model(x), y)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str = "val", chunk: int = 4096) -> float:
        """Metric (accuracy in [0, 1]) of ``model`` on the ``val`` or ``test`` split."""
        x, y = (self.splits.val_x, self.splits.val_y) if split == "val" else (self.splits.test_x, self.splits.test_y)
        was_training = model.training
        model.eval()
        correct = 0
        for i in range(0, len(y), chunk):
            correct += int((model(x[i:i + chunk]).argmax(-1) == y[i:i + chunk]).sum())
        model.train(was_training)
        return correct / len(y)

    def example_input(self) -> torch.Tensor:
        return self.splits.train_x[: min(8, len(self.splits.train_x))]


def _digits(data_dir: str | Path | None) -> Task:
    return Task("digits-mlp", lambda: mlp(64), digits_splits(), epochs=20, batch_size=64, interval=10,
                lr_prior=(1e-4, 1e-2), default_lr=1e-3,
                description="scikit-learn digits (embedded), MLP 64-128-128-10, Adam")


def _fashion(data_dir: str | Path | None) -> Task:
    if data_dir is None:
        raise GNSError("task fashion-mnist-mlp needs --data-dir pointing at the four Fashion-MNIST "
                       "IDX .gz files (e.g. ../shared/data/fashion-mnist).")
    return Task("fashion-mnist-mlp", lambda: mlp(784), fashion_mnist_splits(data_dir), epochs=10,
                batch_size=128, interval=50, lr_prior=(1e-4, 1e-2), default_lr=1e-3,
                description="Fashion-MNIST, 3-layer MLP hidden 128, Adam, batch 128 (appendix E.10)")


#: Data of the image tasks: training subset, validation size, pooling (see the module docstring).
IMAGE_TRAIN, IMAGE_VAL, IMAGE_POOL = 6_000, 3_000, 2


def _image_task(name: str, data_dir: str | Path | None, make_model: Callable[[], nn.Module], what: str) -> Task:
    from .data import fashion_mnist_image_splits

    if data_dir is None:
        raise GNSError(f"task {name} needs --data-dir pointing at the four Fashion-MNIST "
                       "IDX .gz files (e.g. ../shared/data/fashion-mnist).")
    splits = fashion_mnist_image_splits(data_dir, pool=IMAGE_POOL, n_train=IMAGE_TRAIN, n_val=IMAGE_VAL)
    return Task(name, make_model, splits, epochs=3, batch_size=128, interval=5, lr_prior=(1e-3, 1e-1),
                default_lr=0.05, optimizer="sgd", weight_decay=5e-4,
                description=f"Fashion-MNIST 14x14 ({IMAGE_TRAIN} train / {IMAGE_VAL} val), {what}, "
                            "SGD momentum 0.9 wd 5e-4, batch 128")


def _resnet(data_dir: str | Path | None) -> Task:
    from .models import SmallResNet

    return _image_task("fashion-mnist-resnet", data_dir, SmallResNet, "ResNet 3 stages x 2 BasicBlocks (8/16/32)")


def _vgg(data_dir: str | Path | None) -> Task:
    from .models import SmallVGG

    return _image_task("fashion-mnist-vgg", data_dir, SmallVGG, "VGG-style conv-conv-pool x 3 (8/16/32)")


def _glue(task: str, profile: str = "cpu", layers: int | None = None, name: str | None = None):
    def factory(data_dir: str | Path | None) -> Task:
        from .glue_task import glue_task  # imports transformers only when a GLUE task is built

        return glue_task(task, data_dir, profile, layers, name)
    return factory


def _glue_tasks() -> dict[str, Callable[[str | Path | None], Task]]:
    """``glue-<task>`` (CPU profile), ``glue-<task>-paper`` (Table 8) and ``glue-<task>-3l``
    (first 3 layers) for the eight GLUE tasks (see :mod:`gnsched.glue_task`)."""
    from .glue import GLUE_SPECS

    out = {}
    for spec in GLUE_SPECS:
        base = f"glue-{spec.lower().replace('-', '')}"
        out[base] = _glue(spec, name=base)
        out[base + "-paper"] = _glue(spec, "paper", name=base + "-paper")
        out[base + "-3l"] = _glue(spec, layers=3, name=base + "-3l")
    return out


TASKS: dict[str, Callable[[str | Path | None], Task]] = {"digits-mlp": _digits, "fashion-mnist-mlp": _fashion,
                                                          "fashion-mnist-resnet": _resnet, "fashion-mnist-vgg": _vgg,
                                                          **_glue_tasks()}
#: Tasks that read their data from ``--data-dir``.
TASKS_WITH_FILES = frozenset({"fashion-mnist-mlp", "fashion-mnist-resnet", "fashion-mnist-vgg"}
                             | {n for n in TASKS if n.startswith("glue-")})


def get_task(name: str, data_dir: str | Path | None = None) -> Task:
    """Build a registered task, loading its data (``data_dir`` for file-based tasks)."""
    if name not in TASKS:
        raise GNSError(f"unknown task {name!r}; allowed: {', '.join(sorted(TASKS))}.")
    return TASKS[name](data_dir)
