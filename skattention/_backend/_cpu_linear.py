"""Numba CPU kernels of linear maps with a fused bias and activation.

The layers of a transformer encoder around the attention: linear maps with a
fused bias and activation, layer norm with a fused residual add, the token
embedding and dropout. Rows are flattened tokens: an ``(N, d)`` array holds
``N = B * L`` token vectors of width ``d``.

Determinism: every kernel is parallel over blocks that depend on the data's
shape only, never on the thread count (``ROW_BLOCK`` rows, ``FLAT_BLOCK``
elements, ``EMBED_COLUMNS`` columns, and an even number of equal row chunks
of at most ``WEIGHT_CHUNK`` rows for weight gradients), and a ``prange``
iteration writes only its own block. Column sums (bias, gamma and beta
gradients) are one partial row per block, added up in block order after the
``prange``. The serial builds run the same blocks, so results are bitwise
identical for the serial build and the parallel build at any thread count.

Matrix products are BLAS calls (``np.dot``, which Numba routes to SciPy's
BLAS, held at one thread by ``kernel_threads``) on contiguous row blocks
inside the ``prange``: the bias and activation pass runs on a block right
after its product, while it is in cache, and Numba's is the only thread pool
(a NumPy product between two Numba kernels wakes a second pool, and on two
cores the spinning threads of the two pools slow each other down).

Precision: row statistics and partial column sums accumulate in float64;
element-wise arithmetic stays in the array dtype. For float32, GELU uses a
rational erf and a polynomial exp that vectorise (``math.erf`` is a libm call
per element); float64 uses ``math.erf``.

As in :mod:`._cpu_attention`, serial and parallel drivers are distinct
functions (Numba's cache key ignores ``parallel``), and parallel drivers hold
no array expressions (Numba would parallelise them on its own terms).
"""

import math

import numpy as np
from numba import prange, types
from numba.extending import overload

from .._jit import jit
from ._mathops import fast_exp

__all__ = [
    "ACTIVATIONS", "ROW_BLOCK", "WEIGHT_CHUNK", "MIN_SPLIT_ROWS", "FLAT_BLOCK", "EMBED_COLUMNS",
    "fast_erf",
    "linear_forward_serial", "linear_forward_parallel",
    "linear_backward_serial", "linear_backward_parallel",
    "activation_serial", "activation_parallel",
]

#: Rows per block of the row-parallel kernels (and per partial column sum).
ROW_BLOCK = 256
#: Most rows per partial product ``x[rows]^T g[rows]`` of a weight gradient.
WEIGHT_CHUNK = 1024
#: Fewest rows whose weight-gradient product is split into two chunks.
MIN_SPLIT_ROWS = 128
#: Elements per block of the flat element-wise kernels.
FLAT_BLOCK = 16384
#: Table columns owned by one iteration of the embedding backward pass.
EMBED_COLUMNS = 16

IDENTITY, RELU, GELU = 0, 1, 2
#: Activation names and the codes the kernels take.
ACTIVATIONS = {"identity": IDENTITY, "relu": RELU, "gelu": GELU}

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

# Rational erf for float32 (Eigen's, also XLA's): x P(x^2) / Q(x^2) on [-4, 4].
_ERF_P = tuple(np.float32(c) for c in (
    -2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
    -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02))
_ERF_Q = tuple(np.float32(c) for c in (
    -1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
    -1.42647390514189e-02))
_FOUR = np.float32(4.0)


def fast_erf(x):
    """``erf(x)``, vectorisable in compiled float32 loops.

    Parameters
    ----------
    x : float
        float32 inside kernels uses the rational approximation (absolute
        error below 5e-7); anything else ``math.erf``.

    Returns
    -------
    y : float
        Of the argument's type.
    """
    return math.erf(x)


def _erf_float32(x):
    """float32 erf: clamp to [-4, 4] (erf rounds to +-1 beyond), then x P / Q."""
    x = x if x < _FOUR else _FOUR
    x = x if x > -_FOUR else -_FOUR
    x2 = x * x
    p0, p1, p2, p3, p4, p5, p6 = _ERF_P
    q0, q1, q2, q3, q4 = _ERF_Q
    p = (((((p0 * x2 + p1) * x2 + p2) * x2 + p3) * x2 + p4) * x2 + p5) * x2 + p6
    q = (((q0 * x2 + q1) * x2 + q2) * x2 + q3) * x2 + q4
    return x * p / q


def _erf_other(x):
    return math.erf(x)


