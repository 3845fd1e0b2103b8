"""scikit-learn estimators."""

from ._classifier import AttentionClassifier
from ._regressor import AttentionRegressor

__all__ = ["AttentionClassifier", "AttentionRegressor"]
