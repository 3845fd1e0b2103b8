"""Numba CPU kernels of attention pooling with a learned query.

The last layer of a sequence model: per head ``h`` a learned query scores
every position, ``z_l = scale * query[h] . keys[b, h, l]``; a softmax over
the real positions weights the values into one context vector per sequence.
Shape letters: ``B`` batch, ``H`` heads, ``L`` positions, ``D`` key/query
width, ``Dv`` value width.

Determinism: ``prange`` over ``B * H`` items with disjoint writes; the query
gradient, a sum over the batch, is written as one partial per item and
summed serially in index order. Parallel drivers take the thread count as a
trailing argument (see :mod:`._cpu_attention`).
"""

import math

import numba
import numpy as np
from numba import prange

from .._jit import jit

__all__ = [
    "attention_pooling_forward_serial", "attention_pooling_forward_parallel",
    "attention_pooling_backward_serial", "attention_pooling_backward_parallel",
]


@jit()
def _pool_forward_item(item, keys, values, query, mask, scale, context, weights,
                       scores, acc):
    """Attention pooling of one ``(b, h)`` pair.

    Parameters
    ----------
    item : int
        Flat index ``b * H + h``.
    keys, values, query, mask, scale, context, weights :
        As in :func:`attention_pooling_forward_serial`.
    scores : ndarray of shape (L,), float64
        This thread's scratch for the scaled scores.
    acc : ndarray of shape (Dv,), float64
        This thread's scratch for the context sum.
    """
    n_heads = keys.shape[1]
    b = item // n_heads
    h = item % n_heads
    n_positions, width = keys.shape[2], keys.shape[3]
    k = keys[b, h]
    q = query[h]
    w = weights[b, h]
    n_real = 0
    row_max = 0.0
    for pos in range(n_positions):
        if not mask[b, pos]:
            continue
        s = 0.0
        for d in range(width):
            s += np.float64(q[d]) * k[pos, d]
        # Scaling before taking the maximum keeps the max-subtraction valid
        # for a scale of either sign.
        s *= scale
        scores[pos] = s
        if n_real == 0 or s > row_max:
            row_max = s
        n_real += 1
    if n_real == 0:
        # A sequence without real positions pools to zeros rather than to the
        # 0/0 of an empty softmax.
        w[:] = 0
        context[b, h, :] = 0
        return
    total = 0.0
    for pos in range(n_positions):
        if mask[b, pos]:
            # exp(z - max) <= 1 and the maximum contributes 1, so the sum lies
            # in [1, L] and logits of any magnitude give finite weights.
            e = math.exp(scores[pos] - row_max)
            scores[pos] = e
            total += e
    inv_total = 1.0 / total
    acc[:] = 0.0
    v = values[b, h]
    for pos in range(n_positions):
        if not mask[b, pos]:
            w[pos] = 0
            continue
        p = scores[pos] * inv_total
        w[pos] = p
        for d in range(v.shape[1]):
            acc[d] += p * v[pos, d]
    for d in range(v.shape[1]):
        context[b, h, d] = acc[d]


@jit()
def _pool_backward_item(item, keys, values, query, mask, scale, weights, grad_context,
                        grad_keys, grad_values, partial, grad_weights):
    """Backward pass of attention pooling for one ``(b, h)`` pair.

    With ``p`` the weights and ``g`` the context gradient:
    ``dp_l = g . v_l``, ``dz_l = p_l (dp_l - sum_k p_k dp_k)``,
    ``dv_l = p_l g``, ``dk_l = scale dz_l q`` and this item's share of the
    query gradient is ``scale sum_l dz_l k_l``.

    Parameters
    ----------
    item : int
        Flat index ``b * H + h``.
    keys, values, query, mask, scale, weights, grad_context, grad_keys, grad_values :
        As in :func:`attention_pooling_backward_serial`.
    partial : ndarray of shape (B, H, D), float64
        Output: this item's contribution to the query gradient, summed over
        the batch afterwards in a fixed order.
    grad_weights : ndarray of shape (L,), float64
        This thread's scratch for ``dp``.
    """
    n_heads = keys.shape[1]
    b = item // n_heads
    h = item % n_heads
    n_positions, width = keys.shape[2], keys.shape[3]
    k = keys[b, h]
    v = values[b, h]
    q = query[h]
    w = weights[b, h]
    g = grad_context[b, h]
    dk = grad_keys[b, h]
    dv = grad_values[b, h]
    dq = partial[b, h]
    dq[:] = 0.0
    dot = 0.0
    for pos in range(n_positions):
        if mask[b, pos]:
            s = 0.0
            for d in range(v.shape[1]):
                s += np.float64(g[d]) * v[pos, d]
            grad_weights[pos] = s
            dot += w[pos] * s
    for pos in range(n_positions):
        if not mask[b, pos]:
            dk[pos, :] = 0
            dv[pos, :] = 0
            continue
        p = np.float64(w[pos])
        dz = p * (grad_weights[pos] - dot) * scale
        for d in range(v.shape[1]):
            dv[pos, d] = p * g[d]
        for d in range(width):
            dk[pos, d] = dz * q[d]
            dq[d] += dz * k[pos, d]


