"""Hyperparameter optimisation (Personalize's ``performHPO`` / ``hpoConfig``) with Optuna.

A solution file turns it on and says what to search (Personalize's structure, snake_case)::

    perform_hpo: true
    hpo_config:
      hpo_objective: {type: maximize, metric_name: validation_ndcg_at_10}
      hpo_resource_config: {max_number_of_training_jobs: 8, max_parallel_training_jobs: 2}
      algorithm_hyper_parameter_ranges:
        integer_hyper_parameter_ranges:
          - {name: max_neighbours, min_value: 20, max_value: 300}
        continuous_hyper_parameter_ranges:
          - {name: popularity_discount_factor, min_value: 0.0, max_value: 1.0}
            # scaling: linear (default) | logarithmic
        categorical_hyper_parameter_ranges:
          - {name: recency_mask, values: [true, false]}

Three steps, so Airflow can map the middle one over workers (``recsys_hpo`` DAG):

1. :func:`plan_hpo` creates (or finds) one Optuna **study** in a database, named from the
   (solution, snapshot, logical date, config, code version), and enqueues the solution's own
   hyperparameters as the first trial: the baseline every other trial is compared with.
2. :func:`run_trials` (one call per worker; any number at once) trains trials until the
   study has ``max_number_of_training_jobs`` finished ones. Each trial trains the recipe on
   the snapshot minus each user's newest interaction and scores the objective on those held
   out; its model goes to ``solutions/{s}/hpo/{study}/trials/{n}/`` *before* the trial is
   reported complete. Workers share nothing but the database: the TPE sampler sees every
   finished trial (``constant_liar`` keeps parallel workers from proposing the same point).
   A worker that dies mid-trial stops its heartbeat; once ``trial_heartbeat_seconds`` × 2
   pass, the next worker marks that trial failed and retries its parameters (Optuna's
   ``RetryHeartbeatStaleTrialCallback``), so a killed task resumes the study, never restarts it.
3. :func:`finalize_hpo` copies the best trial's model as the solution version (its
   ``version.json`` records the study, every trial and the gain over the baseline), written
   last like any version. The model is the trial's (trained without each user's newest
   interaction; serving reads histories from the snapshot, so nothing is lost there).

The database: ``database_url`` (the DAG passes Airflow's metadata database, PostgreSQL in
production), else ``RECSYS_HPO_DATABASE_URL``, else SQLite at ``hpo/optuna.db`` under a local
storage root (the embedded default). URLs are logged with the password hidden.

The objective, :func:`validation_ndcg_at_10`, is a deliberately small stand-in (NDCG@10 of
each training user's held-out newest interaction, the user's other items excluded) that the
deploy-decision evaluation (issue 13) can replace: :data:`OBJECTIVES` maps metric names to
functions ``(recipe, split) -> float``.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from recsys import __version__
from recsys.config import SolutionConfig, load_config_file
from recsys.data.dataset import Dataset
from recsys.errors import ConfigError, NotFoundError
from recsys.ids import as_utc, stamped_id, utcnow_iso
from recsys.logs import get_logger
from recsys.recipes import TrainingOptions, get_recipe, load_model
from recsys.storage import Storage
from recsys.training import load_training_data, version_prefix

log = get_logger(__name__)
MAX_TRIALS = 200
KINDS = {"integer": "integer", "continuous": "continuous", "categorical": "categorical"}


# -- the objective ---------------------------------------------------------------------------
@dataclass
class HoldoutSplit:
    """Training data without each user's newest interaction, and those interactions."""

    train: Dataset
    users: np.ndarray  # user indices with a held-out item
    targets: np.ndarray  # the held-out item per user


def holdout_newest(data: Dataset) -> HoldoutSplit:
    """Each user with at least 2 interactions loses the newest (time order, ties file order)."""
    codes = data.user_codes
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=data.n_users)
    ends = np.cumsum(counts)
    from_end = np.empty(len(codes), np.int64)
    from_end[order] = ends[codes[order]] - 1 - np.arange(len(codes))
    held = (counts[codes] >= 2) & (from_end == 0)
    targets = np.full(data.n_users, -1, np.int64)
    targets[codes[held]] = data.item_codes[held]
    users = np.flatnonzero(targets >= 0)
    return HoldoutSplit(data.subset(~held), users, targets[users])


