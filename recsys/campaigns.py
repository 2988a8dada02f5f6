"""Campaigns: which solution version is live, with what config, and the history of deploys.

``campaigns/{campaign}.json`` is one pointer object, written whole and last, so a reader sees
the old or the new deployment, never a mix. Every change (deploy, rollback) is a
read-modify-write under the campaign's storage lock (:mod:`recsys.locks`), so concurrent
deploys cannot interleave and no history entry is lost.

* :func:`promotion_decision`: the nightly gate: deploy only if validation passed and no gate
  metric is worse than the live version's by more than the tolerance; ``force``/``block``
  override it. :func:`promote` applies it and stores the decision under
  ``campaigns/{campaign}/decisions/``.
* :func:`deploy`: point the campaign at a version (idempotent: the live version again adds no
  entry); a version from an older logical date than the live one (a backfill) needs ``force``.
* :func:`rollback`: make an earlier deployment live again, with the serving config it had.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from recsys.config import CampaignConfig
from recsys.errors import DataError, NotFoundError
from recsys.ids import date_stamp, utcnow_iso
from recsys.locks import storage_lock
from recsys.logs import get_logger
from recsys.names import check_name
from recsys.storage import Storage
from recsys.training import read_version, version_prefix

log = get_logger(__name__)
GATE_MODES = ("auto", "force", "block")


def campaign_key(campaign: str) -> str:
    return f"campaigns/{check_name(campaign, 'campaign')}.json"


def decisions_prefix(campaign: str) -> str:
    return f"campaigns/{check_name(campaign, 'campaign')}/decisions"


def campaign_state(storage: Storage, campaign: str) -> dict[str, Any]:
    key = campaign_key(campaign)
    if not storage.exists(key):
        raise NotFoundError(
            f"campaign {campaign!r} has never been deployed (no {storage.uri(key)})"
        )
    return storage.read_json(key)


def read_metrics(storage: Storage, solution: str, version_id: str) -> dict[str, float] | None:
    key = f"{version_prefix(solution, version_id)}/metrics.json"
    return storage.read_json(key)["metrics"] if storage.exists(key) else None


def promotion_decision(
    new: dict[str, float] | None,
    live: dict[str, float] | None,
    *,
    validation_passed: bool,
    mode: str = "auto",
    tolerance: float = 0.02,
    metrics: tuple[str, ...] | list[str] = (),
) -> dict[str, Any]:
    """Whether to deploy, why, and the numbers compared.

    A metric fails when ``new < live - tolerance * |live|`` (higher is better for all of
    Personalize's metrics); a missing or NaN new value fails. ``force`` deploys whatever the
    metrics say (not over a failed validation); ``block`` never deploys.
    """
    if mode not in GATE_MODES:
        raise DataError(f"deploy mode must be one of {GATE_MODES}, got {mode!r}")
    comparisons = []
    for name in metrics:
        n = (new or {}).get(name)
        old = (live or {}).get(name)
        ok = None
        floor = None
        if old is not None and not _nan(old):
            floor = old - tolerance * abs(old)
            ok = n is not None and not _nan(n) and n >= floor
        comparisons.append({"metric": name, "new": n, "live": old, "floor": floor, "ok": ok})
    failed = [c["metric"] for c in comparisons if c["ok"] is False]
    if mode == "block":
        deploy, reason = False, "blocked by the deploy param"
    elif not validation_passed:
        deploy, reason = False, "validation did not pass"
    elif mode == "force":
        deploy, reason = True, "forced by the deploy param"
    elif new is None:
        deploy, reason = False, "the new version has no metrics (not evaluated)"
    elif live is None:
        deploy, reason = True, "nothing comparable is live (first deployment or no metrics)"
    elif failed:
        deploy, reason = False, f"worse than live beyond tolerance {tolerance}: {failed}"
    else:
        deploy, reason = True, f"not worse than live beyond tolerance {tolerance}"
    return {
        "deploy": deploy,
        "reason": reason,
        "mode": mode,
        "tolerance": tolerance,
        "comparisons": comparisons,
    }


def _nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _update(
    storage: Storage,
    campaign: str,
    change: Callable[[dict[str, Any] | None], dict[str, Any] | None],
) -> dict[str, Any] | None:
    """Read, change and write the pointer under the campaign lock; ``change`` → None: no write."""
    with storage_lock(storage, f"campaign-{campaign}"):
        key = campaign_key(campaign)
        state = storage.read_json(key) if storage.exists(key) else None
        new_state = change(state)
        if new_state is not None:
            new_state["seq"] = int((state or {}).get("seq", 0)) + 1
            storage.write_pointer(key, new_state)
        return new_state


def _entry(campaign: CampaignConfig, version: dict[str, Any], logical_date: str, **extra) -> dict:
    return {
        "version_id": version["version_id"],
        "solution": campaign.solution,
        "revision": extra.pop("revision", None),
        "snapshot_id": version["snapshot_id"],
        "logical_date": logical_date,
        "config": campaign.serving_config(),
        "deployed_at": utcnow_iso(),
        **extra,
    }


def _with_entry(campaign: str, solution: str, state: dict | None, entry: dict) -> dict:
    history = list(state["history"]) if state else []
    history.append(entry)
    return {
        "campaign": campaign,
        "solution": solution,
        "config": entry["config"],
        "live": entry,
        "history": history,
    }


def _deploy_change(
    campaign: CampaignConfig,
    version: dict[str, Any],
    logical_date: str,
    outcome: dict[str, Any],
    *,
    force: bool,
    reason: str,
    revision: str | None,
    decision: dict[str, Any] | None,
) -> Callable[[dict[str, Any] | None], dict[str, Any] | None]:
    version_id = version["version_id"]

    def change(state: dict | None) -> dict | None:
        live = state["live"] if state else None
        if revision is not None and (live is None or live["version_id"] != version_id):
            # a revision extends the version that was live when it was built; if the nightly
            # (or a rollback) moved the campaign since, the revision is stale
            outcome.update(deployed=False, live=live, reason="revision of a version not live")
            return None
        if live and live["version_id"] == version_id and live.get("revision") == revision:
            outcome.update(deployed=False, live=live, reason="already live")
            return None
        if live and not force and live["logical_date"] > logical_date:
            outcome.update(deployed=False, live=live, reason="live version is newer")
            return None
        extra: dict[str, Any] = {"reason": reason, "revision": revision}
        if decision is not None:
            extra["decision"] = {k: decision[k] for k in ("reason", "mode", "comparisons")}
        entry = _entry(campaign, version, logical_date, **extra)
        outcome.update(deployed=True, live=entry, reason=reason)
        return _with_entry(campaign.name, campaign.solution, state, entry)

    return change


def deploy(
    storage: Storage,
    campaign: CampaignConfig,
    version_id: str,
    logical_date: str,
    *,
    force: bool = False,
    reason: str = "nightly",
    revision: str | None = None,
    snapshot_id: str | None = None,
) -> dict[str, Any]:
    """Point the campaign at ``version_id`` (or a revision of it, served with the revision's
    ``snapshot_id``). Returns {deployed, live, reason}."""
    version = read_version(storage, campaign.solution, version_id)
    if snapshot_id is not None:
        version = {**version, "snapshot_id": snapshot_id}
    outcome: dict[str, Any] = {}
    change = _deploy_change(
        campaign,
        version,
        logical_date,
        outcome,
        force=force,
        reason=reason,
        revision=revision,
        decision=None,
    )
    _update(storage, campaign.name, change)
    log.info("deploy", campaign=campaign.name, version_id=version_id, **_short(outcome))
    return outcome


def _short(outcome: dict[str, Any]) -> dict[str, Any]:
    return {"deployed": outcome.get("deployed"), "reason": outcome.get("reason")}


def promote(
    storage: Storage,
    campaign: CampaignConfig,
    version_id: str,
    logical_date: str,
    *,
    validation_passed: bool,
    mode: str = "auto",
) -> dict[str, Any]:
    """The nightly gate: decide against what is live (under the lock), store the decision
    under ``campaigns/{campaign}/decisions/``, and deploy when it says so."""
    version = read_version(storage, campaign.solution, version_id)
    new = read_metrics(storage, campaign.solution, version_id)
    outcome: dict[str, Any] = {}

    def change(state: dict | None) -> dict | None:
        live = state["live"] if state else None
        live_metrics = read_metrics(storage, live["solution"], live["version_id"]) if live else None
        decision = promotion_decision(
            new,
            live_metrics,
            validation_passed=validation_passed,
            mode=mode,
            tolerance=campaign.promotion_tolerance,
            metrics=campaign.promotion_metrics,
        )
        if mode == "auto" and live and live["logical_date"] > logical_date:
            # A backfill never replaces the deployment of a later run (unless forced).
            decision.update(deploy=False, reason="live version is newer")
        record = {
            "campaign": campaign.name,
            "version_id": version_id,
            "live_version_id": live["version_id"] if live else None,
            "logical_date": logical_date,
            "decided_at": utcnow_iso(),
            **decision,
        }
        key = f"{decisions_prefix(campaign.name)}/{date_stamp(logical_date)}-{version_id}.json"
        storage.write_json(key, record)
        outcome["gate"] = record
        log.info(
            "promotion gate",
            campaign=campaign.name,
            version_id=version_id,
            deploy=decision["deploy"],
            reason=decision["reason"],
            comparisons=decision["comparisons"],
        )
        if not decision["deploy"]:
            outcome.update(deployed=False, live=live, reason=decision["reason"])
            return None
        return _deploy_change(
            campaign,
            version,
            logical_date,
            outcome,
            force=mode == "force",
            reason=f"nightly: {decision['reason']}",
            revision=None,
            decision=decision,
        )(state)

    _update(storage, campaign.name, change)
    log.info("deploy", campaign=campaign.name, version_id=version_id, **_short(outcome))
    return outcome


def rollback(
    storage: Storage,
    campaign: str,
    to_version: str | None = None,
    *,
    reason: str = "rollback",
    request_id: str | None = None,
) -> dict[str, Any]:
    """Make an earlier deployment live again (default: the one before the live version).

    The new history entry copies the earlier entry (version, revision, snapshot, serving
    config, logical date), so batches served from it are the earlier version's exactly.
    ``request_id`` (e.g. an Airflow run id) makes a retry of the same request a no-op.
    """
    outcome: dict[str, Any] = {}

    def change(state: dict | None) -> dict | None:
        if not state:
            raise NotFoundError(f"campaign {campaign!r} has never been deployed")
        live = state["live"]
        if request_id is not None and live.get("request_id") == request_id:
            outcome.update(deployed=False, live=live, reason="already rolled back")
            return None
        # an entry = (version, revision): a bad 2-hourly revision rolls back to its version
        here = (live["version_id"], live.get("revision"))
        earlier = [e for e in state["history"] if (e["version_id"], e.get("revision")) != here]
        if to_version is not None:
            earlier = [e for e in earlier if e["version_id"] == to_version]
            if not earlier:
                known = sorted({e["version_id"] for e in state["history"]})
                live_note = " (it is live now)" if to_version == live["version_id"] else ""
                raise NotFoundError(
                    f"campaign {campaign!r}: {to_version!r} is not an earlier deployment"
                    f"{live_note}; deployed versions: {known}"
                )
        if not earlier:
            raise NotFoundError(f"campaign {campaign!r}: no earlier deployment to roll back to")
        target = earlier[-1]
        entry = {
            **{
                k: v
                for k, v in target.items()
                if k not in ("decision", "rolled_back_from", "request_id")
            },
            "deployed_at": utcnow_iso(),
            "reason": reason,
            "rolled_back_from": live["version_id"],
            "request_id": request_id,
        }
        outcome.update(deployed=True, live=entry, reason=reason)
        return _with_entry(campaign, state["solution"], state, entry)

    _update(storage, campaign, change)
    log.info("rolled back", campaign=campaign, version_id=outcome["live"]["version_id"])
    return outcome
