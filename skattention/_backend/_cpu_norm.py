"""Numba CPU kernels of layer norm (with a fused residual add), the token
embedding and dropout, forward and backward.

Rows are flattened tokens, blocks and determinism as in :mod:`._cpu_linear`:
fixed-size blocks, disjoint writes per ``prange`` iteration, column sums as
per-block partials added in block order.
"""

import math

import numpy as np
from numba import prange

from .._jit import jit
from ._cpu_linear import EMBED_COLUMNS, FLAT_BLOCK, ROW_BLOCK, _block_range, _n_blocks, \
    _sum_partials

__all__ = [
    "dropout_mask",
    "layer_norm_forward_serial", "layer_norm_forward_parallel",
    "layer_norm_backward_serial", "layer_norm_backward_parallel",
    "embedding_forward_serial", "embedding_forward_parallel",
    "embedding_backward_serial", "embedding_backward_parallel",
    "dropout_serial", "dropout_parallel",
]


# --------------------------------------------------------------- layer norm


# Reassociation lets LLVM vectorise the float64 row sums (as in
# _cpu_attention). It is a fixed property of the compiled code, and every row
# is reduced by one thread, so results stay bitwise identical for any thread
# count. Without it the sums ran scalar at ~2 ns per element, the slowest
# part of inference.
_ROW_MATH = {"reassoc", "nsz", "contract"}


@jit(fastmath=_ROW_MATH)
def _row_mean_var(src):
    """Mean and biased variance (floats) of a row of shape (d,), two-pass, float64."""
    d = src.shape[0]
    total = 0.0
    for j in range(d):
        total += src[j]
    mean = total / d
    # Centred second pass: no cancellation for rows with a large common
    # offset, unlike E[x^2] - E[x]^2.
    squares = 0.0
    for j in range(d):
        centred = src[j] - mean
        squares += centred * centred
    return mean, squares / d


@jit(fastmath=_ROW_MATH)
def _layer_norm_block(block, x, residual, gamma, beta, eps, out, summed, mean, rstd):
    """Residual add and layer norm of one row block; see :func:`layer_norm_forward_serial`."""
    r0, r1 = _block_range(block, ROW_BLOCK, x.shape[0])
    d = x.shape[1]
    # Inner loops run over 1-D row views indexed from 0, which LLVM
    # vectorises; 2-D indexing with a row index from range(r0, r1) kept
    # them scalar (Numba must check that index for wraparound).
    for i in range(r0, r1):
        x_row, out_row = x[i], out[i]
        if residual is None:
            src = x_row
            if summed is not None:
                summed[i, :] = src
        else:
            # Without a ``summed`` buffer the sum lives in ``out`` until it is
            # normalised in place.
            src = out_row if summed is None else summed[i]
            res_row = residual[i]
            for j in range(d):
                src[j] = x_row[j] + res_row[j]
        mu, var = _row_mean_var(src)
        rs = 1.0 / math.sqrt(var + eps)
        mean[i] = mu
        rstd[i] = rs
        # Normalise with the float64 statistics: a float32 mean of a row with
        # a large offset would shift every normalised value.
        for j in range(d):
            out_row[j] = (src[j] - mu) * rs * gamma[j] + beta[j]


@jit()
def layer_norm_forward_serial(x, residual, gamma, beta, eps, out, summed, mean, rstd):
    """Layer norm of ``s = x + residual`` over the last axis, one thread.

    ``out = (s - mean(s)) / sqrt(var(s) + eps) * gamma + beta``, biased
    variance, as ``torch.nn.LayerNorm``.

    Parameters
    ----------
    x : ndarray of shape (N, d)
    residual : ndarray of shape (N, d) or None
    gamma, beta : ndarrays of shape (d,)
    eps : float
    out : ndarray of shape (N, d)
        Output.
    summed : ndarray of shape (N, d) or None
        Output ``s`` (a copy of ``x`` without residual), when given.
    mean, rstd : ndarrays of shape (N,)
        Output row means and ``1 / sqrt(var + eps)``.
    """
    for block in range(_n_blocks(x.shape[0], ROW_BLOCK)):
        _layer_norm_block(block, x, residual, gamma, beta, eps, out, summed, mean, rstd)


