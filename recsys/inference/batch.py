"""Batch recommendations for a campaign, in Personalize's batch formats, sharded over users.

Input: Personalize batch-input JSON lines (``{"userId": "4638"}``, optionally ``"itemList"`` to
re-rank those items, ``"filterValues"`` for the filter's ``$PARAMETERS``), or every user of the
version's snapshot. Output, one JSON object per input line, in input order::

    {"input": {"userId": "4638"}, "output": {"recommendedItems": [...], "scores": [...]},
     "error": null}

A malformed line gets ``{"input": <the line>, "output": null, "error": "<why>"}`` and the job
goes on. A valid user unknown to the model (or without history) gets the cold-start answer:
popularity in the snapshot, blended with exploration. For ``itemList`` the items come back
re-ranked, items unknown to the model last with a ``null`` score.

Three steps, so Airflow can map the middle one over workers:

1. :func:`plan_batch` fixes everything the output depends on (version, serving config, filter,
   input digest, shard count) into a JSON spec whose ``batch_id`` is the logical date plus a
   digest of it: a rerun with the same inputs lands on the same, possibly complete, batch.
2. :func:`run_shard` answers rows ``[lo, hi)`` of shard i, writes
   ``batch/{campaign}/{batch_id}/part-{shard}-{n}.jsonl`` and then ``shards/{shard}.json``
   (the shard's completion marker: a retried shard reuses it).
3. :func:`finalize_batch` checks every shard, writes ``manifest.json``, then ``_SUCCESS``, and
   only then moves ``batch/{campaign}/latest.json`` (under a lock, never backwards in logical
   date): a downstream job that follows ``latest`` never reads a half-written batch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recsys.campaigns import campaign_key
from recsys.config import CampaignConfig
from recsys.data.dataset import Dataset
from recsys.errors import DataError, NotFoundError, StorageError
from recsys.filters import Filter, ItemTable, ResolvedFilter, parse_filter_values
from recsys.ids import as_utc, stamped_id, utcnow_iso
from recsys.inference.exploration import exploration_for
from recsys.inference.jobs import batch_job_lock
from recsys.inference.request_bounds import (
    MAX_LINE_ECHO,
    request_problem,
    safe_text,
    value_problem,
)
from recsys.inference.topk import Exploration, Normaliser, recommend
from recsys.locks import storage_lock
from recsys.logs import get_logger
from recsys.names import check_name
from recsys.recipes import load_model
from recsys.recipes.base import Recipe
from recsys.storage import Storage
from recsys.training import model_prefix, read_version

log = get_logger(__name__)
MAX_RESULTS = 500
MAX_ITEM_LIST = 500
MAX_ID_LENGTH = 256
PART_SIZE = 10_000
BATCH_FORMAT = 2


def batch_root(campaign: str) -> str:
    return f"batch/{check_name(campaign, 'campaign')}"


def latest_key(campaign: str) -> str:
    return f"{batch_root(campaign)}/latest.json"


def jobs_root(campaign: str) -> str:
    """Where ad-hoc batch inference jobs go (an input file, or another filter or numResults):
    their own outputs, never what ``latest`` points at."""
    return f"batch-jobs/{campaign}"


def recipe_index(vocabulary: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Positions of ``ids`` in ``vocabulary`` (-1 where absent)."""
    return pd.Index(vocabulary.astype(str)).get_indexer(ids.astype(str)).astype(np.int64)


