"""deepae.losses against PyTorch's binary_cross_entropy_with_logits and numpy, in float64
(formula errors stand far above rounding) and float32 (saturated sigmoids)."""

import numpy as np
import pytest
import torch
from torch import nn

from deepae.losses import bce_sum_and_grad, bce_with_logits, log_chunk


def wide_logits(shape, dtype=torch.float32, seed=0):
    """Logits out to +-100 (sigmoid rounds to 0 or 1 in float32 beyond ~17 and ~-88) and
    targets 0, 1 and in between."""
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.rand(shape, generator=gen, dtype=torch.float64) * 200 - 100).to(dtype)
    edges = torch.tensor([-100.0, -88.0, -30.0, -17.0, 0.0, 17.0, 30.0, 88.0, 100.0])
    logits.view(-1)[:9] = edges.to(dtype)
    x = torch.rand(shape, generator=gen, dtype=torch.float64).to(dtype)
    x.view(-1)[::3] = 0.0
    x.view(-1)[1::3] = 1.0
    return logits, x


@pytest.mark.parametrize("shape", [(32, 784), (7, 13), (3, 127)])
def test_the_sum_holds_in_float32_where_the_sigmoid_saturates(shape):
    logits, x = wide_logits(shape)
    scale = torch.tensor(1.0 / logits.numel())
    g, work = torch.empty_like(logits), torch.empty_like(logits)
    got = bce_sum_and_grad(logits, x, g, scale, work).item()
    # Oracle: softplus(l) - x l in float64, numpy's logaddexp.
    ln, xn = logits.double().numpy(), x.double().numpy()
    assert got == pytest.approx((np.logaddexp(0.0, ln) - xn * ln).sum(), rel=2e-6)
    # sigmoid(l) - x to float32's precision (an absolute 2e-7), times the scale
    sig = 1 / (1 + np.exp(-ln))
    np.testing.assert_allclose(g.numpy() * ln.size, sig - xn, rtol=1e-6, atol=2e-7)


def fitted_images(batch, seed=0):
    """Images at or near 1 with the large positive logits of a model that fits them, and
    images at 0 with large negative ones: where each pixel's loss is tiny next to l."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.rand(batch, 784, generator=gen) * 25 + 5  # [5, 30)
    x = torch.ones_like(logits)
    x[1::3] = 0.999
    x[2::3], logits[2::3] = 0.0, -logits[2::3]
    return logits, x


@pytest.mark.parametrize("batch", [32, 512])
def test_the_sum_holds_where_the_model_fits_the_images(batch):
    """Summed apart, relu(l) and x l cancel where x is near 1 and l is large (the loss is
    ~1e-9 a pixel against l ~ 20)."""
    logits, x = fitted_images(batch)
    g, work = torch.empty_like(logits), torch.empty_like(logits)
    got = bce_sum_and_grad(logits, x, g, None, work).item()
    ln, xn = logits.double().numpy(), x.double().numpy()
    assert got == pytest.approx((np.logaddexp(0.0, ln) - xn * ln).sum(), rel=2e-6)
    # All-one images alone, where the loss is log(y) of y near 1: y's rounding (<= 2**-25,
    # absolute) bounds each pixel's error; the sums apart missed by ~3% at batch 512.
    ones = x[0::3].contiguous()
    got = bce_with_logits(logits[0::3], ones).item() * ones.numel()
    ln = logits[0::3].double().numpy()
    assert got == pytest.approx(np.logaddexp(0.0, -ln).sum(), abs=2**-25 * ones.numel())


@pytest.mark.parametrize("shape", [(32, 784), (5, 3)])
def test_the_autograd_function_equals_torchs_in_float64(shape):
    logits, x = wide_logits(shape, torch.float64, seed=1)
    logits.view(-1)[9:] /= 20  # most logits where the sigmoid is not flat
    ours_in = logits.clone().requires_grad_()
    ref_in = logits.clone().requires_grad_()
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = bce_with_logits(ours_in, x_ours)
    ref = nn.functional.binary_cross_entropy_with_logits(ref_in, x_ref)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    (ours * 3).backward()
    (ref * 3).backward()
    torch.testing.assert_close(ours_in.grad, ref_in.grad, rtol=1e-10, atol=1e-15)
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-10, atol=1e-15)


def test_the_autograd_function_takes_strided_input_and_float32():
    logits, x = wide_logits((16, 40))
    ref_in = logits.t().clone().requires_grad_()
    ours_in = logits.clone().requires_grad_()
    ours = bce_with_logits(ours_in.t(), x.t())  # non-contiguous views
    ref = nn.functional.binary_cross_entropy_with_logits(ref_in, x.t())
    assert ours.item() == pytest.approx(ref.item(), rel=2e-6)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(ours_in.grad.t(), ref_in.grad, rtol=1e-6, atol=1e-9)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match=r"logits \(2, 3\) and targets \(3, 2\)"):
        bce_with_logits(torch.zeros(2, 3), torch.zeros(3, 2))


def test_log_chunks_are_the_largest_divisor_that_keeps_products_normal():
    # Hand-computed: 25,088 = 2**9 * 7**2, whose largest divisor <= 125 is 16 * 7 = 112;
    # 127 is prime (so 1 in float32, whose products of 126+ halves go subnormal); in float64
    # (tiny 2**-1022) the whole row fits.
    assert log_chunk(torch.empty(32, 784)) == 112
    assert log_chunk(torch.empty(1, 127)) == 1
    assert log_chunk(torch.empty(1, 127, dtype=torch.float64)) == 127
    assert log_chunk(torch.empty(5, 5)) == 25
    # bfloat16 (eps 2**-7) and float16 (2**-10) round each product too coarsely: a log each
    assert log_chunk(torch.empty(32, 784, dtype=torch.bfloat16)) == 1
    assert log_chunk(torch.empty(32, 784, dtype=torch.float16)) == 1


def test_the_sum_in_bfloat16_is_as_good_as_the_format():
    logits, x = wide_logits((8, 784), seed=2)
    logits /= 10  # within float16's range too
    for dtype in (torch.bfloat16, torch.float16):
        lo, xo = logits.to(dtype), x.to(dtype)
        g, work = torch.empty_like(lo), torch.empty_like(lo)
        got = bce_sum_and_grad(lo, xo, g, None, work).item()
        ln, xn = lo.double().numpy(), xo.double().numpy()
        assert got == pytest.approx((np.logaddexp(0.0, ln) - xn * ln).sum(), rel=1e-2), dtype
