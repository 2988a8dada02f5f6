"""Solution versions: train a solution's recipe on a snapshot and store the artifact.

``solutions/{solution}/versions/{version_id}/`` holds the model files, ``version.json`` (written
last: the version is complete once it exists) and later ``metrics.json`` from evaluation.

One training a night: the recipe is fitted on the training part of the nightly's decision
holdout (:mod:`recsys.evaluation.holdout`; early stopping and the budget apply there), that
model is kept under ``evaluated/`` for the evaluation to score, and then the recipe is brought
to the whole snapshot by :meth:`~recsys.recipes.base.Recipe.refit` (closed-form recipes
refit; user-personalization may continue from its best weights for ``final_epochs``, by
default 0: the served model is then the evaluated one). ``version.json`` records both stops
and the holdout it used.

The version id is ``{logical date}-{digest of snapshot, solution config, mode, code version}``:
a rerun with the same inputs finds the complete version and does not train again.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from recsys import __version__
from recsys.config import SolutionConfig
from recsys.data.dataset import Dataset
from recsys.errors import DataError, NotFoundError
from recsys.ids import stamped_id, utcnow_iso
from recsys.logs import get_logger
from recsys.names import check_name
from recsys.recipes import TrainingOptions, get_recipe, load_model
from recsys.storage import Storage

log = get_logger(__name__)
TRAINING_MODES = ("FULL", "UPDATE")


def versions_prefix(solution: str) -> str:
    return f"solutions/{check_name(solution, 'solution')}/versions"


def version_prefix(solution: str, version_id: str) -> str:
    return f"{versions_prefix(solution)}/{check_name(version_id, 'version id')}"


def metrics_key(solution: str, version_id: str) -> str:
    """The version's evaluation (:mod:`recsys.evaluation.run`), written once."""
    return f"{version_prefix(solution, version_id)}/metrics.json"


def evaluated_prefix(solution: str, version_id: str) -> str:
    """The model fitted on the holdout's training part: what the evaluation scores."""
    return f"{version_prefix(solution, version_id)}/evaluated"


def revision_prefix(solution: str, version_id: str, revision_id: str) -> str:
    """A revision (2-hourly update) of a version: the version's model plus new items."""
    return (
        f"{version_prefix(solution, version_id)}/revisions/{check_name(revision_id, 'revision id')}"
    )


def model_prefix(solution: str, version_id: str, revision_id: str | None = None) -> str:
    """Where the model served for (version, revision) lives."""
    if revision_id:
        return revision_prefix(solution, version_id, revision_id)
    return version_prefix(solution, version_id)


def read_version(storage: Storage, solution: str, version_id: str) -> dict[str, Any]:
    key = f"{version_prefix(solution, version_id)}/version.json"
    if not storage.exists(key):
        raise NotFoundError(f"solution version {solution}/{version_id} not found (no {key})")
    return storage.read_json(key)


def list_versions(storage: Storage, solution: str) -> list[str]:
    return storage.list_versions(versions_prefix(solution), marker="version.json")


def previous_version(storage: Storage, solution: str, before: str) -> str | None:
    """The newest complete version of ``solution`` older than ``before`` (by date stamp)."""
    older = [v for v in list_versions(storage, solution) if v[:15] < before[:15]]
    return older[-1] if older else None


def load_training_data(storage: Storage, solution: SolutionConfig, snapshot_id: str) -> Dataset:
    # No recipe reads IMPRESSION, and at scale it is the biggest column: leave it on disk.
    data = Dataset.load(
        storage, solution.dataset_group, snapshot_id, exclude_columns=("IMPRESSION",)
    )
    return data.filter_events(solution.event_types, solution.event_value_threshold)


def train_solution_version(
    storage: Storage,
    solution: SolutionConfig,
    snapshot_id: str,
    logical_date: str,
    training_mode: str = "FULL",
    options: TrainingOptions | None = None,
    champion: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train (or reuse) the solution version for this snapshot and logical date.

    ``champion`` (the live deployment, with its ``cutoff``: the newest TIMESTAMP it trained
    on) decides the holdout: only what users did after it counts as truth. The version id
    does not depend on it, so a rerun reuses the complete version with its recorded holdout.
    """
    from recsys.evaluation.holdout import data_cutoff, decision_split

    options = options or TrainingOptions()
    training_mode = training_mode.upper()
    if training_mode not in TRAINING_MODES:
        raise DataError(f"trainingMode must be FULL or UPDATE, got {training_mode!r}")
    recipe_cls = get_recipe(solution.recipe)
    version_id = stamped_id(
        logical_date, snapshot_id, solution.to_dict(), training_mode, options.seed, __version__
    )
    prefix = version_prefix(solution.name, version_id)
    if storage.exists(f"{prefix}/version.json"):
        log.info("solution version already complete: reusing it", version_id=version_id)
        return storage.read_json(f"{prefix}/version.json")

    data = load_training_data(storage, solution, snapshot_id)
    recipe = recipe_cls(**solution.hyperparameters)
    warm_from = None
    if training_mode == "UPDATE":
        warm_from = previous_version(storage, solution.name, before=version_id)
        if warm_from is None:
            log.warning("UPDATE without an earlier version: training from scratch")
        else:
            previous, _ = load_model(storage, version_prefix(solution.name, warm_from))
            options = replace(options, previous=previous)
    started = time.perf_counter()
    cutoff = (champion or {}).get("cutoff")
    train_part, holdout = decision_split(data, cutoff=cutoff, seed=options.seed)
    if len(holdout.users):
        recipe.fit(train_part, options)
        fit_report = recipe.training_report()
        recipe.save(storage, evaluated_prefix(solution.name, version_id))
        recipe.refit(data, options)
        final_report = recipe.training_report()
    else:  # nothing to hold out: the one fit is on everything, the evaluation will say so
        recipe.fit(data, options)
        fit_report = final_report = recipe.training_report()
    seconds = time.perf_counter() - started
    recipe.save(storage, prefix)
    version = {
        "version_id": version_id,
        "solution": solution.name,
        "solution_config": solution.to_dict(),
        "recipe": solution.recipe,
        "dataset_group": solution.dataset_group,
        "snapshot_id": snapshot_id,
        "training_mode": training_mode,
        "warm_started_from": warm_from,
        "logical_date": logical_date,
        "seed": options.seed,
        "training_interactions": int(len(data.interactions)),
        "n_items": int(data.n_items),
        "n_users": int(data.n_users),
        "training_seconds": round(seconds, 3),
        "training": fit_report,
        "final_training": final_report if len(holdout.users) else None,
        "data_cutoff": data_cutoff(data),
        "holdout": {
            **holdout.describe(),
            "champion": {k: v for k, v in (champion or {}).items() if k != "cutoff"} or None,
        },
        "created_at": utcnow_iso(),
        "code_version": __version__,
    }
    storage.write_json(f"{prefix}/version.json", version)
    log.info(
        "trained solution version",
        version_id=version_id,
        recipe=solution.recipe,
        interactions=version["training_interactions"],
        seconds=version["training_seconds"],
        stop_reason=fit_report.get("stop_reason"),
        still_rising=fit_report.get("validation_still_rising"),
    )
    if fit_report.get("validation_still_rising"):
        log.warning(
            "training stopped while validation was still rising: a larger budget would "
            "probably pay (max_training_minutes / epochs)",
            version_id=version_id,
            stop_reason=fit_report.get("stop_reason"),
        )
    return version
