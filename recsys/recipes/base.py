"""The recipe protocol and the model artifact format.

A recipe learns from a :class:`~recsys.data.dataset.Dataset` and scores the catalogue for users
given their histories. Artifacts are safetensors + Parquet vocabularies + a JSON config with a
format version and checksums: nothing is unpickled, and a tampered or incompatible artifact is
refused with :class:`~recsys.errors.ArtifactError`.
"""

from __future__ import annotations

import hashlib
import io
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from recsys.data.dataset import Dataset
from recsys.errors import ArtifactError, ConfigError
from recsys.storage import Storage

if TYPE_CHECKING:
    from recsys.recipes.cold import NewItemOptions

FORMAT_VERSION = 1


@dataclass(frozen=True)
class TrainingOptions:
    """How to train (not what): seed for determinism, device for torch recipes."""

    seed: int = 42
    #: torch recipes: ``auto`` (a CUDA GPU where torch sees one, else the CPU), ``cpu``,
    #: ``cuda`` or ``cuda:N``; the environment's ``RECSYS_DEVICE`` sets the default
    device: str = field(default_factory=lambda: os.environ.get("RECSYS_DEVICE", "auto"))
    #: Stop training after this many seconds (iterative recipes; None = no limit).
    time_budget_s: float | None = None
    #: Called after every epoch as ``on_epoch(recipe, epoch, elapsed_s)``; ``elapsed_s`` and the
    #: time budget leave out the time spent in these calls (benchmarks use it
    #: to measure quality against training time); iterative recipes only.
    on_epoch: Callable[[Recipe, int, float], None] | None = None
    #: Warm start (trainingMode UPDATE): the previous solution version's model, if any.
    previous: Recipe | None = None


