"""GLUE tsv readers: the real CoLA / SST-2 / MRPC / RTE files (row counts, label sets) and
invented fixtures in the layouts of QQP, STS-B, MNLI and QNLI; malformed files."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gnsched.errors import GNSError
from gnsched.glue import GLUE_SPECS, available_tasks, glue_spec, load_glue, read_glue_tsv

from conftest import DATA_DIR

GLUE_DIR = DATA_DIR / "glue_data"
FIXTURES = Path(__file__).parent / "fixtures" / "glue"

# task: (train rows, dev rows, train label counts, dev label counts) of the official files
REAL = {
    "RTE": (2490, 277, [1249, 1241], [146, 131]),
    "MRPC": (3668, 408, [1194, 2474], [129, 279]),
    "CoLA": (8551, 1043, [2528, 6023], [322, 721]),
    "SST-2": (67349, 872, [29780, 37569], [428, 444]),
}


@pytest.mark.parametrize("task", list(REAL))
def test_real_glue_files(task):
    if not (GLUE_DIR / task / "train.tsv").is_file():
        pytest.skip(f"real GLUE {task} files not found in {GLUE_DIR} (set GNSCHED_DATA)")
    n_train, n_dev, c_train, c_dev = REAL[task]
    train, dev = load_glue(GLUE_DIR, task)
    assert (len(train), len(dev)) == (n_train, n_dev)
    assert torch.bincount(train.labels).tolist() == c_train
    assert torch.bincount(dev.labels).tolist() == c_dev
    assert train.labels.dtype == torch.long
    assert (train.text_b is None) == (task in ("CoLA", "SST-2"))
    assert all(t.strip() for t in train.text_a[:100])


def test_real_files_keep_bare_quotes_and_strip_the_bom():
    if not (GLUE_DIR / "MRPC" / "train.tsv").is_file():
        pytest.skip(f"real GLUE MRPC files not found in {GLUE_DIR}")
    train, _ = load_glue(GLUE_DIR, "MRPC")
    # first train row of MRPC (label 1) quotes " the witness " with bare quote characters
    assert train.labels[0] == 1
    assert '" the witness "' in train.text_a[0]
    assert "\ufeff" not in train.text_a[0]
    assert set(available_tasks(GLUE_DIR)) >= {"CoLA", "SST-2", "MRPC", "RTE"}


def test_fixture_layouts():
    qqp_tr, qqp_dev = load_glue(FIXTURES, "QQP")
    assert (len(qqp_tr), len(qqp_dev)) == (5, 3)
    assert qqp_tr.labels.tolist() == [1, 0, 1, 0, 1]
    assert qqp_tr.text_a[2] == 'What does "idempotent" mean?'  # bare quotes kept
    assert qqp_tr.text_b[2] == "What is the meaning of idempotent?"

    sts_tr, sts_dev = load_glue(FIXTURES, "sts-b")
    assert sts_tr.labels.dtype == torch.float32
    assert sts_tr.labels.tolist() == pytest.approx([4.75, 0.0, 4.2, 2.5, 3.0])
    assert sts_dev.text_b[0] == "A cat is sleeping on a rug."
    assert GLUE_SPECS["STS-B"].num_labels == 1 and GLUE_SPECS["STS-B"].is_regression

    mnli_tr, mnli_dev = load_glue(FIXTURES, "MNLI")  # train 12 columns, dev_matched 16
    labels = GLUE_SPECS["MNLI"].labels
    assert labels == ("contradiction", "entailment", "neutral")
    assert [labels[i] for i in mnli_tr.labels] == ["entailment", "contradiction", "neutral"] * 2
    assert [labels[i] for i in mnli_dev.labels] == ["entailment", "contradiction", "neutral"]
    assert mnli_dev.text_a[0] == "The bakery sells bread." and mnli_tr.text_a[3] == 'She said "no" twice.'

    qnli_tr, qnli_dev = load_glue(FIXTURES, "QNLI")
    assert qnli_tr.labels.tolist() == [0, 1, 0, 1] and len(qnli_dev) == 2
    assert qnli_tr.text_a[0] == "What colour is a ripe banana?"
    assert available_tasks(FIXTURES) == ["QQP", "STS-B", "MNLI", "QNLI"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_malformed_files(tmp_path):
    rte = glue_spec("rte")
    head = "index\tsentence1\tsentence2\tlabel\n"
    bad = _write(tmp_path / "cols.tsv", head + "0\ta\tb\tentailment\n1\ta\tnot_entailment\n")
    with pytest.raises(GNSError, match=r"cols\.tsv line 3 has 3 tab-separated fields, expected 4"):
        read_glue_tsv(bad, rte)
    bad = _write(tmp_path / "label.tsv", head + "0\ta\tb\tmaybe\n")
    with pytest.raises(GNSError, match=r"label\.tsv line 2: unknown label 'maybe'; RTE labels are entailment"):
        read_glue_tsv(bad, rte)
    with pytest.raises(GNSError, match="is empty"):
        read_glue_tsv(_write(tmp_path / "empty.tsv", ""), rte)
    with pytest.raises(GNSError, match="holds no examples"):
        read_glue_tsv(_write(tmp_path / "head.tsv", head), rte)
    with pytest.raises(GNSError, match="has no column 'sentence1'"):
        read_glue_tsv(_write(tmp_path / "other.tsv", "sentence\tlabel\nok\t1\n"), rte)
    cola = glue_spec("CoLA")  # no header: the first line is an example
    good = read_glue_tsv(_write(tmp_path / "cola.tsv", "gj04\t1\t\tIt works.\nx\t0\t*\tWorks it.\n"), cola)
    assert good.labels.tolist() == [1, 0] and good.text_a == ["It works.", "Works it."]
    with pytest.raises(GNSError, match=r"cola2\.tsv line 1 has 2 tab-separated fields, expected 4"):
        read_glue_tsv(_write(tmp_path / "cola2.tsv", "gj04\t1\n"), cola)
    sts = glue_spec("STS-B")
    row = "0\tg\tf\ty\t0\ts\ts\ta\tb\t"
    with pytest.raises(GNSError, match=r"line 2: label 'nan' is not a finite number"):
        read_glue_tsv(_write(tmp_path / "sts.tsv", "\t".join(["x"] * 7 + ["sentence1", "sentence2", "score"]) + "\n" + row + "nan\n"), sts)
    with pytest.raises(GNSError, match="does not exist"):
        read_glue_tsv(tmp_path / "missing.tsv", rte)
    with pytest.raises(GNSError, match="GLUE task folder .*RTE does not exist"):
        load_glue(tmp_path, "RTE")
    with pytest.raises(GNSError, match="unknown GLUE task 'wnli'"):
        glue_spec("wnli")
