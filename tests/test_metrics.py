"""GLUE metrics against values computed by hand (closed forms written out in each test)."""
from __future__ import annotations

import math

import pytest
import torch

from gnsched.errors import GNSError
from gnsched.metrics import accuracy, f1, get_metric, matthews, pearson, rank, spearman

# pred / target: TP = 2 (0, 2), FN = 1 (1), FP = 1 (3), TN = 1 (4)
PRED = [1, 0, 1, 1, 0]
TRUE = [1, 1, 1, 0, 0]


def test_accuracy_and_f1():
    assert accuracy(PRED, TRUE) == pytest.approx(3 / 5)
    assert f1(PRED, TRUE) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # 2 TP / (2 TP + FP + FN) = 2/3
    assert f1(PRED, TRUE, positive=0) == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))  # TP0 = 1, FP0 = 1, FN0 = 1
    assert f1([0, 0], [0, 0]) == 0.0  # no positive anywhere: 0, not NaN


def test_matthews_binary_closed_form():
    tp, tn, fp, fn = 2, 1, 1, 1
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))  # = 1/6
    assert matthews(PRED, TRUE) == pytest.approx(expected) == pytest.approx(1 / 6)
    assert matthews([0, 1, 1, 0], [0, 1, 1, 0]) == pytest.approx(1.0)
    assert matthews([1, 0, 0, 1], [0, 1, 1, 0]) == pytest.approx(-1.0)
    assert matthews([1, 1, 1, 1], [0, 1, 1, 0]) == 0.0  # constant prediction: 0, not NaN


def test_matthews_multiclass_gorodkin():
    # c = 3 correct of s = 4; predicted counts p = [1, 1, 2], true counts t = [1, 2, 1]
    # (c s - Σ p t) / sqrt((s² - Σ p²)(s² - Σ t²)) = (12 - 5) / sqrt(10 · 10) = 0.7
    assert matthews(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2])) == pytest.approx(0.7)


def test_pearson_closed_form():
    # x - mean = [-1, 0, 1], y - mean = [-1, 1, 0]: Σ dx dy = 1, Σ dx² = Σ dy² = 2 -> 0.5
    assert pearson([1.0, 2.0, 3.0], [1.0, 3.0, 2.0]) == pytest.approx(0.5)
    assert pearson([1.0, 2.0, 3.0], [-2.0, -4.0, -6.0]) == pytest.approx(-1.0)
    assert pearson([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]) == 0.0  # zero variance: 0, not NaN


def test_spearman_ranks_with_ties():
    assert rank(torch.tensor([3.0, 1.0, 2.0, 2.0])).tolist() == [4.0, 1.0, 2.5, 2.5]
    # ranks x = [1, 2.5, 2.5, 4], y = [1, 2, 3, 4]: Σ dx dy = 4.5, Σ dx² = 4.5, Σ dy² = 5
    assert spearman([1.0, 2.0, 2.0, 3.0], [10.0, 20.0, 30.0, 40.0]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    # monotonic but not linear: Spearman 1, Pearson below 1
    assert spearman([1.0, 2.0, 3.0, 4.0], [1.0, 4.0, 9.0, 100.0]) == pytest.approx(1.0)
    assert pearson([1.0, 2.0, 3.0, 4.0], [1.0, 4.0, 9.0, 100.0]) < 0.9


def test_metric_errors():
    with pytest.raises(GNSError, match="as many predictions as targets"):
        accuracy([1, 0], [1])
    with pytest.raises(GNSError, match="unknown metric 'auc'"):
        get_metric("auc")
    assert get_metric("matthews") is matthews
