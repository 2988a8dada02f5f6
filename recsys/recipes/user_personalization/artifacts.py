"""What a trained user-personalization model is on disk: tensors and a JSON state, no pickle.

The model files (written by :mod:`recsys.recipes.base`) hold

* ``model.<name>`` — every weight of :class:`~.model.SequenceModel`'s state dict as float32
  (the causal mask is rebuilt, not stored): ``item_emb.weight`` ((n_items + 1) × d, row 0 =
  padding), ``item_bias`` (n_items), ``pos_emb.weight`` (bptt × d), the encoder's layers, the
  metadata tables when trained with metadata;
* ``popularity`` — each item's share of the training interactions (the cold-start answer);
* ``features.tokens`` / ``.offsets`` / ``.numeric`` — the items' encoded metadata, when used;

and a JSON state: ``n_items``, ``feature_config`` (how metadata was encoded, so new items
are encoded the same way), ``best_validation_ndcg10``, ``epochs_trained``. Loading checks
that every tensor fits the architecture the hyperparameters describe (strict), and refuses a
model whose item count differs from its vocabulary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from recsys.errors import ArtifactError
from recsys.recipes.features import ItemFeatures

if TYPE_CHECKING:  # pragma: no cover
    from recsys.recipes.user_personalization import UserPersonalization


def tensors(recipe: UserPersonalization) -> dict[str, np.ndarray]:
    assert recipe.model is not None
    out = {
        f"model.{k}": v.detach().float().numpy()
        for k, v in recipe.model.state_dict().items()
        if not k.startswith("causal")
    }
    out["popularity"] = recipe.popularity
    if recipe.features is not None:
        out["features.tokens"] = recipe.features.tokens
        out["features.offsets"] = recipe.features.offsets
        out["features.numeric"] = recipe.features.numeric
    return out


def state_config(recipe: UserPersonalization) -> dict[str, Any]:
    return {
        "n_items": int(len(recipe.item_ids)),
        "feature_config": recipe.feature_config,
        "best_validation_ndcg10": recipe.best_validation,
        "epochs_trained": recipe.epochs_trained,
    }


def load_tensors(recipe: UserPersonalization, tensors: dict[str, np.ndarray]) -> None:
    load_state(recipe, tensors, {"n_items": len(recipe.item_ids), "feature_config": {}})


def load_state(
    recipe: UserPersonalization, tensors: dict[str, np.ndarray], state: dict[str, Any]
) -> None:
    n_items = int(state.get("n_items", len(recipe.item_ids)))
    if n_items != len(recipe.item_ids):
        raise ArtifactError(
            f"user-personalization: model has {n_items} items, vocabulary {len(recipe.item_ids)}"
        )
    recipe.feature_config = state.get("feature_config") or {}
    recipe.best_validation = state.get("best_validation_ndcg10")
    recipe.epochs_trained = int(state.get("epochs_trained") or 0)
    if "features.tokens" in tensors:
        recipe.features = ItemFeatures(
            tensors["features.tokens"].astype(np.int64),
            tensors["features.offsets"].astype(np.int64),
            tensors["features.numeric"].astype(np.float32),
            int(recipe.feature_config.get("n_tokens", 1)),
            recipe.feature_config,
        )
    recipe.popularity = tensors["popularity"].astype(np.float32)
    recipe.model = recipe._build(n_items, recipe.features)
    state_dict = {
        k[len("model.") :]: torch.from_numpy(v.copy())
        for k, v in tensors.items()
        if k.startswith("model.")
    }
    try:
        recipe.model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"user-personalization: weights do not fit the model: {exc}") from exc
    recipe.model.eval()
