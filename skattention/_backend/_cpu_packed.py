"""Numba CPU kernels for dot-family self-attention over packed token rows.

A packed batch keeps only the real tokens of its sequences, one row each,
sequence after sequence: sequence ``b`` owns rows ``offsets[b]`` to
``offsets[b + 1]`` of every token-row matrix, in the order of its steps.
Self-attention over that layout needs no mask (every row of a sequence is a
real key) and reads the heads of the fused ``(R, 3 d)`` query/key/value
projection in place: the padded kernels of :mod:`._cpu_attention` need that
projection scattered into the ``(N * L, 3 d)`` padded layout first and their
context gathered back, two copies that cost more than the attention itself
on short sequences.

The score is ``s_ij = scale * q_i . k_j``: "dot", "scaled_dot", and
"general" when the caller passes ``q W`` as the queries. Each ``(b, h)``
pair is one work item writing only its own rows and columns; the products
and the softmax are those of the padded kernels (same block size, same row
functions), so the two layouts agree to rounding. (Not always bit for bit:
the row functions may reassociate and contract, and LLVM compiles them
into each kernel on its own.)
"""

import numba
import numpy as np
from numba import prange

from .._jit import jit
from ._blas import gemm
from ._cpu_attention import (
    QUERY_BLOCK,
    _exp_rows,
    _recompute_probs,
    _scale_rows,
    _softmax_backward_rows,
)

__all__ = [
    "packed_attention_forward_serial",
    "packed_attention_forward_parallel",
    "packed_attention_backward_serial",
    "packed_attention_backward_parallel",
]


@jit()
def _packed_transposed(x, first, n, col, width, buffer):
    """Columns ``col .. col + width`` of rows ``first .. first + n``, transposed.

    Returns
    -------
    block : ndarray of shape (width, n), C-contiguous (a view of ``buffer``)
    """
    block = buffer[: width * n].reshape((width, n))
    for j in range(n):
        row = x[first + j]
        for e in range(width):
            block[e, j] = row[col + e]
    return block


@jit()
def _item_span(item, offsets, n_heads, d):
    """Rows ``first .. first + n`` and head columns ``col .. col + width`` of item ``b * H + h``."""
    width = d // n_heads
    b = item // n_heads
    first = offsets[b]
    return first, offsets[b + 1] - first, (item % n_heads) * width, width


