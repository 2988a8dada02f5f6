"""Recipes (models) by their Personalize names."""

from recsys.errors import ConfigError
from recsys.recipes.base import FORMAT_VERSION, Recipe, TrainingOptions, load_model
from recsys.recipes.popularity import PopularityCount

RECIPES: dict[str, type[Recipe]] = {PopularityCount.name: PopularityCount}


def get_recipe(name: str) -> type[Recipe]:
    try:
        return RECIPES[name]
    except KeyError:
        raise ConfigError(
            f"unknown recipe {name!r} (available: {', '.join(sorted(RECIPES))})"
        ) from None


__all__ = [
    "FORMAT_VERSION",
    "RECIPES",
    "PopularityCount",
    "Recipe",
    "TrainingOptions",
    "get_recipe",
    "load_model",
]
