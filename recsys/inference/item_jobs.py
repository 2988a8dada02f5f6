"""Batch jobs whose input lines name items: related items and user segments.

Personalize's two item-keyed batch kinds, one JSON object per input line, in input order:

* ``related-items`` (a batch inference job on a similar-items / sims solution)::

      {"input": {"itemId": "105"}, "output": {"recommendedItems": [...], "scores": [...]},
       "error": null}

* ``segments`` (a batch segment job, item-affinity: the users most likely to like an item,
  :mod:`recsys.inference.segments`)::

      {"input": {"itemId": "105"}, "output": {"usersList": [...]}, "error": null}

A malformed line (not JSON, no ``itemId`` string) gets ``{"input": <the line>, "output":
null, "error": "<why>"}``, an item the model does not know gets an error line naming it, and
the job goes on. Without an input every item of the model's catalogue is answered.

Layout (idempotent for its inputs, nothing written in place, pointer last)::

    batch-{kind}/{campaign}/{job_id}/part-00000.jsonl, manifest.json, _SUCCESS
    batch-{kind}/{campaign}/latest.json

``job_id`` is the logical date plus a digest of (campaign, version, revision, kind,
num_results, input digest): a rerun with the same inputs finds ``_SUCCESS`` and reuses it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.campaigns import campaign_key
from recsys.config import CampaignConfig
from recsys.errors import ConfigError, DataError, NotFoundError
from recsys.ids import stamped_id, utcnow_iso
from recsys.inference.batch import MAX_ID_LENGTH, MAX_RESULTS, recipe_index
from recsys.locks import storage_lock
from recsys.logs import get_logger
from recsys.recipes import load_model
from recsys.recipes.base import Recipe
from recsys.storage import Storage
from recsys.training import model_prefix, read_version

log = get_logger(__name__)
KINDS = ("related-items", "segments")
JOB_FORMAT = 1
#: Personalize's batch segment jobs return up to this many users per item.
MAX_SEGMENT_USERS = 5_000_000


def job_root(kind: str, campaign: str) -> str:
    return f"batch-{kind}/{campaign}"


@dataclass
class ItemRequest:
    input: Any
    item_id: str | None
    error: str | None = None


def parse_item_request(line: str) -> ItemRequest:
    """One ``{"itemId": ...}`` line; never raises (errors go in ``error``)."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return ItemRequest(line, None, f"not valid JSON: {exc.msg} at column {exc.colno}")
    if not isinstance(obj, dict):
        return ItemRequest(obj, None, "a line must be a JSON object with an itemId")
    item = obj.get("itemId")
    if not isinstance(item, str) or not item.strip() or len(item) > MAX_ID_LENGTH:
        return ItemRequest(
            obj, None, f"itemId must be a non-empty string of at most {MAX_ID_LENGTH} characters"
        )
    return ItemRequest(obj, item)


def _lines(body: bytes) -> list[str]:
    return [ln for ln in body.decode("utf-8", errors="replace").splitlines() if ln.strip()]


