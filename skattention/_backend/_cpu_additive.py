"""Numba CPU kernels of additive (Bahdanau) attention, forward and backward.

Scores ``s_ij = v_a . tanh(qp_i + kp_j)`` where the caller passes the
projections ``qp = q W_q`` and ``kp = k W_k``. Masking, the softmax, the
per-thread scratch and the determinism rules are those of
:mod:`._cpu_attention`, whose helpers these kernels share.
"""

import math

import numba
import numpy as np
from numba import prange

from .._jit import jit
from ._blas import gemm
from ._cpu_attention import (
    _backward_scratch,
    _forward_scratch,
    _gather_columns,
    _keys_of,
    _masked_softmax_rows,
    _prepare_item,
    _scatter_rows,
    _scatter_weights,
    _softmax_backward_rows,
)

__all__ = [
    "additive_attention_forward_serial",
    "additive_attention_forward_parallel",
    "additive_attention_backward_serial",
    "additive_attention_backward_parallel",
]


@jit()
def _additive_scores(query_proj, key_proj, score_vector, counts, scores):
    """Bahdanau scores ``s_ij = sum_a v_a tanh(qp_ia + kp_ja)`` of visible keys.

    Parameters
    ----------
    query_proj : ndarray of shape (Lq, A)
    key_proj : ndarray of shape (n, A)
        Projections of the real keys.
    score_vector : ndarray of shape (A,)
    counts : ndarray of shape (Lq,), int64
    scores : ndarray of shape (Lq, n)
        Output; entries past ``counts[i]`` are left untouched.
    """
    width = score_vector.shape[0]
    for i in range(query_proj.shape[0]):
        for j in range(counts[i]):
            total = 0.0
            for a in range(width):
                total += score_vector[a] * math.tanh(query_proj[i, a] + key_proj[j, a])
            scores[i, j] = total


@jit()
def _additive_score_backward(query_proj, key_proj, score_vector, grad_scores, counts,
                             grad_query_proj, grad_key_proj, grad_score_vector):
    """Back-propagate score gradients through the additive score.

    Parameters
    ----------
    query_proj : ndarray of shape (Lq, A)
    key_proj : ndarray of shape (n, A)
    score_vector : ndarray of shape (A,)
    grad_scores : ndarray of shape (Lq, n)
    counts : ndarray of shape (Lq,), int64
    grad_query_proj : ndarray of shape (Lq, A)
        Output (overwritten).
    grad_key_proj : ndarray of shape (n, A)
        Output (overwritten).
    grad_score_vector : ndarray of shape (A,)
        Output (overwritten): this item's contribution.
    """
    width = score_vector.shape[0]
    grad_query_proj[:, :] = 0
    grad_key_proj[:, :] = 0
    grad_score_vector[:] = 0
    for i in range(query_proj.shape[0]):
        for j in range(counts[i]):
            g = grad_scores[i, j]
            if g == 0:
                continue
            for a in range(width):
                t = math.tanh(query_proj[i, a] + key_proj[j, a])
                grad_score_vector[a] += g * t
                pre = g * score_vector[a] * (1 - t * t)
                grad_query_proj[i, a] += pre
                grad_key_proj[j, a] += pre


