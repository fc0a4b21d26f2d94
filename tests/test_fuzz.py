"""Hostile input through the real entry point (``gnsched.cli.main``): malformed IDX files
and every numeric option at 0, negative, NaN, ±inf and huge. Each must end with exactly
one line ``error: ...`` on stderr and exit code 2: no traceback, no (partial) output folder."""
from __future__ import annotations

import gzip
import struct
import sys

import numpy as np
import pytest

from conftest import fake_fashion, idx_bytes
from gnsched.cli import main

BASE = ["--episodes", "1", "--epochs", "2", "--ppo-epochs", "1", "--quiet"]  # small, should a case slip through


def _main(argv: list[str], capsys, monkeypatch) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["gnsched", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    return exc.value.code, capsys.readouterr().err


def _assert_clean_error(code: int, err: str, tmp_path, expect: str) -> None:
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert expect.lower() in lines[0].replace("_", "-").lower(), lines[0]
    assert [p.name for p in tmp_path.iterdir() if p.name not in ("data", "agent")] == []  # nothing written
    assert not (tmp_path / "agent").exists()


# ----------------------------------------------------------------------------- IDX files
def _images(n=5, rows=28, cols=28, dtype=np.uint8):
    return np.zeros((n, rows, cols), dtype=dtype)


IMAGES, LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
GOOD_HEADER = idx_bytes(_images())[:16]
IDX_CASES = {
    "empty file": (IMAGES, b"", "wrong magic number (empty)"),
    "not gzip (text)": (IMAGES, b"hello, world\n", "wrong magic number"),
    "gzip magic, garbage body": (IMAGES, b"\x1f\x8b" + b"\x00" * 30, "not a readable (gzip) file"),
    "truncated gzip stream": (IMAGES, gzip.compress(idx_bytes(_images()))[:-12], "not a readable (gzip) file"),
    "truncated data": (IMAGES, gzip.compress(idx_bytes(_images())[:-100]), "truncated or corrupt"),
    "truncated header": (IMAGES, gzip.compress(GOOD_HEADER[:9]), "truncated inside its header"),
    "wrong magic": (IMAGES, gzip.compress(b"\x01\x02" + idx_bytes(_images())[2:]), "wrong magic number"),
    "unknown type code": (IMAGES, gzip.compress(b"\x00\x00\x42\x03" + idx_bytes(_images())[4:]), "wrong magic"),
    "zero dimensions": (IMAGES, gzip.compress(b"\x00\x00\x08\x00"), "wrong magic"),
    "wrong dims (labels as images)": (LABELS, gzip.compress(idx_bytes(_images())), "declares 3 dimensions"),
    "wrong image size": (IMAGES, gzip.compress(idx_bytes(_images(30, 28, 27))), "do not match"),
    "dims overflowing int64": (IMAGES, gzip.compress(b"\x00\x00\x08\x03" + struct.pack(">III", 2**22, 2**21, 2**21)),
                               "needs 18446744073709551616"),
    "float images": (IMAGES, gzip.compress(idx_bytes(_images(30).astype(np.float32) * np.nan, 0x0D)),
                     "unsigned bytes"),
    "labels out of range": (LABELS, gzip.compress(idx_bytes(np.full(30, 12, np.uint8))), "labels must lie in 0..9"),
    "images/labels count mismatch": (LABELS, gzip.compress(idx_bytes(np.zeros(29, np.uint8))), "do not match"),
}


@pytest.mark.parametrize("case", list(IDX_CASES))
def test_hostile_idx_files(case, tmp_path, capsys, monkeypatch):
    name, payload, expect = IDX_CASES[case]
    fake_fashion(tmp_path / "data")
    (tmp_path / "data" / name).write_bytes(payload)
    code, err = _main(["train", "--task", "fashion-mnist-mlp", "--data-dir", str(tmp_path / "data"),
                       "--out", str(tmp_path / "agent"), *BASE], capsys, monkeypatch)
    _assert_clean_error(code, err, tmp_path, expect)


def test_missing_data_folder(tmp_path, capsys, monkeypatch):
    code, err = _main(["train", "--task", "fashion-mnist-mlp", "--data-dir", str(tmp_path / "nope"),
                       "--out", str(tmp_path / "agent"), *BASE], capsys, monkeypatch)
    _assert_clean_error(code, err, tmp_path, "does not exist")


# ----------------------------------------------------------------------------- numeric options
HUGE_INT, HUGE_FLOAT = "99999999999999999999", "1e300"
#: option -> (is float, values that are valid and so not fuzzed)
TRAIN_OPTIONS = {"--episodes": (False, ()), "--epochs": (False, ()), "--seed": (False, ("0",)),
                 "--interval": (False, ()), "--val-prob": (True, ()), "--lr-min": (True, ()),
                 "--lr-max": (True, ()), "--sigma": (True, ()), "--ppo-epochs": (False, ()),
                 "--episodes-per-update": (False, ()), "--workers": (False, ()),
                 "--gpus-per-worker": (True, ("0",)), "--threads": (False, ("0",)),
                 "--max-rollbacks": (False, ("0",))}
RUN_OPTIONS = {"--seeds": (False, ()), "--lr": (True, ()), "--candidates": (False, ())}
DEMO_OPTIONS = {"--episodes": (False, ()), "--epochs": (False, ()), "--seeds": (False, ()),
                "--seed": (False, ("0",)), "--threads": (False, ("0",))}
#: the word the error must contain, where the option's own name is not it
KEYWORD = {"--ppo-epochs": "epochs", "--lr": "lr"}


def _cases(command: str, options: dict) -> list:
    out = []
    for opt, (is_float, valid) in options.items():
        for v in ("0", "-1", "nan", "inf", "-inf", HUGE_FLOAT if is_float else HUGE_INT):
            if v not in valid:
                out.append(pytest.param(command, opt, v, id=f"{command}{opt}={v}"))
    return out


@pytest.mark.parametrize("command,option,value", _cases("train", TRAIN_OPTIONS) + _cases("run", RUN_OPTIONS)
                         + _cases("demo", DEMO_OPTIONS))
def test_hostile_numeric_options(command, option, value, tmp_path, capsys, monkeypatch):
    base = BASE if command != "demo" else ["--episodes", "1", "--epochs", "2", "--seeds", "1", "--quiet"]
    code, err = _main([command, "--out", str(tmp_path / "agent"), *base, f"{option}={value}"], capsys, monkeypatch)
    _assert_clean_error(code, err, tmp_path, KEYWORD.get(option, option.lstrip("-")))


@pytest.mark.parametrize("argv,expect", [
    (["train"], "--out"),
    (["train", "--out"], "--out"),
    (["train", "--bogus"], "no such option"),
    (["nope"], "no such command"),
    (["train", "--out", "x", "--encoder", "mlp"], "encoder"),
    (["train", "--out", "x", "--address", " "], "address"),
])
def test_malformed_command_lines(argv, expect, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = _main(argv, capsys, monkeypatch)
    _assert_clean_error(code, err, tmp_path, expect)