def run_item_job(
    storage: Storage,
    campaign: CampaignConfig,
    kind: str,
    logical_date: str,
    *,
    version_id: str | None = None,
    num_results: int | None = None,
    input_key: str | None = None,
) -> dict[str, Any]:
    """Answer every input line (or every catalogue item) for ``kind``; return the manifest."""
    if kind not in KINDS:
        raise ConfigError(f"unknown item job kind {kind!r} (known: {', '.join(KINDS)})")
    key = campaign_key(campaign.name)
    live = storage.read_json(key)["live"] if storage.exists(key) else None
    revision = None
    if version_id is None:
        if live is None:
            raise NotFoundError(f"campaign {campaign.name!r} has never been deployed")
        version_id = live["version_id"]
    if live is not None and live["version_id"] == version_id:
        revision = live.get("revision")
    limit = MAX_RESULTS if kind == "related-items" else MAX_SEGMENT_USERS
    num = int(num_results or campaign.num_results)
    if not 1 <= num <= limit:
        raise DataError(f"numResults must be between 1 and {limit} for {kind}, got {num}")
    version = read_version(storage, campaign.solution, version_id)
    snapshot_id = (live or {}).get("snapshot_id") if revision else version["snapshot_id"]
    body = storage.read_bytes(input_key) if input_key is not None else None
    input_sha = hashlib.sha256(body).hexdigest() if body is not None else None
    job_id = stamped_id(
        logical_date,
        campaign.name,
        version_id,
        revision,
        kind,
        num,
        input_sha,
        campaign.exclude_seen,
        JOB_FORMAT,
    )
    prefix = f"{job_root(kind, campaign.name)}/{job_id}"
    if storage.exists(f"{prefix}/_SUCCESS"):
        log.info("item job already complete: reusing it", job_id=job_id)
        manifest = storage.read_json(f"{prefix}/manifest.json")
    else:
        recipe, _ = load_model(storage, model_prefix(campaign.solution, version_id, revision))
        if body is not None:
            requests = [parse_item_request(line) for line in _lines(body)]
        else:
            requests = [ItemRequest({"itemId": str(i)}, str(i)) for i in recipe.item_ids]
        answer = _answerer(kind, recipe, storage, version["dataset_group"], snapshot_id, campaign)
        out = answer(requests, num)
        part = f"{prefix}/part-00000.jsonl"
        sha = storage.write_bytes(part, ("\n".join(out) + "\n" if out else "").encode("utf-8"))
        errors = sum(json.loads(line)["error"] is not None for line in out)
        manifest = {
            "job_id": job_id,
            "batch_id": job_id,
            "kind": kind,
            "campaign": campaign.name,
            "solution": campaign.solution,
            "version_id": version_id,
            "revision": revision,
            "snapshot_id": snapshot_id,
            "logical_date": logical_date,
            "num_results": num,
            "input_key": input_key,
            "input_sha256": input_sha,
            "items": len(out),
            "errors": errors,
            "parts": [{"key": part, "lines": len(out), "sha256": sha}],
            "format": f"personalize-{kind}-jsonl",
            "created_at": utcnow_iso(),
        }
        storage.write_json(f"{prefix}/manifest.json", manifest)
        storage.write_bytes(f"{prefix}/_SUCCESS", b"")
        log.info("item job complete", kind=kind, job_id=job_id, items=len(out), errors=errors)
    advance_latest_kind(storage, kind, campaign.name, manifest, prefix, logical_date)
    return manifest


def item_job(
    storage: Storage,
    kind: str,
    campaign: str,
    logical_date: Any,
    *,
    version_id: str | None = None,
    num_results: int | None = None,
    input_key: str | None = None,
) -> dict[str, Any]:
    """The CLI's ``related-items`` / ``segments``: run the job, return where it is."""
    from recsys.ids import as_utc

    manifest = run_item_job(
        storage,
        CampaignConfig.load(campaign),
        kind,
        as_utc(logical_date).isoformat(),
        version_id=version_id,
        num_results=num_results,
        input_key=input_key,
    )
    return {
        "campaign": campaign,
        "kind": kind,
        "job_id": manifest["job_id"],
        "version_id": manifest["version_id"],
        "items": manifest["items"],
        "errors": manifest["errors"],
        "uri": storage.uri(f"{job_root(kind, campaign)}/{manifest['job_id']}"),
    }


def advance_latest_kind(
    storage: Storage, kind: str, campaign: str, manifest: dict, prefix: str, logical_date: str
) -> bool:
    """Point the kind's ``latest`` at this job unless it points at a later run (the user
    batches' rule, under a lock)."""
    key = f"{job_root(kind, campaign)}/latest.json"
    with storage_lock(storage, f"{kind}-latest-{campaign}"):
        current = storage.read_json(key) if storage.exists(key) else None
        if current and current["logical_date"] > logical_date:
            log.info("latest pointer kept: it points at a later run", latest=current["job_id"])
            return False
        storage.write_pointer(
            key,
            {
                "job_id": manifest["job_id"],
                "kind": kind,
                "prefix": prefix,
                "uri": storage.uri(prefix),
                "manifest": f"{prefix}/manifest.json",
                "version_id": manifest["version_id"],
                "logical_date": logical_date,
                "updated_at": utcnow_iso(),
            },
        )
    return True


