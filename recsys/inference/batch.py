"""Batch recommendations for a campaign, in Personalize's batch-output format.

Output, one JSON object per line::

    {"input": {"userId": "4638"}, "output": {"recommendedItems": [...], "scores": [...]},
     "error": null}

Written as ``batch/{campaign}/{batch_id}/part-NNNNN.jsonl``, then ``manifest.json``, then
``_SUCCESS``, and only then the ``batch/{campaign}/latest.json`` pointer: a downstream job that
follows ``latest`` never reads a half-written batch. The batch id is the logical date plus a
digest of what it was computed from, so a rerun with the same inputs reuses the complete batch.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from recsys.campaigns import campaign_state
from recsys.config import CampaignConfig
from recsys.data.dataset import Dataset
from recsys.errors import DataError
from recsys.ids import stamped_id, utcnow_iso
from recsys.inference.topk import recommend_blocks
from recsys.logs import get_logger, progress
from recsys.recipes import load_model
from recsys.storage import Storage
from recsys.training import read_version, version_prefix

log = get_logger(__name__)
MAX_RESULTS = 500
PART_SIZE = 10_000


def batch_root(campaign: str) -> str:
    return f"batch/{campaign}"


def latest_key(campaign: str) -> str:
    return f"{batch_root(campaign)}/latest.json"


def _line(user: str, items: np.ndarray, scores: np.ndarray, item_ids: np.ndarray) -> str:
    keep = items >= 0
    return json.dumps(
        {
            "input": {"userId": user},
            "output": {
                "recommendedItems": [str(i) for i in item_ids[items[keep]]],
                "scores": [round(float(s), 7) for s in scores[keep]],
            },
            "error": None,
        },
        ensure_ascii=False,
    )


def run_batch(
    storage: Storage,
    campaign: CampaignConfig,
    logical_date: str,
    *,
    version_id: str | None = None,
    num_results: int | None = None,
    part_size: int = PART_SIZE,
) -> dict[str, Any]:
    """Recommend for every user of the version's snapshot; return the batch manifest.

    ``version_id`` defaults to the campaign's live version; ``num_results`` to the campaign's.
    """
    num = int(num_results or campaign.num_results)
    if not 1 <= num <= MAX_RESULTS:
        raise DataError(f"numResults must be between 1 and {MAX_RESULTS}, got {num}")
    if version_id is None:
        version_id = campaign_state(storage, campaign.name)["live"]["version_id"]
    version = read_version(storage, campaign.solution, version_id)
    batch_id = stamped_id(logical_date, campaign.name, version_id, num)
    prefix = f"{batch_root(campaign.name)}/{batch_id}"
    if storage.exists(f"{prefix}/_SUCCESS"):
        log.info("batch already complete: reusing it", batch_id=batch_id)
        manifest = storage.read_json(f"{prefix}/manifest.json")
    else:
        storage.delete_prefix(prefix)  # leftovers of an interrupted attempt of this same batch
        manifest = _write_batch(storage, campaign, version, prefix, batch_id, num, part_size)
        manifest["logical_date"] = logical_date
        storage.write_json(f"{prefix}/manifest.json", manifest)
        storage.write_bytes(f"{prefix}/_SUCCESS", b"")
    _advance_latest(storage, campaign.name, manifest, prefix, logical_date)
    return manifest


def _write_batch(
    storage: Storage,
    campaign: CampaignConfig,
    version: dict[str, Any],
    prefix: str,
    batch_id: str,
    num: int,
    part_size: int,
) -> dict[str, Any]:
    recipe, _ = load_model(storage, version_prefix(campaign.solution, version["version_id"]))
    data = Dataset.load(storage, version["dataset_group"], version["snapshot_id"])
    users = data.user_ids
    model_users = recipe_index(recipe.user_ids, users)
    # Histories in the model's item indices: every interacted item is excluded ("seen").
    model_items = recipe_index(recipe.item_ids, data.item_ids)
    histories = [model_items[h] for h in data.user_histories()]
    parts = []
    lines: list[str] = []
    blocks = recommend_blocks(recipe, model_users, histories, num)
    n_blocks = -(-len(users) // 1024)
    for start, idx, val in progress(blocks, desc="batch", total=n_blocks):
        for r in range(len(idx)):
            lines.append(_line(str(users[start + r]), idx[r], val[r], recipe.item_ids))
            if len(lines) == part_size:
                parts.append(_write_part(storage, prefix, len(parts), lines))
                lines = []
    if lines or not parts:
        parts.append(_write_part(storage, prefix, len(parts), lines))
    manifest = {
        "batch_id": batch_id,
        "campaign": campaign.name,
        "solution": campaign.solution,
        "version_id": version["version_id"],
        "snapshot_id": version["snapshot_id"],
        "num_results": num,
        "users": int(len(users)),
        "parts": parts,
        "format": "personalize-batch-jsonl",
        "created_at": utcnow_iso(),
    }
    log.info("batch written", batch_id=batch_id, users=len(users), parts=len(parts))
    return manifest


def recipe_index(vocabulary: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Positions of ``ids`` in ``vocabulary`` (-1 where absent)."""
    return pd.Index(vocabulary.astype(str)).get_indexer(ids.astype(str)).astype(np.int64)


def _write_part(storage: Storage, prefix: str, n: int, lines: list[str]) -> dict[str, Any]:
    key = f"{prefix}/part-{n:05d}.jsonl"
    body = ("\n".join(lines) + "\n" if lines else "").encode("utf-8")
    return {"key": key, "lines": len(lines), "sha256": storage.write_bytes(key, body)}


def _advance_latest(
    storage: Storage, campaign: str, manifest: dict[str, Any], prefix: str, logical_date: str
) -> None:
    key = latest_key(campaign)
    current = storage.read_json(key) if storage.exists(key) else None
    if current and current["logical_date"] > logical_date:
        log.info("latest pointer kept: it points at a later run", latest=current["batch_id"])
        return
    storage.write_pointer(
        key,
        {
            "batch_id": manifest["batch_id"],
            "prefix": prefix,
            "uri": storage.uri(prefix),
            "manifest": f"{prefix}/manifest.json",
            "version_id": manifest["version_id"],
            "logical_date": logical_date,
            "updated_at": utcnow_iso(),
        },
    )
