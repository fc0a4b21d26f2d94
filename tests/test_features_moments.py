"""The one-pass moments of large tensors in the node features equal the float64 moments."""
from __future__ import annotations

import pytest
import torch

from gnsched.features import FAST_MOMENTS_NUMEL, _var_mean


@pytest.mark.parametrize("absolute", [False, True])
@pytest.mark.parametrize("shape,scale,shift", [((1024, 384), 1e-5, 0.0), ((700, 400), 0.02, 0.01),
                                               ((600, 500), 1e-4, 1.0)])  # the last cancels: two passes
def test_large_tensor_moments(shape, scale, shift, absolute):
    t = shift + scale * torch.randn(shape, generator=torch.Generator().manual_seed(0))
    assert t.numel() >= FAST_MOMENTS_NUMEL
    var, mean = _var_mean(t, absolute)
    ref = (t.abs() if absolute else t).double()
    assert float(mean) == pytest.approx(float(ref.mean()), rel=1e-6)
    assert float(var) == pytest.approx(float(ref.var(unbiased=False)), rel=1e-4)
