"""Item affinity (Personalize's aws-item-affinity batch segment jobs): for each item, the
users most likely to like it, from any recipe's user × item scores.

The candidates are the snapshot's users with a history the model knows (a user with nothing
to go on has no affinity to rank). Each user's scores come from :meth:`Recipe.score` (or its
factors), what a user batch ranks by. Comparing users needs scores on one scale: a softmax
model's (user-personalization, item-affinity) logits are only defined up to a per-user
constant, so they become ``log p(item | user) + log(len(history))``: the log of the
expected number of the user's next interactions that are this item, if a user stays as
active as so far. Other recipes' scores (sims: summed similarities, which already grow with
the history) are compared as they are. For one item the users are ordered by that score,
best first, ties by snapshot user order. With ``exclude_seen`` a user who already
interacted with the item is left out of its segment (the campaign's ``exclude_seen``).

Users go in blocks (never a users × items matrix): each block scores only the requested
items' columns and feeds a per-item running top-k (:class:`~recsys.inference.topk.
TopKAccumulator`).
"""

from __future__ import annotations

import json
import sys

import numpy as np

from recsys.data.dataset import Dataset
from recsys.inference.batch import recipe_index
from recsys.inference.item_jobs import ItemRequest, error_line, item_positions
from recsys.inference.topk import NEG_INF, SCORE_ELEMENTS, TopKAccumulator
from recsys.recipes.base import Recipe


def user_affinity(
    recipe: Recipe,
    data: Dataset,
    items: np.ndarray,
    k: int,
    exclude_seen: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``k`` users for each model item in ``items``.

    Returns (candidate user ids, indices len(items) × k into them (-1 = none), scores)."""
    # a softmax model is a UserPersonalization (not imported here: it would load torch)
    up = sys.modules.get("recsys.recipes.user_personalization")
    softmax = up is not None and isinstance(recipe, up.UserPersonalization)
    n_items = len(recipe.item_ids)
    data_to_model = recipe_index(np.asarray(recipe.item_ids, dtype=object), data.item_ids)
    histories = [data_to_model[h] for h in data.user_histories()]
    histories = [h[h >= 0] for h in histories]
    cand = np.array([u for u, h in enumerate(histories) if len(h)], dtype=np.int64)
    model_user = recipe_index(np.asarray(recipe.user_ids, dtype=object), data.user_ids)
    items = np.asarray(items, dtype=np.int64)
    column = np.full(n_items, -1, np.int64)
    column[items] = np.arange(len(items))
    k = max(1, min(int(k), len(cand))) if len(cand) else 1
    acc = TopKAccumulator(len(items), k)
    block = max(1, min(4096, SCORE_ELEMENTS // max(n_items, 1)))
    for a in range(0, len(cand), block):
        us = cand[a : a + block]
        users = model_user[us]
        hists = [histories[u] for u in us]
        f = recipe.factors(users, hists)
        if f is not None:
            U, V, b = f
            full = np.asarray(U, np.float32) @ np.asarray(V, np.float32).T
            if b is not None:
                full = full + np.asarray(b, np.float32)
        else:
            full = np.asarray(recipe.score(users, hists), np.float32)
        if softmax:
            full = full.astype(np.float64)
            top = full.max(axis=1, keepdims=True)
            lse = top + np.log(np.exp(full - top).sum(axis=1, keepdims=True))
            activity = np.log([[len(h)] for h in hists])
            S = (full[:, items] - lse + activity).astype(np.float32)
        else:
            S = full[:, items]
        S = np.where(np.isfinite(S), S, NEG_INF).astype(np.float32)
        if exclude_seen:
            for r, h in enumerate(hists):
                cols = column[h]
                S[r, cols[cols >= 0]] = NEG_INF
        acc.push(np.ascontiguousarray(S.T), a)
    idx, val = acc.result()
    return data.user_ids[cand], idx, val


def segment_lines(
    recipe: Recipe,
    data: Dataset,
    requests: list[ItemRequest],
    k: int,
    exclude_seen: bool = True,
) -> list[str]:
    """Batch segment job output lines, one per request, in order."""
    pos = item_positions(recipe, requests)
    wanted = np.unique(pos[pos >= 0])
    users, idx, val = user_affinity(recipe, data, wanted, k, exclude_seen)
    row_of = {int(p): r for r, p in enumerate(wanted)}
    out = []
    for req, p in zip(requests, pos, strict=True):
        if req.error is not None:
            out.append(error_line(req.input, req.error))
        elif p < 0:
            out.append(error_line(req.input, f"item {req.item_id!r} is not in the model"))
        else:
            r = row_of[int(p)]
            keep = (idx[r] >= 0) & np.isfinite(val[r])
            out.append(
                json.dumps(
                    {
                        "input": req.input,
                        "output": {"usersList": [str(u) for u in users[idx[r][keep]]]},
                        "error": None,
                    },
                    ensure_ascii=False,
                )
            )
    return out