def validation_ndcg_at_10(recipe, split: HoldoutSplit) -> float:
    """Mean NDCG@10 of the held-out item over the split's users (ties: expected rank)."""
    from recsys.evaluation.loo import rank_metrics

    if len(split.users) == 0:
        raise ConfigError("hpo: no user has 2 interactions: nothing to validate on")
    hist = split.train.user_histories()
    values = []
    for a in range(0, len(split.users), 256):
        us = split.users[a : a + 256]
        h = [hist[u] for u in us]
        scores = np.asarray(recipe.score(us, h), np.float64)
        values.append(rank_metrics(scores, split.targets[a : a + 256], h, ks=(10,))["NDCG@10"])
    return float(np.concatenate(values).mean())


OBJECTIVES: dict[str, Callable[[Any, HoldoutSplit], float]] = {
    "validation_ndcg_at_10": validation_ndcg_at_10,
}


# -- the config ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Range:
    name: str
    kind: str  # integer | continuous | categorical
    low: float | None = None
    high: float | None = None
    values: tuple[Any, ...] = ()
    log: bool = False

    def suggest(self, trial) -> Any:
        if self.kind == "integer":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        if self.kind == "continuous":
            return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)
        return trial.suggest_categorical(self.name, list(self.values))


@dataclass(frozen=True)
class HpoConfig:
    ranges: tuple[Range, ...]
    metric: str = "validation_ndcg_at_10"
    direction: str = "maximize"
    max_trials: int = 8
    max_parallel: int = 2
    seed: int = 0
    trial_heartbeat_seconds: int = 60
    max_retry: int = 2
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Any, recipe: str, where: str = "hpo_config") -> HpoConfig:
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping")
        known = {
            "hpo_objective",
            "hpo_resource_config",
            "algorithm_hyper_parameter_ranges",
            "seed",
            "trial_heartbeat_seconds",
            "max_retry",
        }
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        obj = raw.get("hpo_objective") or {}
        metric = str(obj.get("metric_name", "validation_ndcg_at_10"))
        if metric not in OBJECTIVES:
            raise ConfigError(
                f"{where}.hpo_objective.metric_name: unknown metric {metric!r} "
                f"(available: {', '.join(OBJECTIVES)})"
            )
        direction = str(obj.get("type", "maximize")).lower()
        if direction not in ("maximize", "minimize"):
            raise ConfigError(f"{where}.hpo_objective.type must be Maximize or Minimize")
        res = raw.get("hpo_resource_config") or {}
        max_trials = _int(
            res.get("max_number_of_training_jobs", 8), f"{where}.max_number_of_training_jobs"
        )
        parallel = _int(
            res.get("max_parallel_training_jobs", 2), f"{where}.max_parallel_training_jobs"
        )
        if not 1 <= max_trials <= MAX_TRIALS:
            raise ConfigError(f"{where}: max_number_of_training_jobs must be 1..{MAX_TRIALS}")
        if not 1 <= parallel <= max_trials:
            raise ConfigError(
                f"{where}: max_parallel_training_jobs must be 1..max_number_of_training_jobs"
            )
        ranges = _ranges(raw.get("algorithm_hyper_parameter_ranges"), recipe, where)
        heartbeat = _int(raw.get("trial_heartbeat_seconds", 60), f"{where}.trial_heartbeat_seconds")
        if heartbeat < 1:
            raise ConfigError(f"{where}.trial_heartbeat_seconds must be >= 1")
        return cls(
            ranges=ranges,
            metric=metric,
            direction=direction,
            max_trials=max_trials,
            max_parallel=parallel,
            seed=_int(raw.get("seed", 0), f"{where}.seed"),
            trial_heartbeat_seconds=heartbeat,
            max_retry=_int(raw.get("max_retry", 2), f"{where}.max_retry"),
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ranges"] = [asdict(r) | {"values": list(r.values)} for r in self.ranges]
        out.pop("extra")
        return out


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    return int(value)


def _ranges(raw: Any, recipe: str, where: str) -> tuple[Range, ...]:
    defaults = get_recipe(recipe).defaults
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}.algorithm_hyper_parameter_ranges: give at least one range")
    out: list[Range] = []
    for key, items in raw.items():
        kind = key.removesuffix("_hyper_parameter_ranges")
        if kind not in KINDS or not key.endswith("_hyper_parameter_ranges"):
            raise ConfigError(
                f"{where}.algorithm_hyper_parameter_ranges: unknown key {key!r} (integer_, "
                "continuous_ or categorical_hyper_parameter_ranges)"
            )
        if not isinstance(items, list):
            raise ConfigError(f"{where}.{key}: expected a list of ranges")
        for i, r in enumerate(items):
            at = f"{where}.{key}[{i}]"
            if not isinstance(r, dict) or "name" not in r:
                raise ConfigError(f"{at}: a range needs a name")
            name = r["name"]
            if name not in defaults:
                raise ConfigError(
                    f"{at}: recipe {recipe} has no hyperparameter {name!r} "
                    f"(known: {sorted(defaults)})"
                )
            if any(x.name == name for x in out):
                raise ConfigError(f"{at}: {name!r} has two ranges")
            if kind == "categorical":
                values = r.get("values")
                if not isinstance(values, list) or not values:
                    raise ConfigError(f"{at}: a categorical range needs a non-empty values list")
                out.append(Range(name, kind, values=tuple(values)))
                continue
            lo, hi = r.get("min_value"), r.get("max_value")
            if kind == "integer":
                lo, hi = _int(lo, f"{at}.min_value"), _int(hi, f"{at}.max_value")
            elif not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lo, hi)):
                raise ConfigError(f"{at}: min_value and max_value must be numbers")
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ConfigError(f"{at}: min_value must be < max_value, got {lo} and {hi}")
            scaling = str(r.get("scaling", "linear")).lower()
            if scaling not in ("linear", "logarithmic", "auto"):
                raise ConfigError(f"{at}.scaling must be linear or logarithmic")
            log_scale = scaling == "logarithmic"
            if log_scale and lo <= 0:
                raise ConfigError(f"{at}: logarithmic scaling needs min_value > 0")
            out.append(Range(name, kind, float(lo), float(hi), log=log_scale))
    return tuple(out)


