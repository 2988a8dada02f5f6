"""Recipes (models) by their Personalize names.

The torch recipes (user-personalization, personalized-ranking) load on first use, so that the
CLI and the DAG tasks that never train or score (import, validate, deploy, plan) do not pay for
importing torch: ``RECIPES`` resolves a name to its class when it is looked up.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from recsys.errors import ConfigError
from recsys.recipes.base import FORMAT_VERSION, Recipe, TrainingOptions, load_model
from recsys.recipes.popularity import PopularityCount
from recsys.recipes.sims import Sims

# name -> (module, class): imported when the recipe is first asked for.
_LAZY: dict[str, tuple[str, str]] = {
    "user-personalization": ("recsys.recipes.user_personalization", "UserPersonalization"),
    "personalized-ranking": ("recsys.recipes.user_personalization", "PersonalizedRanking"),
}
_LAZY_ATTRS = {cls: module for module, cls in _LAZY.values()}


class _Registry(Mapping[str, type[Recipe]]):
    """Recipe classes by name; the lazy ones are imported on lookup."""

    def __init__(self, eager: tuple[type[Recipe], ...]) -> None:
        self._eager = {r.name: r for r in eager}

    def __getitem__(self, name: str) -> type[Recipe]:
        if name in self._eager:
            return self._eager[name]
        module, cls = _LAZY[name]
        return getattr(importlib.import_module(module), cls)

    def __iter__(self) -> Iterator[str]:
        yield from self._eager
        yield from (n for n in _LAZY if n not in self._eager)

    def __len__(self) -> int:
        return len(set(self._eager) | set(_LAZY))


RECIPES: Mapping[str, type[Recipe]] = _Registry((PopularityCount, Sims))


def get_recipe(name: str) -> type[Recipe]:
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r} (available: {', '.join(sorted(RECIPES))})")
    return RECIPES[name]


def __getattr__(name: str) -> Any:  # the torch recipes' classes, imported on first access
    if name in _LAZY_ATTRS:
        return getattr(importlib.import_module(_LAZY_ATTRS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FORMAT_VERSION",
    "RECIPES",
    "PersonalizedRanking",
    "PopularityCount",
    "Sims",
    "UserPersonalization",
    "Recipe",
    "TrainingOptions",
    "get_recipe",
    "load_model",
]
