"""user-personalization: the seed model of PRODUCT.md in torch — the recipe.

A newcomer's map of this package:

* :mod:`.model` — the network: item representations (id embedding fused with metadata) and
  the causal transformer (SASRec family) over the user's last ``bptt`` items.
* :mod:`.training` — the training loop: windows, batches, the loss (full softmax, fused;
  sampled above ``full_softmax_max_items``), the optimiser and learning-rate schedule, weight
  averaging, early stopping and which weights are kept.
* :mod:`.artifacts` — what is saved and how it is loaded (tensors + JSON, no pickle).
* :mod:`.new_items` — the 2-hourly update: new items from their metadata neighbours.
* This file — the recipe: hyperparameters and their defaults, ``fit`` / ``refit`` /
  UPDATE's warm start, and scoring.

Why a transformer, not the GRU of HRNN: on the leave-one-out protocol the published SASRec
with full cross-entropy beats GRU4Rec (BENCHMARKS.md), and its matmuls map onto AMX-bf16.

Served score (``score_kind = "softmax"``, Personalize's): the softmax of ``z_iᵀ h_u + b_i``
over the whole catalogue, the model's probability that i is the user's next item (a user
without history: the softmax of log-popularity, i.e. each item's share of the training
interactions). personalized-ranking: the softmax over the request's ``itemList`` alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from recsys.data.dataset import Dataset
from recsys.errors import ConfigError, DataError
from recsys.logs import get_logger
from recsys.recipes.base import Recipe, TrainingOptions
from recsys.recipes.features import ItemFeatures, encode_features, fit_features
from recsys.recipes.user_personalization import artifacts, new_items, training
from recsys.recipes.user_personalization.model import (
    FastDropout,
    SequenceModel,
    bf16_supported,
    resolve_device,
)
from recsys.recipes.user_personalization.training import SCORE_ELEMENTS

log = get_logger(__name__)

__all__ = [
    "SCORE_ELEMENTS",
    "FastDropout",
    "PersonalizedRanking",
    "SequenceModel",
    "UserPersonalization",
    "bf16_supported",
    "resolve_device",
]


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
        # learning-rate schedule (training.py): linear warm-up over this many optimiser steps,
        # then "none" (constant) or "cosine" down to min_lr_ratio × learning_rate at the run's
        # horizon (the epoch limit or the time budget, whichever is nearer)
        "warmup_steps": 0,
        "lr_decay": "none",
        "min_lr_ratio": 0.0,
        # > 0: validate, early-stop on and keep an exponential moving average of the weights
        "ema_decay": 0.0,
        # > 0: each epoch trains on every sequence with each item left out with this
        # probability (fresh draw per epoch), so the model also learns to predict across a gap
        # in a history (interactions the log never saw); validation sees whole histories
        "item_drop": 0.0,
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
        self._check_schedule()
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

    def _check_schedule(self) -> None:
        """Refuse schedule settings that would train nonsense, at construction (config time)."""
        hp = self.hyperparameters
        bad = []

        def number(key: str) -> float | None:
            value = hp[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                bad.append(f"{key} must be a number, not {value!r}")
                return None
            return float(value)

        if hp["lr_decay"] not in ("none", "cosine"):
            bad.append(f"lr_decay must be none or cosine, not {hp['lr_decay']!r}")
        warm = hp["warmup_steps"]
        if isinstance(warm, bool) or not isinstance(warm, int) or warm < 0:
            bad.append(f"warmup_steps must be a whole number >= 0, not {warm!r}")
        ratio, ema, drop = number("min_lr_ratio"), number("ema_decay"), number("item_drop")
        if drop is not None and not 0.0 <= drop < 1.0:
            bad.append(f"item_drop must be in [0, 1), not {hp['item_drop']!r}")
        if ratio is not None and not 0.0 <= ratio <= 1.0:
            bad.append(f"min_lr_ratio must be in [0, 1], not {hp['min_lr_ratio']!r}")
        if ema is not None and not 0.0 <= ema < 1.0:
            bad.append(f"ema_decay must be in [0, 1), not {hp['ema_decay']!r}")
        if bad:
            raise ConfigError(f"recipe {self.name}: " + "; ".join(bad))

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
        train_seqs, val_users = training.split_users(histories, weights, hp, rng, validate)
        budget = options.time_budget_s
        if hp["max_training_minutes"]:
            budget = min(budget or math.inf, 60.0 * float(hp["max_training_minutes"]))
        self._device = resolve_device(options.device)
        self.model.to(self._device)
        log.info("training", device=str(self._device), bf16=self._use_bf16(), epochs=epochs)
        try:
            trainer = training.Trainer(
                self, train_seqs, val_users, histories, counts, epochs, budget, options, rng
            )
            self.stop = trainer.run()
        finally:
            self.model.to("cpu")
            self._device = torch.device("cpu")
            self._z_cache = None

    def _validate(self, val_users, histories) -> float:
        """Validation NDCG@10 of the current weights (see :func:`.training.validate`)."""
        return training.validate(self, val_users, histories)

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

    # -- new items (the 2-hourly update; see new_items.py) ---------------------------------
    add_items = new_items.add_items

    # -- artifacts (see artifacts.py) ----------------------------------------------------
    def tensors(self) -> dict[str, np.ndarray]:
        return artifacts.tensors(self)

    def state_config(self) -> dict[str, Any]:
        return artifacts.state_config(self)

    def load_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        artifacts.load_tensors(self, tensors)

    def load_state(self, tensors: dict[str, np.ndarray], state: dict[str, Any]) -> None:
        artifacts.load_state(self, tensors, state)


class PersonalizedRanking(UserPersonalization):
    """personalized-ranking: the same model, used to re-rank a given list of items.

    Served score: the softmax of ``z_iᵀ h_u + b_i`` over the request's ``itemList`` alone (the
    known listed items' scores sum to 1; an item the model does not know goes last, unscored),
    as Personalize's GetPersonalizedRanking; plain recommendations are scored as
    user-personalization's."""

    name = "personalized-ranking"
