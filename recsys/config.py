"""Settings from the environment, and the named configuration files under ``configs/``.

Environment variables (all optional):

``RECSYS_STORAGE_URL``
    Root of all storage: a local directory (default ``./.recsys-data``) or ``s3://bucket/prefix``.
``RECSYS_S3_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL``)
    S3-compatible endpoint (MinIO, SeaweedFS, ...). Credentials come from the usual AWS
    variables or profile; they are never logged.
``RECSYS_CONFIG_DIR``
    Directory holding ``dataset_groups/``, ``solutions/`` and ``campaigns/`` (default: the
    repository's ``configs/``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys.errors import ConfigError

DEFAULT_STORAGE_URL = ".recsys-data"
_REPO_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def storage_url() -> str:
    return os.environ.get("RECSYS_STORAGE_URL", DEFAULT_STORAGE_URL)


def s3_storage_options() -> dict[str, Any]:
    """fsspec/s3fs options from the environment (endpoint only: credentials stay in botocore)."""
    endpoint = os.environ.get("RECSYS_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
    options: dict[str, Any] = {}
    if endpoint:
        options["client_kwargs"] = {"endpoint_url": endpoint}
    return options


def config_dir() -> Path:
    env = os.environ.get("RECSYS_CONFIG_DIR")
    if env:
        return Path(env)
    if _REPO_CONFIGS.is_dir():
        return _REPO_CONFIGS
    return Path.cwd() / "configs"


def load_config_file(kind: str, name: str) -> dict[str, Any]:
    """Load ``configs/{kind}/{name}.(yaml|yml|json)``."""
    from recsys.config_files import read_config
    from recsys.names import check_name

    check_name(name, f"{kind.rstrip('s').replace('_', ' ')} name")  # never a path outside configs/
    base = config_dir() / kind
    for suffix in (".yaml", ".yml", ".json"):
        path = base / f"{name}{suffix}"
        if path.is_file():
            return read_config(path, kind, name)  # size cap, no aliases, types, names inside
    available = sorted(p.stem for p in base.glob("*")) if base.is_dir() else []
    raise ConfigError(
        f"no {kind} config named {name!r} in {base} (available: {', '.join(available) or 'none'})"
    )


@dataclass(frozen=True)
class SolutionConfig:
    """A solution: recipe + hyperparameters + event filters, for one dataset group."""

    name: str
    dataset_group: str
    recipe: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    event_types: tuple[str, ...] = ()
    event_value_threshold: float | None = None

    @classmethod
    def load(cls, name: str, overrides: dict[str, Any] | None = None) -> SolutionConfig:
        raw = load_config_file("solutions", name)
        try:
            cfg = cls(
                name=name,
                dataset_group=raw["dataset_group"],
                recipe=raw["recipe"],
                hyperparameters=dict(raw.get("hyperparameters") or {}),
                event_types=tuple(raw.get("event_types") or ()),
                event_value_threshold=raw.get("event_value_threshold"),
            )
        except KeyError as exc:
            raise ConfigError(f"solution {name!r}: missing key {exc.args[0]!r}") from exc
        if overrides:
            cfg = cls(**{**cfg.__dict__, **_merge_overrides(cfg, overrides)})
        return cfg

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SolutionConfig:
        """Inverse of :meth:`to_dict` (a version's stored config)."""
        return cls(**{**raw, "event_types": tuple(raw.get("event_types") or ())})

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dataset_group": self.dataset_group,
            "recipe": self.recipe,
            "hyperparameters": dict(self.hyperparameters),
            "event_types": list(self.event_types),
            "event_value_threshold": self.event_value_threshold,
        }


