"""Dataset readers: IDX (MNIST / Fashion-MNIST format) and scikit-learn's bundled digits.

Everything is loaded into memory as tensors: these sets are small, and indexing a tensor
per batch has no DataLoader worker overhead.
"""
from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import GNSError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass
class Splits:
    """Train / validation / test tensors of one task (inputs float32, labels int64)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    def sizes(self) -> tuple[int, int, int]:
        return len(self.train_y), len(self.val_y), len(self.test_y)


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (gzipped or not): magic ``0 0 type ndim``, big-endian dims, data.

    ``ndim``: the number of dimensions the caller expects (checked against the header).
    """
    path = Path(path)
    if not path.is_file():
        raise GNSError(f"IDX file {path} does not exist.")
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise GNSError(f"IDX file {path} is not a readable (gzip) file: {e}.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise GNSError(f"IDX file {path} has a wrong magic number {raw[:4].hex() or '(empty)'}; "
                       "expected 0000 <type> <ndim> as in the IDX format.")
    dtype, file_ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    if ndim is not None and file_ndim != ndim:
        raise GNSError(f"IDX file {path} declares {file_ndim} dimensions in its magic number, expected {ndim} "
                       "(images [n, rows, cols], labels [n]).")
    header = 4 + 4 * file_ndim
    if len(raw) < header:
        raise GNSError(f"IDX file {path} is truncated inside its header.")
    dims = struct.unpack(">" + "I" * file_ndim, raw[4:header])
    expected = math.prod(dims) * dtype.itemsize  # Python ints: np.prod wraps around at 2**64
    if len(raw) - header != expected:
        raise GNSError(f"IDX file {path} holds {len(raw) - header} data bytes but its header "
                       f"{list(dims)} needs {expected}: the file is truncated or corrupt.")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _find(data_dir: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (data_dir / name).is_file():
            return data_dir / name
    raise GNSError(f"missing IDX file {stem}.gz in {data_dir}; the data folder must hold the four "
                   "standard files " + ", ".join(f + ".gz" for f in FASHION_FILES.values()) + ".")


def load_fashion_mnist(data_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full Fashion-MNIST from the four standard IDX files in ``data_dir``.

    Returns ``(train_images uint8 [60000,28,28], train_labels int64, test_images, test_labels)``.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        what = "is not a folder" if data_dir.exists() else "does not exist"
        raise GNSError(f"data folder {data_dir} {what}; --data-dir must be the folder holding the IDX files.")
    arrays = {k: read_idx(_find(data_dir, stem), ndim=3 if k.endswith("images") else 1)
              for k, stem in FASHION_FILES.items()}
    for key, arr in arrays.items():
        if arr.dtype != np.uint8:
            raise GNSError(f"Fashion-MNIST IDX file {FASHION_FILES[key]} holds {arr.dtype} values; "
                           "images and labels must be unsigned bytes (type code 0x08).")
    for split in ("train", "test"):
        imgs, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if imgs.shape[1:] != (28, 28) or len(imgs) != len(labels):
            raise GNSError(f"Fashion-MNIST {split} images {imgs.shape} and labels {labels.shape} "
                           "do not match (expected [n, 28, 28] and [n]).")
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise GNSError(f"Fashion-MNIST {split} labels must lie in 0..9, found {labels.min()}..{labels.max()}.")
    return (torch.from_numpy(arrays["train_images"].copy()), torch.from_numpy(arrays["train_labels"].astype(np.int64)),
            torch.from_numpy(arrays["test_images"].copy()), torch.from_numpy(arrays["test_labels"].astype(np.int64)))


def carve_validation(x: torch.Tensor, y: torch.Tensor, n_val: int, seed: int = 0):
    """Split ``n_val`` examples off a training set with a fixed seed: (train_x, train_y, val_x, val_y)."""
    if not 0 < n_val < len(y):
        raise GNSError(f"validation size {n_val} must lie between 1 and {len(y) - 1}.")
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    val, train = perm[:n_val], perm[n_val:]
    return x[train], y[train], x[val], y[val]


def fashion_mnist_splits(data_dir: str | Path, n_val: int = 10_000, seed: int = 0) -> Splits:
    """Fashion-MNIST as flat normalised vectors; 10k validation images carved from train."""
    tr_x, tr_y, te_x, te_y = load_fashion_mnist(data_dir)

    def prep(imgs: torch.Tensor) -> torch.Tensor:  # the usual Fashion-MNIST mean / std
        return ((imgs.float() / 255.0 - 0.2860) / 0.3530).reshape(len(imgs), -1)

    tx, ty, vx, vy = carve_validation(prep(tr_x), tr_y, n_val, seed)
    return Splits(tx, ty, vx, vy, prep(te_x), te_y)


def fashion_mnist_image_splits(data_dir: str | Path, pool: int = 2, n_train: int | None = None,
                               n_val: int = 10_000, seed: int = 0) -> Splits:
    """Fashion-MNIST as normalised ``[n, 1, 28/pool, 28/pool]`` images (``pool × pool`` average
    pooling), ``n_val`` validation images carved from train with ``seed``, then the first
    ``n_train`` of the remaining (already shuffled) training images kept (all when ``None``).
    The test split is always the full 10k test set."""
    tr_x, tr_y, te_x, te_y = load_fashion_mnist(data_dir)

    def prep(imgs: torch.Tensor) -> torch.Tensor:
        x = ((imgs.float() / 255.0 - 0.2860) / 0.3530).unsqueeze(1)
        return torch.nn.functional.avg_pool2d(x, pool) if pool > 1 else x

    tx, ty, vx, vy = carve_validation(prep(tr_x), tr_y, n_val, seed)
    if n_train is not None:
        tx, ty = tx[:n_train], ty[:n_train]
    return Splits(tx.contiguous(), ty, vx.contiguous(), vy, prep(te_x), te_y)


def digits_splits(seed: int = 0) -> Splits:
    """scikit-learn's bundled digits (1797 8×8 images): 20 % test, 20 % of the rest validation,
    stratified with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data.astype(np.float32) / 16.0 - 0.5) / 0.5
    y = d.target.astype(np.int64)
    x_rest, x_te, y_rest, y_te = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    x_tr, x_va, y_tr, y_va = train_test_split(x_rest, y_rest, test_size=0.2, random_state=seed, stratify=y_rest)
    t = torch.from_numpy
    return Splits(t(x_tr), t(y_tr), t(x_va), t(y_va), t(x_te), t(y_te))
