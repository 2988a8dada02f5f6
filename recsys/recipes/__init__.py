"""Recipes (models) by their Personalize names."""

from recsys.errors import ConfigError
from recsys.recipes.base import FORMAT_VERSION, Recipe, TrainingOptions, load_model
from recsys.recipes.item_affinity import ItemAffinity
from recsys.recipes.popularity import PopularityCount
from recsys.recipes.similar_items import SimilarItems
from recsys.recipes.sims import Sims
from recsys.recipes.trending import TrendingNow
from recsys.recipes.user_personalization import PersonalizedRanking, UserPersonalization

RECIPES: dict[str, type[Recipe]] = {
    r.name: r
    for r in (
        PopularityCount,
        Sims,
        UserPersonalization,
        PersonalizedRanking,
        SimilarItems,
        TrendingNow,
        ItemAffinity,
    )
}


def get_recipe(name: str) -> type[Recipe]:
    try:
        return RECIPES[name]
    except KeyError:
        raise ConfigError(
            f"unknown recipe {name!r} (available: {', '.join(sorted(RECIPES))})"
        ) from None


__all__ = [
    "FORMAT_VERSION",
    "ItemAffinity",
    "RECIPES",
    "PersonalizedRanking",
    "PopularityCount",
    "SimilarItems",
    "Sims",
    "UserPersonalization",
    "Recipe",
    "TrainingOptions",
    "TrendingNow",
    "get_recipe",
    "load_model",
]
