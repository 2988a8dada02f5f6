"""The nightly lifecycle as plain functions: what the DAG tasks and the CLI both call.

Each stage takes ids and a logical date, reads the previous stage's immutable output, writes
its own, and returns a small JSON-serialisable dict (what Airflow passes through XCom).
"""

from __future__ import annotations

from typing import Any

from recsys import update as updates
from recsys.campaigns import campaign_state, deploy, promote, rollback
from recsys.config import CampaignConfig, SolutionConfig
from recsys.data.imports import run_import
from recsys.evaluation.run import evaluate_solution_version
from recsys.ids import as_utc
from recsys.inference import batch as batch_jobs
from recsys.logs import get_logger
from recsys.recipes import TrainingOptions
from recsys.schema import DatasetGroup
from recsys.storage import Storage
from recsys.training import train_solution_version
from recsys.validation import validate_snapshot

log = get_logger(__name__)


def _iso(logical_date: Any) -> str:
    return as_utc(logical_date).isoformat()


def import_datasets(
    dataset_group: str, logical_date: Any, mode: str = "FULL", storage: Storage | None = None
) -> dict[str, Any]:
    from recsys.data.landing import describe_not_visible, not_yet_visible

    storage = storage or Storage()
    manifest = run_import(storage, dataset_group, logical_date, mode)
    out = {
        "dataset_group": dataset_group,
        "snapshot_id": manifest["snapshot_id"],
        "mode": manifest["mode"],
        "rows": {t: d["rows"] for t, d in manifest["datasets"].items()},
    }
    hidden = not_yet_visible(storage, DatasetGroup.load(dataset_group), logical_date)
    if hidden:  # said, not skipped silently: a drop of the run's own day is for tomorrow
        log.warning("landed drops not visible yet", detail=describe_not_visible(hidden))
        out["not_yet_visible"] = hidden
    return out


def validate(
    dataset_group: str,
    snapshot_id: str,
    solution: str | None = None,
    storage: Storage | None = None,
) -> dict[str, Any]:
    storage = storage or Storage()
    group = DatasetGroup.load(dataset_group)
    event_types: tuple[str, ...] = ()
    threshold = None
    if solution:
        cfg = SolutionConfig.load(solution)
        event_types, threshold = cfg.event_types, cfg.event_value_threshold
    report = validate_snapshot(storage, group, snapshot_id, event_types, threshold)
    return {
        "snapshot_id": snapshot_id,
        "passed": report["passed"],
        "summary": report["summary"],
        "warnings": [
            f"{c['check']}: {c['message']}"
            for c in report["checks"]
            if not c["passed"] and c["severity"] == "warning"
        ],
    }


def train(
    solution: str,
    snapshot_id: str,
    logical_date: Any,
    training_mode: str = "FULL",
    overrides: dict[str, Any] | None = None,
    seed: int = 42,
    storage: Storage | None = None,
    campaign: str | None = None,
) -> dict[str, Any]:
    """Train a version: once, on the training part of the decision holdout, then brought to
    the whole snapshot. With ``campaign``, its live version is the champion whose training
    data the holdout leaves out (only what users did since counts as truth)."""
    from recsys.evaluation.run import champion_of

    storage = storage or Storage()
    cfg = SolutionConfig.load(solution, overrides)
    champion = champion_of(storage, CampaignConfig.load(campaign)) if campaign else None
    version = train_solution_version(
        storage,
        cfg,
        snapshot_id,
        _iso(logical_date),
        training_mode,
        TrainingOptions(seed=seed),
        champion=champion,
    )
    return {
        "solution": solution,
        "version_id": version["version_id"],
        "recipe": cfg.recipe,
        "training": version.get("training"),
    }