def _answerer(
    kind: str,
    recipe: Recipe,
    storage: Storage,
    dataset_group: str,
    snapshot_id: str,
    campaign: CampaignConfig,
) -> Callable[[list[ItemRequest], int], list[str]]:
    if kind == "related-items":
        if not hasattr(recipe, "related") and not hasattr(recipe, "neighbours"):
            raise ConfigError(
                f"related-items needs an item-to-item recipe (similar-items or sims); "
                f"solution {campaign.solution!r} uses {recipe.name}"
            )
        return lambda reqs, k: related_lines(recipe, reqs, k)
    from recsys.data.dataset import Dataset
    from recsys.inference.segments import segment_lines

    data = Dataset.load(storage, dataset_group, snapshot_id, exclude_columns=("IMPRESSION",))
    return lambda reqs, k: segment_lines(recipe, data, reqs, k, campaign.exclude_seen)


def item_positions(recipe: Recipe, requests: list[ItemRequest]) -> np.ndarray:
    ids = np.array([r.item_id if r.error is None else "" for r in requests], dtype=object)
    return recipe_index(np.asarray(recipe.item_ids, dtype=object), ids)


def related_lines(recipe: Recipe, requests: list[ItemRequest], k: int) -> list[str]:
    """Related-items output lines: each item's neighbours row, best first."""
    from recsys.recipes.similar_items import SimilarItems

    pos = item_positions(recipe, requests)
    out = []
    for req, p in zip(requests, pos, strict=True):
        if req.error is not None:
            out.append(error_line(req.input, req.error))
        elif p < 0:
            out.append(error_line(req.input, f"item {req.item_id!r} is not in the model"))
        else:
            idx, val = SimilarItems.related(recipe, int(p), k)  # type: ignore[arg-type]
            out.append(
                json.dumps(
                    {
                        "input": req.input,
                        "output": {
                            "recommendedItems": [str(recipe.item_ids[i]) for i in idx],
                            "scores": [round(float(s), 7) for s in val],
                        },
                        "error": None,
                    },
                    ensure_ascii=False,
                )
            )
    return out


def error_line(inp: Any, error: str) -> str:
    return json.dumps({"input": inp, "output": None, "error": error}, ensure_ascii=False)


def configured_jobs(campaign: str) -> dict[str, dict[str, Any]]:
    """The campaign file's ``item_jobs:`` section: which item-keyed jobs follow its batch::

    item_jobs:
      related-items: {num_results: 25}                  # every item of the model
      segments: {input: batch-inputs/items.jsonl, num_results: 100}
    """
    from recsys.config import load_config_file

    raw = load_config_file("campaigns", campaign).get("item_jobs") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"campaign {campaign!r}: item_jobs must be a mapping")
    out = {}
    for kind, options in raw.items():
        if kind not in KINDS:
            raise ConfigError(
                f"campaign {campaign!r}: item_jobs: unknown kind {kind!r} (known: {KINDS})"
            )
        options = dict(options or {})
        unknown = set(options) - {"input", "num_results"}
        if unknown:
            raise ConfigError(f"campaign {campaign!r}: item_jobs.{kind}: unknown {sorted(unknown)}")
        out[kind] = options
    return out


def run_configured(storage: Storage, campaign: str, logical_date: Any) -> list[dict[str, Any]]:
    """Every job of the campaign's ``item_jobs:`` on its live version (after the batch)."""
    results = []
    for kind, options in configured_jobs(campaign).items():
        key = options.get("input")
        if key is not None and not storage.exists(str(key)):
            raise NotFoundError(f"campaign {campaign!r}: item_jobs.{kind}.input {key!r} not found")
        results.append(
            item_job(
                storage,
                kind,
                campaign,
                logical_date,
                num_results=options.get("num_results"),
                input_key=key,
            )
        )
    return results
