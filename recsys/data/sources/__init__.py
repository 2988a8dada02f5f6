"""Sources of Personalize-style data: MovieLens converters, a synthetic generator, replay."""

from recsys.data.sources.base import DATASET_TYPES, PersonalizeData

__all__ = ["DATASET_TYPES", "PersonalizeData"]
