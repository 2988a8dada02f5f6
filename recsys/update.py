"""The 2-hourly update: new catalogue items join the live model without retraining.

1. :func:`pending` — did anything arrive since the newest validated snapshot? If not, the
   update is skipped (nothing is written).
2. INCREMENTAL import + validation (:mod:`recsys.pipeline`).
3. :func:`build_revision` — load the live *version* (never an earlier revision), append every
   item of the new snapshot it does not know (``Recipe.add_items``: metadata-neighbour
   initialisation for user-personalization, from the model's own metadata representation or,
   when it trained without metadata, a metadata index over the known items' fields in the
   snapshot's items dataset; exploration only for popularity/sims) and write a
   **revision** beside the version::

       solutions/{s}/versions/{v}/revisions/{r}/model.safetensors, items/users.parquet,
                                                model.json (checksums), revision.json (last)

   Building from the version, not from the previous revision, makes a revision a function of
   (version, snapshot, options): a rerun of the same logical date computes the same id and
   reuses the complete revision, and an item added two hours ago gets the same row again
   (its neighbours are the version's items; only changed metadata changes it). Existing
   items' weights are copied untouched. The next nightly version supersedes all revisions.
4. :func:`check_revision` — the gate: the revision must load (checksums, format) and score
   real users with finite scores over the whole catalogue.
5. :func:`deploy_revision` — the campaign's live entry gets ``revision`` and the revision's
   snapshot (under the campaign lock; a failure before this step leaves the campaign as it was).
   Batches then serve the revision with the new snapshot, so exploration sees the new items'
   ages and the new impression counts.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

import numpy as np

from recsys import __version__
from recsys.campaigns import campaign_state, deploy
from recsys.config import CampaignConfig, load_config_file
from recsys.data.dataset import Dataset
from recsys.data.imports import pending_files
from recsys.errors import ArtifactError, NotFoundError
from recsys.ids import as_utc, stamped_id, utcnow_iso
from recsys.inference.exploration import item_exploration_scores
from recsys.inference.refresh import RefreshOptions
from recsys.logs import get_logger
from recsys.recipes import load_model
from recsys.recipes.cold import NewItemOptions
from recsys.storage import Storage
from recsys.training import read_version, revision_prefix, version_prefix

log = get_logger(__name__)
#: Users scored by the gate (the snapshot's most recent ones with a history).
GATE_USERS = 64


def update_options(campaign: str) -> NewItemOptions:
    """The campaign file's ``update:`` section (k, min_similarity, weighting, temperature,
    bias_offset; ``refresh:`` is the targeted batch refresh's, see :func:`refresh_options`)."""
    raw = dict(load_config_file("campaigns", campaign).get("update") or {})
    raw.pop("refresh", None)
    return NewItemOptions.from_dict(raw)


def refresh_options(campaign: str) -> RefreshOptions:
    """The campaign file's ``update: refresh:`` section (targeted batch refresh)."""
    raw = load_config_file("campaigns", campaign).get("update") or {}
    return RefreshOptions.from_dict(raw.get("refresh"))


def pending(storage: Storage, campaign: CampaignConfig, dataset_group: str, logical_date: Any):
    """{"new": bool, "reason", "files", "live"}: whether an update has anything to do."""
    key_state = None
    try:
        key_state = campaign_state(storage, campaign.name)
    except NotFoundError:
        return {"new": False, "reason": "campaign never deployed: nothing to update", "files": {}}
    found = pending_files(storage, dataset_group, logical_date)
    n = sum(len(v) for v in found["files"].values())
    return {
        "new": n > 0,
        "reason": f"{n} new landing file(s)" if n else "nothing new since the last snapshot",
        "files": found["files"],
        "base_snapshot": found["base_snapshot"],
        "live_version_id": key_state["live"]["version_id"],
    }


