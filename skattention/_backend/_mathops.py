"""Scalar math for the CPU kernels that LLVM can vectorise.

The llvmlite wheels on PyPI ship without Intel's SVML, so ``math.exp``
inside a Numba loop becomes one libm call per element and the loop cannot
be vectorised: in a softmax that costs more than the matrix products
around it. :func:`fast_exp` is ``math.exp`` for float64 (the precision
contract there is 1e-10) and, for float32, a Cody-Waite range reduction
with the Cephes ``expf`` polynomial and a bit-cast for ``2**n``: within 2
ulp of ``expf`` and plain arithmetic that vectorises.
"""

import math

import numpy as np
from numba import types
from numba.extending import overload

__all__ = ["fast_exp"]

_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_EXP_LO = np.float32(-87.33654)
_EXP_HI = np.float32(88.37626)
_HALF = np.float32(0.5)
_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)
_P0 = np.float32(1.9875691500e-4)
_P1 = np.float32(1.3981999507e-3)
_P2 = np.float32(8.3334519073e-3)
_P3 = np.float32(4.1665795894e-2)
_P4 = np.float32(1.6666665459e-1)
_P5 = np.float32(5.0000001201e-1)


def fast_exp(x):
    """``exp(x)``, vectorisable in compiled float32 loops.

    Parameters
    ----------
    x : float
        Argument; float32 inside kernels uses the polynomial, anything else
        ``math.exp``.

    Returns
    -------
    y : float
        ``exp(x)`` of the argument's type. For float32, arguments below
        about -87.3 give exactly 0 and arguments above 88.4 are clamped.
    """
    return math.exp(x)


def _exp_float32(x):
    """float32 exp: ``2**n * p(r)`` with ``x = n ln2 + r``, ``|r| <= ln2 / 2``."""
    clamped = x if x < _EXP_HI else _EXP_HI
    clamped = clamped if clamped > _EXP_LO else _EXP_LO
    n = np.floor(clamped * _LOG2E + _HALF)
    r = clamped - n * _LN2_HI
    r = r - n * _LN2_LO
    p = _P0 * r + _P1
    p = p * r + _P2
    p = p * r + _P3
    p = p * r + _P4
    p = p * r + _P5
    p = p * (r * r) + r + _ONE
    scale = np.int32((np.int32(n) + 127) << 23).view(np.float32)
    result = p * scale
    return result if x > _EXP_LO else _ZERO


def _exp_other(x):
    return math.exp(x)


@overload(fast_exp, jit_options={"cache": True})
def _fast_exp_overload(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return _exp_float32
    return _exp_other
