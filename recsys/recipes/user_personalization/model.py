"""The user-personalization network: item representations and the causal sequence encoder.

* Item representation: an id embedding ``e_i`` (E) and a metadata representation ``f_i`` (F:
  embedding bags over categorical values and hashed text n-grams, plus a projection of the
  standardised numeric fields), fused ``z_i = W [e_i ; f_i]``.
* User state: a causal transformer (SASRec family: learned positions, pre-norm blocks) over
  the user's last ``bptt`` items; ``h_u`` is its output at the last position. ``encoder:
  gru`` swaps in HRNN's recurrent state.
* Scores over the catalogue: ``z_iᵀ h_u + b_i``. Since z is linear in [e; f] this is the
  talk's ``Eᵀh + b`` and ``Fᵀh + b'`` combined, with W learning the mix.

The loss and the loop that trains this are in :mod:`.training`; what is saved in
:mod:`.artifacts`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recsys.errors import ConfigError
from recsys.recipes.features import ItemFeatures


def bf16_supported(device: torch.device | None = None) -> bool:
    """bf16 matmuls that pay: AMX / AVX-512-bf16 on a CPU, bf16 support on a GPU."""
    if device is not None and device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def resolve_device(name: str) -> torch.device:
    """``auto``: the first CUDA GPU where torch sees one, else the CPU; or a torch device
    name (``cpu``, ``cuda``, ``cuda:1``), refused with a clear error when it is not there."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"user-personalization: unknown device {name!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"user-personalization: device {name!r} asked for, but torch sees no GPU")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"user-personalization: device {name!r} is not supported (cpu, cuda)")
    return device


