"""IDX reader, Fashion-MNIST loader (real data when present) and the digits splits."""
from __future__ import annotations

import gzip
import struct
import zlib

import numpy as np
import pytest
import torch

from gnsched.data import (carve_validation, digits_splits, fashion_mnist_splits, load_fashion_mnist,
                          read_idx)
from gnsched.errors import GNSError
from gnsched.tasks import get_task

from conftest import fake_fashion, idx_bytes


# ----------------------------------------------------------------------------- read_idx
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = idx_bytes(arr)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    out = read_idx(path)
    assert out.shape == (2, 3, 4) and out.dtype == np.uint8
    assert np.array_equal(out, arr)


def test_read_idx_big_endian_types(tmp_path):
    ints = np.array([1, -2, 70000], dtype=np.int64)
    (tmp_path / "i").write_bytes(idx_bytes(ints, 0x0C))
    assert read_idx(tmp_path / "i").tolist() == [1, -2, 70000]
    floats = np.array([[0.5, -1.25]])
    (tmp_path / "f").write_bytes(idx_bytes(floats, 0x0D))
    assert read_idx(tmp_path / "f").tolist() == [[0.5, -1.25]]


def test_read_idx_truncated_gzip(tmp_path):
    raw = gzip.compress(idx_bytes(np.zeros((10, 28, 28), dtype=np.uint8) + 7))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(GNSError, match="train-images-idx3-ubyte.gz") as e:
        read_idx(path)
    assert "gzip" in str(e.value)


def test_read_idx_wrong_magic(tmp_path):
    path = tmp_path / "labels.idx"
    path.write_bytes(b"\x12\x34\x08\x01" + struct.pack(">I", 3) + b"\x00\x01\x02")
    with pytest.raises(GNSError, match=r"labels\.idx has a wrong magic number 12340801"):
        read_idx(path)
    path.write_bytes(b"")
    with pytest.raises(GNSError, match="wrong magic"):
        read_idx(path)


def test_read_idx_truncated_data_and_header(tmp_path):
    raw = idx_bytes(np.zeros((5, 4), dtype=np.uint8))
    path = tmp_path / "t.idx"
    path.write_bytes(raw[:-3])
    with pytest.raises(GNSError, match=r"holds 17 data bytes but its header \[5, 4\] needs 20"):
        read_idx(path)
    path.write_bytes(raw[:6])
    with pytest.raises(GNSError, match="truncated inside its header"):
        read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(GNSError, match="does not exist"):
        read_idx(tmp_path / "nope.gz")


def test_read_idx_corrupt_gzip_payload(tmp_path):
    raw = bytearray(gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8))))
    for i in range(12, len(raw) - 8):  # keep the gzip header and trailer, scramble the stream
        raw[i] ^= 0xFF
    path = tmp_path / "corrupt.gz"
    path.write_bytes(bytes(raw))
    try:
        read_idx(path)
    except GNSError as e:
        assert "corrupt.gz" in str(e)
    else:
        pytest.fail("a corrupt gzip stream was read without error")


# ----------------------------------------------------------------------------- Fashion-MNIST (fake, small)
@pytest.mark.parametrize("gz", [True, False])
def test_load_fake_fashion(tmp_path, gz):
    files = fake_fashion(tmp_path / "f", gz=gz)
    tr_x, tr_y, te_x, te_y = load_fashion_mnist(tmp_path / "f")
    assert tr_x.shape == (30, 28, 28) and tr_x.dtype == torch.uint8
    assert tr_y.dtype == torch.int64 and tr_y.tolist() == [i % 10 for i in range(30)]
    assert torch.equal(te_x, torch.from_numpy(files["t10k-images-idx3-ubyte"]))
    splits = fashion_mnist_splits(tmp_path / "f", n_val=5)
    assert splits.sizes() == (25, 5, 10)
    assert splits.train_x.shape == (25, 784) and splits.train_x.dtype == torch.float32
    # normalisation: (x / 255 - 0.2860) / 0.3530
    expected = (files["t10k-images-idx3-ubyte"][0, 0, 0] / 255.0 - 0.2860) / 0.3530
    assert splits.test_x[0, 0].item() == pytest.approx(expected, rel=1e-5)


