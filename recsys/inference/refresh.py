"""Targeted batch refresh after a 2-hourly update: re-answer only the users whose top lists
the new items change most, and publish a complete new batch output beside the old one.

After a revision is deployed, every user's relevance top-k (``num_results``, seen items out,
no exploration: the model's own ranking) is computed with the blocked top-k of
:mod:`recsys.inference.topk` (users in blocks, items in chunks: never a users × items
matrix). A user's *change* is the number of **new items** in that top-k: items of the
revision that the model behind the current batch output did not have. Since a revision copies
every existing item's weights, the old items keep their scores and order, so each new item in
the top-k is one that entered it (and pushed an old one out).

Users with at least ``min_new_items`` new items in their top-k (most changed first, at most
``max_users``) are re-answered through :class:`~recsys.inference.batch.BatchServer` with the
live campaign (revision, the update's snapshot, serving config, exploration), as are users of
the update's snapshot that the previous output did not have. The new output
``batch/{c}/{batch_id}/`` holds every line of the previous output, in its order, with those
users' lines replaced, the new users' lines in a last part, then ``manifest.json`` (with a
``refresh`` section: base batch, counts, options), ``_SUCCESS``, and only then the ``latest``
pointer moves. Nothing is rewritten in place; a downstream reader that follows ``latest`` sees
the old complete output or the new complete output. The batch id digests (logical date,
campaign, base batch, the live deployment's batch spec, options), so a rerun of the same
logical date finds the complete output and reuses it.

Skipped (nothing written, with the reason) when the campaign's live entry has no revision,
when there is no previous batch, when the previous batch answered an input file (not every
user), or was made for another version or with another serving config: refreshing it would
mix two kinds of output, so those cases need a full batch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from recsys.campaigns import campaign_state
from recsys.config import CampaignConfig
from recsys.errors import ConfigError, NotFoundError
from recsys.ids import stamped_id, utcnow_iso
from recsys.inference.batch import (
    PART_SIZE,
    BatchServer,
    Request,
    advance_latest,
    batch_root,
    latest_key,
    plan_batch,
    recipe_index,
)
from recsys.inference.jobs import batch_job_lock
from recsys.inference.topk import recommend
from recsys.logs import get_logger
from recsys.storage import Storage
from recsys.training import model_prefix

log = get_logger(__name__)
REFRESH_FORMAT = 1


@dataclass(frozen=True)
class RefreshOptions:
    """The campaign file's ``update: refresh:`` section."""

    #: On by default, so new items reach downstream within the update; off: the update leaves
    #: the batch output alone until the next nightly (or the DAG's ``refresh_batch`` param
    #: rebuilds it whole).
    enabled: bool = True
    #: A user is refreshed when at least this many new items entered their top-k.
    min_new_items: int = 1
    #: At most this many users (most new items first, then snapshot order); None = no limit.
    max_users: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"update.refresh.enabled must be true or false, got {self.enabled}")
        if int(self.min_new_items) < 1:
            raise ConfigError(
                f"update.refresh.min_new_items must be >= 1, got {self.min_new_items}"
            )
        if self.max_users is not None and int(self.max_users) < 1:
            raise ConfigError(f"update.refresh.max_users must be >= 1, got {self.max_users}")

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> RefreshOptions:
        raw = dict(raw or {})
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"update.refresh: unknown options {sorted(unknown)}")
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def changed_users(
    recipe, histories: list[np.ndarray], users: np.ndarray, k: int, is_new: np.ndarray
) -> np.ndarray:
    """Per user: how many items flagged ``is_new`` are in their relevance top-k (seen items
    excluded), by the blocked top-k (never a users × items matrix)."""
    counts = np.zeros(len(histories), dtype=np.int64)
    if not is_new.any() or len(histories) == 0:
        return counts
    for start, idx, _ in recommend(recipe, users, histories, k, exclude=histories):
        valid = idx >= 0
        counts[start : start + len(idx)] = (is_new[np.where(valid, idx, 0)] & valid).sum(axis=1)
    return counts


def refresh_batch(
    storage: Storage,
    campaign: CampaignConfig,
    logical_date: str,
    options: RefreshOptions,
    part_size: int = PART_SIZE,
) -> dict[str, Any]:
    """Write (or reuse) the refreshed batch output; {"refreshed": bool, "reason", ...}."""
    try:
        live = campaign_state(storage, campaign.name)["live"]
    except NotFoundError:
        return _skip("campaign never deployed")
    if not live.get("revision"):
        return _skip("the live deployment is not a revision")
    if not storage.exists(latest_key(campaign.name)):
        return _skip("no batch output to refresh")
    base = storage.read_json(storage.read_json(latest_key(campaign.name))["manifest"])
    spec = plan_batch(storage, campaign, logical_date, num_results=base["num_results"])
    if base.get("input_key") is not None:
        return _skip("the latest batch answered an input file, not every user: run a full batch")
    if base["version_id"] != spec["version_id"]:
        return _skip("the latest batch is of another version: run a full batch")
    if base["serving"] != spec["serving"] or base.get("filter_values") != spec["filter_values"]:
        return _skip("the serving config changed since the latest batch: run a full batch")
    if (base.get("revision"), base["snapshot_id"]) == (spec["revision"], spec["snapshot_id"]):
        return _skip("the latest batch already serves the live revision")

    batch_id = stamped_id(
        logical_date,
        campaign.name,
        "refresh",
        base["batch_id"],
        {k: v for k, v in spec.items() if k not in ("complete", "batch_id", "prefix", "shards")},
        options.to_dict(),
        REFRESH_FORMAT,
    )
    prefix = f"{batch_root(campaign.name)}/{batch_id}"
    # under the batch id's job lock: a racing refresh never deletes a complete batch's parts
    with batch_job_lock(storage, {"campaign": campaign.name, "batch_id": batch_id}, "refresh"):
        if storage.exists(f"{prefix}/_SUCCESS"):
            log.info("refreshed batch already complete: reusing it", batch_id=batch_id)
            manifest = storage.read_json(f"{prefix}/manifest.json")
        else:
            manifest = _write(storage, spec, base, batch_id, prefix, options, part_size)
    if manifest is None:
        return _skip("no user's top-k changed and no new user: the latest batch stands")
    moved = advance_latest(storage, campaign.name, manifest, prefix, logical_date)
    return {
        "refreshed": True,
        "batch_id": batch_id,
        "uri": storage.uri(prefix),
        "latest_moved": moved,
        "users": manifest["users"],
        **manifest["refresh"],
    }


