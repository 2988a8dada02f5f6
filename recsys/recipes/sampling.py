"""Sampled softmax for large catalogues: an O(1) alias sampler and the logQ-corrected loss.

With a proposal Q (unigram popularity, smoothed), the sampled logits of the true item and of
k shared negatives are corrected by ``- log(k · Q(item))`` (Bengio & Senécal; Jean et al.;
Yi et al. 2019), which makes the sampled softmax an unbiased-in-the-limit estimate of the full
softmax gradient. Negatives equal to the true item ("accidental hits") are masked out.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class AliasSampler:
    """Vose's alias method: O(n) set-up, O(1) per draw."""

    def __init__(self, probs: np.ndarray, seed: int = 0) -> None:
        p = np.asarray(probs, dtype=np.float64)
        if p.ndim != 1 or len(p) == 0 or (p < 0).any() or p.sum() <= 0:
            raise ValueError("probs must be a non-empty, non-negative vector with positive sum")
        p = p / p.sum()
        n = len(p)
        self.probs = p
        scaled = p * n
        self.prob = np.zeros(n, dtype=np.float64)
        self.alias = np.zeros(n, dtype=np.int64)
        small = [i for i in range(n) if scaled[i] < 1.0]
        large = [i for i in range(n) if scaled[i] >= 1.0]
        while small and large:
            s, g = small.pop(), large.pop()
            self.prob[s] = scaled[s]
            self.alias[s] = g
            scaled[g] = scaled[g] + scaled[s] - 1.0
            (small if scaled[g] < 1.0 else large).append(g)
        for i in large + small:
            self.prob[i] = 1.0
        self.rng = np.random.default_rng(seed)

    def sample(self, k: int) -> np.ndarray:
        idx = self.rng.integers(0, len(self.prob), size=k)
        coin = self.rng.random(k)
        return np.where(coin < self.prob[idx], idx, self.alias[idx])


def sampled_softmax_loss(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    item_vectors: torch.Tensor,
    item_bias: torch.Tensor,
    negatives: torch.Tensor,
    log_q: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean sampled-softmax cross-entropy with logQ correction.

    hidden (N × d), targets (N,) item indices, item_vectors (V × d), item_bias (V,),
    negatives (k,) shared sampled indices, log_q (V,) log proposal probabilities.
    """
    k = negatives.numel()
    pos_logit = (hidden * item_vectors[targets]).sum(-1) + item_bias[targets]
    pos_logit = pos_logit - (log_q[targets] + np.log(k))
    neg_logit = hidden @ item_vectors[negatives].T + item_bias[negatives]
    neg_logit = neg_logit - (log_q[negatives] + np.log(k))
    neg_logit = neg_logit.masked_fill(targets[:, None] == negatives[None, :], float("-inf"))
    logits = torch.cat([pos_logit[:, None], neg_logit], dim=1)
    loss = F.cross_entropy(logits.float(), torch.zeros_like(targets), reduction="none")
    if weights is not None:
        return (loss * weights).sum() / weights.sum().clamp_min(1e-9)
    return loss.mean()
