"""Campaigns: which solution version is live, with what config, and the history of deploys.

``campaigns/{campaign}.json`` is one pointer object, written whole and last, so a reader sees
the old or the new deployment, never a mix. Every change (deploy, rollback) is a
read-modify-write under the campaign's storage lock (:mod:`recsys.locks`), so concurrent
deploys cannot interleave and no history entry is lost.

* :func:`promotion_decision`: the nightly gate: deploy only if validation passed, the new
  version beats popularity-count and is not worse than the live version beyond the tolerance,
  each judged by a paired per-user interval on one holdout; ``force``/``block`` override it.
  :func:`promote` applies it and stores the decision under ``campaigns/{campaign}/decisions/``.
* :func:`deploy`: point the campaign at a version (idempotent: the live version again adds no
  entry); a version from an older logical date than the live one (a backfill) needs ``force``.
* :func:`rollback`: make an earlier deployment live again, with the serving config it had.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from recsys.config import (
    DEFAULT_GATE_METRICS,
    DEFAULT_GATE_MIN_USERS,
    DEFAULT_GATE_TOLERANCE,
    CampaignConfig,
)
from recsys.errors import DataError, NotFoundError
from recsys.ids import date_stamp, utcnow_iso
from recsys.locks import storage_lock
from recsys.logs import get_logger
from recsys.names import check_name
from recsys.storage import Storage
from recsys.training import metrics_key, read_version

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
    key = metrics_key(solution, version_id)
    return storage.read_json(key)["metrics"] if storage.exists(key) else None


def _fmt(d: dict[str, Any]) -> str:
    return f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"


def promotion_decision(
    evaluation: dict[str, Any] | None,
    live: dict[str, Any] | None,
    *,
    validation_passed: bool,
    mode: str = "auto",
    tolerance: float = DEFAULT_GATE_TOLERANCE,
    metrics: tuple[str, ...] | list[str] = DEFAULT_GATE_METRICS,
    min_users: int = DEFAULT_GATE_MIN_USERS,
    same_as_live: bool = False,
) -> dict[str, Any]:
    """Whether to deploy, why, and every number the decision used.

    ``evaluation`` is the version's ``metrics.json`` (:mod:`recsys.evaluation.run`: challenger,
    champion and baseline served on one holdout, with paired per-user 95% intervals);
    ``live`` the campaign's live entry (None: first deployment). In ``auto`` mode, on every
    gate metric:

    * **baseline**: the interval of challenger − popularity-count lies above 0 (a
      popularity-count challenger *is* the baseline: the condition does not apply);
    * **champion** (when something is live): the interval of challenger − champion stays
      above ``-tolerance × champion`` (non-inferiority: evidence that it is not worse by more
      than the tolerance; equal rankings give a 0 difference and pass);
    * the holdout has at least ``min_users`` users (fewer is no evidence).

    ``same_as_live``: the new version trained the live version's solution config, seed and
    data (equal models: nothing happened since, so there is no holdout either): it deploys,
    the newer of two equal models (a rerun on another day, or a nightly after a backfill).

    ``force`` deploys whatever the numbers say (not over a failed validation); ``block`` never.
    """
    if mode not in GATE_MODES:
        raise DataError(f"deploy mode must be one of {GATE_MODES}, got {mode!r}")
    evaluation = evaluation or {}
    arms = evaluation.get("arms") or {}
    pairs = evaluation.get("paired") or {}
    challenger = arms.get("challenger")
    champion = arms.get("champion")
    n = int(challenger["n"]) if challenger else 0
    checks: list[dict[str, Any]] = []
    is_baseline = bool(challenger) and challenger.get("recipe") == "popularity-count"
    if challenger and not is_baseline:
        for m in metrics:
            d = pairs.get("challenger_minus_baseline", {}).get(m)
            checks.append(
                {
                    "condition": "beats popularity-count",
                    "metric": m,
                    "challenger": challenger["metrics"][m],
                    "other": arms["baseline"]["metrics"][m],
                    "difference": d,
                    "threshold": 0.0,
                    "ok": d is not None and d["low"] > 0.0,
                }
            )
    champion_matches = (
        live is not None
        and champion is not None
        and (champion.get("version_id"), champion.get("revision"))
        == (live["version_id"], live.get("revision"))
    )
    if champion_matches and challenger:
        for m in metrics:
            d = pairs.get("challenger_minus_champion", {}).get(m)
            floor = -tolerance * abs(champion["metrics"][m]["mean"])
            checks.append(
                {
                    "condition": "not worse than the live version",
                    "metric": m,
                    "challenger": challenger["metrics"][m],
                    "other": champion["metrics"][m],
                    "difference": d,
                    "threshold": round(floor, 6),
                    "ok": d is not None and d["low"] >= floor,
                }
            )
    failed = [c for c in checks if not c["ok"]]
    if mode == "block":
        deploy, reason = False, "blocked by the deploy param"
    elif not validation_passed:
        deploy, reason = False, "validation did not pass"
    elif mode == "force":
        deploy, reason = True, "forced by the deploy param"
    elif same_as_live and live is not None:
        deploy, reason = (
            True,
            "equal models: the same solution config, seed and data as the live version "
            f"{live['version_id']}; the newer one deploys",
        )
    elif not challenger:
        why = evaluation.get("reason") or "not evaluated"
        deploy, reason = False, f"no evidence: the new version has no evaluation ({why})"
    elif n < min_users:
        since = " that acted since the live version was trained" if live else ""
        deploy, reason = (
            False,
            f"no evidence: the holdout has {n} users{since}, fewer than min_users "
            f"{min_users}; the deploy param can force it",
        )
    elif live is not None and not champion_matches:
        scored = f"{champion['version_id']}" if champion else "no live version"
        deploy, reason = (
            False,
            f"the evaluation scored {scored}, but {live['version_id']} is live now: "
            "evaluate again against it, or force",
        )
    elif failed:
        c = failed[0]
        if c["difference"] is None:
            deploy, reason = False, f"no paired comparison for {c['metric']}"
        else:
            deploy, reason = (
                False,
                f"{c['condition']} not shown on {c['metric']}: challenger − other "
                f"{_fmt(c['difference'])} (n={n}) is not above {c['threshold']:+.4f}",
            )
    else:
        parts = [
            f"{c['condition']} on {c['metric']}: {_fmt(c['difference'])} (n={n})" for c in checks
        ]
        if is_baseline:
            parts.insert(0, "the challenger is popularity-count itself (no baseline test)")
        if live is None:
            parts.insert(0, "first deployment")
        deploy, reason = True, "; ".join(parts)
    return {
        "deploy": deploy,
        "reason": reason,
        "mode": mode,
        "tolerance": tolerance,
        "min_users": min_users,
        "holdout_users": n,
        "checks": checks,
    }


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
            extra["decision"] = {k: decision[k] for k in ("reason", "mode", "checks")}
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
    under ``campaigns/{campaign}/decisions/`` (write-once: a rerun adds its own record beside
    the first), and deploy when it says so. A version that is already live is not decided
    again."""
    version = read_version(storage, campaign.solution, version_id)
    key = metrics_key(campaign.solution, version_id)
    evaluation = storage.read_json(key) if storage.exists(key) else None
    outcome: dict[str, Any] = {}

    def same_as(live: dict[str, Any]) -> bool:
        """Equal models: the live version trained this config and seed on the same data."""
        if live.get("solution") != campaign.solution:
            return False
        other = read_version(storage, live["solution"], live["version_id"])
        keys = ("solution_config", "seed", "training_mode", "training_interactions")
        cutoff = version.get("data_cutoff")
        same_data = cutoff is not None and other.get("data_cutoff") == cutoff
        return same_data and all(other.get(k) == version.get(k) for k in keys)

    def change(state: dict | None) -> dict | None:
        live = state["live"] if state else None
        if live and live["version_id"] == version_id:
            # (a 2-hourly revision of it counts: it extends this very version)
            outcome.update(deployed=False, live=live, reason="already live")
            return None
        decision = promotion_decision(
            evaluation,
            live,
            validation_passed=validation_passed,
            mode=mode,
            tolerance=campaign.promotion_tolerance,
            metrics=campaign.promotion_metrics,
            min_users=campaign.promotion_min_users,
            same_as_live=bool(live) and same_as(live),
        )
        if mode != "force" and live and live["logical_date"] > logical_date:
            # A backfill never replaces the deployment of a later run (unless forced).
            decision.update(deploy=False, reason="live version is newer")
        decided_at = utcnow_iso()
        record = {
            "campaign": campaign.name,
            "version_id": version_id,
            "live_version_id": live["version_id"] if live else None,
            "logical_date": logical_date,
            "decided_at": decided_at,
            **decision,
        }
        stamp = decided_at.replace("-", "").replace(":", "").replace("+0000", "Z")[:15]
        key = f"{decisions_prefix(campaign.name)}/{date_stamp(logical_date)}-{version_id}"
        n = 0  # write-once: a record is never replaced; a second one that second goes beside
        while not storage.write_json_once(f"{key}-{stamp}{f'-{n}' if n else ''}.json", record):
            n += 1
        outcome["gate"] = record
        log.info(
            "promotion gate",
            campaign=campaign.name,
            version_id=version_id,
            deploy=decision["deploy"],
            reason=decision["reason"],
            holdout_users=decision["holdout_users"],
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
