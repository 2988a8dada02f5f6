"""The ``latest`` contract: ``batch/{campaign}/latest.json`` serves the live deployment.

Downstream jobs read ``latest``, so it moves only to a complete *campaign batch* (every user,
the campaign's serving config) of the deployment that is live: a nightly's or an update's
batch, a targeted refresh, or a rollback's (:func:`recsys.inference.batch.advance_latest`
checks the live deployment under the ``latest`` lock). Ad-hoc batch inference jobs have their
own prefix (``batch-jobs/{campaign}/{batch_id}/``) and never move it.

A deploy or rollback changes what is live, so it is followed by :func:`reconcile_latest`:
``latest`` is re-pointed at the newest complete campaign batch of the live deployment, or
reported missing (the caller then writes one). A nightly's batch that finalizes after a CLI
deploy of another version finds it is not live and leaves ``latest`` alone.
"""

from __future__ import annotations

from typing import Any

from recsys.campaigns import campaign_state
from recsys.inference.batch import batch_root, latest_key, latest_pointer, serves
from recsys.locks import storage_lock
from recsys.logs import get_logger
from recsys.storage import Storage

log = get_logger(__name__)


def _deployment(entry: dict[str, Any]) -> tuple[str, str | None]:
    return entry["version_id"], entry.get("revision")


def batches_of(storage: Storage, campaign: str, live: dict[str, Any]) -> list[dict[str, Any]]:
    """Complete campaign batches (manifests) that serve a deployment, the best last."""
    root = batch_root(campaign)
    found = []
    for name in storage.list_versions(root, marker="_SUCCESS"):
        key = f"{root}/{name}/manifest.json"
        if not storage.exists(key):
            continue
        manifest = storage.read_json(key)
        if manifest.get("input_key") is not None or manifest.get("kind", "campaign") != "campaign":
            continue
        if not serves(live, manifest["version_id"], manifest.get("revision")):
            continue
        serving = manifest.get("serving") or {}
        config = live.get("config") or {}
        if any(serving.get(k) != (v or None if k == "filter" else v) for k, v in config.items()):
            continue  # made with another serving config than the deployment's
        found.append(manifest)
    # the live revision's own batches before its version's, then by logical date
    return sorted(
        found,
        key=lambda m: (
            _deployment(m) == _deployment(live),
            m["logical_date"],
            m.get("created_at", ""),
        ),
    )


def reconcile_latest(storage: Storage, campaign: str) -> dict[str, Any]:
    """Make ``latest`` serve the live deployment: {"moved", "reason", "latest", "missing"}.

    ``missing``: no complete batch of the live deployment exists; ``latest`` is left as it was
    and the caller should write one (its finalize then moves ``latest``)."""
    state = campaign_state(storage, campaign)
    live = state["live"]
    key = latest_key(campaign)
    with storage_lock(storage, f"batch-latest-{campaign}"):
        current = storage.read_json(key) if storage.exists(key) else None
        if current is not None:
            revision = current.get("revision")
            if "revision" not in current and storage.exists(current["manifest"]):
                revision = storage.read_json(current["manifest"]).get("revision")
            if serves(live, current["version_id"], revision):
                return {"moved": False, "missing": False, "latest": current, "reason": "live"}
        found = batches_of(storage, campaign, live)
        if not found:
            log.warning(
                "no batch of the live deployment: latest not re-pointed",
                campaign=campaign,
                version_id=live["version_id"],
                revision=live.get("revision"),
            )
            return {
                "moved": False,
                "missing": True,
                "latest": current,
                "reason": "no complete batch of the live deployment",
            }
        manifest = found[-1]
        pointer = latest_pointer(storage, manifest, manifest["prefix"])
        storage.write_pointer(key, pointer)
    log.info(
        "latest re-pointed at the live deployment's batch",
        campaign=campaign,
        batch_id=manifest["batch_id"],
        version_id=manifest["version_id"],
    )
    return {"moved": True, "missing": False, "latest": pointer, "reason": "re-pointed"}
