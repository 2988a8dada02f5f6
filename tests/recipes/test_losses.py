"""The fused, chunked full-softmax loss equals the textbook one in value and gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from recsys.recipes.losses import full_softmax_loss


def _leaves(seed: int, n: int = 300, v: int = 57, d: int = 8):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g).requires_grad_()
    z = (torch.randn(v, d, generator=g) * 0.7).requires_grad_()
    b = (torch.randn(v, generator=g) * 0.3).requires_grad_()
    t = torch.randint(0, v, (n,), generator=g)
    w = torch.rand(n, generator=g) + 0.1
    return h, z, b, t, w


def _grads(loss, *leaves):
    loss.backward()
    return [x.grad.clone() for x in leaves]


@pytest.mark.parametrize("chunk", [1, 64, 299, 300, 1000])
def test_matches_cross_entropy_in_value_and_gradient(chunk):
    h, z, b, t, w = _leaves(0)
    ref = (F.cross_entropy(h @ z.T + b, t, reduction="none") * w).sum() / w.sum()
    ref_grads = _grads(ref * 3.0, h, z, b)  # a non-unit upstream gradient is passed through
    h2, z2, b2 = (x.detach().clone().requires_grad_() for x in (h, z, b))
    got = full_softmax_loss(h2, z2, b2, t, w, chunk=chunk)
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)
    got_grads = _grads(got * 3.0, h2, z2, b2)
    for a, e in zip(got_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-6)


def test_unweighted_is_the_plain_mean():
    h, z, b, t, _ = _leaves(1)
    ref = F.cross_entropy(h @ z.T + b, t)
    assert full_softmax_loss(h, z, b, t).item() == pytest.approx(ref.item(), rel=1e-5)


def test_bf16_matmuls_stay_close_and_keep_input_dtypes():
    h, z, b, t, w = _leaves(2, n=512, v=300, d=32)
    ref = (F.cross_entropy(h @ z.T + b, t, reduction="none") * w).sum() / w.sum()
    ref_grads = _grads(ref, h, z, b)
    h2, z2, b2 = (x.detach().clone().requires_grad_() for x in (h, z, b))
    got = full_softmax_loss(h2, z2, b2, t, w, low_precision=True)
    assert got.item() == pytest.approx(ref.item(), rel=2e-2)
    for a, e in zip(_grads(got, h2, z2, b2), ref_grads, strict=True):
        assert a.dtype == torch.float32
        cos = F.cosine_similarity(a.flatten(), e.flatten(), dim=0)
        assert float(cos) > 0.995


def test_no_targets_gives_zero_loss_with_zero_gradients():
    h, z, b, t, w = _leaves(3)
    loss = full_softmax_loss(h[:0], z, b, t[:0], w[:0])
    loss.backward()
    assert loss.item() == 0.0 and float(z.grad.abs().sum()) == 0.0
