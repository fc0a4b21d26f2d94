"""The fast moments of the node features (one fused pass, row sums for large tensors,
two-pass fallback where E[x²] - E[x]² cancels) equal the float64 moments."""
from __future__ import annotations

import pytest
import torch

from gnsched.features import LARGE_NUMEL, tensor_stats


@pytest.mark.parametrize("absolute", [False, True])
@pytest.mark.parametrize("shape,scale,shift", [((1024, 384), 1e-5, 0.0), ((700, 400), 0.02, 0.01),
                                               ((600, 500), 1e-4, 1.0),  # cancels: two passes
                                               ((64, 32), 0.1, 0.0)])    # small: the fused path
def test_tensor_moments(shape, scale, shift, absolute):
    t = shift + scale * torch.randn(shape, generator=torch.Generator().manual_seed(0))
    assert (t.numel() >= LARGE_NUMEL) == (shape[0] > 64)
    var, mean = tensor_stats([t], absolute)
    ref = (t.abs() if absolute else t).double()
    assert mean[0] == pytest.approx(float(ref.mean()), rel=1e-6)
    assert var[0] == pytest.approx(float(ref.var(unbiased=False)), rel=1e-4)
