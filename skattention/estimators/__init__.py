"""scikit-learn estimators."""

from ._classifier import AttentionClassifier
from ._regressor import AttentionRegressor
from ._text import TextAttentionClassifier, TextAttentionRegressor, TextExplanation

__all__ = ["AttentionClassifier", "AttentionRegressor", "TextAttentionClassifier",
           "TextAttentionRegressor", "TextExplanation"]