def _merge_overrides(cfg: SolutionConfig, overrides: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    hp = overrides.get("hyperparameters") or {}
    recipe = overrides.get("recipe")
    if recipe and recipe != cfg.recipe:
        # Another recipe: the solution's hyperparameters belong to its own recipe.
        out["recipe"] = recipe
        out["hyperparameters"] = dict(hp)
    elif hp:
        out["hyperparameters"] = {**cfg.hyperparameters, **hp}
    return out


#: Metrics the promotion gate decides on by default (Personalize's names; every one listed
#: must pass, so each added metric makes a deploy harder).
DEFAULT_GATE_METRICS = ("normalized_discounted_cumulative_gain_at_10",)
DEFAULT_GATE_TOLERANCE = 0.05
DEFAULT_GATE_MIN_USERS = 50


@dataclass(frozen=True)
class CampaignConfig:
    """A campaign: which solution it serves, its serving config and its promotion gate.

    ``filter`` (a Personalize filter expression) is parsed when the config is loaded, so a
    malformed one is refused at creation with its position. The promotion gate
    (:func:`recsys.campaigns.promotion_decision`): the challenger must beat popularity-count
    and its paired interval against the live version must stay above
    ``-promotion_tolerance`` × the live version's value (0.05 = 5% worse) on every
    ``promotion_metrics``, on a holdout of at least ``promotion_min_users`` users.
    """

    name: str
    solution: str
    num_results: int = 25
    exploration_weight: float = 0.3
    exploration_item_age_cut_off: float = 30.0
    filter: str | None = None
    exclude_seen: bool = True
    promotion_tolerance: float = DEFAULT_GATE_TOLERANCE
    promotion_metrics: tuple[str, ...] = DEFAULT_GATE_METRICS
    promotion_min_users: int = DEFAULT_GATE_MIN_USERS

    @classmethod
    def load(cls, name: str) -> CampaignConfig:
        raw = load_config_file("campaigns", name)
        if "solution" not in raw:
            raise ConfigError(f"campaign {name!r}: missing key 'solution'")
        cfg = raw.get("config") or {}
        gate = raw.get("promotion") or {}
        return cls.from_dict(
            {
                "name": name,
                "solution": raw["solution"],
                **cfg,
                "promotion_tolerance": gate.get("tolerance", DEFAULT_GATE_TOLERANCE),
                "promotion_metrics": tuple(gate.get("metrics") or DEFAULT_GATE_METRICS),
                "promotion_min_users": gate.get("min_users", DEFAULT_GATE_MIN_USERS),
            }
        )

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CampaignConfig:
        from recsys.filters import Filter

        name = raw["name"]
        num = int(raw.get("num_results", 25))
        if not 1 <= num <= 500:
            raise ConfigError(f"campaign {name!r}: num_results must be 1..500, got {num}")
        weight = float(raw.get("exploration_weight", 0.3))
        if not 0.0 <= weight <= 1.0:
            raise ConfigError(f"campaign {name!r}: exploration_weight must be 0..1, got {weight}")
        cut_off = float(raw.get("exploration_item_age_cut_off", 30.0))
        if cut_off <= 0:
            raise ConfigError(f"campaign {name!r}: exploration_item_age_cut_off must be > 0")
        tolerance = float(raw.get("promotion_tolerance", DEFAULT_GATE_TOLERANCE))
        if not 0.0 <= tolerance < 1.0:
            raise ConfigError(f"campaign {name!r}: promotion tolerance must be in [0, 1)")
        min_users = int(raw.get("promotion_min_users", DEFAULT_GATE_MIN_USERS))
        if min_users < 1:
            raise ConfigError(f"campaign {name!r}: promotion min_users must be >= 1")
        from recsys.evaluation.metrics import METRIC_NAMES

        gate_metrics = tuple(raw.get("promotion_metrics") or DEFAULT_GATE_METRICS)
        unknown = [m for m in gate_metrics if m not in (*METRIC_NAMES, "hit_rate_at_10")]
        if unknown or "coverage" in gate_metrics:
            raise ConfigError(
                f"campaign {name!r}: promotion metrics {unknown or ['coverage']} cannot gate "
                f"(per-user metrics: {[m for m in METRIC_NAMES if m != 'coverage']}, "
                "hit_rate_at_10)"
            )
        expression = raw.get("filter") or None
        if expression is not None:
            Filter.parse(expression)  # FilterError (a ConfigError) with the position
        return cls(
            name=name,
            solution=raw["solution"],
            num_results=num,
            exploration_weight=weight,
            exploration_item_age_cut_off=cut_off,
            filter=expression,
            exclude_seen=bool(raw.get("exclude_seen", True)),
            promotion_tolerance=tolerance,
            promotion_metrics=gate_metrics,
            promotion_min_users=min_users,
        )

    def serving_config(self) -> dict[str, Any]:
        """What a deployment stores with the version (a rollback restores it too)."""
        return {
            "num_results": self.num_results,
            "exploration_weight": self.exploration_weight,
            "exploration_item_age_cut_off": self.exploration_item_age_cut_off,
            "filter": self.filter,
            "exclude_seen": self.exclude_seen,
        }

    def with_serving(self, serving: dict[str, Any]) -> CampaignConfig:
        """This campaign with a deployment's stored serving config."""
        return CampaignConfig.from_dict(
            {
                **self.__dict__,
                **{k: v for k, v in serving.items() if k in self.serving_config()},
            }
        )