# error_model="numpy": Python's ZeroDivisionError check on ``p / q`` would keep
# LLVM from vectorising the loops that call this (q never vanishes).
@overload(fast_erf, jit_options={"cache": True, "error_model": "numpy"})
def _fast_erf_overload(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return _erf_float32
    return _erf_other


# ------------------------------------------------------------------ helpers


@jit()
def _n_blocks(n, size):
    """Number of blocks of ``size`` items (int) covering ``n`` items (int)."""
    return (n + size - 1) // size


@jit()
def _block_range(block, size, n):
    """Items ``start <= i < stop`` of block ``block`` of ``size`` among ``n`` (ints)."""
    start = block * size
    return start, min(start + size, n)


@jit()
def _sum_partials(partials, out):
    """Add up per-block partial rows in block order.

    Parameters
    ----------
    partials : ndarray of shape (n_blocks, d), float64
        Row 0 is overwritten with the running total.
    out : ndarray of shape (d,)
        Output, the total (zeros when there are no blocks).
    """
    if partials.shape[0] == 0:
        out[:] = 0
        return
    total = partials[0]
    for b in range(1, partials.shape[0]):
        for j in range(total.shape[0]):
            total[j] += partials[b, j]
    for j in range(total.shape[0]):
        out[j] = total[j]


@jit()
def _sum_weight_row(i, partials, grad_weight):
    """Sum row ``i`` of the chunk partials (n_chunks, In, Out) in chunk order.

    The total goes to row ``i`` of ``grad_weight``, of shape (In, Out).
    """
    row = grad_weight[i]
    row[:] = partials[0, i]
    for c in range(1, partials.shape[0]):
        for j in range(row.shape[0]):
            row[j] += partials[c, i, j]


# Vectorisation notes. A loop reading one array and writing another that may
# be the same memory gets a runtime overlap check from LLVM, and an exact
# overlap sends it down the scalar path: the helpers below update one array
# in place instead. Inner loops run over ``range(n)`` on slices: an index
# that may be negative (``range(k0, k1)``) brings Numba's wraparound select
# into the loop, which then stays scalar.


@jit()
def _activate_row(row, bias, code, pre):
    """``row = act(row + bias)`` in place.

    Parameters
    ----------
    row : ndarray of shape (M,)
    bias : ndarray of shape (M,) or None
    code : int
        Activation code (:data:`ACTIVATIONS`).
    pre : ndarray of shape (M,) or None
        Output, the pre-activation ``row + bias``, when given.
    """
    dt = row.dtype.type
    zero, half, one, inv_sqrt2 = dt(0), dt(0.5), dt(1), dt(_INV_SQRT2)
    # One loop per activation, so that each inner loop is branch-free.
    if code == RELU:
        for j in range(row.shape[0]):
            v = row[j] if bias is None else row[j] + bias[j]
            if pre is not None:
                pre[j] = v
            row[j] = v if v > zero else zero
    elif code == GELU:
        for j in range(row.shape[0]):
            v = row[j] if bias is None else row[j] + bias[j]
            if pre is not None:
                pre[j] = v
            row[j] = half * v * (one + fast_erf(v * inv_sqrt2))
    elif bias is not None or pre is not None:
        for j in range(row.shape[0]):
            v = row[j] if bias is None else row[j] + bias[j]
            if pre is not None:
                pre[j] = v
            row[j] = v


@jit()
def _activation_grad_row(pre, code, g):
    """``g = g * act'(pre)`` in place.

    Parameters
    ----------
    pre : ndarray of shape (M,)
        Pre-activation (for ReLU the activation output serves as well).
    code : int
        RELU or GELU.
    g : ndarray of shape (M,)
        Gradient at the output on entry, at the pre-activation on return.
    """
    dt = g.dtype.type
    zero, half, one = dt(0), dt(0.5), dt(1)
    inv_sqrt2, inv_sqrt_2pi = dt(_INV_SQRT2), dt(_INV_SQRT_2PI)
    if code == RELU:
        for j in range(g.shape[0]):
            g[j] = g[j] if pre[j] > zero else zero
    else:
        # GELU' = Phi(v) + v phi(v), written out: behind a helper call this
        # loop stays scalar (fast_exp's bit-cast is only folded when inlined).
        for j in range(g.shape[0]):
            v = pre[j]
            cdf = half * (one + fast_erf(v * inv_sqrt2))
            g[j] = g[j] * (cdf + v * inv_sqrt_2pi * fast_exp(-half * v * v))


# ------------------------------------------------------------------- linear


@jit()
def _linear_forward_block(block, x, weight, bias, code, out, pre):
    """``out = act(x W + bias)`` for one row block; see :func:`linear_forward_serial`."""
    r0, r1 = _block_range(block, ROW_BLOCK, x.shape[0])
    np.dot(x[r0:r1], weight, out[r0:r1])
    for i in range(r0, r1):
        if pre is None:
            _activate_row(out[i], bias, code, None)
        else:
            _activate_row(out[i], bias, code, pre[i])


@jit()
def linear_forward_serial(x, weight, bias, code, out, pre):
    """Linear map with fused bias and activation, one thread.

    Parameters
    ----------
    x : ndarray of shape (N, In)
    weight : ndarray of shape (In, Out)
    bias : ndarray of shape (Out,) or None
    code : int
        Activation code (:data:`ACTIVATIONS`).
    out : ndarray of shape (N, Out)
        Output, ``act(x W + bias)``.
    pre : ndarray of shape (N, Out) or None
        Output, ``x W + bias``, when given.
    """
    for block in range(_n_blocks(x.shape[0], ROW_BLOCK)):
        _linear_forward_block(block, x, weight, bias, code, out, pre)


@jit(parallel=True)
def linear_forward_parallel(x, weight, bias, code, out, pre):
    """Linear map with fused bias and activation; see :func:`linear_forward_serial`."""
    for block in prange(_n_blocks(x.shape[0], ROW_BLOCK)):
        _linear_forward_block(block, x, weight, bias, code, out, pre)


@jit()
def _linear_backward_block(block, weight, pre, grad_out, code, g, grad_x, bias_partials):
    """Activation derivative, bias-gradient partial and ``grad_x`` of one row block.

    Parameters
    ----------
    block : int
    weight, pre, grad_out, code, g, grad_x :
        As in :func:`linear_backward_serial`.
    bias_partials : ndarray of shape (n_blocks or 0, Out), float64
        Output; row ``block`` receives this block's column sums of ``g`` (no
        rows: no bias).
    """
    r0, r1 = _block_range(block, ROW_BLOCK, grad_out.shape[0])
    # ``pre`` is None exactly for the identity, where ``g`` is ``grad_out``;
    # testing it (not ``code``) lets Numba drop the branch at compile time.
    if pre is not None:
        for i in range(r0, r1):
            for j in range(g.shape[1]):
                g[i, j] = grad_out[i, j]
            _activation_grad_row(pre[i], code, g[i])
    if bias_partials.shape[0] > 0:
        part = bias_partials[block]
        part[:] = 0
        for i in range(r0, r1):
            for j in range(part.shape[0]):
                part[j] += g[i, j]
    if grad_x is not None:
        np.dot(g[r0:r1], weight.T, grad_x[r0:r1])


@jit()
def _n_weight_chunks(n):
    """Row chunks of a weight-gradient product over ``n`` rows (int).

    An even number of equal chunks of at most ``WEIGHT_CHUNK`` rows: two
    threads get equal shares (1,470 rows cut as 1,024 + 446 left one thread
    idle for a third of the product, and 1,024 rows or fewer ran on one
    thread); one chunk below ``MIN_SPLIT_ROWS``.
    """
    if n < MIN_SPLIT_ROWS:
        return 1
    return 2 * _n_blocks(n, 2 * WEIGHT_CHUNK)


@jit()
def _weight_grad_chunk(chunk, x, g, partials):
    """``partials[chunk] = x[rows]^T g[rows]`` for the rows of one chunk.

    Shapes: ``x`` (N, In), ``g`` (N, Out), ``partials`` (n_chunks, In, Out);
    chunk ``c`` holds rows ``c N // n_chunks`` to ``(c + 1) N // n_chunks``.
    """
    n, n_chunks = x.shape[0], partials.shape[0]
    r0, r1 = chunk * n // n_chunks, (chunk + 1) * n // n_chunks
    np.dot(x[r0:r1].T, g[r0:r1], partials[chunk])


@jit()
def _linear_backward_scratch(x, grad_out, with_bias):
    """Partial buffers of the linear backward pass.

    Returns
    -------
    bias_partials : ndarray of shape (n_blocks, Out), float64
        No rows without a bias.
    weight_partials : ndarray of shape (n_chunks, In, Out)
        No chunks when one chunk covers all rows (its product then goes
        straight into the weight gradient).
    """
    n = x.shape[0]
    n_blocks = _n_blocks(n, ROW_BLOCK) if with_bias else 0
    bias_partials = np.empty((n_blocks, grad_out.shape[1]), dtype=np.float64)
    n_chunks = _n_weight_chunks(n)
    n_chunks = n_chunks if n_chunks > 1 else 0
    weight_partials = np.empty((n_chunks, x.shape[1], grad_out.shape[1]), dtype=x.dtype)
    return bias_partials, weight_partials


@jit()
def linear_backward_serial(x, weight, pre, grad_out, code, g, grad_x, grad_weight,
                           grad_bias):
    """Backward pass of :func:`linear_forward_serial`, one thread.

    Parameters
    ----------
    x : ndarray of shape (N, In)
    weight : ndarray of shape (In, Out)
    pre : ndarray of shape (N, Out) or None
        Pre-activation of the forward pass (for ReLU the output works too);
        None exactly for the identity.
    grad_out : ndarray of shape (N, Out)
    code : int
        Activation code.
    g : ndarray of shape (N, Out)
        Output, the gradient at the pre-activation; ``grad_out`` itself for
        the identity (then only read) or to overwrite it in place.
    grad_x : ndarray of shape (N, In) or None
        Output, ``g W^T``, when given.
    grad_weight : ndarray of shape (In, Out)
        Output, ``x^T g``.
    grad_bias : ndarray of shape (Out,) or None
        Output, the column sums of ``g``, when given.
    """
    n = x.shape[0]
    bias_partials, weight_partials = _linear_backward_scratch(x, grad_out, grad_bias is not None)
    for block in range(_n_blocks(n, ROW_BLOCK)):
        _linear_backward_block(block, weight, pre, grad_out, code, g, grad_x, bias_partials)
    if grad_bias is not None:
        _sum_partials(bias_partials, grad_bias)
    if weight_partials.shape[0] == 0:
        np.dot(x.T, g, grad_weight)
    else:
        for chunk in range(weight_partials.shape[0]):
            _weight_grad_chunk(chunk, x, g, weight_partials)
        for i in range(grad_weight.shape[0]):
            _sum_weight_row(i, weight_partials, grad_weight)


@jit(parallel=True)
def linear_backward_parallel(x, weight, pre, grad_out, code, g, grad_x, grad_weight,
                             grad_bias):
    """Backward pass of the linear map; see :func:`linear_backward_serial`."""
    n = x.shape[0]
    bias_partials, weight_partials = _linear_backward_scratch(x, grad_out, grad_bias is not None)
    for block in prange(_n_blocks(n, ROW_BLOCK)):
        _linear_backward_block(block, weight, pre, grad_out, code, g, grad_x, bias_partials)
    if grad_bias is not None:
        _sum_partials(bias_partials, grad_bias)
    if weight_partials.shape[0] == 0:
        np.dot(x.T, g, grad_weight)
    else:
        for chunk in prange(weight_partials.shape[0]):
            _weight_grad_chunk(chunk, x, g, weight_partials)
        # Each weight row sums its own chunk partials: disjoint writes.
        for i in prange(grad_weight.shape[0]):
            _sum_weight_row(i, weight_partials, grad_weight)


# -------------------------------------------------- element-wise activations


@jit()
def _activation_block(block, x, grad_out, code, out):
    """One block of :func:`activation_serial`."""
    k0, k1 = _block_range(block, FLAT_BLOCK, x.shape[0])
    dst = out[k0:k1]
    src = x[k0:k1] if grad_out is None else grad_out[k0:k1]
    for k in range(dst.shape[0]):
        dst[k] = src[k]
    if grad_out is None:
        _activate_row(dst, None, code, None)
    elif code != IDENTITY:
        _activation_grad_row(x[k0:k1], code, dst)


@jit()
def activation_serial(x, grad_out, code, out):
    """Element-wise activation or its gradient, one thread.

    Parameters
    ----------
    x : ndarray of shape (M,)
        Input of the activation.
    grad_out : ndarray of shape (M,) or None
        None: ``out = act(x)``; else ``out = grad_out * act'(x)``.
    code : int
        Activation code (:data:`ACTIVATIONS`).
    out : ndarray of shape (M,)
        Output; may be ``x`` (forward) or ``grad_out`` (backward).
    """
    for block in range(_n_blocks(x.shape[0], FLAT_BLOCK)):
        _activation_block(block, x, grad_out, code, out)


@jit(parallel=True)
def activation_parallel(x, grad_out, code, out):
    """Element-wise activation or its gradient; see :func:`activation_serial`."""
    for block in prange(_n_blocks(x.shape[0], FLAT_BLOCK)):
        _activation_block(block, x, grad_out, code, out)