def test_fake_fashion_bad_labels_and_mismatch(tmp_path):
    fake_fashion(tmp_path / "a", labels=np.array([0, 1, 12] * 10, dtype=np.uint8))
    with pytest.raises(GNSError, match=r"labels must lie in 0\.\.9"):
        load_fashion_mnist(tmp_path / "a")
    fake_fashion(tmp_path / "b", labels=np.zeros(29, dtype=np.uint8))
    with pytest.raises(GNSError, match="do not match"):
        load_fashion_mnist(tmp_path / "b")


def test_fashion_missing_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(GNSError, match="missing IDX file train-images-idx3-ubyte.gz"):
        load_fashion_mnist(tmp_path / "empty")
    with pytest.raises(GNSError, match="does not exist"):
        load_fashion_mnist(tmp_path / "absent")
    with pytest.raises(GNSError, match="--data-dir"):
        get_task("fashion-mnist-mlp", None)


def test_carve_validation():
    x, y = torch.arange(20).float()[:, None], torch.arange(20)
    tx, ty, vx, vy = carve_validation(x, y, 5, seed=0)
    assert len(ty) == 15 and len(vy) == 5
    assert sorted(ty.tolist() + vy.tolist()) == list(range(20))
    assert torch.equal(tx[:, 0].long(), ty)
    assert torch.equal(carve_validation(x, y, 5, seed=0)[3], vy)  # deterministic
    for bad in (0, 20):
        with pytest.raises(GNSError, match="validation size"):
            carve_validation(x, y, bad)


# ----------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def real_fashion(fashion_dir):
    return load_fashion_mnist(fashion_dir)


def test_real_fashion_mnist_counts(real_fashion):
    tr_x, tr_y, te_x, te_y = real_fashion
    assert tr_x.shape == (60000, 28, 28) and te_x.shape == (10000, 28, 28)
    assert torch.bincount(tr_y, minlength=10).tolist() == [6000] * 10
    assert torch.bincount(te_y, minlength=10).tolist() == [1000] * 10
    # the usual normalisation constants of the loader match this data
    assert tr_x.float().div(255).mean().item() == pytest.approx(0.2860, abs=5e-4)


def test_real_fashion_mnist_splits(fashion_dir, real_fashion):
    splits = fashion_mnist_splits(fashion_dir)
    assert splits.sizes() == (50000, 10000, 10000)
    assert splits.train_x.shape == (50000, 784) and splits.val_x.shape == (10000, 784)
    counts = torch.bincount(splits.train_y, minlength=10) + torch.bincount(splits.val_y, minlength=10)
    assert counts.tolist() == [6000] * 10
    assert torch.equal(splits.test_y, real_fashion[3])


# ----------------------------------------------------------------------------- digits
def test_digits_splits(digits_task):
    s = digits_task.splits
    assert s.sizes() == (1149, 288, 360)  # 1797 -> 20 % test, 20 % of the rest validation
    assert s.train_x.shape == (1149, 64) and s.train_x.dtype == torch.float32
    assert s.train_x.min().item() == -1.0 and s.train_x.max().item() == 1.0
    assert torch.bincount(s.test_y, minlength=10).tolist() == pytest.approx([36] * 10, abs=1)  # stratified
    again = digits_splits()
    assert torch.equal(again.val_y, s.val_y)
    assert digits_task.steps_per_epoch() == 18
    assert digits_task.example_input().shape == (8, 64)


def test_unknown_task():
    with pytest.raises(GNSError, match="unknown task 'cifar'; allowed: digits-mlp, fashion-mnist-mlp"):
        get_task("cifar")


def test_fashion_rejects_wrong_dimensions_and_shapes(tmp_path):
    import gzip as _gz

    data = tmp_path / "d"
    fake_fashion(data)
    # labels file whose magic declares 3 dimensions
    (data / "train-labels-idx1-ubyte.gz").write_bytes(_gz.compress(idx_bytes(np.zeros((30, 1, 1), np.uint8))))
    with pytest.raises(GNSError, match="declares 3 dimensions in its magic number, expected 1"):
        load_fashion_mnist(data)
    fake_fashion(data)
    (data / "t10k-images-idx3-ubyte.gz").write_bytes(_gz.compress(idx_bytes(np.zeros((10, 14, 56), np.uint8))))
    with pytest.raises(GNSError, match=r"\[n, 28, 28\]"):
        load_fashion_mnist(data)
    with pytest.raises(GNSError, match="is not a folder"):
        load_fashion_mnist(data / "t10k-images-idx3-ubyte.gz")