# -- plan -----------------------------------------------------------------------------------
def plan_batch(
    storage: Storage,
    campaign: CampaignConfig,
    logical_date: str,
    *,
    version_id: str | None = None,
    num_results: int | None = None,
    input_key: str | None = None,
    shards: int = 1,
    filter_expression: str | None = None,
    filter_values: dict[str, Any] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Fix the batch's inputs into a spec (JSON); ``complete`` says it already exists.

    ``version_id`` defaults to the campaign's live version, served with the config stored
    with that deployment; another version is served with the campaign's config file.
    """
    key = campaign_key(campaign.name)
    live = storage.read_json(key)["live"] if storage.exists(key) else None
    revision = None
    snapshot_id = None
    if version_id is None:
        if live is None:
            raise NotFoundError(f"campaign {campaign.name!r} has never been deployed")
        version_id = live["version_id"]
    if live is not None and live["version_id"] == version_id:
        cfg = campaign.with_serving(live.get("config") or {})
        revision = live.get("revision")
        if revision:  # a revision is served with its own (newer) snapshot
            snapshot_id = live["snapshot_id"]
    else:
        cfg = campaign
    num = int(cfg.num_results if num_results is None else num_results)  # 0 is an error
    if not 1 <= num <= MAX_RESULTS:
        raise DataError(f"numResults must be between 1 and {MAX_RESULTS}, got {num}")
    expression = filter_expression if filter_expression is not None else cfg.filter
    if expression:
        Filter.parse(expression)
    values = parse_filter_values(filter_values)
    version = read_version(storage, campaign.solution, version_id)
    snapshot_id = snapshot_id or version["snapshot_id"]
    if input_key is not None:
        body = storage.read_bytes(input_key)
        input_sha = hashlib.sha256(body).hexdigest()
        n_rows = len(_input_lines(body))
    else:
        input_sha = None
        n_rows = Dataset.load(
            storage, version["dataset_group"], snapshot_id, exclude_columns=("IMPRESSION",)
        ).n_users
    shards = max(1, min(int(shards), max(n_rows, 1)))
    serving = {**cfg.serving_config(), "num_results": num, "filter": expression or None}
    # A campaign batch (every user, the campaign's own serving config) may become `latest`;
    # anything else is a batch inference job with its own prefix.
    job = (
        input_key is not None
        or (num_results is not None and num != int(cfg.num_results))
        or (filter_expression is not None and (filter_expression or None) != (cfg.filter or None))
        or bool(values)
    )
    batch_id = stamped_id(
        logical_date,
        campaign.name,
        version_id,
        revision,
        serving,
        values,
        input_sha,
        shards,
        seed,
        BATCH_FORMAT,
    )
    prefix = f"{(jobs_root if job else batch_root)(campaign.name)}/{batch_id}"
    return {
        "batch_id": batch_id,
        "prefix": prefix,
        "kind": "job" if job else "campaign",
        "campaign": campaign.name,
        "solution": campaign.solution,
        "version_id": version_id,
        "revision": revision,
        "snapshot_id": snapshot_id,
        "dataset_group": version["dataset_group"],
        "logical_date": logical_date,
        "num_results": num,
        "serving": serving,
        "filter_values": values,
        "input_key": input_key,
        "input_sha256": input_sha,
        "rows": n_rows,
        "shards": shards,
        "seed": seed,
        "complete": storage.exists(f"{prefix}/_SUCCESS"),
    }


def shard_rows(spec: dict[str, Any], shard: int) -> tuple[int, int]:
    n, s = spec["rows"], spec["shards"]
    return shard * n // s, (shard + 1) * n // s


# -- one shard ------------------------------------------------------------------------------
def run_shard(
    storage: Storage, spec: dict[str, Any], shard: int, part_size: int = PART_SIZE
) -> dict[str, Any]:
    """Answer shard ``shard``'s rows and write its parts, then its marker. Idempotent.

    Under the shard's job lock: a second job for the same batch (a rerun, a duplicate DAG run)
    waits, then finds the marker and reuses it, so two jobs never write one shard's parts.
    """
    if not 0 <= shard < spec["shards"]:
        raise DataError(f"shard {shard} out of range (the batch has {spec['shards']})")
    with batch_job_lock(storage, spec, f"shard-{shard:05d}"):
        return _run_shard(storage, spec, shard, part_size)


def _run_shard(storage: Storage, spec: dict[str, Any], shard: int, part_size: int) -> dict:
    prefix = spec["prefix"]
    marker = f"{prefix}/shards/{shard:05d}.json"
    if storage.exists(f"{prefix}/_SUCCESS") or storage.exists(marker):
        log.info("shard already complete: reusing it", batch_id=spec["batch_id"], shard=shard)
        return storage.read_json(marker)
    for name in storage.list(prefix):  # leftovers of an interrupted attempt of this shard
        if name.startswith(f"part-{shard:05d}-"):
            storage.delete(f"{prefix}/{name}")
    lo, hi = shard_rows(spec, shard)
    server = BatchServer.load(storage, spec)
    if spec["input_key"] is not None:
        lines = _input_lines(storage.read_bytes(spec["input_key"]))[lo:hi]
        requests = [parse_request(line, spec["filter_values"]) for line in lines]
    else:
        requests = [
            Request({"userId": str(u)}, str(u), None, spec["filter_values"])
            for u in server.data.user_ids[lo:hi]
        ]
    out = server.answer(requests)
    parts = []
    for n, start in enumerate(range(0, max(len(out), 1), part_size)):
        chunk = out[start : start + part_size]
        key = f"{prefix}/part-{shard:05d}-{n:05d}.jsonl"
        body = ("\n".join(chunk) + "\n" if chunk else "").encode("utf-8")
        parts.append({"key": key, "lines": len(chunk), "sha256": storage.write_bytes(key, body)})
    result = {
        "shard": shard,
        "rows": [lo, hi],
        "parts": parts,
        "lines": len(out),
        "errors": sum(r.error is not None for r in requests),
        "cold_start": server.cold_start_count,
        "written_at": utcnow_iso(),
    }
    storage.write_json(marker, result)
    log.info("shard written", batch_id=spec["batch_id"], shard=shard, lines=len(out))
    return result


# -- finalize -------------------------------------------------------------------------------
def finalize_batch(storage: Storage, spec: dict[str, Any]) -> dict[str, Any]:
    """Manifest, then ``_SUCCESS``, then (a campaign batch of the live deployment only) the
    ``latest`` pointer. Idempotent; the manifest of a complete batch is never rewritten (the
    finalize runs under the batch's job lock). The returned dict's ``latest_moved`` (not
    stored) says whether this call moved ``latest``."""
    with batch_job_lock(storage, spec, "finalize"):
        manifest = _finalize(storage, spec)
    moved = False
    if spec.get("kind", "campaign") == "campaign":
        moved = advance_latest(
            storage, spec["campaign"], manifest, spec["prefix"], spec["logical_date"]
        )
    else:
        log.info("batch inference job complete", uri=storage.uri(spec["prefix"]))
    return {**manifest, "latest_moved": moved}


def _finalize(storage: Storage, spec: dict[str, Any]) -> dict[str, Any]:
    prefix = spec["prefix"]
    if storage.exists(f"{prefix}/_SUCCESS"):
        manifest = storage.read_json(f"{prefix}/manifest.json")
    else:
        missing = [
            i for i in range(spec["shards"]) if not storage.exists(f"{prefix}/shards/{i:05d}.json")
        ]
        if missing:
            raise StorageError(
                f"batch {spec['batch_id']}: shards {missing} are not complete; run them first"
            )
        shards = [storage.read_json(f"{prefix}/shards/{i:05d}.json") for i in range(spec["shards"])]
        manifest = {
            **{k: v for k, v in spec.items() if k != "complete"},
            "users": sum(s["lines"] for s in shards),
            "errors": sum(s["errors"] for s in shards),
            "cold_start": sum(s["cold_start"] for s in shards),
            "parts": [p for s in shards for p in s["parts"]],
            "format": "personalize-batch-jsonl",
            "created_at": utcnow_iso(),
        }
        storage.write_json(f"{prefix}/manifest.json", manifest)
        storage.write_bytes(f"{prefix}/_SUCCESS", b"")
        log.info("batch complete", batch_id=spec["batch_id"], users=manifest["users"])
    return manifest


def serves(live: dict[str, Any], version_id: str, revision: str | None) -> bool:
    """Whether a batch of (version, revision) serves the live deployment: the live version
    itself, or the live revision of it (a version's batch still serves its revision until the
    update's refresh replaces it; a revision's batch never serves its version alone)."""
    return version_id == live["version_id"] and revision in (None, live.get("revision"))


def serves_live(storage: Storage, campaign: str, manifest: dict[str, Any]) -> bool:
    """Whether a batch serves the campaign's live deployment (see :func:`serves`)."""
    key = campaign_key(campaign)
    if not storage.exists(key):
        return False
    return serves(storage.read_json(key)["live"], manifest["version_id"], manifest.get("revision"))


def latest_pointer(storage: Storage, manifest: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {
        "batch_id": manifest["batch_id"],
        "prefix": prefix,
        "uri": storage.uri(prefix),
        "manifest": f"{prefix}/manifest.json",
        "version_id": manifest["version_id"],
        "revision": manifest.get("revision"),
        "logical_date": manifest["logical_date"],
        "updated_at": utcnow_iso(),
    }


def advance_latest(
    storage: Storage, campaign: str, manifest: dict[str, Any], prefix: str, logical_date: str
) -> bool:
    """Point ``latest`` at this batch if it serves the live deployment and ``latest`` does not
    point at a later run of it. True if moved. (A deploy or rollback in between re-points
    ``latest`` itself: :func:`recsys.inference.latest.reconcile_latest`.)"""
    key = latest_key(campaign)
    with storage_lock(storage, f"batch-latest-{campaign}", kind="batch finalize"):
        if not serves_live(storage, campaign, manifest):
            log.info(
                "latest pointer kept: this batch is not of the live deployment",
                batch_id=manifest["batch_id"],
                version_id=manifest["version_id"],
            )
            return False
        current = storage.read_json(key) if storage.exists(key) else None
        if (
            current
            and current["logical_date"] > logical_date
            and current["version_id"] == manifest["version_id"]
        ):
            log.info("latest pointer kept: it points at a later run", latest=current["batch_id"])
            return False
        storage.write_pointer(
            key, {**latest_pointer(storage, manifest, prefix), "logical_date": logical_date}
        )
    return True


def run_batch(
    storage: Storage,
    campaign: CampaignConfig,
    logical_date: str,
    *,
    version_id: str | None = None,
    num_results: int | None = None,
    part_size: int = PART_SIZE,
    shards: int = 1,
    **plan_options: Any,
) -> dict[str, Any]:
    """Plan, every shard in this process, finalize; return the batch manifest."""
    spec = plan_batch(
        storage,
        campaign,
        logical_date,
        version_id=version_id,
        num_results=num_results,
        shards=shards,
        **plan_options,
    )
    for shard in range(spec["shards"]):
        run_shard(storage, spec, shard, part_size)
    return finalize_batch(storage, spec)


# -- requests -------------------------------------------------------------------------------
@dataclass
class Request:
    """One input line: what it asked, or why it cannot be answered."""

    input: Any
    user_id: str | None
    item_list: list[str] | None
    filter_values: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    #: The user's index in the snapshot (-1: unknown), set when answered.
    data_user: int = -1


def _input_lines(body: bytes) -> list[str]:
    """Non-blank lines of a JSON-lines input (a bad UTF-8 line becomes an error line later)."""
    return [ln for ln in body.decode("utf-8", errors="replace").splitlines() if ln.strip()]


def parse_request(line: str, default_values: dict[str, list[str]] | None = None) -> Request:
    """Parse one Personalize batch-input line; never raises (errors go in ``error``)."""
    try:
        return _parse_request(line, default_values)
    except Exception as exc:  # noqa: BLE001 - one bad line must never sink the job
        return Request(safe_text(line)[:MAX_LINE_ECHO], None, None, error=f"bad line: {exc}")


def _parse_request(line: str, default_values: dict[str, list[str]] | None) -> Request:
    problem = request_problem(line)
    if problem is not None:
        return Request(safe_text(line)[:MAX_LINE_ECHO], None, None, error=problem)
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return Request(line, None, None, error=f"not valid JSON: {exc.msg} at column {exc.colno}")
    except RecursionError:
        return Request(line[:MAX_LINE_ECHO], None, None, error="nested too deeply")
    problem = value_problem(obj)
    if problem is not None:
        return Request(safe_text(line)[:MAX_LINE_ECHO], None, None, error=problem)
    if not isinstance(obj, dict):
        return Request(obj, None, None, error="a line must be a JSON object with a userId")
    user = obj.get("userId")
    if not isinstance(user, str) or not user.strip() or len(user) > MAX_ID_LENGTH:
        return Request(
            obj,
            None,
            None,
            error=f"userId must be a non-empty string of at most {MAX_ID_LENGTH} characters",
        )
    items = obj.get("itemList")
    if items is not None and (
        not isinstance(items, list)
        or not 1 <= len(items) <= MAX_ITEM_LIST
        or not all(isinstance(i, str) and 0 < len(i) <= MAX_ID_LENGTH for i in items)
    ):
        return Request(
            obj,
            user,
            None,
            error=f"itemList must be a list of 1 to {MAX_ITEM_LIST} item id strings",
        )
    try:
        values = {**(default_values or {}), **parse_filter_values(obj.get("filterValues"))}
    except DataError as exc:
        return Request(obj, user, None, error=str(exc))
    return Request(obj, user, items, values)


def _row_key(user: str) -> int:
    return int.from_bytes(hashlib.blake2b(user.encode("utf-8"), digest_size=8).digest(), "little")


class ColdStart(Recipe):
    """The cold-start answer's relevance: each item's share of the snapshot's interactions
    (the served score: that share, normalised over the catalogue)."""

    name = "cold-start-popularity"
    score_kind = "share"

    def __init__(self, item_ids: np.ndarray, shares: np.ndarray) -> None:
        super().__init__()
        self.item_ids = item_ids
        self.shares = shares.astype(np.float32)
        self._none = np.zeros((len(shares), 0), np.float32)

    def fit(self, data, options):  # pragma: no cover - built, not trained
        return self

    def score(self, users, histories):
        return np.broadcast_to(self.shares, (len(users), len(self.shares))).copy()

    def factors(self, users, histories):
        return np.zeros((len(users), 0), np.float32), self._none, self.shares

    def tensors(self):  # pragma: no cover - never saved
        return {}

    def load_tensors(self, tensors):  # pragma: no cover - never saved
        pass


class BatchServer:
    """Everything one shard needs: the model, the snapshot, filter, exploration, cold start."""

    def __init__(
        self,
        recipe: Recipe,
        data: Dataset,
        spec: dict[str, Any],
    ) -> None:
        self.recipe = recipe
        self.data = data
        self.spec = spec
        serving = spec["serving"]
        self.k = int(spec["num_results"])
        self.exclude_seen = bool(serving.get("exclude_seen", True))
        n_items = len(recipe.item_ids)
        data_to_model = recipe_index(recipe.item_ids, data.item_ids)
        self.histories = [data_to_model[h] for h in data.user_histories()]
        self.data_user = pd.Index(data.user_ids.astype(str))
        self.model_user = recipe_index(recipe.user_ids, data.user_ids)
        codes = data_to_model[data.item_codes]
        counts = np.bincount(codes[codes >= 0], minlength=n_items).astype(np.float64)
        self.cold = (
            recipe  # trending-now: the same list for everyone, cold-start users included
            if recipe.user_independent
            else ColdStart(recipe.item_ids, counts / max(counts.sum(), 1.0))
        )
        as_of = as_utc(spec["logical_date"]).timestamp()
        self.exploration: Exploration = exploration_for(
            recipe.item_ids,
            data,
            as_of,
            float(serving.get("exploration_weight", 0.0)),
            float(serving.get("exploration_item_age_cut_off", 30.0)),
            seed=int(spec.get("seed", 0)),
        )
        expression = serving.get("filter")
        self.filter = Filter.parse(expression) if expression else None
        self.items = ItemTable(recipe.item_ids, data.items) if self.filter else None
        if self.filter is not None:
            self.filter.check_fields(self.items.columns)
        self._resolved: dict[str, ResolvedFilter] = {}
        self._events: dict[frozenset[str], list[np.ndarray]] = {}
        self.cold_start_count = 0

    @classmethod
    def load(cls, storage: Storage, spec: dict[str, Any]) -> BatchServer:
        prefix = model_prefix(spec["solution"], spec["version_id"], spec.get("revision"))
        recipe, _ = load_model(storage, prefix)
        data = Dataset.load(storage, spec["dataset_group"], spec["snapshot_id"])
        return cls(recipe, data, spec)

    # -- filters ---------------------------------------------------------------------------
    def resolved(self, values: dict[str, list[str]]) -> ResolvedFilter | None:
        if self.filter is None:
            return None
        key = json.dumps(values, sort_keys=True)
        if key not in self._resolved:
            self._resolved[key] = self.filter.resolve(self.items, values)
        return self._resolved[key]

    def event_items(self, types: frozenset[str]) -> list[np.ndarray]:
        """Per snapshot user: model item indices they had an event of ``types`` with."""
        if types not in self._events:
            inter = self.data.interactions
            keep = inter["EVENT_TYPE"].astype(str).isin(list(types)).to_numpy()
            sub = self.data.subset(keep)
            data_to_model = recipe_index(self.recipe.item_ids, self.data.item_ids)
            self._events[types] = [data_to_model[h] for h in sub.user_histories()]
        return self._events[types]

    # -- answering ------------------------------------------------------------------------
    def answer(self, requests: Sequence[Request]) -> list[str]:
        """One output line per request, in order."""
        out: list[str | None] = [None] * len(requests)
        groups: dict[tuple[bool, str], list[int]] = {}
        ids = [r.user_id if r.error is None else "" for r in requests]
        positions = self.data_user.get_indexer(pd.Index(ids, dtype=object))
        for i, req in enumerate(requests):
            if req.error is not None:
                out[i] = _error_line(req.input, req.error)
                continue
            du = positions[i]
            req.data_user = int(du)
            if req.item_list is not None:
                out[i] = self._rank(req)
                continue
            cold = du < 0 or len(self.histories[du]) == 0
            key = (bool(cold), json.dumps(req.filter_values, sort_keys=True))
            groups.setdefault(key, []).append(i)
        for (cold, _), rows in groups.items():
            self._recommend([requests[i] for i in rows], rows, cold, out)
            if cold:
                self.cold_start_count += len(rows)
        return [line for line in out if line is not None]

    def _user_rows(self, reqs: Sequence[Request]) -> tuple[np.ndarray, list[np.ndarray]]:
        empty = np.zeros(0, np.int64)
        dus = [r.data_user for r in reqs]
        users = np.array([self.model_user[d] if d >= 0 else -1 for d in dus], dtype=np.int64)
        hists = [self.histories[d] if d >= 0 else empty for d in dus]
        return users, hists

    def _row_sets(
        self, reqs: Sequence[Request], types: frozenset[str] | None
    ) -> list[np.ndarray] | None:
        if types is None:
            return None
        per_user = self.event_items(types)
        empty = np.zeros(0, np.int64)
        return [per_user[r.data_user] if r.data_user >= 0 else empty for r in reqs]

    def _recommend(
        self, reqs: Sequence[Request], rows: list[int], cold: bool, out: list[str | None]
    ) -> None:
        scorer = self.cold if cold else self.recipe
        users, hists = self._user_rows(reqs)
        resolved = self.resolved(reqs[0].filter_values)
        n_items = len(self.recipe.item_ids)
        disallowed = np.zeros(n_items, bool)
        exclude: list[np.ndarray] = [h if self.exclude_seen else h[:0] for h in hists]
        include_sets = None
        if resolved is not None:
            if resolved.exclude_items is not None:
                disallowed |= resolved.exclude_items
            excl_events = self._row_sets(reqs, resolved.exclude_events)
            if excl_events is not None:
                exclude = [
                    np.concatenate([a, b]) for a, b in zip(exclude, excl_events, strict=True)
                ]
            include_sets = self._row_sets(reqs, resolved.include_events)
            if resolved.include_items is not None and include_sets is None:
                disallowed |= ~resolved.include_items
        if include_sets is not None:
            # INCLUDE by the user's own events: a small candidate set per row.
            base = (
                np.flatnonzero(resolved.include_items)
                if resolved.include_items is not None
                else np.zeros(0, np.int64)
            )
            for j, (req, u, h, inc) in enumerate(
                zip(reqs, users, hists, include_sets, strict=True)
            ):
                cand = np.union1d(base, inc[inc >= 0])
                cand = cand[~disallowed[cand] & ~np.isin(cand, exclude[j])]
                scores = score_items(scorer, u, h, cand, over="catalogue")
                order = np.lexsort((cand, -scores))[: self.k]
                out[rows[j]] = _line(req.input, self.recipe.item_ids[cand[order]], scores[order])
            return
        keys = np.array([_row_key(r.user_id) for r in reqs], dtype=np.uint64)
        for start, idx, val in recommend(
            scorer,
            users,
            hists,
            self.k,
            exclude=exclude,
            disallowed=disallowed if disallowed.any() else None,
            exploration=self.exploration,
            row_keys=keys,
            normalise=True,
        ):
            for r in range(len(idx)):
                keep = idx[r] >= 0
                j = start + r
                out[rows[j]] = _line(
                    reqs[j].input, self.recipe.item_ids[idx[r][keep]], val[r][keep]
                )

    def _rank(self, req: Request) -> str:
        """Re-rank ``itemList`` (personalized-ranking): filtered items leave, unknown go last."""
        items = list(dict.fromkeys(req.item_list or []))
        idx = recipe_index(self.recipe.item_ids, np.array(items, dtype=object))
        du = req.data_user
        hist = self.histories[du] if du >= 0 else np.zeros(0, np.int64)
        user = self.model_user[du] if du >= 0 else -1
        scorer = self.recipe if len(hist) else self.cold
        keep = np.ones(len(items), bool)
        resolved = self.resolved(req.filter_values)
        if resolved is not None:
            known = idx >= 0
            if resolved.exclude_items is not None:
                keep[known] &= ~resolved.exclude_items[idx[known]]
            if resolved.exclude_events is not None and du >= 0:
                keep &= ~np.isin(idx, self.event_items(resolved.exclude_events)[du])
            if resolved.restricts:
                allowed = np.zeros(len(items), bool)
                if resolved.include_items is not None:
                    allowed[known] |= resolved.include_items[idx[known]]
                if resolved.include_events is not None and du >= 0:
                    allowed |= np.isin(idx, self.event_items(resolved.include_events)[du])
                keep &= allowed
        known_pos = np.flatnonzero(keep & (idx >= 0))
        scores = score_items(scorer, user, hist, idx[known_pos], over="items")
        order = known_pos[np.lexsort((known_pos, -scores))]
        score_of = dict(zip(known_pos.tolist(), scores.tolist(), strict=True))
        ranked = [items[p] for p in order] + [items[p] for p in np.flatnonzero(keep & (idx < 0))]
        # items the model was not trained with go last, unscored (PRODUCT.md)
        ranked_scores = [_sig(score_of[p]) for p in order] + [None] * (len(ranked) - len(order))
        return json.dumps(
            {
                "input": req.input,
                "output": {"recommendedItems": ranked, "scores": ranked_scores},
                "error": None,
            },
            ensure_ascii=False,
        )


def score_items(
    recipe: Recipe,
    user: int,
    history: np.ndarray,
    items: np.ndarray,
    over: str | None = None,
) -> np.ndarray:
    """Scores of ``items`` (model indices) for one user, float64.

    ``over=None``: the recipe's raw relevance; ``"catalogue"``: normalised over every item of
    the catalogue (as :func:`~recsys.inference.topk.recommend` serves them); ``"items"``:
    normalised over ``items`` alone (a personalized ranking of an ``itemList``: the softmax
    over the listed items, so they sum to 1)."""
    if len(items) == 0:
        return np.zeros(0)
    users = np.array([user], dtype=np.int64)
    f = recipe.factors(users, [history])
    if f is not None:
        u, v, b = f
        v = np.asarray(v, np.float32)
        rows = v if over == "catalogue" else v[items]
        s = rows @ np.asarray(u, np.float32)[0]
        if b is not None:
            bias = np.asarray(b, np.float32)
            s = s + (bias if over == "catalogue" else bias[items])
    else:
        s = np.asarray(recipe.score(users, [history]), np.float32)[0]
        s = s if over == "catalogue" else s[items]
    if over is None:
        return s.astype(np.float64)
    norm = Normaliser(getattr(recipe, "score_kind", "share"), 1)
    norm.push(np.asarray(s, np.float32)[None, :])
    out = norm.apply(s[None, :])[0]
    return out[items] if over == "catalogue" else out


def _line(inp: Any, items: np.ndarray, scores: np.ndarray) -> str:
    return json.dumps(
        {
            "input": inp,
            "output": {
                "recommendedItems": [str(i) for i in items],
                "scores": [_sig(s) for s in scores],
            },
            "error": None,
        },
        ensure_ascii=False,
    )


def _error_line(inp: Any, error: str) -> str:
    return json.dumps({"input": inp, "output": None, "error": error}, ensure_ascii=False)


def _sig(x: float) -> float:
    """A score with 7 significant digits (a softmax over a large catalogue is small: 7
    decimals would round it to 0)."""
    return float(f"{float(x):.7g}")
