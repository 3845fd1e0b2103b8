"""skattention: scikit-learn compatible attention models with a Numba core.

Importing the package compiles nothing and imports neither ``numba.cuda``
nor matplotlib; kernels compile (or load from Numba's on-disk cache) on
first use.
"""

from . import functional
from .estimators import AttentionClassifier, AttentionRegressor

__version__ = "0.1.0.dev0"

__all__ = ["AttentionClassifier", "AttentionRegressor", "functional", "__version__"]