@jit(parallel=True)
def layer_norm_forward_parallel(x, residual, gamma, beta, eps, out, summed, mean, rstd):
    """Residual add and layer norm; see :func:`layer_norm_forward_serial`."""
    for block in prange(_n_blocks(x.shape[0], ROW_BLOCK)):
        _layer_norm_block(block, x, residual, gamma, beta, eps, out, summed, mean, rstd)


@jit(fastmath=_ROW_MATH)
def _layer_norm_backward_block(block, grad_out, s, mean, rstd, gamma, grad_x, grad_summed,
                               gamma_partials, beta_partials):
    """Layer-norm gradient of one row block.

    With ``xh = (s - mean) rstd`` and ``gh = grad_out gamma``:
    ``grad_s = rstd (gh - mean(gh) - xh mean(gh xh))``.

    Parameters
    ----------
    block : int
    grad_out, s, mean, rstd, gamma, grad_x, grad_summed :
        As in :func:`layer_norm_backward_serial`.
    gamma_partials, beta_partials : ndarrays of shape (n_blocks, d), float64
        Output; row ``block`` receives this block's partial sums.
    """
    r0, r1 = _block_range(block, ROW_BLOCK, s.shape[0])
    d = s.shape[1]
    pg = gamma_partials[block]
    pb = beta_partials[block]
    pg[:] = 0
    pb[:] = 0
    for i in range(r0, r1):
        # 1-D row views indexed from 0 vectorise (see _layer_norm_block).
        s_row, g_row, gx_row = s[i], grad_out[i], grad_x[i]
        mu = np.float64(mean[i])
        rs = np.float64(rstd[i])
        sum_gh = 0.0
        sum_ghxh = 0.0
        for j in range(d):
            xh = (s_row[j] - mu) * rs
            gy = g_row[j]
            gh = gy * gamma[j]
            sum_gh += gh
            sum_ghxh += gh * xh
            pg[j] += gy * xh
            pb[j] += gy
        a = sum_gh / d
        b = sum_ghxh / d
        if grad_summed is None:
            for j in range(d):
                xh = (s_row[j] - mu) * rs
                gx_row[j] = rs * (g_row[j] * gamma[j] - a - xh * b)
        else:
            gs_row = grad_summed[i]
            for j in range(d):
                xh = (s_row[j] - mu) * rs
                gx_row[j] = rs * (g_row[j] * gamma[j] - a - xh * b) + gs_row[j]


@jit()
def _layer_norm_backward_scratch(s):
    """Partial buffers (n_blocks, d) of the gamma and beta gradients, float64."""
    n_blocks = _n_blocks(s.shape[0], ROW_BLOCK)
    gamma_partials = np.empty((n_blocks, s.shape[1]), dtype=np.float64)
    beta_partials = np.empty((n_blocks, s.shape[1]), dtype=np.float64)
    return gamma_partials, beta_partials


@jit()
def layer_norm_backward_serial(grad_out, s, mean, rstd, gamma, grad_x, grad_gamma, grad_beta,
                               grad_summed):
    """Backward pass of :func:`layer_norm_forward_serial`, one thread.

    Parameters
    ----------
    grad_out : ndarray of shape (N, d)
    s : ndarray of shape (N, d)
        The normalised input (``summed`` of the forward pass, or ``x``).
    mean, rstd : ndarrays of shape (N,)
        Statistics of the forward pass.
    gamma : ndarray of shape (d,)
    grad_x : ndarray of shape (N, d)
        Output, the gradient at ``s`` (so at ``x`` and at ``residual``).
    grad_gamma, grad_beta : ndarrays of shape (d,)
        Output.
    grad_summed : ndarray of shape (N, d) or None
        Gradient reaching ``s`` by other paths (the residual stream), added
        to ``grad_x``; may be ``grad_x`` itself.
    """
    gamma_partials, beta_partials = _layer_norm_backward_scratch(s)
    for block in range(gamma_partials.shape[0]):
        _layer_norm_backward_block(block, grad_out, s, mean, rstd, gamma, grad_x, grad_summed,
                                   gamma_partials, beta_partials)
    _sum_partials(gamma_partials, grad_gamma)
    _sum_partials(beta_partials, grad_beta)