class Recipe(ABC):
    """Base class of every recipe."""

    name: ClassVar[str]
    #: Hyperparameter names and defaults (Personalize names where Personalize has them).
    defaults: ClassVar[dict[str, Any]] = {}
    #: True when every user gets the same scores (trending-now): batch serving then answers
    #: cold-start users with the recipe itself instead of the snapshot's popularity.
    user_independent: ClassVar[bool] = False
    #: What :meth:`score` returns, and so what a served score is (``recsys.inference.topk.
    #: Normaliser``): ``softmax``: logits, served as the softmax over the whole catalogue;
    #: ``share``: non-negative masses, served as each item's share of the catalogue's total.
    #: Either way a user's served scores are in [0, 1] and sum to at most 1.
    score_kind: ClassVar[str] = "share"

    def __init__(self, **hyperparameters: Any) -> None:
        unknown = set(hyperparameters) - set(self.defaults)
        if unknown:
            from recsys.errors import ConfigError

            raise ConfigError(
                f"recipe {self.name}: unknown hyperparameters {sorted(unknown)} "
                f"(known: {sorted(self.defaults)})"
            )
        self.hyperparameters = {**self.defaults, **hyperparameters}
        self.item_ids: np.ndarray = np.array([], dtype=object)
        self.user_ids: np.ndarray = np.array([], dtype=object)

    @abstractmethod
    def fit(self, data: Dataset, options: TrainingOptions) -> Recipe:
        """Learn from ``data``; sets ``item_ids`` / ``user_ids`` to the dataset's vocabularies."""

    def refit(self, data: Dataset, options: TrainingOptions) -> Recipe:
        """One training a night: after :meth:`fit` on the evaluation split's training part,
        bring the model to the whole snapshot ``data`` (same vocabularies). Iterative recipes
        continue from their weights for a few epochs; the default fits again, which is right
        for closed-form recipes whose fit costs seconds."""
        return self.fit(data, options)

    def training_report(self) -> dict[str, Any]:
        """Why the last fit stopped (``stop_reason``: early_stop, budget, epochs or
        closed_form), epochs, and whether validation was still rising; JSON-serialisable."""
        return {"stop_reason": "closed_form", "validation_still_rising": False}

    @abstractmethod
    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Scores (len(users) × n_items, float32) for user indices (-1 = unknown user).

        ``histories[i]`` holds user i's item indices in time order (possibly empty).
        """

    def factors(
        self, users: np.ndarray, histories: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
        """Optional fast path: ``(user_vectors, item_matrix, item_bias)`` with
        ``score(users, histories) == user_vectors @ item_matrix.T + item_bias``.

        ``user_vectors``: len(users) × d; ``item_matrix``: n_items × d (the same object on every
        call, so inference prepares it once); ``item_bias``: n_items or None. Inference then
        scores item chunks with a blocked float32 matmul instead of a dense users × items block.
        The default, None, means "use :meth:`score`".
        """
        return None

    def add_items(
        self,
        new_ids: np.ndarray,
        items: pd.DataFrame | None,
        options: NewItemOptions,
        counts: np.ndarray | None = None,
        schema: Any = None,
    ) -> dict[str, Any]:
        """Append ``new_ids`` to the catalogue without retraining (the 2-hourly update),
        leaving every existing item's parameters as they are; returns a report (see
        :func:`recsys.recipes.cold.report`). ``counts``: each new item's interactions in the
        update's snapshot (recipes may use them); ``schema``: the items dataset's
        :class:`~recsys.schema.Schema` (which fields are categorical, textual, numeric), for a
        metadata index when the model has no metadata of its own. Recipes that cannot do it
        raise ConfigError."""
        from recsys.errors import ConfigError

        raise ConfigError(f"recipe {self.name} cannot add items without retraining")

    def refresh(self, data: Dataset) -> dict[str, Any] | None:
        """The 2-hourly update's hook for recipes whose scores are counts over a recent window
        (trending-now): recompute them on the update's snapshot after :meth:`add_items`.
        Returns a report for the revision, or None (the default: nothing to recompute)."""
        return None

    @abstractmethod
    def tensors(self) -> dict[str, np.ndarray]:
        """Learned parameters to save."""

    @abstractmethod
    def load_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        """Restore learned parameters saved by :meth:`tensors`."""

    def state_config(self) -> dict[str, Any]:
        """JSON-serialisable learned state that is not a tensor (vocabularies, shapes)."""
        return {}

    def load_state(self, tensors: dict[str, np.ndarray], state: dict[str, Any]) -> None:
        """Restore from :meth:`tensors` and :meth:`state_config`; default ignores ``state``."""
        self.load_tensors(tensors)

    # -- artifacts -------------------------------------------------------------------------
    def save(self, storage: Storage, prefix: str, extra: dict[str, Any] | None = None) -> dict:
        """Write the artifact under ``prefix``; ``model.json`` last. Returns model.json."""
        files = {
            "model.safetensors": storage.write_tensors(
                f"{prefix}/model.safetensors",
                self.tensors(),
                metadata={"format_version": str(FORMAT_VERSION), "recipe": self.name},
            ),
            "items.parquet": storage.write_parquet(
                f"{prefix}/items.parquet", pd.DataFrame({"ITEM_ID": self.item_ids.astype(str)})
            ),
            "users.parquet": storage.write_parquet(
                f"{prefix}/users.parquet", pd.DataFrame({"USER_ID": self.user_ids.astype(str)})
            ),
        }
        model_json = {
            "format_version": FORMAT_VERSION,
            "recipe": self.name,
            "hyperparameters": self.hyperparameters,
            "n_items": int(len(self.item_ids)),
            "n_users": int(len(self.user_ids)),
            "state": self.state_config(),
            "files": files,
            **(extra or {}),
        }
        storage.write_json(f"{prefix}/model.json", model_json)
        return model_json


def load_model(storage: Storage, prefix: str) -> tuple[Recipe, dict[str, Any]]:
    """Load a saved model; refuse a wrong format version, a checksum mismatch or a malformed
    ``model.json``/file with :class:`ArtifactError` (exit 6)."""
    from recsys.recipes import get_recipe
    from recsys.storage import load_tensors

    where = storage.uri(f"{prefix}/model.json")
    model_json = _model_json(storage.read_bytes(f"{prefix}/model.json"), where)
    version = model_json.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{storage.uri(prefix)}: artifact format version {version!r} is not supported "
            f"(this recsys reads version {FORMAT_VERSION}); retrain or use a matching recsys"
        )
    blobs = {}
    for name, expected in model_json["files"].items():
        data = storage.read_bytes(f"{prefix}/{name}")
        if hashlib.sha256(data).hexdigest() != expected:
            raise ArtifactError(
                f"{storage.uri(prefix + '/' + name)}: checksum mismatch (file changed after "
                "training); refusing to load"
            )
        blobs[name] = data
    missing = {"model.safetensors", "items.parquet", "users.parquet"} - set(blobs)
    if missing:
        raise ArtifactError(f"{where}: 'files' lacks {sorted(missing)}")
    tensors = load_tensors(blobs["model.safetensors"], storage.uri(f"{prefix}/model.safetensors"))
    try:
        recipe = get_recipe(model_json["recipe"])(**model_json["hyperparameters"])
    except ConfigError as exc:
        raise ArtifactError(f"{where}: {exc}") from exc
    try:
        recipe.item_ids = pd.read_parquet(io.BytesIO(blobs["items.parquet"]))["ITEM_ID"].to_numpy(
            dtype=object
        )
        recipe.user_ids = pd.read_parquet(io.BytesIO(blobs["users.parquet"]))["USER_ID"].to_numpy(
            dtype=object
        )
        recipe.load_state(tensors, model_json.get("state") or {})
    except (KeyError, ValueError, TypeError, IndexError, OSError) as exc:
        raise ArtifactError(
            f"{storage.uri(prefix)}: the artifact does not load: {type(exc).__name__}: {exc}"
        ) from exc
    return recipe, model_json


def _model_json(data: bytes, where: str) -> dict[str, Any]:
    """``model.json``'s content, checked for the fields :func:`load_model` relies on."""
    import json

    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{where}: not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ArtifactError(f"{where}: expected a JSON object")
    files = obj.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    ):
        raise ArtifactError(f"{where}: 'files' must map file names to sha256 strings")
    if not isinstance(obj.get("recipe"), str):
        raise ArtifactError(f"{where}: 'recipe' must be a recipe name")
    if not isinstance(obj.get("hyperparameters"), dict):
        raise ArtifactError(f"{where}: 'hyperparameters' must be an object")
    if not isinstance(obj.get("state") or {}, dict):
        raise ArtifactError(f"{where}: 'state' must be an object")
    return obj