def load_hpo(solution: str) -> HpoConfig | None:
    """The solution file's HPO config when ``perform_hpo`` is true, else None."""
    raw = load_config_file("solutions", solution)
    if not raw.get("perform_hpo"):
        return None
    return HpoConfig.from_dict(
        raw.get("hpo_config") or {}, raw["recipe"], f"solution {solution!r}: hpo_config"
    )


# -- the study -------------------------------------------------------------------------------
def database_url(storage: Storage, explicit: str | None = None) -> str:
    url = explicit or os.environ.get("RECSYS_HPO_DATABASE_URL")
    if url:
        return url
    if storage.protocol != "file":
        raise ConfigError(
            "hpo: storage is not local, so the embedded SQLite study has no home: set "
            "RECSYS_HPO_DATABASE_URL (or run it from Airflow, which passes its database)"
        )
    path = storage.path("hpo/optuna.db")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return f"sqlite:///{os.path.abspath(path)}"


def safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def study_name(solution: SolutionConfig, hpo: HpoConfig, snapshot_id: str, logical_date: Any):
    iso = as_utc(logical_date).isoformat()
    digest = stamped_id(iso, snapshot_id, solution.to_dict(), hpo.to_dict(), __version__)
    return f"recsys-{solution.name}-{digest}"