@jit(parallel=True)
def layer_norm_backward_parallel(grad_out, s, mean, rstd, gamma, grad_x, grad_gamma,
                                 grad_beta, grad_summed):
    """Layer-norm backward pass; see :func:`layer_norm_backward_serial`."""
    gamma_partials, beta_partials = _layer_norm_backward_scratch(s)
    for block in prange(gamma_partials.shape[0]):
        _layer_norm_backward_block(block, grad_out, s, mean, rstd, gamma, grad_x, grad_summed,
                                   gamma_partials, beta_partials)
    _sum_partials(gamma_partials, grad_gamma)
    _sum_partials(beta_partials, grad_beta)


# ---------------------------------------------------------------- embedding


@jit()
def _gather_block(block, ids, table, positions, steps, out):
    """``out[i] = table[ids[i]] (+ positions[steps[i]])`` for one row block.

    See :func:`embedding_forward_serial`.
    """
    r0, r1 = _block_range(block, ROW_BLOCK, ids.shape[0])
    for i in range(r0, r1):
        # An explicit loop: a row slice assignment costs ~60 ns of setup per
        # row, 3x the copy of 64 floats.
        src, dst = table[ids[i]], out[i]
        if positions is None:
            for j in range(dst.shape[0]):
                dst[j] = src[j]
        else:
            position = positions[steps[i]]
            for j in range(dst.shape[0]):
                dst[j] = src[j] + position[j]


@jit()
def embedding_forward_serial(ids, table, positions, steps, out):
    """Embedding lookup, plus the position rows when given, one thread.

    Parameters
    ----------
    ids : ndarray of shape (N,), int64
        Row indices in ``[0, V)`` (checked by the caller, not here).
    table : ndarray of shape (V, d)
    positions : ndarray of shape (L, d) or None
        Rows added to the embeddings (the positional encoding).
    steps : ndarray of shape (N,), int64, or None
        Each token's row of ``positions``, in ``[0, L)`` (checked by the
        caller); None when ``positions`` is None.
    out : ndarray of shape (N, d)
        Output.
    """
    for block in range(_n_blocks(ids.shape[0], ROW_BLOCK)):
        _gather_block(block, ids, table, positions, steps, out)


@jit(parallel=True)
def embedding_forward_parallel(ids, table, positions, steps, out):
    """Embedding lookup; see :func:`embedding_forward_serial`."""
    for block in prange(_n_blocks(ids.shape[0], ROW_BLOCK)):
        _gather_block(block, ids, table, positions, steps, out)


@jit()
def _zero_rows_block(block, array):
    """Zero one row block of a 2-D array of shape (V, d)."""
    r0, r1 = _block_range(block, ROW_BLOCK, array.shape[0])
    array[r0:r1] = 0


@jit()
def _scatter_columns(block, ids, grad_out, grad_table):
    """Add ``grad_out[i]`` to row ``ids[i]`` of ``grad_table``, in one column block.

    The block owns table columns ``[block * EMBED_COLUMNS, ...)`` of every row
    and visits the tokens in order, so a repeated id accumulates in the same
    order whatever the blocks and threads. Shapes as in
    :func:`embedding_backward_serial`.
    """
    c0, c1 = _block_range(block, EMBED_COLUMNS, grad_out.shape[1])
    for i in range(ids.shape[0]):
        dst, src = grad_table[ids[i], c0:c1], grad_out[i, c0:c1]
        for j in range(dst.shape[0]):
            dst[j] += src[j]