def _write(storage, spec, base, batch_id, prefix, options, part_size) -> dict[str, Any] | None:
    """Score, select, write the parts and the manifest; None when there is nothing to do."""
    for name in storage.list(prefix):  # leftovers of an interrupted attempt of this batch
        storage.delete(f"{prefix}/{name}")
    server = BatchServer.load(storage, spec)
    recipe = server.recipe
    base_items = storage.read_parquet(
        f"{model_prefix(spec['solution'], base['version_id'], base.get('revision'))}/items.parquet",
        columns=["ITEM_ID"],
    )["ITEM_ID"].to_numpy()
    is_new = recipe_index(np.asarray(base_items, dtype=object), recipe.item_ids) < 0
    k = int(spec["num_results"])

    # users of the update's snapshot with a history: how many new items entered their top-k
    data_users = server.data.user_ids.astype(str)
    warm = np.flatnonzero([len(h) > 0 for h in server.histories])
    counts = changed_users(
        recipe, [server.histories[u] for u in warm], server.model_user[warm], k, is_new
    )
    order = np.lexsort((np.arange(len(warm)), -counts))  # most changed first, then order
    picked = order[counts[order] >= options.min_new_items]
    if options.max_users is not None:
        picked = picked[: int(options.max_users)]
    refresh = {str(data_users[warm[i]]) for i in picked}

    # the base output's users, in its order; users it lacks are answered too (appended)
    base_parts = [(p["key"], storage.read_text(p["key"]).splitlines()) for p in base["parts"]]
    base_users = set()
    for _, lines in base_parts:
        for line in lines:
            base_users.add(_user_of(line))
    added = [u for u in data_users.tolist() if u not in base_users]
    if not refresh and not added:
        return None
    answer_ids = sorted(refresh) + added
    requests = [Request({"userId": u}, u, None, spec["filter_values"]) for u in answer_ids]
    answered = dict(zip(answer_ids, server.answer(requests), strict=True))

    parts, n_lines, replaced = [], 0, 0
    for n, (_, lines) in enumerate(base_parts):
        out = []
        for line in lines:
            user = _user_of(line)
            if user in refresh:
                out.append(answered[user])
                replaced += 1
            else:
                out.append(line)
        parts.append(_write_part(storage, prefix, n, out))
        n_lines += len(out)
    for j, start in enumerate(range(0, len(added), part_size)):
        chunk = [answered[u] for u in added[start : start + part_size]]
        parts.append(_write_part(storage, prefix, len(base_parts) + j, chunk))
        n_lines += len(chunk)
    hist = np.bincount(counts, minlength=k + 1)
    manifest = {
        **{k_: v for k_, v in spec.items() if k_ not in ("complete", "shards")},
        "batch_id": batch_id,
        "prefix": prefix,
        "users": n_lines,
        "errors": int(base.get("errors", 0)),
        "cold_start": int(base.get("cold_start", 0)) + server.cold_start_count,
        "parts": parts,
        "format": "personalize-batch-jsonl",
        "created_at": utcnow_iso(),
        "refresh": {
            "base_batch_id": base["batch_id"],
            "new_items": int(is_new.sum()),
            "users_scored": int(len(warm)),
            "users_refreshed": int(replaced),
            "users_added": len(added),
            # users by the number of new items that entered their top-k (index = count)
            "new_items_in_top_k": {str(i): int(c) for i, c in enumerate(hist) if c},
            "options": options.to_dict(),
        },
    }
    storage.write_json(f"{prefix}/manifest.json", manifest)
    storage.write_bytes(f"{prefix}/_SUCCESS", b"")
    log.info(
        "refreshed batch complete",
        batch_id=batch_id,
        base=base["batch_id"],
        refreshed=replaced,
        added=len(added),
        users=n_lines,
    )
    return manifest


def _write_part(storage: Storage, prefix: str, n: int, lines: list[str]) -> dict[str, Any]:
    key = f"{prefix}/part-{0:05d}-{n:05d}.jsonl"
    body = ("\n".join(lines) + "\n" if lines else "").encode("utf-8")
    return {"key": key, "lines": len(lines), "sha256": storage.write_bytes(key, body)}


def _user_of(line: str) -> str:
    """The userId of an output line (an all-users batch: every input has one)."""
    return str(json.loads(line)["input"]["userId"])


def _skip(reason: str) -> dict[str, Any]:
    log.info("targeted batch refresh skipped", reason=reason)
    return {"refreshed": False, "reason": reason}