def _open_study(name: str, url: str, hpo: HpoConfig, create: bool, worker: int = 0):
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # heartbeats and their retry callback are "experimental" in Optuna (stable since 2.8)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    engine_kwargs = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 60}
    db = RDBStorage(
        url,
        engine_kwargs=engine_kwargs,
        heartbeat_interval=hpo.trial_heartbeat_seconds,
        grace_period=2 * hpo.trial_heartbeat_seconds,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=hpo.max_retry),
    )
    # one seed per worker: the same seed would make parallel workers draw the same random
    # start-up points
    sampler = optuna.samplers.TPESampler(
        seed=hpo.seed * 1000 + worker,
        n_startup_trials=max(2, hpo.max_trials // 3),
        constant_liar=True,
    )
    if create:
        return optuna.create_study(
            storage=db,
            study_name=name,
            direction=hpo.direction,
            sampler=sampler,
            load_if_exists=True,
        )
    try:
        return optuna.load_study(storage=db, study_name=name, sampler=sampler)
    except KeyError:
        raise NotFoundError(
            f"hpo study {name!r} not found in {safe_url(url)}: plan it first"
        ) from None


def hpo_prefix(solution: str, name: str) -> str:
    return f"solutions/{solution}/hpo/{name}"


def _context(storage, solution, snapshot_id, logical_date, url):
    cfg = SolutionConfig.load(solution)
    hpo = load_hpo(solution)
    if hpo is None:
        raise ConfigError(f"solution {solution!r}: perform_hpo is not true")
    return cfg, hpo, study_name(cfg, hpo, snapshot_id, logical_date), database_url(storage, url)


def plan_hpo(
    storage: Storage,
    solution: str,
    snapshot_id: str,
    logical_date: Any,
    url: str | None = None,
) -> dict[str, Any]:
    """Create (or find) the study; the solution's own hyperparameters are its first trial."""
    cfg, hpo, name, url = _context(storage, solution, snapshot_id, logical_date, url)
    study = _open_study(name, url, hpo, create=True)
    if not study.trials:
        defaults = {**get_recipe(cfg.recipe).defaults, **cfg.hyperparameters}
        baseline = {r.name: _coerce(r, defaults[r.name]) for r in hpo.ranges}
        study.enqueue_trial(baseline, user_attrs={"baseline": True})
    log.info("hpo study ready", study=name, database=safe_url(url), trials=len(study.trials))
    return {
        "solution": solution,
        "snapshot_id": snapshot_id,
        "logical_date": as_utc(logical_date).isoformat(),
        "study": name,
        "max_trials": hpo.max_trials,
        "workers": list(range(hpo.max_parallel)),
    }


def _coerce(r: Range, value: Any) -> Any:
    """The solution's value as a point of the range (clipped into it)."""
    if r.kind == "categorical":
        return value if value in r.values else r.values[0]
    v = min(max(float(value), r.low), r.high)
    return int(round(v)) if r.kind == "integer" else v


def _counts(study) -> tuple[int, int]:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    done = sum(t.state == TrialState.COMPLETE for t in trials)
    running = sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    return done, running


def train_trial(recipe: str, hp: dict[str, Any], split: HoldoutSplit, metric: str, seed: int):
    """Train one trial's model and score it: (recipe object, objective value, seconds)."""
    started = time.perf_counter()
    model = get_recipe(recipe)(**hp).fit(split.train, TrainingOptions(seed=seed))
    value = OBJECTIVES[metric](model, split)
    return model, value, time.perf_counter() - started


def run_trials(
    storage: Storage,
    solution: str,
    snapshot_id: str,
    logical_date: Any,
    worker: int = 0,
    url: str | None = None,
    seed: int = 42,
) -> dict[str, Any]:
    """Train trials until the study has ``max_number_of_training_jobs`` complete ones."""
    from optuna.storages import fail_stale_trials

    cfg, hpo, name, url = _context(storage, solution, snapshot_id, logical_date, url)
    study = _open_study(name, url, hpo, create=False, worker=worker)
    data = load_training_data(storage, cfg, snapshot_id)
    split = holdout_newest(data)
    prefix = hpo_prefix(solution, name)
    mine: list[int] = []

    def objective(trial) -> float:
        hp = {**cfg.hyperparameters, **{r.name: r.suggest(trial) for r in hpo.ranges}}
        trial.set_user_attr("worker", worker)
        model, value, seconds = module_train_trial(cfg.recipe, hp, split, hpo.metric, seed)
        key = f"{prefix}/trials/{trial.number:04d}"
        model.save(storage, key, extra={"trial": trial.number, hpo.metric: value})
        trial.set_user_attr("model_prefix", key)
        trial.set_user_attr("hyperparameters", hp)
        trial.set_user_attr("seconds", round(seconds, 3))
        mine.append(trial.number)
        log.info("hpo trial", study=name, trial=trial.number, worker=worker, value=value)
        return value

    while True:
        done, running = _counts(study)
        if done >= hpo.max_trials:
            break
        if done + running >= hpo.max_trials and not _has_waiting(study):
            # every remaining trial is running elsewhere: wait for them, or for a stale one
            # (a dead worker) to be failed and retried
            fail_stale_trials(study)
            time.sleep(min(5.0, hpo.trial_heartbeat_seconds / 2))
            continue
        study.optimize(objective, n_trials=1, catch=())
    done, _ = _counts(study)
    return {"study": name, "worker": worker, "trials": mine, "complete": done}


def _has_waiting(study) -> bool:
    from optuna.trial import TrialState

    return any(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False))


def module_train_trial(*args):
    """Indirection so tests can replace the training of a trial in a worker process."""
    return train_trial(*args)


