"""Shared small fixtures and helpers: a tiny ResNet, the digits task, a small agent config,
IDX file writers and the location of the real data."""
from __future__ import annotations

import os

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

#: Real benchmark data: ``$GNSCHED_DATA`` if set, else ``<repo>/../shared/data``.
DATA_DIR = Path(os.environ.get("GNSCHED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
FASHION_DIR = DATA_DIR / "fashion-mnist"


def pytest_configure(config):
    # The models here are tiny: intra-op threads only add overhead, and with other work on the
    # machine OpenMP spin-waiting slows such tests down tenfold. One thread keeps the suite fast.
    torch.set_num_threads(1)
    # PyTorch Geometric still calls torch.jit.script on import of its layers.
    config.addinivalue_line("filterwarnings", "ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def param_owners(model: nn.Module) -> list[str]:
    """Names of the modules that directly own parameters (the expected graph nodes)."""
    return [n for n, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]


def idx_bytes(arr: np.ndarray, type_code: int = 0x08) -> bytes:
    """An IDX file's bytes: magic 0 0 type ndim, big-endian dims, big-endian data."""
    dtype = {0x08: np.uint8, 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4")}[type_code]
    return bytes([0, 0, type_code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + \
        np.ascontiguousarray(arr, dtype=dtype).tobytes()


def fake_fashion(folder, n_train=30, n_test=10, labels=None, gz=True):
    """Write the four Fashion-MNIST IDX files (random images) into ``folder``; returns the arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    tr_y = np.arange(n_train, dtype=np.uint8) % 10 if labels is None else labels
    files = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
             "train-labels-idx1-ubyte": tr_y,
             "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
             "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8) % 10}
    for stem, arr in files.items():
        raw = idx_bytes(arr)
        (folder / (stem + ".gz" if gz else stem)).write_bytes(gzip.compress(raw) if gz else raw)
    return files


class BasicBlock(nn.Module):
    """ResNet basic block; a 1x1 conv + BN shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + identity)


class TinyResNet(nn.Module):
    """Stem conv+bn, two stages of two BasicBlocks (nn.Sequential), final Linear."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.layer1 = nn.Sequential(BasicBlock(4, 4), BasicBlock(4, 4))
        self.layer2 = nn.Sequential(BasicBlock(4, 8, stride=2), BasicBlock(8, 8))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


@pytest.fixture(scope="session")
def resnet():
    torch.manual_seed(0)
    return TinyResNet()


@pytest.fixture(scope="session")
def resnet_input():
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="session")
def resnet_graph(resnet, resnet_input):
    from gnsched.graph import build_graph

    return build_graph(resnet, resnet_input)


@pytest.fixture(scope="session")
def mlp_model():
    from gnsched.tasks import mlp

    torch.manual_seed(0)
    return mlp(6, hidden=5, out_dim=3, layers=3)


@pytest.fixture(scope="session")
def mlp_graph(mlp_model):
    from gnsched.graph import build_graph

    return build_graph(mlp_model, torch.randn(4, 6))


@pytest.fixture(scope="session")
def digits_task():
    """The embedded digits task (loaded once; tests must not mutate it)."""
    from gnsched.tasks import get_task

    return get_task("digits-mlp")


@pytest.fixture
def small_agent_cfg():
    from gnsched.config import AgentConfig

    return AgentConfig(hidden=16, head_hidden=8, type_dim=4)


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    if not all((FASHION_DIR / f).is_file() for f in (
            "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")):
        pytest.skip(f"real Fashion-MNIST IDX files not found in {FASHION_DIR} "
                    "(expected ../shared/data/fashion-mnist beside the repository, or set GNSCHED_DATA)")
    return FASHION_DIR


def exploding(task):
    """``task`` with SGD whose loss turns NaN once logits exceed 50 in magnitude (never with sane learning rates): with the
    learning rates allowed by the config (<= 1e3) the weights blow up but stay finite, so
    this stands in for an overflow."""
    import dataclasses

    out = dataclasses.replace(task, optimizer="sgd")
    base = task.loss

    def loss(logits, y):
        value = base(logits, y)
        return value * float("nan") if logits.detach().abs().max() > 50 else value

    out.loss = loss
    return out
