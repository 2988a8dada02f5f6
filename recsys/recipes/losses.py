"""Full softmax cross-entropy over the catalogue, fused and chunked for CPUs.

``F.cross_entropy(h @ zᵀ + b, t)`` materialises an N × V logit matrix (6,400 targets × 3,706
items = 95 MB for one MovieLens-1M batch), walks it several times in the forward pass
(log-softmax), stores it for the backward pass and walks it again there. On a 2-core CPU that
memory traffic, not the matmuls, is most of a training step.

:class:`FusedSoftmaxCE` computes the loss *and its gradients* in one pass over chunks of
``chunk`` targets whose logits stay in cache: ``logits → softmax → (p − onehot)·w → ∂h, ∂z,
∂b``, the matmuls in bf16 where asked (CPUs with AVX-512-bf16/AMX run them several times
faster than fp32; the softmax itself stays fp32). Nothing N × V outlives a chunk. The backward
pass only scales the stored gradients by the incoming one, so the loss must be used once, as
it is in training (it is not for double backward or for ``torch.func``).
"""

from __future__ import annotations

import torch

#: targets per chunk: 512 × 3,706 fp32 logits ≈ 7.6 MB (measured: 256–1024 within ~20 %).
CHUNK = 512
#: on a GPU (not measured here: no GPU was lent to the sessions that wrote this)
GPU_CHUNK = 8192


class FusedSoftmaxCE(torch.autograd.Function):
    """Weighted mean of softmax cross-entropy; see :func:`full_softmax_loss`."""

    @staticmethod
    def forward(ctx, hidden, items, bias, targets, weights, low_precision, chunk):  # noqa: D102
        with torch.autocast(hidden.device.type, enabled=False):
            dtype = torch.bfloat16 if low_precision else torch.float32
            n, d = hidden.shape
            w = weights.float() / weights.float().sum().clamp_min(1e-12)
            h_all = hidden.detach().to(dtype)
            z = items.detach().to(dtype)
            b = bias.detach().float()
            dev = hidden.device
            grad_h = torch.empty(n, d, dtype=torch.float32, device=dev)
            grad_z = torch.zeros(items.shape, dtype=torch.float32, device=dev)
            grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=dev)
            loss = torch.zeros((), dtype=torch.float64, device=dev)
            tiny = torch.finfo(torch.float32).tiny
            for s in range(0, n, chunk):
                h, t, wc = h_all[s : s + chunk], targets[s : s + chunk], w[s : s + chunk]
                rows = torch.arange(len(t), device=dev)
                p = torch.softmax(torch.mm(h, z.T).float().add_(b), dim=1)
                # -log p_t; p_t below float32's range (a logit gap > ~87) reports 87, the
                # gradient (p − onehot) is exact regardless
                loss -= (wc * p[rows, t].clamp_min(tiny).log()).sum().double()
                p[rows, t] -= 1.0
                p.mul_(wc[:, None])
                grad_b += p.sum(0)
                g = p.to(dtype)
                grad_h[s : s + chunk] = torch.mm(g, z).float()
                grad_z += torch.mm(g.T, h).float()
        ctx.save_for_backward(grad_h, grad_z, grad_b)
        ctx.dtypes = (hidden.dtype, items.dtype, bias.dtype)
        return loss.float()

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        grad_h, grad_z, grad_b = ctx.saved_tensors
        dh, dz, db = ctx.dtypes
        g = grad_out.float()
        return (grad_h * g).to(dh), (grad_z * g).to(dz), (grad_b * g).to(db), None, None, None, None


def full_softmax_loss(
    hidden: torch.Tensor,
    items: torch.Tensor,
    bias: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    low_precision: bool = False,
    chunk: int | None = None,
) -> torch.Tensor:
    """Weighted mean over N targets of ``−log softmax(h_n · zᵀ + b)[t_n]``.

    hidden (N × d), items (V × d), bias (V,), targets (N,) in 0..V−1, weights (N,) or None.
    ``low_precision``: bf16 matmuls (fp32 softmax and accumulation). ``chunk``: targets per
    pass (default: :data:`CHUNK` on a CPU, :data:`GPU_CHUNK` on a GPU). Equals
    ``(F.cross_entropy(h @ z.T + b, t, reduction="none") * w).sum() / w.sum()`` in value and
    gradient (to fp32 rounding when not ``low_precision``)."""
    if weights is None:
        weights = torch.ones(len(targets), dtype=torch.float32, device=hidden.device)
    if len(targets) == 0:
        return (hidden.sum() + items.sum() + bias.sum()) * 0.0
    if chunk is None:  # cache-sized on a CPU; a GPU wants fewer, larger kernels
        chunk = CHUNK if hidden.device.type == "cpu" else GPU_CHUNK
    return FusedSoftmaxCE.apply(hidden, items, bias, targets, weights, low_precision, int(chunk))