def evaluate(campaign: str, version_id: str, storage: Storage | None = None) -> dict[str, Any]:
    """Challenger (this version), champion (live) and popularity-count served on the
    version's holdout, with intervals (``metrics.json``)."""
    storage = storage or Storage()
    camp = CampaignConfig.load(campaign)
    result = evaluate_solution_version(storage, camp, version_id)
    arms = result.get("arms") or {}
    return {
        "solution": camp.solution,
        "version_id": version_id,
        "metrics": result["metrics"],
        "holdout_users": result["holdout"]["users"],
        "ndcg_at_10": {
            role: arm["metrics"]["normalized_discounted_cumulative_gain_at_10"]
            for role, arm in arms.items()
        },
    }


def deploy_campaign(
    campaign: str,
    version_id: str,
    logical_date: Any,
    force: bool = False,
    reason: str = "manual",
    storage: Storage | None = None,
) -> dict[str, Any]:
    """Deploy a version directly (no gate): the CLI's ``deploy``."""
    storage = storage or Storage()
    result = deploy(
        storage,
        CampaignConfig.load(campaign),
        version_id,
        _iso(logical_date),
        force=force,
        reason=reason,
    )
    latest = reconcile_latest(campaign, storage, logical_date, write_batch=result["deployed"])
    return {"campaign": campaign, **result, "latest": latest}


def promote_version(
    campaign: str,
    version_id: str,
    logical_date: Any,
    validation_passed: bool,
    mode: str = "auto",
    storage: Storage | None = None,
) -> dict[str, Any]:
    """The nightly promotion gate (auto / force / block) and, when it passes, the deploy."""
    storage = storage or Storage()
    result = promote(
        storage,
        CampaignConfig.load(campaign),
        version_id,
        _iso(logical_date),
        validation_passed=validation_passed,
        mode=mode,
    )
    return {"campaign": campaign, **result}


def rollback_campaign(
    campaign: str,
    to_version: str | None = None,
    storage: Storage | None = None,
    request_id: str | None = None,
    write_batch: bool = True,
) -> dict[str, Any]:
    """Put an earlier deployment back live (default: the one before the live version), and
    ``latest`` with it: re-pointed at a batch of the restored deployment, or (``write_batch``)
    a new one written here; the rollback DAG writes it sharded instead."""
    storage = storage or Storage()
    out = rollback(storage, campaign, to_version, request_id=request_id)
    latest = reconcile_latest(
        campaign, storage, out["live"]["logical_date"], write_batch=write_batch
    )
    return {"campaign": campaign, **out, "latest": latest}


def reconcile_latest(
    campaign: str, storage: Storage, logical_date: Any, write_batch: bool = True
) -> dict[str, Any]:
    """After a deploy or rollback: ``latest`` serves the live deployment (re-pointed at its
    newest batch; with ``write_batch``, a batch is written when it has none)."""
    from recsys.inference.latest import reconcile_latest as reconcile

    out = reconcile(storage, campaign)
    result = {
        "moved": out["moved"],
        "missing": out["missing"],
        "reason": out["reason"],
        "batch_id": (out["latest"] or {}).get("batch_id"),
    }
    if out["missing"] and write_batch:
        done = batch(campaign, logical_date, storage=storage)
        result.update(
            moved=done["latest_moved"],
            missing=not done["latest_moved"],
            reason="wrote a batch of the live deployment",
            batch_id=done["batch_id"],
            uri=done["uri"],
        )
    return result


def plan_batch(
    campaign: str,
    logical_date: Any,
    version_id: str | None = None,
    num_results: int | None = None,
    shards: int = 1,
    input_key: str | None = None,
    filter_expression: str | None = None,
    filter_values: dict[str, Any] | None = None,
    storage: Storage | None = None,
) -> dict[str, Any]:
    """The batch spec (JSON) that :func:`batch_shard` and :func:`finalize_batch` take."""
    return batch_jobs.plan_batch(
        storage or Storage(),
        CampaignConfig.load(campaign),
        _iso(logical_date),
        version_id=version_id,
        num_results=num_results,
        shards=shards,
        input_key=input_key,
        filter_expression=filter_expression,
        filter_values=filter_values,
    )


