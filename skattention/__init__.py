"""skattention: scikit-learn compatible attention models with a Numba core.

Importing the package compiles nothing and imports neither ``numba.cuda``
nor matplotlib; kernels compile (or load from Numba's on-disk cache) on
first use.
"""

from . import datasets, functional, persistence, text
from .estimators import (
    AttentionClassifier,
    AttentionRegressor,
    TextAttentionClassifier,
    TextAttentionRegressor,
)
from .persistence import load, save

__version__ = "0.1.0.dev0"

__all__ = [
    "AttentionClassifier",
    "AttentionRegressor",
    "TextAttentionClassifier",
    "TextAttentionRegressor",
    "datasets",
    "functional",
    "load",
    "persistence",
    "save",
    "text",
    "__version__",
]
