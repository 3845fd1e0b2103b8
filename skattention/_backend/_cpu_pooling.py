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
    "packed_pooling_forward_serial", "packed_pooling_forward_parallel",
    "packed_pooling_backward_serial", "packed_pooling_backward_parallel",
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


@jit()
def _packed_pool_item(b, states, offsets, steps, query, scale, context, weights, scores,
                      inv_totals, acc):
    """Attention pooling of sequence ``b``, all heads, over packed rows.

    Each row is read whole, once to score it and once to weight it, for every
    head. Per head it is the padded kernel's arithmetic (:func:`_pool_forward_item`),
    in the same order, so the two give the same numbers. Parameters as in
    :func:`packed_pooling_forward_serial`; ``scores`` (H, >= longest),
    ``inv_totals`` (H,) and ``acc`` (H * D,) are this thread's float64 scratch.
    """
    n_heads, width = query.shape
    first = offsets[b]
    n = offsets[b + 1] - first
    weights[b, :, :] = 0
    if n == 0:
        context[b, :, :] = 0
        return
    for j in range(n):
        row = states[first + j]
        for h in range(n_heads):
            q = query[h]
            s = 0.0
            for d in range(width):
                s += np.float64(q[d]) * row[h * width + d]
            scores[h, j] = s * scale
    for h in range(n_heads):
        row_max = scores[h, 0]
        for j in range(1, n):
            row_max = max(row_max, scores[h, j])
        total = 0.0
        for j in range(n):
            e = math.exp(scores[h, j] - row_max)
            scores[h, j] = e
            total += e
        inv_totals[h] = 1.0 / total
    acc[:] = 0.0
    for j in range(n):
        row = states[first + j]
        step = steps[first + j]
        for h in range(n_heads):
            p = scores[h, j] * inv_totals[h]
            weights[b, h, step] = p
            for d in range(width):
                acc[h * width + d] += p * row[h * width + d]
    for h in range(n_heads):
        for d in range(width):
            context[b, h, d] = acc[h * width + d]


@jit()
def _longest(offsets):
    longest = 1
    for b in range(offsets.shape[0] - 1):
        longest = max(longest, offsets[b + 1] - offsets[b])
    return longest


@jit()
def packed_pooling_forward_serial(states, offsets, steps, query, scale, context, weights):
    """Attention pooling with a learned query over packed rows, one thread.

    Parameters
    ----------
    states : ndarray of shape (R, H * D)
        The real steps' states, sequence after sequence; head ``h`` in
        columns ``h * D .. (h + 1) * D``.
    offsets : ndarray of shape (B + 1,), int64
        Sequence ``b`` owns rows ``offsets[b] .. offsets[b + 1]``.
    steps : ndarray of shape (R,), int64
        Each row's position in its sequence, in ``[0, L)``.
    query : ndarray of shape (H, D)
    scale : float
        Score multiplier (float64).
    context : ndarray of shape (B, H, D)
        Output.
    weights : ndarray of shape (B, H, L)
        Output: the softmax over each sequence's rows at their steps, 0
        elsewhere; all 0 (and a zero context) for a sequence without rows.
    """
    n_heads, width = query.shape
    scores = np.empty((1, n_heads, _longest(offsets)), dtype=np.float64)
    inv_totals = np.empty((1, n_heads), dtype=np.float64)
    acc = np.empty((1, n_heads * width), dtype=np.float64)
    for b in range(offsets.shape[0] - 1):
        _packed_pool_item(b, states, offsets, steps, query, scale, context, weights,
                          scores[0], inv_totals[0], acc[0])


@jit(parallel=True)
def packed_pooling_forward_parallel(states, offsets, steps, query, scale, context, weights,
                                    n_threads):
    """Parallel build of :func:`packed_pooling_forward_serial` (thread count last)."""
    n_heads, width = query.shape
    scores = np.empty((n_threads, n_heads, _longest(offsets)), dtype=np.float64)
    inv_totals = np.empty((n_threads, n_heads), dtype=np.float64)
    acc = np.empty((n_threads, n_heads * width), dtype=np.float64)
    for b in prange(offsets.shape[0] - 1):
        t = numba.get_thread_id()
        _packed_pool_item(b, states, offsets, steps, query, scale, context, weights,
                          scores[t], inv_totals[t], acc[t])


@jit()
def _packed_pool_backward_item(b, states, offsets, steps, query, scale, weights, grad_context,
                               grad_states, partial, grad_weights):
    """Backward of attention pooling for sequence ``b``, all heads, over packed rows.

    Per head the arithmetic of :func:`_pool_backward_item` in the same
    order; a row's gradient is its value gradient plus its key gradient,
    each rounded to the output dtype first, as the padded path adds them.
    ``partial`` (B, H, D) receives this sequence's query-gradient share;
    ``grad_weights`` is this thread's float64 scratch (>= longest).
    """
    n_heads, width = query.shape
    dt = grad_states.dtype.type
    first = offsets[b]
    n = offsets[b + 1] - first
    partial[b, :, :] = 0.0
    for h in range(n_heads):
        col = h * width
        g = grad_context[b, h]
        q = query[h]
        w = weights[b, h]
        dq = partial[b, h]
        dot = 0.0
        for j in range(n):
            row = states[first + j]
            s = 0.0
            for d in range(width):
                s += np.float64(g[d]) * row[col + d]
            grad_weights[j] = s
            dot += w[steps[first + j]] * s
        for j in range(n):
            row = states[first + j]
            out = grad_states[first + j]
            p = np.float64(w[steps[first + j]])
            dz = p * (grad_weights[j] - dot) * scale
            for d in range(width):
                out[col + d] = dt(p * g[d]) + dt(dz * q[d])
                dq[d] += dz * row[col + d]


@jit()
def packed_pooling_backward_serial(states, offsets, steps, query, scale, weights, grad_context,
                                   grad_states, grad_query):
    """Backward of :func:`packed_pooling_forward_serial`, one thread.

    Parameters
    ----------
    states, offsets, steps, query, scale :
        As in the forward pass.
    weights : ndarray of shape (B, H, L)
        Weights of the forward pass.
    grad_context : ndarray of shape (B, H, D)
    grad_states : ndarray of shape (R, H * D)
        Output: the gradient of each row (as key and as value).
    grad_query : ndarray of shape (H, D)
        Output: summed over the batch in a fixed order.
    """
    partial = np.empty((offsets.shape[0] - 1,) + query.shape, dtype=np.float64)
    grad_weights = np.empty((1, _longest(offsets)), dtype=np.float64)
    for b in range(offsets.shape[0] - 1):
        _packed_pool_backward_item(b, states, offsets, steps, query, scale, weights,
                                   grad_context, grad_states, partial, grad_weights[0])
    _sum_over_batch(partial, grad_query)


@jit(parallel=True)
def packed_pooling_backward_parallel(states, offsets, steps, query, scale, weights,
                                     grad_context, grad_states, grad_query, n_threads):
    """Parallel build of :func:`packed_pooling_backward_serial` (thread count last)."""
    partial = np.empty((offsets.shape[0] - 1,) + query.shape, dtype=np.float64)
    grad_weights = np.empty((n_threads, _longest(offsets)), dtype=np.float64)
    for b in prange(offsets.shape[0] - 1):
        t = numba.get_thread_id()
        _packed_pool_backward_item(b, states, offsets, steps, query, scale, weights,
                                   grad_context, grad_states, partial, grad_weights[t])
    _sum_over_batch(partial, grad_query)