@jit()
def _additive_forward_item(item, query_proj, key_proj, score_vector, v, mask, causal,
                           scale, context, weights, log_sum_exp, idx, counts, key_buf,
                           value_buf, score_buf, inv_buf):
    """Forward pass of one ``(b, h)`` pair of additive attention.

    Parameters
    ----------
    item : int
        Flat index ``b * H + h``.
    query_proj : ndarray of shape (B, H, Lq, A)
    key_proj : ndarray of shape (B, H, Lk, A)
    score_vector : ndarray of shape (A,)
    v, mask, causal, scale, context, weights, log_sum_exp :
        As in :func:`_dot_forward_item` (weights are always stored).
    idx, counts, key_buf, value_buf, score_buf, inv_buf : ndarrays
        This thread's scratch (``key_buf`` holds ``Lk*A`` entries, ``inv_buf``
        ``Lq``).
    """
    n_heads = query_proj.shape[1]
    b = item // n_heads
    h = item % n_heads
    n_queries = query_proj.shape[2]
    n, prefix = _prepare_item(mask[b], causal, n_queries, idx, counts)
    if n == 0:
        context[b, h, :, :] = 0
        weights[b, h, :, :] = 0
        log_sum_exp[b, h, :] = 0
        return
    keys = _keys_of(key_proj[b, h], idx, n, prefix, key_buf)
    values = _keys_of(v[b, h], idx, n, prefix, value_buf)
    scores = score_buf[: n_queries * n].reshape((n_queries, n))
    _additive_scores(query_proj[b, h], keys, score_vector, counts, scores)
    _masked_softmax_rows(scores, counts, scale, log_sum_exp[b, h], inv_buf)
    gemm(scores, values, context[b, h])
    _scatter_weights(scores, idx, n, prefix, weights[b, h])


@jit()
def _additive_backward_item(item, query_proj, key_proj, score_vector, v, mask, causal,
                            scale, weights, grad_context, grad_query_proj, grad_key_proj, grad_v,
                            grad_score_vector, idx, counts, key_buf, value_buf, prob_buf,
                            grad_buf, row_buf):
    """Backward pass of one ``(b, h)`` pair of additive attention.

    ``grad_score_vector`` has shape (B, H, A): each item writes its own
    contribution, summed by the caller in a fixed order.
    """
    n_heads = query_proj.shape[1]
    b = item // n_heads
    h = item % n_heads
    n_queries = query_proj.shape[2]
    n, prefix = _prepare_item(mask[b], causal, n_queries, idx, counts)
    if n == 0:
        grad_query_proj[b, h, :, :] = 0
        grad_key_proj[b, h, :, :] = 0
        grad_v[b, h, :, :] = 0
        grad_score_vector[b, h, :] = 0
        return
    keys = _keys_of(key_proj[b, h], idx, n, prefix, key_buf)
    values = _keys_of(v[b, h], idx, n, prefix, value_buf)
    probs = _gather_columns(weights[b, h], idx, n, prob_buf)
    grad_scores = grad_buf[: n_queries * n].reshape((n_queries, n))
    if prefix:
        grad_values = grad_v[b, h, :n]
    else:
        grad_values = row_buf[: n * v.shape[3]].reshape((n, v.shape[3]))
    gemm(probs, grad_context[b, h], grad_values, True)
    _scatter_rows(grad_values, idx, n, prefix, grad_v[b, h])
    gemm(grad_context[b, h], values, grad_scores, False, True)
    _softmax_backward_rows(probs, grad_scores, counts, scale)
    if prefix:
        grad_keys = grad_key_proj[b, h, :n]
    else:
        grad_keys = row_buf[: n * key_proj.shape[3]].reshape((n, key_proj.shape[3]))
    _additive_score_backward(query_proj[b, h], keys, score_vector, grad_scores, counts,
                             grad_query_proj[b, h], grad_keys, grad_score_vector[b, h])
    _scatter_rows(grad_keys, idx, n, prefix, grad_key_proj[b, h])


@jit()
def additive_attention_forward_serial(query_proj, key_proj, score_vector, v, mask, causal,
                                      scale, context, weights, log_sum_exp):
    """Additive (Bahdanau) attention forward pass, one thread.

    Parameters
    ----------
    query_proj : ndarray of shape (B, H, Lq, A)
        ``q W_q``.
    key_proj : ndarray of shape (B, H, Lk, A)
        ``k W_k``.
    score_vector : ndarray of shape (A,)
        The vector ``v`` of the score ``v . tanh(q W_q + k W_k)``.
    v : ndarray of shape (B, H, Lk, Dv)
        Values.
    mask : ndarray of shape (B, Lk), bool
    causal : bool
    scale : float
        Score multiplier of the arrays' dtype (1 for the Bahdanau score).
    context : ndarray of shape (B, H, Lq, Dv)
        Output.
    weights : ndarray of shape (B, H, Lq, Lk)
        Output.
    log_sum_exp : ndarray of shape (B, H, Lq)
        Output: the softmax row statistics.
    """
    idx, counts, key_buf, value_buf, score_buf = _forward_scratch(
        1, query_proj, key_proj, v, query_proj.shape[2])
    inv_buf = np.empty((1, query_proj.shape[2]), dtype=v.dtype)
    for item in range(v.shape[0] * v.shape[1]):
        _additive_forward_item(item, query_proj, key_proj, score_vector, v, mask, causal,
                               scale, context, weights, log_sum_exp, idx[0], counts[0], key_buf[0],
                               value_buf[0], score_buf[0], inv_buf[0])


