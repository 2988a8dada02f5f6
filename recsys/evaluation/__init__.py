"""Offline evaluation: splits and Personalize's metrics."""

from recsys.evaluation.metrics import METRIC_NAMES, evaluate_recommendations
from recsys.evaluation.splits import Holdout, personalize_split

__all__ = ["METRIC_NAMES", "Holdout", "evaluate_recommendations", "personalize_split"]