def build_revision(
    storage: Storage,
    campaign: CampaignConfig,
    snapshot_id: str,
    logical_date: Any,
    options: NewItemOptions | None = None,
    version_id: str | None = None,
) -> dict[str, Any]:
    """Write (or reuse) the revision of the live version (or ``version_id``) for a snapshot."""
    options = options or NewItemOptions()
    solution = campaign.solution
    if version_id is None:
        version_id = campaign_state(storage, campaign.name)["live"]["version_id"]
    version = read_version(storage, solution, version_id)
    revision_id = stamped_id(logical_date, version_id, snapshot_id, options.to_dict(), __version__)
    prefix = revision_prefix(solution, version_id, revision_id)
    if storage.exists(f"{prefix}/revision.json"):
        log.info("revision already complete: reusing it", revision_id=revision_id)
        return storage.read_json(f"{prefix}/revision.json")
    started = time.perf_counter()
    recipe, _ = load_model(storage, version_prefix(solution, version_id))
    data = Dataset.load(storage, version["dataset_group"], snapshot_id)
    known = set(np.asarray(recipe.item_ids).astype(str).tolist())
    new_ids = np.array([i for i in data.item_ids if str(i) not in known], dtype=object)
    n_before = len(recipe.item_ids)
    counts = np.bincount(data.item_codes, minlength=data.n_items)
    new_counts = counts[recipe_index(data.item_ids, new_ids)] if len(new_ids) else counts[:0]
    extra = {}
    if "schema" in inspect.signature(recipe.add_items).parameters:
        extra["schema"] = data.item_schema  # the metadata index's field kinds
    report = recipe.add_items(new_ids, data.items, options, counts=new_counts, **extra)
    refreshed = recipe.refresh(data)  # trending-now: the windows on the new snapshot
    seconds_add = time.perf_counter() - started
    recipe.save(storage, prefix, extra={"revision_of": version_id, "revision_id": revision_id})
    as_of = as_utc(logical_date).timestamp()
    explorable, _ = item_exploration_scores(
        recipe.item_ids, data, as_of, campaign.exploration_item_age_cut_off
    )
    revision = {
        "revision_id": revision_id,
        "version_id": version_id,
        "solution": solution,
        "recipe": version["recipe"],
        "dataset_group": version["dataset_group"],
        "snapshot_id": snapshot_id,
        "version_snapshot_id": version["snapshot_id"],
        "logical_date": as_utc(logical_date).isoformat(),
        "n_items_before": int(n_before),
        "n_items": int(len(recipe.item_ids)),
        "new_items": report,
        **({"refreshed": refreshed} if refreshed is not None else {}),
        "options": options.to_dict(),
        "exploration": {"explorable_items": int(len(explorable))},
        "seconds_add_items": round(seconds_add, 3),
        "seconds": round(time.perf_counter() - started, 3),
        "created_at": utcnow_iso(),
        "code_version": __version__,
    }
    storage.write_json(f"{prefix}/revision.json", revision)
    log.info(
        "revision written",
        revision_id=revision_id,
        version_id=version_id,
        added=report["added"],
        from_neighbours=report["from_neighbours"],
        fallback=report["fallback"],
    )
    if report["fallback"]:
        log.warning(
            "new items without a metadata neighbour got the popularity prior",
            count=report["fallback"],
            items=report["fallback_items"][:10],
        )
    return revision


def check_revision(storage: Storage, revision: dict[str, Any]) -> dict[str, Any]:
    """The gate: the revision loads and scores recent users with finite scores for every item."""
    prefix = revision_prefix(revision["solution"], revision["version_id"], revision["revision_id"])
    recipe, _ = load_model(storage, prefix)
    n = len(recipe.item_ids)
    if n != revision["n_items"]:
        raise ArtifactError(
            f"revision {revision['revision_id']}: {n} items, expected {revision['n_items']}"
        )
    data = Dataset.load(storage, revision["dataset_group"], revision["snapshot_id"])
    to_model = recipe_index(recipe.item_ids, data.item_ids)
    histories = [to_model[h] for h in data.user_histories()]
    users = [u for u in range(len(histories) - 1, -1, -1) if len(histories[u])][:GATE_USERS]
    user_rows = recipe_index(recipe.user_ids, data.user_ids[users]) if users else np.zeros(0, int)
    scores = recipe.score(user_rows, [histories[u] for u in users])
    if scores.shape != (len(users), n) or not np.isfinite(scores).all():
        raise ArtifactError(
            f"revision {revision['revision_id']}: scores of shape {scores.shape} "
            f"(expected {(len(users), n)}) or not finite; not deployed"
        )
    return {"revision_id": revision["revision_id"], "passed": True, "users_scored": len(users)}


def recipe_index(vocabulary: np.ndarray, ids: np.ndarray) -> np.ndarray:
    import pandas as pd

    return pd.Index(np.asarray(vocabulary).astype(str)).get_indexer(np.asarray(ids).astype(str))


def deploy_revision(
    storage: Storage, campaign: CampaignConfig, revision: dict[str, Any], logical_date: Any
) -> dict[str, Any]:
    """Point the campaign at the revision (with its snapshot). A version deployed by a later
    run is never replaced (the usual backfill rule), and the same revision again is a no-op."""
    return deploy(
        storage,
        campaign,
        revision["version_id"],
        as_utc(logical_date).isoformat(),
        reason=f"update: {revision['new_items']['added']} new items",
        revision=revision["revision_id"],
        snapshot_id=revision["snapshot_id"],
    )
