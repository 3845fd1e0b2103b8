"""Private: the NumPy network on top of the compute backend.

:class:`NetworkConfig` fixes an architecture, :class:`ParamLayout` describes
its flat parameter buffer and :class:`AttentionNetwork` runs the forward and
backward passes through a backend's kernels. No scikit-learn here: the
estimators validate inputs and drive training.
"""

from ._network import AttentionNetwork, NetworkConfig
from ._params import ParamLayout

__all__ = ["AttentionNetwork", "NetworkConfig", "ParamLayout"]