@jit()
def _packed_forward_item(item, queries, qkv, offsets, n_heads, scale, context, log_sum_exp,
                         key_buf, score_buf, inv_buf, counts):
    """Forward pass of one ``(b, h)`` pair over packed rows.

    Parameters
    ----------
    item : int
        Flat index ``b * H + h``.
    queries : ndarray of shape (R, >= d)
        Columns ``h * Dh .. (h + 1) * Dh`` hold head ``h``'s queries.
    qkv : ndarray of shape (R, 3 d)
        Keys in columns ``d .. 2 d``, values in ``2 d .. 3 d``.
    offsets : ndarray of shape (B + 1,), int64
    n_heads : int
    scale : float
    context : ndarray of shape (R, d)
        Output: head ``h`` in columns ``h * Dh .. (h + 1) * Dh``.
    log_sum_exp : ndarray of shape (R, H)
        Output: the softmax row statistics.
    key_buf, score_buf, inv_buf, counts : ndarrays
        This thread's scratch (``(Lmax * Dh,)``, ``(QUERY_BLOCK * Lmax,)``,
        ``(QUERY_BLOCK,)``, ``(QUERY_BLOCK,)``).
    """
    d = context.shape[1]
    first, n, col, width = _item_span(item, offsets, n_heads, d)
    if n == 0:
        return
    # K^T laid out in memory: a plain product, faster than BLAS's transpose
    # flag on these sizes (see _cpu_attention._transposed_keys).
    keys_t = _packed_transposed(qkv, first, n, d + col, width, key_buf)
    values = qkv[first:first + n, 2 * d + col:2 * d + col + width]
    for start in range(0, n, QUERY_BLOCK):
        stop = min(start + QUERY_BLOCK, n)
        rows = stop - start
        scores = score_buf[: rows * n].reshape((rows, n))
        counts[:rows] = n
        gemm(queries[first + start:first + stop, col:col + width], keys_t, scores)
        head_lse = log_sum_exp[first + start:first + stop, col // width]
        _exp_rows(scores, counts[:rows], scale, head_lse,
                  inv_buf)
        out = context[first + start:first + stop, col:col + width]
        gemm(scores, values, out)
        _scale_rows(out, inv_buf)


@jit()
def _packed_scratch(n_threads, queries, offsets, width):
    """Per-thread scratch of the forward kernel, sized by the longest sequence."""
    longest = 1
    for b in range(offsets.shape[0] - 1):
        longest = max(longest, offsets[b + 1] - offsets[b])
    block = min(longest, QUERY_BLOCK)
    key_buf = np.empty((n_threads, longest * width), dtype=queries.dtype)
    score_buf = np.empty((n_threads, block * longest), dtype=queries.dtype)
    inv_buf = np.empty((n_threads, QUERY_BLOCK), dtype=queries.dtype)
    counts = np.empty((n_threads, QUERY_BLOCK), dtype=np.int64)
    return key_buf, score_buf, inv_buf, counts


@jit()
def packed_attention_forward_serial(queries, qkv, offsets, n_heads, scale, context,
                                    log_sum_exp):
    """Dot-family self-attention over packed rows, one thread.

    Parameters
    ----------
    queries : ndarray of shape (R, >= d)
        Head ``h``'s queries in columns ``h * Dh .. (h + 1) * Dh`` (the
        ``qkv`` array itself for "dot" and "scaled_dot").
    qkv : ndarray of shape (R, 3 d)
        The fused projection: keys in columns ``d .. 2 d``, values in
        ``2 d .. 3 d``.
    offsets : ndarray of shape (B + 1,), int64
        Sequence ``b`` owns rows ``offsets[b] .. offsets[b + 1]``.
    n_heads : int
    scale : float
        Score multiplier, of the arrays' dtype.
    context : ndarray of shape (R, d)
        Output: the heads' contexts side by side.
    log_sum_exp : ndarray of shape (R, H)
        Output: the softmax row statistics.
    """
    width = context.shape[1] // n_heads
    key_buf, score_buf, inv_buf, counts = _packed_scratch(1, queries, offsets, width)
    for item in range((offsets.shape[0] - 1) * n_heads):
        _packed_forward_item(item, queries, qkv, offsets, n_heads, scale, context, log_sum_exp,
                             key_buf[0], score_buf[0], inv_buf[0], counts[0])


@jit(parallel=True)
def packed_attention_forward_parallel(queries, qkv, offsets, n_heads, scale, context,
                                      log_sum_exp, n_threads):
    """:func:`packed_attention_forward_serial` over ``n_threads`` Numba threads."""
    width = context.shape[1] // n_heads
    key_buf, score_buf, inv_buf, counts = _packed_scratch(n_threads, queries, offsets, width)
    for item in prange((offsets.shape[0] - 1) * n_heads):
        t = numba.get_thread_id()
        _packed_forward_item(item, queries, qkv, offsets, n_heads, scale, context, log_sum_exp,
                             key_buf[t], score_buf[t], inv_buf[t], counts[t])


@jit()
def _packed_backward_item(item, queries, qkv, offsets, n_heads, scale, log_sum_exp,
                          grad_context, grad_queries, grad_qkv, key_t_buf, value_t_buf,
                          prob_buf, grad_buf, counts):
    """Backward pass of one ``(b, h)`` pair over packed rows.

    The probabilities are recomputed block by block from the scores and
    ``log_sum_exp``, with the products and row functions of the padded
    kernel's training path (``_cpu_attention._dot_backward_item``).

    Parameters
    ----------
    item : int
        Flat index ``b * H + h``.
    queries, qkv, offsets, n_heads, scale, log_sum_exp :
        As in the forward pass.
    grad_context : ndarray of shape (R, d)
    grad_queries : ndarray of shape (R, >= d)
        Output: head ``h``'s query gradient in columns ``h * Dh .. (h + 1) * Dh``
        (``grad_qkv`` itself for "dot" and "scaled_dot").
    grad_qkv : ndarray of shape (R, 3 d)
        Output: key and value gradients in columns ``d .. 3 d``.
    key_t_buf, value_t_buf, prob_buf, grad_buf, counts : ndarrays
        This thread's scratch.
    """
    d = grad_context.shape[1]
    first, n, col, width = _item_span(item, offsets, n_heads, d)
    if n == 0:
        return
    keys = qkv[first:first + n, d + col:d + col + width]
    keys_t = _packed_transposed(qkv, first, n, d + col, width, key_t_buf)
    values_t = _packed_transposed(qkv, first, n, 2 * d + col, width, value_t_buf)
    grad_keys = grad_qkv[first:first + n, d + col:d + col + width]
    grad_values = grad_qkv[first:first + n, 2 * d + col:2 * d + col + width]
    for start in range(0, n, QUERY_BLOCK):
        stop = min(start + QUERY_BLOCK, n)
        rows = stop - start
        counts[:rows] = n
        block_queries = queries[first + start:first + stop, col:col + width]
        probs = prob_buf[: rows * n].reshape((rows, n))
        gemm(block_queries, keys_t, probs)
        _recompute_probs(probs, counts[:rows], scale,
                         log_sum_exp[first + start:first + stop, col // width])
        # The first block overwrites the dK/dV rows, later ones add.
        accumulate = 0.0 if start == 0 else 1.0
        grad_out = grad_context[first + start:first + stop, col:col + width]
        gemm(probs, grad_out, grad_values, True, False, 1.0, accumulate)
        grad_scores = grad_buf[: rows * n].reshape((rows, n))
        gemm(grad_out, values_t, grad_scores)
        _softmax_backward_rows(probs, grad_scores, counts[:rows], scale)
        gemm(grad_scores, keys, grad_queries[first + start:first + stop, col:col + width])
        gemm(grad_scores, block_queries, grad_keys, True, False, 1.0, accumulate)


@jit()
def _packed_backward_scratch(n_threads, queries, offsets, width):
    """Per-thread scratch of the backward kernel, sized by the longest sequence."""
    key_t_buf, prob_buf, _, counts = _packed_scratch(n_threads, queries, offsets, width)
    return key_t_buf, np.empty_like(key_t_buf), prob_buf, np.empty_like(prob_buf), counts


@jit()
def packed_attention_backward_serial(queries, qkv, offsets, n_heads, scale, log_sum_exp,
                                     grad_context, grad_queries, grad_qkv):
    """Backward of :func:`packed_attention_forward_serial`, one thread.

    Parameters
    ----------
    queries, qkv, offsets, n_heads, scale :
        As in the forward pass.
    log_sum_exp : ndarray of shape (R, H)
        The forward pass's row statistics.
    grad_context : ndarray of shape (R, d)
    grad_queries : ndarray of shape (R, >= d)
        Output: the query gradients in the columns of ``queries``; pass
        ``grad_qkv`` when ``queries`` is ``qkv``.
    grad_qkv : ndarray of shape (R, 3 d)
        Output: the key and value gradients in columns ``d .. 3 d`` (columns
        ``0 .. d`` are written only when it is ``grad_queries``).
    """
    width = grad_context.shape[1] // n_heads
    scratch = _packed_backward_scratch(1, queries, offsets, width)
    for item in range((offsets.shape[0] - 1) * n_heads):
        _packed_backward_item(item, queries, qkv, offsets, n_heads, scale, log_sum_exp,
                              grad_context, grad_queries, grad_qkv, scratch[0][0],
                              scratch[1][0], scratch[2][0], scratch[3][0], scratch[4][0])


@jit(parallel=True)
def packed_attention_backward_parallel(queries, qkv, offsets, n_heads, scale, log_sum_exp,
                                       grad_context, grad_queries, grad_qkv, n_threads):
    """:func:`packed_attention_backward_serial` over ``n_threads`` Numba threads."""
    width = grad_context.shape[1] // n_heads
    scratch = _packed_backward_scratch(n_threads, queries, offsets, width)
    for item in prange((offsets.shape[0] - 1) * n_heads):
        t = numba.get_thread_id()
        _packed_backward_item(item, queries, qkv, offsets, n_heads, scale, log_sum_exp,
                              grad_context, grad_queries, grad_qkv, scratch[0][t],
                              scratch[1][t], scratch[2][t], scratch[3][t], scratch[4][t])