def finalize_hpo(
    storage: Storage,
    solution: str,
    snapshot_id: str,
    logical_date: Any,
    url: str | None = None,
    seed: int = 42,
) -> dict[str, Any]:
    """The best trial's model becomes the solution version (``version.json`` last)."""
    from optuna.trial import TrialState

    cfg, hpo, name, url = _context(storage, solution, snapshot_id, logical_date, url)
    iso = as_utc(logical_date).isoformat()
    version_id = stamped_id(
        iso, snapshot_id, cfg.to_dict(), "FULL", seed, __version__, "hpo", hpo.to_dict()
    )
    prefix = version_prefix(solution, version_id)
    if storage.exists(f"{prefix}/version.json"):
        log.info("hpo version already complete: reusing it", version_id=version_id)
        return storage.read_json(f"{prefix}/version.json")
    study = _open_study(name, url, hpo, create=False)
    trials = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not trials:
        raise NotFoundError(f"hpo study {name}: no complete trial; run the trials first")
    best = study.best_trial
    baseline = next((t for t in trials if t.user_attrs.get("baseline")), None)
    model, _ = load_model(storage, best.user_attrs["model_prefix"])
    model.save(storage, prefix)
    hp = best.user_attrs["hyperparameters"]
    version = {
        "version_id": version_id,
        "solution": solution,
        "solution_config": {**cfg.to_dict(), "hyperparameters": hp},
        "recipe": cfg.recipe,
        "dataset_group": cfg.dataset_group,
        "snapshot_id": snapshot_id,
        "training_mode": "FULL",
        "warm_started_from": None,
        "logical_date": iso,
        "seed": seed,
        "n_items": int(len(model.item_ids)),
        "n_users": int(len(model.user_ids)),
        "hpo": {
            "study": name,
            "database": safe_url(url),
            "metric": hpo.metric,
            "direction": hpo.direction,
            "best_trial": best.number,
            "best_value": best.value,
            "best_hyperparameters": hp,
            "baseline_value": baseline.value if baseline else None,
            "gain_over_baseline": (best.value - baseline.value) if baseline else None,
            "trials": [
                {
                    "number": t.number,
                    "value": t.value,
                    "params": t.params,
                    "worker": t.user_attrs.get("worker"),
                    "seconds": t.user_attrs.get("seconds"),
                }
                for t in trials
            ],
            "failed_trials": sum(
                t.state == TrialState.FAIL for t in study.get_trials(deepcopy=False)
            ),
            "model_prefix": best.user_attrs["model_prefix"],
        },
        "created_at": utcnow_iso(),
        "code_version": __version__,
    }
    storage.write_json(f"{prefix}/version.json", version)
    log.info(
        "hpo version written",
        version_id=version_id,
        best_trial=best.number,
        best_value=best.value,
        gain=version["hpo"]["gain_over_baseline"],
    )
    return version


def run_hpo(
    storage: Storage,
    solution: str,
    snapshot_id: str,
    logical_date: Any,
    url: str | None = None,
    seed: int = 42,
) -> dict[str, Any]:
    """Plan, every trial in this process, finalize (the CLI's ``recsys hpo``)."""
    plan_hpo(storage, solution, snapshot_id, logical_date, url)
    run_trials(storage, solution, snapshot_id, logical_date, 0, url, seed)
    version = finalize_hpo(storage, solution, snapshot_id, logical_date, url, seed)
    return {
        "solution": solution,
        "version_id": version["version_id"],
        "hpo": {k: v for k, v in version["hpo"].items() if k != "trials"},
    }


def plan_for_campaign(
    storage: Storage,
    campaign: str,
    logical_date: Any,
    snapshot_id: str | None = None,
    url: str | None = None,
    perform: bool | None = None,
) -> dict[str, Any]:
    """The ``recsys_hpo`` DAG's first task: the campaign's solution on ``snapshot_id`` (default:
    the newest validated snapshot). ``perform`` overrides the file's ``perform_hpo``; off, the
    plan is ``{"skipped": True, "reason"}``."""
    from recsys.config import CampaignConfig
    from recsys.data.imports import latest_validated_snapshot

    solution = CampaignConfig.load(campaign).solution
    cfg = SolutionConfig.load(solution)
    enabled = load_hpo(solution) is not None if perform is None else bool(perform)
    if not enabled:
        return {"skipped": True, "reason": f"perform_hpo is off for solution {solution!r}"}
    if perform and load_hpo(solution) is None:
        raise ConfigError(
            f"solution {solution!r}: perform_hpo asked for, but the file has no "
            "perform_hpo: true with an hpo_config"
        )
    snapshot_id = snapshot_id or latest_validated_snapshot(storage, cfg.dataset_group)
    if snapshot_id is None:
        raise NotFoundError(f"dataset group {cfg.dataset_group!r} has no validated snapshot")
    return {"skipped": False, **plan_hpo(storage, solution, snapshot_id, logical_date, url)}