@jit()
def _sum_over_batch(partial, grad_query):
    """Sum ``partial`` (B, H, D) over ``b`` in index order into ``grad_query`` (H, D)."""
    for h in range(partial.shape[1]):
        for d in range(partial.shape[2]):
            total = 0.0
            for b in range(partial.shape[0]):
                total += partial[b, h, d]
            grad_query[h, d] = total


@jit()
def attention_pooling_forward_serial(keys, values, query, mask, scale, context, weights):
    """Attention pooling with a learned query, one thread.

    Parameters
    ----------
    keys : ndarray of shape (B, H, L, D)
    values : ndarray of shape (B, H, L, Dv)
    query : ndarray of shape (H, D)
        One learned query per head.
    mask : ndarray of shape (B, L), bool
        True at real positions.
    scale : float
        Score multiplier (float64).
    context : ndarray of shape (B, H, Dv)
        Output: ``sum_l weights[b, h, l] * values[b, h, l]``.
    weights : ndarray of shape (B, H, L)
        Output: softmax of the scaled scores over the real positions, exactly
        0 at padded positions; all 0 (and a zero context) for a sequence
        without real positions.
    """
    scores = np.empty((1, keys.shape[2]), dtype=np.float64)
    acc = np.empty((1, values.shape[3]), dtype=np.float64)
    for item in range(keys.shape[0] * keys.shape[1]):
        _pool_forward_item(item, keys, values, query, mask, scale, context, weights,
                           scores[0], acc[0])


@jit(parallel=True)
def attention_pooling_forward_parallel(keys, values, query, mask, scale, context, weights,
                                       n_threads):
    """Parallel build of :func:`attention_pooling_forward_serial`.

    Takes the thread count in force last (it sizes the per-thread scratch).
    """
    scores = np.empty((n_threads, keys.shape[2]), dtype=np.float64)
    acc = np.empty((n_threads, values.shape[3]), dtype=np.float64)
    for item in prange(keys.shape[0] * keys.shape[1]):
        t = numba.get_thread_id()
        _pool_forward_item(item, keys, values, query, mask, scale, context, weights,
                           scores[t], acc[t])


@jit()
def attention_pooling_backward_serial(keys, values, query, mask, scale, weights,
                                      grad_context, grad_keys, grad_values, grad_query):
    """Backward pass of attention pooling, one thread.

    Parameters
    ----------
    keys, values, query, mask, scale :
        As in :func:`attention_pooling_forward_serial`.
    weights : ndarray of shape (B, H, L)
        Weights of the forward pass.
    grad_context : ndarray of shape (B, H, Dv)
    grad_keys : ndarray of shape (B, H, L, D)
        Output; 0 at padded positions.
    grad_values : ndarray of shape (B, H, L, Dv)
        Output; 0 at padded positions.
    grad_query : ndarray of shape (H, D)
        Output: summed over the batch in a fixed order.
    """
    batch, n_heads = keys.shape[0], keys.shape[1]
    partial = np.empty((batch, n_heads, keys.shape[3]), dtype=np.float64)
    grad_weights = np.empty((1, keys.shape[2]), dtype=np.float64)
    for item in range(batch * n_heads):
        _pool_backward_item(item, keys, values, query, mask, scale, weights, grad_context,
                            grad_keys, grad_values, partial, grad_weights[0])
    _sum_over_batch(partial, grad_query)


@jit(parallel=True)
def attention_pooling_backward_parallel(keys, values, query, mask, scale, weights,
                                        grad_context, grad_keys, grad_values, grad_query,
                                        n_threads):
    """Parallel build of :func:`attention_pooling_backward_serial`.

    Takes the thread count in force last (it sizes the per-thread scratch).
    """
    batch, n_heads = keys.shape[0], keys.shape[1]
    partial = np.empty((batch, n_heads, keys.shape[3]), dtype=np.float64)
    grad_weights = np.empty((n_threads, keys.shape[2]), dtype=np.float64)
    for item in prange(batch * n_heads):
        t = numba.get_thread_id()
        _pool_backward_item(item, keys, values, query, mask, scale, weights, grad_context,
                            grad_keys, grad_values, partial, grad_weights[t])
    _sum_over_batch(partial, grad_query)