def batch_shard(spec: dict[str, Any], shard: int, storage: Storage | None = None) -> dict:
    out = batch_jobs.run_shard(storage or Storage(), spec, shard)
    return {"batch_id": spec["batch_id"], "shard": shard, "lines": out["lines"]}


def finalize_batch(spec: dict[str, Any], storage: Storage | None = None) -> dict[str, Any]:
    storage = storage or Storage()
    manifest = batch_jobs.finalize_batch(storage, spec)
    out = {
        "campaign": spec["campaign"],
        "batch_id": manifest["batch_id"],
        "kind": spec.get("kind", "campaign"),
        "users": manifest["users"],
        "errors": manifest["errors"],
        "uri": storage.uri(spec["prefix"]),
        "manifest": storage.uri(f"{spec['prefix']}/manifest.json"),
        "latest_moved": manifest["latest_moved"],
    }
    log.info("batch output", **{k: out[k] for k in ("batch_id", "kind", "uri", "latest_moved")})
    return out


def batch(
    campaign: str,
    logical_date: Any,
    version_id: str | None = None,
    num_results: int | None = None,
    storage: Storage | None = None,
    shards: int = 1,
    input_key: str | None = None,
    filter_expression: str | None = None,
    filter_values: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Plan, run every shard here, finalize (the CLI's ``batch`` and ``run``)."""
    storage = storage or Storage()
    spec = plan_batch(
        campaign,
        logical_date,
        version_id,
        num_results,
        shards,
        input_key,
        filter_expression,
        filter_values,
        storage,
    )
    for shard in range(spec["shards"]):
        batch_shard(spec, shard, storage)
    return finalize_batch(spec, storage)


def run_nightly(
    campaign: str,
    logical_date: Any,
    mode: str = "FULL",
    storage: Storage | None = None,
    deploy_mode: str = "auto",
) -> dict[str, Any]:
    """import → validate → train → evaluate → deploy → batch, in one process (no Airflow).
    The batch serves what is live after the gate (the new version only when deployed)."""
    storage = storage or Storage()
    camp = CampaignConfig.load(campaign)
    sol = SolutionConfig.load(camp.solution)
    imp = import_datasets(sol.dataset_group, logical_date, mode, storage)
    val = validate(sol.dataset_group, imp["snapshot_id"], sol.name, storage)
    ver = train(sol.name, imp["snapshot_id"], logical_date, storage=storage, campaign=campaign)
    ev = evaluate(campaign, ver["version_id"], storage)
    dep = promote_version(
        campaign, ver["version_id"], logical_date, val["passed"], deploy_mode, storage
    )
    own = dep["deployed"] or dep["reason"] in ("already live", "live version is newer")
    if not own and not dep.get("live"):  # nothing is live: no batch to write (the DAG skips)
        out: dict[str, Any] = {"skipped": True, "reason": f"nothing is live: {dep['reason']}"}
    else:
        out = batch(
            campaign, logical_date, version_id=ver["version_id"] if own else None, storage=storage
        )
    return {"import": imp, "version": ver, "metrics": ev["metrics"], "deploy": dep, "batch": out}


def check_update(campaign: str, logical_date: Any, storage: Storage | None = None) -> dict:
    """Whether the 2-hourly update has anything to do (new landing files, a live campaign)."""
    storage = storage or Storage()
    camp = CampaignConfig.load(campaign)
    sol = SolutionConfig.load(camp.solution)
    out = updates.pending(storage, camp, sol.dataset_group, _iso(logical_date))
    log.info("update check", campaign=campaign, new=out["new"], reason=out["reason"])
    return {"campaign": campaign, "dataset_group": sol.dataset_group, **out}


def update_items(
    campaign: str, snapshot_id: str, logical_date: Any, storage: Storage | None = None
) -> dict[str, Any]:
    """Write (or reuse) the revision of the live version with the snapshot's new items."""
    storage = storage or Storage()
    camp = CampaignConfig.load(campaign)
    rev = updates.build_revision(
        storage, camp, snapshot_id, _iso(logical_date), updates.update_options(campaign)
    )
    return {
        "campaign": campaign,
        "solution": rev["solution"],
        "version_id": rev["version_id"],
        "revision_id": rev["revision_id"],
        "snapshot_id": rev["snapshot_id"],
        "new_items": {k: v for k, v in rev["new_items"].items() if k != "fallback_items"},
        "fallback_items": rev["new_items"].get("fallback_items", [])[:20],
    }


def deploy_update(
    campaign: str,
    version_id: str,
    revision_id: str,
    logical_date: Any,
    storage: Storage | None = None,
) -> dict[str, Any]:
    """The update's gate (the revision loads and scores) and its deploy through the campaign."""
    from recsys.training import revision_prefix

    storage = storage or Storage()
    camp = CampaignConfig.load(campaign)
    rev = storage.read_json(
        f"{revision_prefix(camp.solution, version_id, revision_id)}/revision.json"
    )
    gate = updates.check_revision(storage, rev)
    out = updates.deploy_revision(storage, camp, rev, _iso(logical_date))
    return {"campaign": campaign, "gate": gate, **out}


def refresh_update_batch(
    campaign: str,
    logical_date: Any,
    storage: Storage | None = None,
    enabled: bool | None = None,
) -> dict[str, Any]:
    """After a deployed revision: re-answer the users whose top-k the new items changed most
    and publish a complete new batch output (``update: refresh:`` in the campaign file;
    ``enabled`` overrides its ``enabled``). {"refreshed": False, "reason"} when skipped."""
    from dataclasses import replace

    from recsys.inference.refresh import refresh_batch

    options = updates.refresh_options(campaign)
    if enabled is not None:
        options = replace(options, enabled=bool(enabled))
    if not options.enabled:
        return {"refreshed": False, "reason": "targeted refresh is off (update.refresh.enabled)"}
    return refresh_batch(
        storage or Storage(), CampaignConfig.load(campaign), _iso(logical_date), options
    )


def run_update(
    campaign: str,
    logical_date: Any,
    storage: Storage | None = None,
    refresh_batch: bool = False,
    targeted_refresh: bool | None = None,
) -> dict[str, Any]:
    """check → INCREMENTAL import → validate → revision → gate + deploy [→ batch], no Airflow.

    ``refresh_batch`` rebuilds the whole batch from the revision; otherwise the targeted
    refresh runs when the campaign file (or ``targeted_refresh``) turns it on."""
    storage = storage or Storage()
    check = check_update(campaign, logical_date, storage)
    if not check["new"]:
        return {"skipped": True, "reason": check["reason"]}
    sol = SolutionConfig.load(CampaignConfig.load(campaign).solution)
    imp = import_datasets(sol.dataset_group, logical_date, "INCREMENTAL", storage)
    val = validate(sol.dataset_group, imp["snapshot_id"], sol.name, storage)
    rev = update_items(campaign, imp["snapshot_id"], logical_date, storage)
    dep = deploy_update(campaign, rev["version_id"], rev["revision_id"], logical_date, storage)
    out = {"skipped": False, "import": imp, "validation": val, "revision": rev, "deploy": dep}
    live = dep["deployed"] or dep.get("reason") == "already live"
    if refresh_batch and dep["deployed"]:
        out["batch"] = batch(campaign, logical_date, storage=storage)
    elif live:
        out["refresh"] = refresh_update_batch(campaign, logical_date, storage, targeted_refresh)
    return out


def status(campaign: str, storage: Storage | None = None) -> dict[str, Any]:
    state = campaign_state(storage or Storage(), campaign)
    return {k: v for k, v in state.items() if k != "history"}


def history(campaign: str, storage: Storage | None = None) -> list[dict[str, Any]]:
    return campaign_state(storage or Storage(), campaign)["history"]
