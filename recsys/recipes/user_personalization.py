"""user-personalization: the seed model of PRODUCT.md in torch.

* Item representation: an id embedding ``e_i`` (E) and a metadata representation ``f_i`` (F:
  embedding bags over categorical values and hashed text n-grams, plus a projection of the
  standardised numeric fields), fused ``z_i = W [e_i ; f_i]``.
* User state: a causal transformer (SASRec family: learned positions, pre-norm blocks) over
  the user's last ``bptt`` items; ``h_u`` is its output at the last position.
* Scores over the catalogue: ``z_iᵀ h_u + b_i``. Since z is linear in [e; f] this is the
  talk's ``Eᵀh + b`` and ``Fᵀh + b'`` combined, with W learning the mix.
* Loss: full softmax cross-entropy over every next item of every sequence while the catalogue
  has at most ``full_softmax_max_items`` items; above that, sampled softmax with an alias
  sampler over smoothed unigram popularity and the logQ correction.
* Why a transformer, not the GRU of HRNN: on the leave-one-out protocol the published SASRec
  with full cross-entropy beats GRU4Rec (BENCHMARKS.md), and its matmuls map onto AMX-bf16.
* Training: AdamW, bf16 autocast on CPUs with AMX/AVX-512-bf16 (``precision``), the full
  softmax fused and chunked (``losses.py``), fast dropout masks, early stopping
  on the NDCG@10 of each training user's last item, a time budget, deterministic per seed.
* Served score (``score_kind = "softmax"``, Personalize's): the softmax of ``z_iᵀ h_u + b_i``
  over the whole catalogue, the model's probability that i is the user's next item (a user
  without history: the softmax of log-popularity, i.e. each item's share of the training
  interactions). personalized-ranking: the softmax over the request's ``itemList`` alone.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from recsys.data.dataset import Dataset
from recsys.errors import ArtifactError, ConfigError, DataError
from recsys.logs import get_logger
from recsys.recipes import cold
from recsys.recipes.base import Recipe, TrainingOptions
from recsys.recipes.features import (
    ItemFeatures,
    concat_features,
    encode_features,
    fit_features,
    usable_metadata,
)
from recsys.recipes.losses import full_softmax_loss
from recsys.recipes.sampling import AliasSampler, sampled_softmax_loss

#: Largest users × items score block held at once while validating (floats).
SCORE_ELEMENTS = 1 << 25

log = get_logger(__name__)


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


class UserPersonalization(Recipe):
    """Sequence model over item ids and metadata (see module docstring)."""

    name = "user-personalization"
    score_kind = "softmax"
    defaults: dict[str, Any] = {
        # Personalize's names and defaults
        "hidden_dimension": 149,
        "bptt": 32,
        "recency_mask": True,
        "min_user_history_length_percentile": 0.0,
        "max_user_history_length_percentile": 0.99,
        # training
        "num_layers": 2,
        "num_heads": 1,
        "encoder": "transformer",  # or "gru" (HRNN-style); see BENCHMARKS.md for the choice
        "dropout": 0.2,
        "epochs": 200,
        "batch_size": 128,
        "learning_rate": 1e-3,
        "weight_decay": 0.0,
        "patience": 8,
        "validation_users": 2000,
        "use_metadata": True,
        # full softmax up to here, sampled above: with the fused loss, full and sampled (2,048
        # negatives) train at about the same speed and quality at 10k items, sampled is 3x
        # faster and better at 20k (docs/BENCHMARKS.md, "where full softmax stops paying, again")
        "full_softmax_max_items": 10_000,
        "num_negatives": 2048,
        "event_type_weights": {},
        "precision": "auto",  # "bf16", "fp32" or "auto" (bf16 where the CPU has it)
        "max_training_minutes": None,
        "update_epochs": 3,
        # one training a night: after early stopping on the evaluation split's training part,
        # training may continue from the best weights on the whole snapshot for this many
        # epochs (the held-out newest interactions become targets too). 0: the served model is
        # the evaluated one. Measured on MovieLens-1M (docs/BENCHMARKS.md): 2 epochs at the
        # training learning rate cost 8% of served NDCG@10 (0.124 -> 0.114), so 0.
        "final_epochs": 0,
    }

    def __init__(self, **hyperparameters: Any) -> None:
        super().__init__(**hyperparameters)
        self.model: SequenceModel | None = None
        self.popularity = np.zeros(0, dtype=np.float32)
        self.feature_config: dict[str, Any] = {}
        self.features: ItemFeatures | None = None
        self.best_validation: float | None = None
        self.epochs_trained = 0
        self.tokens_trained = 0  # training targets seen (for throughput reports)
        self.step_seconds = 0.0  # time in training epochs (batching + steps), no validation
        self.validation_seconds = 0.0  # time in early-stopping checks
        #: why the last training stopped, and its validation curve (see training_report)
        self.stop: dict[str, Any] = {}
        self._z_cache: tuple[Any, np.ndarray, np.ndarray] | None = None
        #: where the model lives: the training device during fit, the CPU otherwise (artifacts,
        #: batch inference and the 2-hourly update all work on CPU copies)
        self._device = torch.device("cpu")

    # -- helpers -------------------------------------------------------------------------
    @property
    def max_len(self) -> int:
        return int(self.hyperparameters["bptt"])

    def _use_bf16(self) -> bool:
        p = self.hyperparameters["precision"]
        return p == "bf16" or (p == "auto" and bf16_supported(self._device))

    def _autocast(self):
        return torch.autocast(self._device.type, dtype=torch.bfloat16, enabled=self._use_bf16())

    def _build(self, n_items: int, features: ItemFeatures | None) -> SequenceModel:
        hp = self.hyperparameters
        return SequenceModel(
            n_items,
            int(hp["hidden_dimension"]),
            self.max_len,
            int(hp["num_layers"]),
            int(hp["num_heads"]),
            float(hp["dropout"]),
            features,
            str(hp["encoder"]),
        )

    def _pad_last(self, seqs: Sequence[np.ndarray]) -> torch.Tensor:
        """Left-padded (B × L) tensor of the last L codes (+1 shift; 0 = padding)."""
        L = self.max_len
        out = np.zeros((len(seqs), L), dtype=np.int64)
        for r, s in enumerate(seqs):
            s = np.asarray(s)[-L:]
            s = s[s >= 0]
            if len(s):
                out[r, L - len(s) :] = s + 1
        return torch.from_numpy(out).to(self._device)

    # -- training ------------------------------------------------------------------------
    def fit(self, data: Dataset, options: TrainingOptions) -> UserPersonalization:
        hp = self.hyperparameters
        torch.manual_seed(options.seed)
        rng = np.random.default_rng(options.seed)
        self.item_ids, self.user_ids = data.item_ids, data.user_ids
        n_items = data.n_items
        if len(data.interactions) == 0:
            raise DataError("user-personalization: no interactions to train on")
        counts = np.bincount(data.item_codes, minlength=n_items).astype(np.float64)
        self.popularity = (counts / counts.sum()).astype(np.float32)
        if hp["use_metadata"]:
            self.feature_config = fit_features(data.items, data.item_ids, data.item_schema)
            self.features = encode_features(data.items, data.item_ids, self.feature_config)
        self.model = self._build(n_items, self.features)
        self.model.seed(options.seed)
        previous = options.previous
        if isinstance(previous, UserPersonalization) and previous.model is not None:
            self._warm_start(previous)
        epochs = int(hp["update_epochs"] if previous is not None else hp["epochs"])
        self._run(data, counts, epochs, options, rng, validate=True)
        return self

    def refit(self, data: Dataset, options: TrainingOptions) -> UserPersonalization:
        """Continue from the current (best-validation) weights on ``data``, the whole snapshot
        whose evaluation split the model was fitted on, for ``final_epochs`` epochs: no
        validation users are held back and the last epoch's weights are kept. Same
        vocabularies required (the split keeps them)."""
        if self.model is None or len(self.item_ids) != data.n_items:
            return self.fit(data, options)
        epochs = int(self.hyperparameters["final_epochs"])
        if epochs <= 0:  # the served model is the evaluated one
            self.stop = {**self.stop, "final_epochs": 0}
            return self
        before = dict(self.stop)
        torch.manual_seed(options.seed + 1)
        rng = np.random.default_rng(options.seed + 1)
        counts = np.bincount(data.item_codes, minlength=data.n_items).astype(np.float64)
        self.popularity = (counts / counts.sum()).astype(np.float32)
        self._run(data, counts, epochs, options, rng, validate=False)
        self.stop = {**before, "final_epochs": self.stop.get("epochs", 0)}
        return self

    def _run(self, data, counts, epochs, options, rng, validate: bool) -> None:
        hp = self.hyperparameters
        histories = data.user_histories()
        weights = self._event_weights(data)
        train_seqs, val_users = self._split(histories, weights, rng, validate)
        budget = options.time_budget_s
        if hp["max_training_minutes"]:
            budget = min(budget or math.inf, 60.0 * float(hp["max_training_minutes"]))
        self._device = resolve_device(options.device)
        self.model.to(self._device)
        log.info("training", device=str(self._device), bf16=self._use_bf16(), epochs=epochs)
        try:
            self._train(train_seqs, val_users, histories, counts, epochs, budget, options, rng)
        finally:
            self.model.to("cpu")
            self._device = torch.device("cpu")
            self._z_cache = None

    def training_report(self) -> dict[str, Any]:
        return dict(self.stop)

    def _event_weights(self, data: Dataset) -> np.ndarray | None:
        """Per-interaction loss weights from ``event_type_weights`` (None = all 1)."""
        table = self.hyperparameters["event_type_weights"] or {}
        if not table:
            return None
        w = data.interactions["EVENT_TYPE"].astype(str).map(table).fillna(1.0)
        order = np.argsort(data.user_codes, kind="stable")
        return w.to_numpy(dtype=np.float32)[order]

    def _split(self, histories, weights, rng, validate: bool = True):
        """Training sequences (history trims applied) and validation users (last item held)."""
        hp = self.hyperparameters
        lengths = np.array([len(h) for h in histories])
        active = np.flatnonzero(lengths >= 2)
        if len(active) == 0:
            raise DataError("user-personalization: no user has 2 or more interactions")
        lo = np.quantile(lengths[active], float(hp["min_user_history_length_percentile"]))
        hi = np.quantile(lengths[active], float(hp["max_user_history_length_percentile"]))
        keep = active[(lengths[active] >= lo) & (lengths[active] <= max(hi, 2))]
        n_val = min(int(hp["validation_users"]), len(keep)) if validate else 0
        val_users = np.sort(rng.choice(keep, size=n_val, replace=False)) if n_val else keep[:0]
        is_val = np.zeros(len(histories), dtype=bool)
        is_val[val_users] = True
        starts = np.concatenate([[0], np.cumsum(lengths)])
        seqs = []
        for u in keep:
            h = histories[u][:-1] if is_val[u] else histories[u]
            w = None if weights is None else weights[starts[u] : starts[u] + len(h)]
            if len(h) >= 2:
                seqs.append((h, w))
        return seqs, val_users

    def _windows(self, seqs, rng) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Cut every sequence into (input, target, weight) windows of bptt, newest first."""
        L = self.max_len
        recency = bool(self.hyperparameters["recency_mask"])
        out = []
        for h, w in seqs:
            n = len(h)
            pos_w = (0.5 + 0.5 * np.arange(1, n) / max(n - 1, 1)) if recency else np.ones(n - 1)
            if w is not None:
                pos_w = pos_w * w[1:]
            end = n - 1
            while end > 0:
                start = max(0, end - L)
                out.append((h[start:end], h[start + 1 : end + 1], pos_w[start:end]))
                end = start
        return out

    def _batches(self, windows, batch_size: int, rng) -> list[list]:
        """Shuffled batches of windows of similar length (less padding to compute on)."""
        order = rng.permutation(len(windows))
        # sort within chunks of 50 batches by length, then shuffle the batches
        chunk = batch_size * 50
        batches = []
        for c in range(0, len(order), chunk):
            idx = sorted(order[c : c + chunk], key=lambda i: len(windows[i][0]))
            batches += [
                [windows[i] for i in idx[b : b + batch_size]]
                for b in range(0, len(idx), batch_size)
            ]
        return [batches[i] for i in rng.permutation(len(batches))]

    def _batch(self, windows):
        """Left-padded tensors, as wide as the batch's longest window (positions stay
        right-aligned, so trimming leading padding changes nothing)."""
        L = max(len(w[0]) for w in windows)
        B = len(windows)
        x = np.zeros((B, L), dtype=np.int64)
        y = np.zeros((B, L), dtype=np.int64)
        w = np.zeros((B, L), dtype=np.float32)
        for r, (xi, yi, wi) in enumerate(windows):
            k = len(xi)
            x[r, L - k :] = xi + 1
            y[r, L - k :] = yi + 1
            w[r, L - k :] = wi
        dev = self._device
        return torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev), torch.from_numpy(w).to(dev)

    def _optimizers(self, sampled: bool) -> list[torch.optim.Optimizer]:
        """AdamW over everything; in sampled mode the catalogue-sized tables get sparse
        gradients and a lazy SparseAdam, so a step costs what the batch touches, not what
        the catalogue holds (a 1M × d table updated densely every step would dominate)."""
        hp = self.hyperparameters
        model = self.model
        assert model is not None
        lr, wd = float(hp["learning_rate"]), float(hp["weight_decay"])
        if not sampled:
            return [torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)]
        sparse = {id(p) for p in model.sparse_parameters()}
        dense = [p for p in model.parameters() if id(p) not in sparse]
        return [
            torch.optim.AdamW(dense, lr=lr, weight_decay=wd),
            torch.optim.SparseAdam(model.sparse_parameters(), lr=lr),
        ]

    def _train(self, seqs, val_users, histories, counts, epochs, budget, options, rng):
        hp = self.hyperparameters
        model = self.model
        assert model is not None
        n_items = model.n_items
        sampled = n_items > int(hp["full_softmax_max_items"])
        optimizers = self._optimizers(sampled)
        if sampled:
            q = (counts + 1.0) ** 0.75
            q = q / q.sum()
            sampler = AliasSampler(q, seed=options.seed)
            log_q = torch.as_tensor(np.log(q), dtype=torch.float32, device=self._device)
        best, best_state, bad = -1.0, None, 0
        started = time.perf_counter()
        bs = int(hp["batch_size"])
        out_of_time = False
        validating = len(val_users) > 0
        curve: list[float] = []
        reason, best_epoch, epoch = "epochs", 0, 0
        for epoch in range(1, epochs + 1):
            model.train()
            total, n_tok = 0.0, 0
            epoch_start = time.perf_counter()
            for batch in self._batches(self._windows(seqs, rng), bs, rng):
                x, y, w = self._batch(batch)
                with self._autocast():
                    if sampled:
                        neg = torch.as_tensor(
                            sampler.sample(int(hp["num_negatives"])) + 1, device=self._device
                        )
                        # only the rows this batch touches: padding (0), inputs, targets, negatives
                        codes = torch.unique(torch.cat([x.new_zeros(1), x.ravel(), y.ravel(), neg]))
                        z = model.item_vectors(codes, sparse=True)
                        hid = model.encode(torch.searchsorted(codes, x), z)
                        mask = y > 0
                        rows = (codes - 1).clamp_min(0)
                        loss = sampled_softmax_loss(
                            hid[mask],
                            torch.searchsorted(codes, y[mask]),
                            z,
                            model.item_bias[rows],
                            torch.searchsorted(codes, neg),
                            log_q[rows],
                            w[mask],
                        )
                        n = int(mask.sum())
                    else:
                        z = model.item_vectors()
                        hid = model.encode(x, z)
                        mask = y > 0
                        t = y[mask] - 1
                        # fused + chunked: no N × V logit matrix kept (recipes/losses.py)
                        loss = full_softmax_loss(
                            hid[mask],
                            z[1:],
                            model.item_bias,
                            t,
                            w[mask],
                            low_precision=self._use_bf16(),
                        )
                        n = len(t)
                for opt in optimizers:
                    opt.zero_grad(set_to_none=True)
                loss.backward()
                for opt in optimizers:
                    opt.step()
                total += float(loss.detach()) * n
                n_tok += n
                # a large catalogue's epoch can outlast the budget: stop mid-epoch
                if budget is not None and time.perf_counter() - started >= budget:
                    out_of_time = True
                    break
            self.epochs_trained = epoch
            self.tokens_trained += n_tok
            elapsed = time.perf_counter() - started
            self.step_seconds += time.perf_counter() - epoch_start
            t_val = time.perf_counter()
            score = self._validate(val_users, histories) if validating else -float(total)
            self.validation_seconds += time.perf_counter() - t_val
            if validating:
                curve.append(round(score, 5))
            log.info(
                "epoch",
                epoch=epoch,
                complete=not out_of_time,
                loss=round(total / max(n_tok, 1), 4),
                val_ndcg10=round(score, 4),
                seconds=round(elapsed, 1),
            )
            self._z_cache = None  # weights moved: item factors are stale
            if options.on_epoch is not None:
                # the callback (a benchmark's test evaluation) is not training: off the clock
                t_cb = time.perf_counter()
                options.on_epoch(self, epoch, elapsed)
                started += time.perf_counter() - t_cb
            if not validating:
                best_epoch = epoch  # no validation: the last epoch is kept
            elif score > best:
                best, bad, best_epoch = score, 0, epoch
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad += 1
            if out_of_time or (budget is not None and elapsed >= budget):
                reason = "budget"
                break
            if validating and bad >= int(hp["patience"]):
                reason = "early_stop"
                break
        if validating and best_state is not None:
            model.load_state_dict(best_state)
            self.best_validation = best
        self._z_cache = None
        model.eval()
        # Still rising: stopped by the budget or the epoch cap while the best epoch was one of
        # the last two, i.e. more training would probably have paid.
        rising = validating and reason != "early_stop" and epoch - best_epoch <= 1
        self.stop = {
            "stop_reason": reason,
            "epochs": epoch,
            "best_epoch": best_epoch,
            "max_epochs": epochs,
            "budget_s": None if budget is None or math.isinf(budget) else round(budget, 1),
            "seconds": round(time.perf_counter() - started, 1),
            "best_validation_ndcg10": round(best, 5) if validating else None,
            "validation_still_rising": bool(rising),
            "validation_curve": curve,
        }
        log.info(
            "training stopped", **{k: v for k, v in self.stop.items() if k != "validation_curve"}
        )

    def _validate(self, val_users, histories) -> float:
        """NDCG@10 of each validation user's held-out last item (seen items excluded), in
        user blocks so a large catalogue never needs a users × items matrix."""
        model = self.model
        assert model is not None
        block = max(1, min(512, SCORE_ELEMENTS // max(model.n_items, 1)))
        gains = []
        with torch.no_grad(), self._autocast():
            z = model.item_vectors()
        for b0 in range(0, len(val_users), block):
            users = val_users[b0 : b0 + block]
            inputs = [histories[u][:-1] for u in users]
            targets = np.array([histories[u][-1] for u in users])
            scores = self._scores(inputs, z)
            for r, h in enumerate(inputs):
                scores[r, h[h != targets[r]]] = -np.inf  # seen items out, but never the answer
            target_scores = scores[np.arange(len(targets)), targets]
            rank = (scores > target_scores[:, None]).sum(axis=1)
            gains.append(np.where(rank < 10, 1.0 / np.log2(rank + 2), 0.0))
        return float(np.concatenate(gains).mean())

    def _warm_start(self, previous: UserPersonalization) -> None:
        """UPDATE: copy the previous model's weights; existing items keep their rows."""
        src, dst = previous.model, self.model
        assert src is not None and dst is not None
        if src.dim != dst.dim or src.pos_emb.weight.shape != dst.pos_emb.weight.shape:
            log.warning("UPDATE: architecture changed, training from scratch")
            return
        old = {str(i): k for k, i in enumerate(previous.item_ids)}
        pairs = [(old[str(i)], k) for k, i in enumerate(self.item_ids) if str(i) in old]
        with torch.no_grad():
            state = {
                k: v
                for k, v in src.state_dict().items()
                if not k.startswith(("item_emb", "item_bias", "meta_bag"))
            }
            dst.load_state_dict(state, strict=False)
            if pairs:
                o, n = map(torch.as_tensor, zip(*pairs, strict=True))
                dst.item_emb.weight[n + 1] = src.item_emb.weight[o + 1]
                dst.item_bias[n] = src.item_bias[o]
            if (
                src.has_meta
                and dst.has_meta
                and (src.meta_bag.weight.shape == dst.meta_bag.weight.shape)
            ):
                dst.meta_bag.weight.copy_(src.meta_bag.weight)

    # -- inference -----------------------------------------------------------------------
    @torch.no_grad()
    def _hidden(self, histories: Sequence[np.ndarray], z: torch.Tensor | None = None) -> np.ndarray:
        """h_u (len × d, float32) for non-empty histories."""
        model = self.model
        assert model is not None
        model.eval()
        out = np.empty((len(histories), model.dim), dtype=np.float32)
        with self._autocast():
            z = model.item_vectors() if z is None else z
            for b in range(0, len(histories), 512):
                x = self._pad_last(histories[b : b + 512])
                out[b : b + len(x)] = model.encode(x, z)[:, -1].float().cpu().numpy()
        return out

    @torch.no_grad()
    def _scores(self, histories: Sequence[np.ndarray], z: torch.Tensor) -> np.ndarray:
        """``z_iᵀ h_u + b_i`` (len × n_items) for one validation block, on the model's device."""
        model = self.model
        assert model is not None
        h = torch.from_numpy(self._hidden(histories, z)).to(self._device)
        with self._autocast():
            return (h @ z[1:].T + model.item_bias).float().cpu().numpy()

    def _item_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """(z[1:] with the cold-start column appended, b), computed once per model."""
        model = self.model
        assert model is not None
        if self._z_cache is None or self._z_cache[0] is not model:
            with torch.no_grad():
                z = model.item_vectors()[1:].float().cpu().numpy()
            b = model.item_bias.detach().float().cpu().numpy().copy()
            # a user without history scores log-popularity: u = [0…0, 1] picks this column
            cold_col = (np.log(self.popularity + 1e-9) - b).astype(np.float32)
            self._z_cache = (model, np.ascontiguousarray(np.c_[z, cold_col]), b)
        return self._z_cache[1], self._z_cache[2]

    def factors(self, users: np.ndarray, histories: Sequence[np.ndarray]):
        """Scores as ``[h_u, 0] · [z_i, c_i] + b_i`` (history) or ``[0, 1] · … `` (cold start,
        where ``c_i = log popularity_i − b_i``): lets batch inference use blocked matmuls.
        Under bf16 autocast these agree with :meth:`score` to bf16 rounding, not bit for bit."""
        items, bias = self._item_factors()
        has = np.array([len(h) > 0 and (np.asarray(h) >= 0).any() for h in histories], bool)
        u = np.zeros((len(histories), items.shape[1]), dtype=np.float32)
        if has.any():
            u[has, :-1] = self._hidden([h for h, k in zip(histories, has, strict=True) if k])
        u[~has, -1] = 1.0
        return u, items, bias

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Users with a history: ``z_iᵀ h_u + b_i``; without one: log-popularity."""
        u, items, bias = self.factors(users, histories)
        return u @ items.T + bias

    # -- new items (the 2-hourly update) -------------------------------------------------
    @torch.no_grad()
    def add_items(
        self,
        new_ids: np.ndarray,
        items: pd.DataFrame | None,
        options: cold.NewItemOptions,
        counts: np.ndarray | None = None,
        schema: Any = None,
    ) -> dict[str, Any]:
        """Append items: e and b from the k nearest known items by cosine of their metadata
        representation f (similarity-weighted), the prior where there is no usable metadata.
        A model trained with metadata uses its own f; one trained without uses a
        :class:`~recsys.recipes.cold.MetadataIndex` over the known items' fields in ``items``
        (``schema``: the items dataset's schema, which says which fields are categorical,
        textual or numeric). ``counts``: each new item's interactions so far
        (``options.popularity_bias``). Existing items' rows and every other weight stay
        exactly as they were."""
        model = self.model
        assert model is not None
        new_ids = np.asarray(new_ids, dtype=object)
        m, n = len(new_ids), model.n_items
        if m == 0:
            return cold.report(new_ids, np.zeros(0, bool), {}, method="none")
        E = model.item_emb.weight[1:].numpy()
        b = model.item_bias.numpy()
        e0, b0 = cold.prior_row(E, b, self.popularity)
        e_new = np.tile(e0, (m, 1))
        b_new = np.full(m, b0, dtype=np.float32)
        reasons: dict[int, str] = {}
        found = np.zeros(m, dtype=bool)
        features = None
        if model.has_meta and self.features is not None:
            features = encode_features(items, new_ids, self.feature_config)
            usable = usable_metadata(features, items, new_ids)
            f_known = model.metadata().numpy()
            f_new = model.metadata(
                torch.as_tensor(features.tokens),
                torch.as_tensor(features.offsets),
                torch.as_tensor(features.numeric),
            ).numpy()
            known_ok = usable_metadata(self.features)
            idx, w = cold.nearest_neighbours(f_known, f_new, known_ok, options)
            method = "metadata-neighbours"
        else:
            index = cold.MetadataIndex.build(items, schema, self.item_ids)
            if index is not None:
                idx, w, usable = index.neighbours(items, new_ids, options)
                method = "metadata-index"
            else:
                reasons = {i: "no item metadata (no items dataset or fields)" for i in range(m)}
                method = "prior"
        if method != "prior":
            found = usable & (w.sum(axis=1) > 0)
            e_new[found] = cold.weighted_mean(E, idx[found], w[found], options.preserve_norm)
            b_new[found] = (w[found] * b[idx[found]]).sum(axis=1)
            for i in np.flatnonzero(~found):
                reasons[int(i)] = (
                    "no usable metadata" if not usable[i] else "no neighbour above min_similarity"
                )
        if options.popularity_bias and counts is not None:
            # the item's own popularity so far + what items like it get beyond popularity
            log_p, log_p_new = cold.log_popularity(self.popularity, counts)
            resid = b - log_p
            b_new = (float(np.median(resid)) + log_p_new).astype(np.float32)
            if found.any():
                b_new[found] = (w[found] * resid[idx[found]]).sum(axis=1) + log_p_new[found]
        b_new[found] += options.bias_offset
        state = {k: v for k, v in model.state_dict().items()}
        state["item_emb.weight"] = torch.cat([model.item_emb.weight, torch.from_numpy(e_new)])
        state["item_bias"] = torch.cat([model.item_bias, torch.from_numpy(b_new)])
        if features is not None:
            self.features = concat_features(self.features, features)
        self.model = self._build(n + m, self.features)
        self.model.load_state_dict(state, strict=True)
        self.model.eval()
        self.item_ids = np.concatenate([np.asarray(self.item_ids, dtype=object), new_ids])
        self.popularity = np.concatenate([self.popularity, np.zeros(m, np.float32)])
        log.info("added items", added=m, from_neighbours=int(found.sum()), fallback=len(reasons))
        return cold.report(new_ids, found, reasons, method=method, **options.to_dict())

    # -- artifacts -----------------------------------------------------------------------
    def tensors(self) -> dict[str, np.ndarray]:
        assert self.model is not None
        out = {
            f"model.{k}": v.detach().float().numpy()
            for k, v in self.model.state_dict().items()
            if not k.startswith("causal")
        }
        out["popularity"] = self.popularity
        if self.features is not None:
            out["features.tokens"] = self.features.tokens
            out["features.offsets"] = self.features.offsets
            out["features.numeric"] = self.features.numeric
        return out

    def state_config(self) -> dict[str, Any]:
        return {
            "n_items": int(len(self.item_ids)),
            "feature_config": self.feature_config,
            "best_validation_ndcg10": self.best_validation,
            "epochs_trained": self.epochs_trained,
        }

    def load_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        self.load_state(tensors, {"n_items": len(self.item_ids), "feature_config": {}})

    def load_state(self, tensors: dict[str, np.ndarray], state: dict[str, Any]) -> None:
        n_items = int(state.get("n_items", len(self.item_ids)))
        if n_items != len(self.item_ids):
            raise ArtifactError(
                f"user-personalization: model has {n_items} items, vocabulary {len(self.item_ids)}"
            )
        self.feature_config = state.get("feature_config") or {}
        self.best_validation = state.get("best_validation_ndcg10")
        self.epochs_trained = int(state.get("epochs_trained") or 0)
        if "features.tokens" in tensors:
            self.features = ItemFeatures(
                tensors["features.tokens"].astype(np.int64),
                tensors["features.offsets"].astype(np.int64),
                tensors["features.numeric"].astype(np.float32),
                int(self.feature_config.get("n_tokens", 1)),
                self.feature_config,
            )
        self.popularity = tensors["popularity"].astype(np.float32)
        self.model = self._build(n_items, self.features)
        state_dict = {
            k[len("model.") :]: torch.from_numpy(v.copy())
            for k, v in tensors.items()
            if k.startswith("model.")
        }
        try:
            self.model.load_state_dict(state_dict, strict=True)
        except RuntimeError as exc:
            raise ArtifactError(
                f"user-personalization: weights do not fit the model: {exc}"
            ) from exc
        self.model.eval()


class PersonalizedRanking(UserPersonalization):
    """personalized-ranking: the same model, used to re-rank a given list of items.

    Served score: the softmax of ``z_iᵀ h_u + b_i`` over the request's ``itemList`` alone (the
    known listed items' scores sum to 1; an item the model does not know goes last, unscored),
    as Personalize's GetPersonalizedRanking; plain recommendations are scored as
    user-personalization's."""

    name = "personalized-ranking"