@jit()
def embedding_backward_serial(ids, grad_out, grad_table, accumulate):
    """Gradient of the embedding table, one thread.

    Parameters
    ----------
    ids : ndarray of shape (N,), int64
        Row indices in ``[0, V)`` (checked by the caller, not here).
    grad_out : ndarray of shape (N, d)
    grad_table : ndarray of shape (V, d)
        Output; row ``v`` receives the sum of ``grad_out[i]`` over ``ids[i] == v``.
    accumulate : bool
        Add to the current ``grad_table`` instead of overwriting it.
    """
    if not accumulate:
        for block in range(_n_blocks(grad_table.shape[0], ROW_BLOCK)):
            _zero_rows_block(block, grad_table)
    for block in range(_n_blocks(grad_out.shape[1], EMBED_COLUMNS)):
        _scatter_columns(block, ids, grad_out, grad_table)


@jit(parallel=True)
def embedding_backward_parallel(ids, grad_out, grad_table, accumulate):
    """Gradient of the embedding table; see :func:`embedding_backward_serial`."""
    if not accumulate:
        for block in prange(_n_blocks(grad_table.shape[0], ROW_BLOCK)):
            _zero_rows_block(block, grad_table)
    # Over column blocks, not tokens: no two iterations touch one table entry.
    for block in prange(_n_blocks(grad_out.shape[1], EMBED_COLUMNS)):
        _scatter_columns(block, ids, grad_out, grad_table)


# ------------------------------------------------------------------ dropout


@jit()
def _multiply_block(block, x, mask, out):
    """``out = x * mask`` on one block of flat arrays of shape (M,)."""
    k0, k1 = _block_range(block, FLAT_BLOCK, x.shape[0])
    src, keep, dst = x[k0:k1], mask[k0:k1], out[k0:k1]
    for k in range(dst.shape[0]):
        dst[k] = src[k] * keep[k]


@jit()
def dropout_serial(x, mask, out):
    """Apply a scaled keep mask, ``out = x * mask``, one thread.

    Dropout is linear and self-adjoint: the same kernel serves the forward
    pass (``x``) and the backward pass (``grad_out``).

    Parameters
    ----------
    x : ndarray of shape (M,)
    mask : ndarray of shape (M,)
        Values 0 or ``1 / (1 - rate)``.
    out : ndarray of shape (M,)
        Output; may be ``x``.
    """
    for block in range(_n_blocks(x.shape[0], FLAT_BLOCK)):
        _multiply_block(block, x, mask, out)


@jit(parallel=True)
def dropout_parallel(x, mask, out):
    """Apply a scaled keep mask; see :func:`dropout_serial`."""
    for block in prange(_n_blocks(x.shape[0], FLAT_BLOCK)):
        _multiply_block(block, x, mask, out)


def dropout_mask(random_state, shape, rate, dtype=np.float64):
    """Draw a scaled dropout keep mask.

    Parameters
    ----------
    random_state : None, int, numpy.random.RandomState or numpy.random.Generator
        Source of the draw, as in scikit-learn (None: NumPy's global
        ``RandomState``). The draw happens here, in Python: numbers drawn
        inside parallel Numba code would depend on the thread layout.
    shape : int or tuple of int
    rate : float
        Probability of dropping an element, in ``[0, 1]``.
    dtype : float dtype, default=np.float64

    Returns
    -------
    mask : ndarray of shape ``shape`` or None
        ``1 / (1 - rate)`` where kept, 0 where dropped (all zeros for
        ``rate == 1``). None for ``rate == 0``: dropout is the identity and
        nothing is drawn.
    """
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"dropout rate must lie in [0, 1]; got {rate}")
    if rate == 0.0:
        return None
    dtype = np.dtype(dtype)
    if isinstance(random_state, np.random.Generator):
        uniform = random_state.random(shape)
    else:
        from sklearn.utils import check_random_state

        uniform = check_random_state(random_state).random_sample(shape)
    if rate == 1.0:
        return np.zeros(uniform.shape, dtype=dtype)
    mask = (uniform >= rate).astype(dtype)
    mask *= dtype.type(1.0 / (1.0 - rate))
    return mask
