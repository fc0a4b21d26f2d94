"""GLUE readers: the standard tab-separated layout of the eight GLUE tasks.

Each task folder (``CoLA``, ``SST-2``, ``MRPC``, ``QQP``, ``STS-B``, ``MNLI``, ``QNLI``,
``RTE``) holds ``train.tsv`` and a dev file (``dev.tsv``; ``dev_matched.tsv`` for MNLI).
Layouts, as distributed by the GLUE download script:

=======  ========  ==========================================  ==========================================
task     header    text columns                                label column / values
=======  ========  ==========================================  ==========================================
CoLA     none      4 columns: source, label, author mark,      column 1: ``0``, ``1``
                   sentence
SST-2    yes       ``sentence``                                ``label``: ``0``, ``1``
MRPC     yes (BOM) ``#1 String``, ``#2 String``                ``Quality``: ``0``, ``1``
QQP      yes       ``question1``, ``question2``                ``is_duplicate``: ``0``, ``1``
STS-B    yes       ``sentence1``, ``sentence2``                ``score``: a float in [0, 5]
MNLI     yes       ``sentence1``, ``sentence2``                ``gold_label``: contradiction, entailment,
                                                               neutral (train has 12 columns, dev 16)
QNLI     yes       ``question``, ``sentence``                  ``label``: entailment, not_entailment
RTE      yes       ``sentence1``, ``sentence2``                ``label``: entailment, not_entailment
=======  ========  ==========================================  ==========================================

Columns of files with a header are found by name, so MNLI's train (12 columns) and dev
(16 columns) files share one description; every row must have as many fields as the
header. Files are read with ``csv`` ``QUOTE_NONE`` (SST-2, MRPC and others contain bare
``"`` characters that are part of the text) and ``utf-8-sig`` (MRPC starts with a BOM).
Class labels are mapped to indices in the order listed above; STS-B scores stay floats.
Any malformed row raises :class:`~gnsched.errors.GNSError` naming the file and line.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import GNSError


@dataclass(frozen=True)
class GlueSpec:
    """The file layout of one GLUE task.

    Attributes:
        name: GLUE name (also the folder name).
        text_a, text_b: column names of the first / second text (``text_b`` None for
            single-sentence tasks); for a headerless file, their column indices.
        label: column name (or index) of the label.
        labels: class label strings in index order, or ``()`` for a regression target.
        header: whether the files start with a header row.
        columns: number of columns of a headerless file.
        dev_file: file name of the dev split (used as the test set).
    """

    name: str
    text_a: str | int
    text_b: str | int | None
    label: str | int
    labels: tuple[str, ...]
    header: bool = True
    columns: int | None = None
    dev_file: str = "dev.tsv"

    @property
    def num_labels(self) -> int:
        """Model outputs: the number of classes, 1 for regression (STS-B)."""
        return len(self.labels) or 1

    @property
    def is_regression(self) -> bool:
        return not self.labels


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")

GLUE_SPECS: dict[str, GlueSpec] = {s.name: s for s in (
    GlueSpec("CoLA", 3, None, 1, _BINARY, header=False, columns=4),
    GlueSpec("SST-2", "sentence", None, "label", _BINARY),
    GlueSpec("MRPC", "#1 String", "#2 String", "Quality", _BINARY),
    GlueSpec("QQP", "question1", "question2", "is_duplicate", _BINARY),
    GlueSpec("STS-B", "sentence1", "sentence2", "score", ()),
    GlueSpec("MNLI", "sentence1", "sentence2", "gold_label", ("contradiction", "entailment", "neutral"),
             dev_file="dev_matched.tsv"),
    GlueSpec("QNLI", "question", "sentence", "label", _NLI2),
    GlueSpec("RTE", "sentence1", "sentence2", "label", _NLI2),
)}


@dataclass
class GlueExamples:
    """One split of a GLUE task: texts and labels (int64 class indices or float32 scores)."""

    text_a: list[str]
    text_b: list[str] | None
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.text_a)


def glue_spec(name: str) -> GlueSpec:
    """The :class:`GlueSpec` of a GLUE task (case-insensitive, ``SST-2`` or ``sst2``)."""
    key = {k.lower().replace("-", ""): k for k in GLUE_SPECS}.get(name.lower().replace("-", ""))
    if key is None:
        raise GNSError(f"unknown GLUE task {name!r}; allowed: {', '.join(GLUE_SPECS)}.")
    return GLUE_SPECS[key]


def _column(spec_col: str | int | None, header: list[str] | None, path: Path) -> int | None:
    if spec_col is None or isinstance(spec_col, int):
        return spec_col
    assert header is not None
    if spec_col not in header:
        raise GNSError(f"GLUE file {path} has no column {spec_col!r} in its header "
                       f"({', '.join(repr(h) for h in header)}); is it the right task's file?")
    return header.index(spec_col)


def _label(raw: str, spec: GlueSpec, path: Path, line: int) -> float | int:
    if spec.is_regression:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise GNSError(f"GLUE file {path} line {line}: label {raw!r} is not a finite number "
                           f"({spec.name} scores are floats).")
        return value
    if raw not in spec.labels:
        raise GNSError(f"GLUE file {path} line {line}: unknown label {raw!r}; "
                       f"{spec.name} labels are {', '.join(spec.labels)}.")
    return spec.labels.index(raw)


def read_glue_tsv(path: str | Path, spec: GlueSpec) -> GlueExamples:
    """Read one GLUE ``.tsv`` file laid out as ``spec`` describes."""
    path = Path(path)
    if not path.is_file():
        raise GNSError(f"GLUE file {path} does not exist.")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise GNSError(f"GLUE file {path} cannot be read as UTF-8 tab-separated text: {e}.") from None
    header = None
    if spec.header:
        if not rows:
            raise GNSError(f"GLUE file {path} is empty (expected a header row and examples).")
        header, rows = rows[0], rows[1:]
    if not rows:
        raise GNSError(f"GLUE file {path} holds no examples.")
    n_cols = len(header) if header is not None else spec.columns
    cols = [_column(c, header, path) for c in (spec.text_a, spec.text_b, spec.label)]
    a_col, b_col, y_col = cols
    first = 2 if spec.header else 1
    text_a: list[str] = []
    text_b: list[str] = []
    labels: list[float | int] = []
    for line, row in enumerate(rows, start=first):
        if len(row) != n_cols:
            raise GNSError(f"GLUE file {path} line {line} has {len(row)} tab-separated fields, expected "
                           f"{n_cols} ({spec.name} layout); the row is malformed.")
        text_a.append(row[a_col])
        if b_col is not None:
            text_b.append(row[b_col])
        labels.append(_label(row[y_col], spec, path, line))
    dtype = torch.float32 if spec.is_regression else torch.long
    return GlueExamples(text_a, text_b if b_col is not None else None, torch.tensor(labels, dtype=dtype))


def task_folder(data_dir: str | Path, spec: GlueSpec) -> Path:
    """The folder of ``spec``'s task inside ``data_dir`` (or ``data_dir`` itself when it is
    that folder)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        what = "is not a folder" if data_dir.exists() else "does not exist"
        raise GNSError(f"GLUE data folder {data_dir} {what}; --data-dir must be the folder holding the "
                       f"GLUE task folders ({', '.join(GLUE_SPECS)}).")
    folder = data_dir / spec.name
    if not folder.is_dir() and data_dir.name == spec.name:
        folder = data_dir
    if not folder.is_dir():
        raise GNSError(f"GLUE task folder {folder} does not exist; --data-dir must hold a {spec.name}/ "
                       f"folder with train.tsv and {spec.dev_file}.")
    return folder


def load_glue(data_dir: str | Path, task: str) -> tuple[GlueExamples, GlueExamples]:
    """The train and dev splits of GLUE ``task`` from ``data_dir/<task>/``."""
    spec = glue_spec(task)
    folder = task_folder(data_dir, spec)
    return read_glue_tsv(folder / "train.tsv", spec), read_glue_tsv(folder / spec.dev_file, spec)


def available_tasks(data_dir: str | Path) -> list[str]:
    """GLUE tasks whose train and dev files exist under ``data_dir``."""
    data_dir = Path(data_dir)
    return [s.name for s in GLUE_SPECS.values()
            if (data_dir / s.name / "train.tsv").is_file() and (data_dir / s.name / s.dev_file).is_file()]
