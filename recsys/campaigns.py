"""Campaigns: which solution version is live, with what config, and the history of deploys.

``campaigns/{campaign}.json`` is one pointer object, written whole and last, so a reader sees
the old or the new deployment, never a mix. Deploying is idempotent for a logical date: a rerun
that deploys the same version adds no history entry. A run for a logical date older than the
live deployment's (a backfill) does not replace it unless forced.
"""

from __future__ import annotations

from typing import Any

from recsys.config import CampaignConfig
from recsys.errors import NotFoundError
from recsys.ids import utcnow_iso
from recsys.logs import get_logger
from recsys.storage import Storage
from recsys.training import read_version

log = get_logger(__name__)


def campaign_key(campaign: str) -> str:
    return f"campaigns/{campaign}.json"


def campaign_state(storage: Storage, campaign: str) -> dict[str, Any]:
    key = campaign_key(campaign)
    if not storage.exists(key):
        raise NotFoundError(
            f"campaign {campaign!r} has never been deployed (no {storage.uri(key)})"
        )
    return storage.read_json(key)


def deploy(
    storage: Storage,
    campaign: CampaignConfig,
    version_id: str,
    logical_date: str,
    *,
    force: bool = False,
    reason: str = "nightly",
) -> dict[str, Any]:
    """Point the campaign at ``version_id``. Returns {deployed, live, reason}."""
    version = read_version(storage, campaign.solution, version_id)
    key = campaign_key(campaign.name)
    state = storage.read_json(key) if storage.exists(key) else None
    live = state["live"] if state else None
    if live and live["version_id"] == version_id:
        log.info(
            "campaign already serves this version", campaign=campaign.name, version_id=version_id
        )
        return {"deployed": False, "live": live, "reason": "already live"}
    if live and not force and live["logical_date"] > logical_date:
        log.info(
            "not deploying: the live version is from a later run (backfill?)",
            campaign=campaign.name,
            live_logical_date=live["logical_date"],
            logical_date=logical_date,
        )
        return {"deployed": False, "live": live, "reason": "live version is newer"}
    entry = {
        "version_id": version_id,
        "solution": campaign.solution,
        "revision": None,
        "snapshot_id": version["snapshot_id"],
        "logical_date": logical_date,
        "deployed_at": utcnow_iso(),
        "reason": reason,
    }
    history = list(state["history"]) if state else []
    history.append(entry)
    new_state = {
        "campaign": campaign.name,
        "solution": campaign.solution,
        "config": campaign.serving_config(),
        "live": entry,
        "history": history,
    }
    storage.write_pointer(key, new_state)
    log.info("deployed", campaign=campaign.name, version_id=version_id, reason=reason)
    return {"deployed": True, "live": entry, "reason": reason}
