"""The written-out transformer forward and the fast dropout behind it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recsys.recipes.user_personalization import FastDropout, SequenceModel


def _reference_encode(m: SequenceModel, seq: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """What encode() computed before it was written out: torch's own TransformerEncoder."""
    x = F.embedding(seq, z) * m.dim**0.5 + m.pos_emb.weight[-seq.shape[1] :]
    x = x * (seq > 0).unsqueeze(-1)
    L = seq.shape[1]
    return m.norm(m.encoder(x, mask=m.causal[:L, :L], is_causal=True))


def test_encode_equals_torch_transformer_encoder_in_eval_and_without_dropout():
    torch.manual_seed(0)
    m = SequenceModel(50, 16, 12, 2, 2, 0.2, None)
    seq = torch.randint(1, 51, (5, 10))
    seq[:, :3] = 0  # left padding
    with torch.no_grad():
        z = m.item_vectors()
        m.eval()
        ref = _reference_encode(m, seq, z)
        torch.testing.assert_close(m.encode(seq, z), ref, rtol=1e-5, atol=1e-5)
        m.train()  # the explicit attention path (training) with dropout switched off
        m.dropout.threshold = 0
        torch.testing.assert_close(m.encode(seq, z), ref, rtol=1e-5, atol=1e-5)


def test_fast_dropout_rate_scale_seed_and_eval():
    d = FastDropout(0.2)
    x = torch.ones(400, 500)
    d.train()
    d.seed(7)
    a = d(x)
    kept = (a != 0).float().mean().item()
    assert abs(kept - (1 - 51 / 256)) < 0.005  # the rate is rounded to 51/256
    assert torch.allclose(a[a != 0], torch.full_like(a[a != 0], 256 / 205))
    assert abs(a.mean().item() - 1.0) < 0.01  # unbiased
    d.seed(7)
    assert torch.equal(d(x), a)  # same seed, same mask
    assert not torch.equal(d(x), a)  # the stream moves on
    d.eval()
    assert d(x) is x


def test_dropout_gradient_is_the_mask():
    d = FastDropout(0.5)
    x = torch.randn(64, 64, requires_grad=True)
    y = d(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float() * 2.0)
