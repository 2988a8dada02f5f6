"""The 2-hourly update's step for user-personalization: new catalogue items join the live
model without retraining, initialised from their metadata neighbours (PRODUCT.md); every
existing weight stays exactly as it was."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from recsys.logs import get_logger
from recsys.recipes import cold
from recsys.recipes.features import concat_features, encode_features, usable_metadata

if TYPE_CHECKING:  # pragma: no cover
    from recsys.recipes.user_personalization import UserPersonalization

log = get_logger(__name__)


@torch.no_grad()
def add_items(
    recipe: UserPersonalization,
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
    model = recipe.model
    assert model is not None
    new_ids = np.asarray(new_ids, dtype=object)
    m, n = len(new_ids), model.n_items
    if m == 0:
        return cold.report(new_ids, np.zeros(0, bool), {}, method="none")
    E = model.item_emb.weight[1:].numpy()
    b = model.item_bias.numpy()
    e0, b0 = cold.prior_row(E, b, recipe.popularity)
    e_new = np.tile(e0, (m, 1))
    b_new = np.full(m, b0, dtype=np.float32)
    reasons: dict[int, str] = {}
    found = np.zeros(m, dtype=bool)
    features = None
    if model.has_meta and recipe.features is not None:
        features = encode_features(items, new_ids, recipe.feature_config)
        usable = usable_metadata(features, items, new_ids)
        f_known = model.metadata().numpy()
        f_new = model.metadata(
            torch.as_tensor(features.tokens),
            torch.as_tensor(features.offsets),
            torch.as_tensor(features.numeric),
        ).numpy()
        known_ok = usable_metadata(recipe.features)
        idx, w = cold.nearest_neighbours(f_known, f_new, known_ok, options)
        method = "metadata-neighbours"
    else:
        index = cold.MetadataIndex.build(items, schema, recipe.item_ids)
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
        log_p, log_p_new = cold.log_popularity(recipe.popularity, counts)
        resid = b - log_p
        b_new = (float(np.median(resid)) + log_p_new).astype(np.float32)
        if found.any():
            b_new[found] = (w[found] * resid[idx[found]]).sum(axis=1) + log_p_new[found]
    b_new[found] += options.bias_offset
    state = {k: v for k, v in model.state_dict().items()}
    state["item_emb.weight"] = torch.cat([model.item_emb.weight, torch.from_numpy(e_new)])
    state["item_bias"] = torch.cat([model.item_bias, torch.from_numpy(b_new)])
    if features is not None:
        recipe.features = concat_features(recipe.features, features)
    recipe.model = recipe._build(n + m, recipe.features)
    recipe.model.load_state_dict(state, strict=True)
    recipe.model.eval()
    recipe.item_ids = np.concatenate([np.asarray(recipe.item_ids, dtype=object), new_ids])
    recipe.popularity = np.concatenate([recipe.popularity, np.zeros(m, np.float32)])
    log.info("added items", added=m, from_neighbours=int(found.sum()), fallback=len(reasons))
    return cold.report(new_ids, found, reasons, method=method, **options.to_dict())