class FastDropout(nn.Module):
    """Dropout whose mask comes from numpy's PCG64 bytes: torch's CPU ``bernoulli_`` draws
    one Mersenne-Twister number per element on one thread (14 ms for a 32 × 200 × 200
    attention matrix here, 22 % of a MovieLens-1M training step); bytes cost ~1 ms.
    The rate is rounded to a multiple of 1/256 (0.2 → 0.1992). Seeded by :meth:`seed`."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)
        self.threshold = round(self.p * 256)
        self.scale = 1.0 / (1.0 - self.threshold / 256) if self.threshold < 256 else 0.0
        self.rng = np.random.default_rng(0)

    def seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        if x.device.type != "cpu":  # a GPU's own generator is fast; this is a CPU fix
            return F.dropout(x, self.threshold / 256, True)
        keep = torch.from_numpy(self.rng.integers(0, 256, size=x.shape, dtype=np.uint8))
        return x * (keep >= self.threshold).to(x.dtype) * self.scale


class SequenceModel(nn.Module):
    def __init__(
        self,
        n_items: int,
        dim: int,
        max_len: int,
        n_layers: int,
        n_heads: int,
        dropout: float,
        features: ItemFeatures | None,
        encoder: str = "transformer",
    ) -> None:
        super().__init__()
        if encoder not in ("transformer", "gru"):
            raise ConfigError(
                f"user-personalization: encoder must be transformer or gru, not {encoder!r}"
            )
        self.kind = encoder
        self.n_items = n_items
        self.dim = dim
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)  # 0 = padding
        nn.init.normal_(self.item_emb.weight, std=dim**-0.5)
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        self.pos_emb = nn.Embedding(max_len, dim)
        self.has_meta = features is not None and (
            len(features.tokens) > 0 or features.n_numeric > 0
        )
        if self.has_meta:
            self.meta_bag = nn.EmbeddingBag(max(features.n_tokens, 1), dim, mode="mean")
            nn.init.normal_(self.meta_bag.weight, std=dim**-0.5)
            self.meta_num = nn.Linear(features.n_numeric, dim) if features.n_numeric else None
            self.fuse = nn.Linear(2 * dim, dim)
            self.register_buffer("f_tokens", torch.as_tensor(features.tokens), persistent=False)
            self.register_buffer("f_offsets", torch.as_tensor(features.offsets), persistent=False)
            self.register_buffer("f_numeric", torch.as_tensor(features.numeric), persistent=False)
        if encoder == "gru":  # HRNN's choice: a recurrent state, no positions, no attention
            self.encoder = nn.GRU(
                dim, dim, n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0
            )
        else:
            layer = nn.TransformerEncoderLayer(
                dim,
                n_heads,
                dim_feedforward=dim,
                dropout=dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        # one fast dropout for every site (input, attention weights, residuals, feed-forward);
        # the transformer layers keep their modules for their parameters and state-dict names
        self.dropout = FastDropout(dropout)
        self.register_buffer(
            "causal",
            torch.triu(torch.full((max_len, max_len), float("-inf")), 1),
            persistent=False,
        )

    def metadata(self, tokens=None, offsets=None, numeric=None) -> torch.Tensor:
        """f for items 1..n (n_items × dim), or for other encoded items when given."""
        if tokens is None:
            tokens, offsets, numeric = self.f_tokens, self.f_offsets, self.f_numeric
        f = self.meta_bag(tokens, offsets)
        if self.meta_num is not None:
            f = f + self.meta_num(numeric)
        return f

    def metadata_rows(self, items: torch.Tensor, sparse: bool = False) -> torch.Tensor:
        """f for the given item indices (0-based; -1 = padding, which gets f = 0)."""
        ok = items >= 0
        rows = items.clamp_min(0)
        ends = torch.cat([self.f_offsets[1:], self.f_offsets.new_tensor([len(self.f_tokens)])])
        starts = self.f_offsets[rows]
        lengths = torch.where(ok, ends[rows] - starts, torch.zeros_like(starts))
        bag_offsets = torch.cumsum(lengths, 0) - lengths
        # token positions of the selected bags, concatenated
        pos = torch.repeat_interleave(starts - bag_offsets, lengths) + torch.arange(
            int(lengths.sum()), dtype=starts.dtype, device=starts.device
        )
        f = F.embedding_bag(
            self.f_tokens[pos], self.meta_bag.weight, bag_offsets, mode="mean", sparse=sparse
        )
        if self.meta_num is not None:
            f = f + self.meta_num(self.f_numeric[rows]) * ok.unsqueeze(-1)
        return f

    def item_vectors(self, codes: torch.Tensor | None = None, sparse: bool = False) -> torch.Tensor:
        """z for items 1..n (row 0 = padding): (n_items + 1) × dim; or, given ``codes``
        (1-based item codes, 0 = padding), z of just those rows — what sampled training needs
        at a large catalogue, with sparse gradients for the id (and metadata) embeddings."""
        if codes is None:
            e = self.item_emb.weight
            if not self.has_meta:
                return e
            f = self.metadata()
            f = torch.cat([torch.zeros_like(f[:1]), f], 0)
        else:
            e = F.embedding(codes, self.item_emb.weight, padding_idx=0, sparse=sparse)
            if not self.has_meta:
                return e
            f = self.metadata_rows(codes - 1, sparse=sparse)
        return e + self.fuse(torch.cat([e, f], dim=1))  # residual form of W[e; f]

    def sparse_parameters(self) -> list[nn.Parameter]:
        """The catalogue-sized tables that get sparse gradients in sampled training."""
        return [self.item_emb.weight] + ([self.meta_bag.weight] if self.has_meta else [])

    def encode(self, seq: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """seq (B × L) of item codes (0 = pad, left-padded) → hidden states (B × L × d)."""
        length = seq.shape[1]
        if self.kind == "gru":  # left padding is all-zero input before the first item
            x = self.dropout(F.embedding(seq, z)) * (seq > 0).unsqueeze(-1)
            return self.norm(self.encoder(x)[0])
        x = F.embedding(seq, z) * math.sqrt(self.dim) + self.pos_emb.weight[-length:]
        x = self.dropout(x) * (seq > 0).unsqueeze(-1)
        for layer in self.encoder.layers:
            x = self._block(layer, x)
        return self.norm(x)

    def seed(self, seed: int) -> None:
        """Seed the dropout masks (training is then deterministic given torch's seed too)."""
        self.dropout.seed(seed)

    def _block(self, layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> torch.Tensor:
        """``layer``'s pre-norm forward (= ``nn.TransformerEncoderLayer(norm_first=True)``
        with a causal mask), written out so attention dropout uses :class:`FastDropout` and
        inference takes the fused causal attention kernel."""
        B, L, d = x.shape
        attn = layer.self_attn
        H = attn.num_heads
        qkv = F.linear(layer.norm1(x), attn.in_proj_weight, attn.in_proj_bias)
        q, k, v = qkv.view(B, L, 3, H, d // H).permute(2, 0, 3, 1, 4)  # each B × H × L × d/H
        if self.training and self.dropout.threshold:
            scores = (q @ k.transpose(-2, -1)) * (d // H) ** -0.5 + self.causal[:L, :L]
            o = self.dropout(torch.softmax(scores, dim=-1)) @ v
        else:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        o = attn.out_proj(o.transpose(1, 2).reshape(B, L, d))
        x = x + self.dropout(o)
        ff = layer.linear2(self.dropout(F.gelu(layer.linear1(layer.norm2(x)))))
        return x + self.dropout(ff)