@jit(parallel=True)
def additive_attention_forward_parallel(query_proj, key_proj, score_vector, v, mask,
                                        causal, scale, context, weights, log_sum_exp,
                                        n_threads):
    """Additive attention forward pass over all Numba threads.

    Same parameters as :func:`additive_attention_forward_serial`, plus ``n_threads``.
    """
    idx, counts, key_buf, value_buf, score_buf = _forward_scratch(
        n_threads, query_proj, key_proj, v, query_proj.shape[2])
    inv_buf = np.empty((n_threads, query_proj.shape[2]), dtype=v.dtype)
    for item in prange(v.shape[0] * v.shape[1]):
        t = numba.get_thread_id()
        _additive_forward_item(item, query_proj, key_proj, score_vector, v, mask, causal,
                               scale, context, weights, log_sum_exp, idx[t], counts[t], key_buf[t],
                               value_buf[t], score_buf[t], inv_buf[t])


@jit()
def additive_attention_backward_serial(query_proj, key_proj, score_vector, v, mask, causal,
                                       scale, weights, grad_context, grad_query_proj,
                                       grad_key_proj, grad_v, grad_score_vector):
    """Additive attention backward pass, one thread.

    Parameters
    ----------
    query_proj, key_proj, score_vector, v, mask, causal, scale :
        As in :func:`additive_attention_forward_serial`.
    weights : ndarray of shape (B, H, Lq, Lk)
    grad_context : ndarray of shape (B, H, Lq, Dv)
    grad_query_proj : ndarray of shape (B, H, Lq, A)
        Output.
    grad_key_proj : ndarray of shape (B, H, Lk, A)
        Output.
    grad_v : ndarray of shape (B, H, Lk, Dv)
        Output.
    grad_score_vector : ndarray of shape (B, H, A)
        Output: per-``(b, h)`` contributions, to be summed by the caller.
    """
    scratch = _backward_scratch(1, query_proj, key_proj, v, query_proj.shape[2])
    for item in range(v.shape[0] * v.shape[1]):
        _additive_backward_item(item, query_proj, key_proj, score_vector, v, mask, causal,
                                scale, weights, grad_context, grad_query_proj, grad_key_proj,
                                grad_v, grad_score_vector, scratch[0][0], scratch[1][0],
                                scratch[2][0], scratch[3][0], scratch[4][0], scratch[5][0],
                                scratch[6][0])


@jit(parallel=True)
def additive_attention_backward_parallel(query_proj, key_proj, score_vector, v, mask,
                                         causal, scale, weights, grad_context, grad_query_proj,
                                         grad_key_proj, grad_v, grad_score_vector, n_threads):
    """Additive attention backward pass over all Numba threads.

    Same parameters as :func:`additive_attention_backward_serial`, plus ``n_threads``.
    """
    scratch = _backward_scratch(n_threads, query_proj, key_proj, v, query_proj.shape[2])
    for item in prange(v.shape[0] * v.shape[1]):
        t = numba.get_thread_id()
        _additive_backward_item(item, query_proj, key_proj, score_vector, v, mask, causal,
                                scale, weights, grad_context, grad_query_proj, grad_key_proj,
                                grad_v, grad_score_vector, scratch[0][t], scratch[1][t],
                                scratch[2][t], scratch[3][t], scratch[4][t], scratch[5][t],
                                scratch[6][t])
