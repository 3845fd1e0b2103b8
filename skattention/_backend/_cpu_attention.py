"""Numba CPU kernels for masked multi-head attention, forward and backward.

Shape letters used throughout: ``B`` batch, ``H`` heads, ``Lq`` queries,
``Lk`` keys, ``D`` query/key width, ``Dv`` value width, ``A`` width of the
additive (Bahdanau) score's hidden layer.

Two score families have kernels of their own (the additive one in
:mod:`._cpu_additive`):

* the *dot* family, ``s_ij = scale * q_i . k_j``; "dot", "scaled_dot" and
  "general" (Luong, ``q W k^T``: the caller passes ``q W`` as the query) all
  run through it;
* the *additive* family, ``s_ij = v_a . tanh(qp_i + kp_j)`` where the caller
  passes the projections ``qp = q W_q`` and ``kp = k W_k``.

Every kernel works on one ``(b, h)`` pair at a time. The serial and the
parallel driver of a kernel are distinct functions (Numba's cache key ignores
the ``parallel`` flag) that loop over ``B * H`` items; each item writes only
its own ``(b, h)`` slices of the outputs, so results are bitwise identical for
any number of threads. Scratch memory is allocated once per call, one slice
per thread; parallel drivers take the thread count as an argument because
``numba.get_num_threads()`` inside a kernel stops Numba from caching it.

Padded (masked) keys are skipped, not merely masked: the real keys of a
sequence are gathered (or, for trailing padding, sliced) so that the matrix
products run only over real keys. Causal masking is top-left aligned, as in
``torch.nn.functional.scaled_dot_product_attention``: query ``i`` sees keys
``j <= i``. A query that sees no real key gets all-zero weights and a zero
context.
"""

import math

import numba
import numpy as np
from numba import prange

from .._jit import jit
from ._blas import gemm
from ._mathops import fast_exp

__all__ = [
    "dot_attention_forward_serial",
    "dot_attention_forward_parallel",
    "dot_attention_backward_serial",
    "dot_attention_backward_parallel",
]


@jit()
def _real_keys(mask_row, idx):
    """Collect the positions of the real keys of one sequence.

    Parameters
    ----------
    mask_row : ndarray of shape (Lk,), bool
        True at real (unpadded) keys.
    idx : ndarray of shape (Lk,), int64
        Output: the first ``n`` entries receive the real positions, ascending.

    Returns
    -------
    n : int
        Number of real keys.
    """
    n = 0
    for j in range(mask_row.shape[0]):
        if mask_row[j]:
            idx[n] = j
            n += 1
    return n


@jit()
def _visible_counts(idx, n, n_queries, causal, counts):
    """Number of real keys each query may attend to.

    Parameters
    ----------
    idx : ndarray of shape (Lk,), int64
        Ascending positions of the real keys (first ``n`` entries used).
    n : int
        Number of real keys.
    n_queries : int
        Number of queries ``Lq``.
    causal : bool
        If True, query ``i`` sees only keys at positions ``<= i``.
    counts : ndarray of shape (Lq,), int64
        Output: ``counts[i]`` real keys (the first ones in ``idx``) are visible.
    """
    if not causal:
        for i in range(n_queries):
            counts[i] = n
        return
    visible = 0
    for i in range(n_queries):
        while visible < n and idx[visible] <= i:
            visible += 1
        counts[i] = visible


@jit()
def _gather_rows(src, idx, n, buffer):
    """Copy rows ``src[idx[:n]]`` into the front of a flat buffer.

    Parameters
    ----------
    src : ndarray of shape (L, W)
    idx : ndarray of shape (>= n,), int64
    n : int
    buffer : ndarray of shape (>= n * W,)

    Returns
    -------
    rows : ndarray of shape (n, W)
        A C-contiguous view of ``buffer`` holding the gathered rows.
    """
    width = src.shape[1]
    rows = buffer[: n * width].reshape((n, width))
    for jj in range(n):
        rows[jj, :] = src[idx[jj], :]
    return rows


# Reassociation lets LLVM vectorise the row reductions (max, sums); it is a
# fixed property of the compiled code, so results stay bitwise reproducible.
_ROW_MATH = {"reassoc", "nsz", "contract", "arcp"}


@jit(fastmath={"reassoc", "nsz", "nnan", "ninf"})
def _row_max(row, n):
    """Maximum (up to rounding) of ``row[:n]``, ``n >= 1``, of finite values.

    Written as arithmetic, ``m + (v - m) * (v > m)``, because LLVM vectorises
    that reduction but not a compare-and-select or ``max()``; the result may
    differ from the true maximum by rounding, which the softmax does not mind
    (it is only the shift that keeps ``exp`` in range, and the log-sum-exp
    records the shift actually used).

    Parameters
    ----------
    row : ndarray of shape (>= n,)
    n : int

    Returns
    -------
    row_max : float
    """
    row_max = row[0]
    for j in range(1, n):
        value = row[j]
        row_max = row_max + (value - row_max) * (value > row_max)
    return row_max


@jit(fastmath=_ROW_MATH)
def _exp_rows(scores, counts, scale, log_sum_exp, inv_totals):
    """Unnormalised softmax of ``scale * scores`` over the visible keys, in place.

    Parameters
    ----------
    scores : ndarray of shape (Lq, n)
        Raw scores over the real keys; overwritten with
        ``exp(scale * s_ij - shift_i)``, exactly 0 past ``counts[i]``.
    counts : ndarray of shape (Lq,), int64
        Visible keys per query; a row with 0 visible keys becomes all zeros.
    scale : float
        Multiplier applied to the scores before the softmax (positive), of
        the scores' dtype.
    log_sum_exp : ndarray of shape (Lq,)
        Output: ``log(sum_j exp(scale * s_ij))`` over the visible keys, from
        which the backward pass can recompute the probabilities (0 for rows
        without a visible key).
    inv_totals : ndarray of shape (>= Lq,)
        Output: the factor that turns row ``i`` into probabilities (0 for
        rows without a visible key).
    """
    n_queries, n = scores.shape
    zero = scores.dtype.type(0)
    one = scores.dtype.type(1)
    for i in range(n_queries):
        row = scores[i]
        visible = counts[i]
        if visible == 0:
            row[:] = zero
            log_sum_exp[i] = zero
            inv_totals[i] = zero
            continue
        row_max = _row_max(row, visible)
        # Subtracting the row maximum keeps exp() <= 1, so logits of any
        # magnitude stay finite.
        shift = row_max * scale
        total = zero
        for j in range(visible):
            e = fast_exp(row[j] * scale - shift)
            row[j] = e
            total += e
        log_sum_exp[i] = shift + math.log(total)
        inv_totals[i] = one / total
        for j in range(visible, n):
            row[j] = zero


@jit(fastmath=_ROW_MATH)
def _scale_rows(rows, factors):
    """``rows[i] *= factors[i]`` for every row, in place."""
    for i in range(rows.shape[0]):
        factor = factors[i]
        row = rows[i]
        for j in range(row.shape[0]):
            row[j] *= factor


@jit()
def _masked_softmax_rows(scores, counts, scale, log_sum_exp, inv_totals):
    """Row-wise softmax of ``scale * scores`` over the visible keys, in place.

    :func:`_exp_rows` followed by the normalisation: same parameters, and
    ``scores`` ends up holding the probabilities.
    """
    _exp_rows(scores, counts, scale, log_sum_exp, inv_totals)
    _scale_rows(scores, inv_totals)


@jit(fastmath=_ROW_MATH)
def _recompute_probs(scores, counts, scale, log_sum_exp):
    """Probabilities ``exp(scale * s_ij - lse_i)`` from raw scores, in place.

    Parameters
    ----------
    scores : ndarray of shape (Lq, n)
        Raw scores over the real keys; overwritten with the probabilities
        (exactly 0 past ``counts[i]``).
    counts : ndarray of shape (Lq,), int64
    scale : float
    log_sum_exp : ndarray of shape (Lq,)
        Row statistics saved by :func:`_masked_softmax_rows`.
    """
    n_queries, n = scores.shape
    zero = scores.dtype.type(0)
    for i in range(n_queries):
        row = scores[i]
        visible = counts[i]
        shift = log_sum_exp[i]
        for j in range(visible):
            row[j] = fast_exp(row[j] * scale - shift)
        for j in range(visible, n):
            row[j] = zero


@jit(fastmath=_ROW_MATH)
def _softmax_backward_rows(probs, grad_probs, counts, scale):
    """Gradient of the scores from that of the probabilities, in place.

    Computes ``ds_ij = scale * p_ij * (dp_ij - sum_k p_ik dp_ik)``.

    Parameters
    ----------
    probs : ndarray of shape (Lq, n)
        Softmax probabilities over the real keys.
    grad_probs : ndarray of shape (Lq, n)
        Gradient of the loss with respect to ``probs``; overwritten with the
        gradient with respect to the raw scores.
    counts : ndarray of shape (Lq,), int64
        Visible keys per query.
    scale : float
        The multiplier used in the forward softmax.
    """
    n_queries, n = probs.shape
    zero = probs.dtype.type(0)
    for i in range(n_queries):
        p = probs[i]
        g = grad_probs[i]
        visible = counts[i]
        dot = zero
        for j in range(visible):
            dot += p[j] * g[j]
        for j in range(visible):
            g[j] = p[j] * (g[j] - dot) * scale
        for j in range(visible, n):
            g[j] = zero


@jit()
def _scatter_weights(probs, idx, n, prefix, weights):
    """Write probabilities over real keys into the full ``(Lq, Lk)`` weights.

    Parameters
    ----------
    probs : ndarray of shape (Lq, n)
    idx : ndarray of shape (>= n,), int64
    n : int
    prefix : bool
        True when the real keys are exactly positions ``0 .. n-1``.
    weights : ndarray of shape (Lq, Lk)
        Output; padded keys receive exactly 0.
    """
    n_queries, n_keys = weights.shape
    for i in range(n_queries):
        if prefix:
            for j in range(n):
                weights[i, j] = probs[i, j]
            for j in range(n, n_keys):
                weights[i, j] = 0
        else:
            for j in range(n_keys):
                weights[i, j] = 0
            for jj in range(n):
                weights[i, idx[jj]] = probs[i, jj]


@jit()
def _gather_columns(weights, idx, n, buffer):
    """Copy ``weights[:, idx[:n]]`` into a C-contiguous view of a flat buffer.

    Parameters
    ----------
    weights : ndarray of shape (Lq, Lk)
    idx : ndarray of shape (>= n,), int64
    n : int
    buffer : ndarray of shape (>= Lq * n,)

    Returns
    -------
    probs : ndarray of shape (Lq, n)
    """
    n_queries = weights.shape[0]
    probs = buffer[: n_queries * n].reshape((n_queries, n))
    for i in range(n_queries):
        for jj in range(n):
            probs[i, jj] = weights[i, idx[jj]]
    return probs


@jit()
def _scatter_rows(rows, idx, n, prefix, out):
    """Write per-real-key rows into the full ``(Lk, W)`` output; zero elsewhere.

    Parameters
    ----------
    rows : ndarray of shape (n, W)
    idx : ndarray of shape (>= n,), int64
    n : int
    prefix : bool
        True when ``rows`` already is ``out[:n]`` (trailing padding).
    out : ndarray of shape (Lk, W)
    """
    if prefix:
        out[n:, :] = 0
        return
    out[:, :] = 0
    for jj in range(n):
        out[idx[jj], :] = rows[jj, :]


@jit()
def _keys_of(src, idx, n, prefix, buffer):
    """Rows of the real keys: a slice for trailing padding, else a gathered copy."""
    if prefix:
        return src[:n]
    return _gather_rows(src, idx, n, buffer)


@jit()
def _transposed_keys(src, idx, n, prefix, buffer):
    """The rows of the real keys, transposed into a C-contiguous ``(W, n)`` block.

    ``Q K^T`` through BLAS is 1.5-2x faster as a plain product with ``K^T``
    laid out in memory than with the transpose flag on ``K`` (measured for
    32 x 32 x 16 and 64 x 90 x 16 products, one thread), and the copy costs
    ``n * W`` element moves per ``(b, h)`` pair.

    Parameters
    ----------
    src : ndarray of shape (L, W)
    idx : ndarray of shape (>= n,), int64
        Positions of the real keys (used unless ``prefix``).
    n : int
    prefix : bool
        True when the real keys are rows ``0 .. n-1``.
    buffer : ndarray of shape (>= W * n,)

    Returns
    -------
    keys_t : ndarray of shape (W, n)
    """
    width = src.shape[1]
    keys_t = buffer[: width * n].reshape((width, n))
    for jj in range(n):
        row = src[jj] if prefix else src[idx[jj]]
        for e in range(width):
            keys_t[e, jj] = row[e]
    return keys_t


@jit()
def _prepare_item(mask_row, causal, n_queries, idx, counts):
    """Real-key positions and visible counts of one sequence.

    Returns
    -------
    n : int
        Number of real keys.
    prefix : bool
        Whether the real keys are positions ``0 .. n-1``.
    """
    n = _real_keys(mask_row, idx)
    _visible_counts(idx, n, n_queries, causal, counts)
    prefix = n == 0 or idx[n - 1] == n - 1
    return n, prefix


# ---------------------------------------------------------------- dot family


# Queries are processed in blocks of this many rows, so that a block's scores
# (QUERY_BLOCK x Lk) stay in the L2 cache between the two matrix products
# and the softmax instead of streaming an Lq x Lk matrix through memory.
QUERY_BLOCK = 64


@jit()
def _active_queries(skip_queries, prefix, n, n_queries, n_keys):
    """How many leading query rows of one sequence are computed.

    Self-attention over trailing padding (``skip_queries``, queries and keys
    the same steps, the real ones a prefix) computes only the ``n`` real
    query rows: the rows of padded queries are set to 0 in the forward pass
    and give a zero ``dQ`` without reading their ``dO`` (which the caller
    guarantees is 0) in the backward pass. Otherwise every row.
    """
    if skip_queries and prefix and n_queries == n_keys:
        return n
    return n_queries


@jit()
def _dot_forward_item(item, q, k, v, mask, causal, scale, context, weights, store_weights,
                      log_sum_exp, skip_queries, idx, counts, key_buf, value_buf, score_buf,
                      inv_buf):
    """Forward pass of one ``(b, h)`` pair of dot-family attention.

    Parameters
    ----------
    item : int
        Flat index ``b * H + h``.
    q, k, v : ndarrays of shape (B, H, Lq, D), (B, H, Lk, D), (B, H, Lk, Dv)
    mask : ndarray of shape (B, Lk), bool
    causal : bool
    scale : float
    context : ndarray of shape (B, H, Lq, Dv)
        Output.
    weights : ndarray of shape (B, H, Lq, Lk)
        Output, written only when ``store_weights``.
    store_weights : bool
    log_sum_exp : ndarray of shape (B, H, Lq)
        Output: the softmax row statistics.
    skip_queries : bool
        See :func:`_active_queries`.
    idx, counts, key_buf, value_buf, score_buf, inv_buf : ndarrays
        This thread's scratch (``(Lk,)``, ``(Lq,)``, ``(Lk*D,)``,
        ``(Lk*Dv,)``, ``(QUERY_BLOCK*Lk,)``, ``(QUERY_BLOCK,)``).
    """
    n_heads = q.shape[1]
    b = item // n_heads
    h = item % n_heads
    n_queries, n_keys = q.shape[2], k.shape[2]
    n, prefix = _prepare_item(mask[b], causal, n_queries, idx, counts)
    n_active = _active_queries(skip_queries, prefix, n, n_queries, n_keys)
    if n_active < n_queries:
        context[b, h, n_active:, :] = 0
        log_sum_exp[b, h, n_active:] = 0
        if store_weights:
            weights[b, h, n_active:, :] = 0
    if n == 0:
        context[b, h, :, :] = 0
        log_sum_exp[b, h, :] = 0
        if store_weights:
            weights[b, h, :, :] = 0
        return
    keys_t = _transposed_keys(k[b, h], idx, n, prefix, key_buf)
    values = _keys_of(v[b, h], idx, n, prefix, value_buf)
    direct = store_weights and n == n_keys
    for start in range(0, n_active, QUERY_BLOCK):
        stop = min(start + QUERY_BLOCK, n_active)
        if direct:
            # No padding: the weights rows are the scores buffer.
            scores = weights[b, h, start:stop]
        else:
            scores = score_buf[: (stop - start) * n].reshape((stop - start, n))
        gemm(q[b, h, start:stop], keys_t, scores)
        # The context rows (Dv wide) are normalised instead of the scores
        # (n wide): a pass over the scores fewer when the weights are not
        # stored, and the same context whether they are or not.
        _exp_rows(scores, counts[start:stop], scale, log_sum_exp[b, h, start:stop], inv_buf)
        out = context[b, h, start:stop]
        gemm(scores, values, out)
        _scale_rows(out, inv_buf)
        if store_weights:
            _scale_rows(scores, inv_buf)
            if not direct:
                _scatter_weights(scores, idx, n, prefix, weights[b, h, start:stop])


@jit()
def _dot_backward_item(item, q, k, v, mask, causal, scale, weights, use_weights,
                       log_sum_exp, grad_context, grad_q, grad_k, grad_v, skip_queries, idx,
                       counts, key_buf, key_t_buf, value_buf,
                       prob_buf, grad_buf, grad_key_buf, grad_value_buf):
    """Backward pass of one ``(b, h)`` pair of dot-family attention.

    Parameters
    ----------
    item : int
        Flat index ``b * H + h``.
    q, k, v, mask, causal, scale :
        As in the forward pass.
    weights : ndarray of shape (B, H, Lq, Lk)
        Attention weights of the forward pass (read when ``use_weights``).
    use_weights : bool
        If False, the probabilities are recomputed block by block from the
        scores and ``log_sum_exp`` (no ``Lq x Lk`` array is read).
    log_sum_exp : ndarray of shape (B, H, Lq)
        Row statistics of the forward pass.
    grad_context : ndarray of shape (B, H, Lq, Dv)
    grad_q, grad_k, grad_v : ndarrays shaped like q, k, v
        Outputs.
    skip_queries : bool
        See :func:`_active_queries`.
    idx, counts, key_buf, key_t_buf, value_buf, prob_buf, grad_buf, grad_key_buf, \
grad_value_buf : ndarrays
        This thread's scratch (``(Lk,)``, ``(Lq,)``, ``(Lk*D,)`` twice,
        ``(Lk*Dv,)``, ``(QUERY_BLOCK*Lk,)`` twice, ``(Lk*D,)``, ``(Lk*Dv,)``).
    """
    n_heads = q.shape[1]
    b = item // n_heads
    h = item % n_heads
    n_queries, n_keys = q.shape[2], k.shape[2]
    width, value_width = k.shape[3], v.shape[3]
    n, prefix = _prepare_item(mask[b], causal, n_queries, idx, counts)
    if n == 0:
        grad_q[b, h, :, :] = 0
        grad_k[b, h, :, :] = 0
        grad_v[b, h, :, :] = 0
        return
    n_active = _active_queries(skip_queries, prefix, n, n_queries, n_keys)
    if n_active < n_queries:
        grad_q[b, h, n_active:, :] = 0
    keys = _keys_of(k[b, h], idx, n, prefix, key_buf)
    keys_t = _transposed_keys(k[b, h], idx, n, prefix, key_t_buf)
    values_t = _transposed_keys(v[b, h], idx, n, prefix, value_buf)
    # dK and dV sum over query blocks; for trailing padding they accumulate
    # straight into the outputs.
    if prefix:
        grad_keys = grad_k[b, h, :n]
        grad_values = grad_v[b, h, :n]
    else:
        grad_keys = grad_key_buf[: n * width].reshape((n, width))
        grad_values = grad_value_buf[: n * value_width].reshape((n, value_width))
    if n_active == 0:
        grad_keys[:, :] = 0
        grad_values[:, :] = 0
    for start in range(0, n_active, QUERY_BLOCK):
        stop = min(start + QUERY_BLOCK, n_active)
        rows = stop - start
        queries = q[b, h, start:stop]
        if not use_weights:
            probs = prob_buf[: rows * n].reshape((rows, n))
            gemm(queries, keys_t, probs)
            _recompute_probs(probs, counts[start:stop], scale, log_sum_exp[b, h, start:stop])
        elif n == n_keys:
            probs = weights[b, h, start:stop]
        else:
            probs = _gather_columns(weights[b, h, start:stop], idx, n, prob_buf)
        # The first block overwrites the dK/dV accumulators, later ones add.
        accumulate = 0.0 if start == 0 else 1.0
        grad_out = grad_context[b, h, start:stop]
        gemm(probs, grad_out, grad_values, True, False, 1.0, accumulate)
        grad_scores = grad_buf[: rows * n].reshape((rows, n))
        gemm(grad_out, values_t, grad_scores)
        _softmax_backward_rows(probs, grad_scores, counts[start:stop], scale)
        gemm(grad_scores, keys, grad_q[b, h, start:stop])
        gemm(grad_scores, queries, grad_keys, True, False, 1.0, accumulate)
    _scatter_rows(grad_values, idx, n, prefix, grad_v[b, h])
    _scatter_rows(grad_keys, idx, n, prefix, grad_k[b, h])


@jit()
def _forward_scratch(n_threads, q, k, v, score_rows):
    """Per-thread scratch of the forward kernels (``score_rows`` rows of scores)."""
    n_queries, n_keys = q.shape[2], k.shape[2]
    idx = np.empty((n_threads, n_keys), dtype=np.int64)
    counts = np.empty((n_threads, n_queries), dtype=np.int64)
    key_buf = np.empty((n_threads, n_keys * k.shape[3]), dtype=q.dtype)
    value_buf = np.empty((n_threads, n_keys * v.shape[3]), dtype=q.dtype)
    score_buf = np.empty((n_threads, score_rows * n_keys), dtype=q.dtype)
    return idx, counts, key_buf, value_buf, score_buf


@jit()
def _backward_scratch(n_threads, q, k, v, score_rows):
    """Per-thread scratch of the backward kernels."""
    n_keys = k.shape[2]
    idx, counts, key_buf, value_buf, prob_buf = _forward_scratch(n_threads, q, k, v,
                                                                 score_rows)
    grad_buf = np.empty((n_threads, score_rows * n_keys), dtype=q.dtype)
    row_buf = np.empty((n_threads, n_keys * max(k.shape[3], v.shape[3])), dtype=q.dtype)
    return idx, counts, key_buf, value_buf, prob_buf, grad_buf, row_buf


@jit()
def _dot_backward_scratch(n_threads, q, k, v):
    """Scratch of the dot-family backward: the forward's, ``K^T``, ``dP`` and dK/dV."""
    idx, counts, key_buf, value_buf, prob_buf = _forward_scratch(
        n_threads, q, k, v, min(q.shape[2], QUERY_BLOCK))
    key_t_buf = np.empty_like(key_buf)
    grad_buf = np.empty_like(prob_buf)
    grad_key_buf = np.empty((n_threads, k.shape[2] * k.shape[3]), dtype=q.dtype)
    grad_value_buf = np.empty((n_threads, k.shape[2] * v.shape[3]), dtype=q.dtype)
    return (idx, counts, key_buf, key_t_buf, value_buf, prob_buf, grad_buf, grad_key_buf,
            grad_value_buf)


@jit()
def dot_attention_forward_serial(q, k, v, mask, causal, scale, context, weights,
                                 store_weights, log_sum_exp, skip_queries=False):
    """Dot-family attention forward pass, one thread.

    Parameters
    ----------
    q : ndarray of shape (B, H, Lq, D)
    k : ndarray of shape (B, H, Lk, D)
    v : ndarray of shape (B, H, Lk, Dv)
    mask : ndarray of shape (B, Lk), bool
        True at real keys.
    causal : bool
    scale : float
        Score multiplier, of the arrays' dtype.
    context : ndarray of shape (B, H, Lq, Dv)
        Output.
    weights : ndarray of shape (B, H, Lq, Lk)
        Output when ``store_weights``; otherwise any array of the dtype
        (it is not touched).
    store_weights : bool
        False for training without materialising the ``Lq x Lk`` weights;
        the backward pass then recomputes them from ``log_sum_exp``.
    log_sum_exp : ndarray of shape (B, H, Lq)
        Output: the softmax row statistics.
    skip_queries : bool, default=False
        Self-attention: compute only the real query rows of sequences with
        trailing padding (padded rows of context, weights and statistics are 0).
    """
    idx, counts, key_buf, value_buf, score_buf = _forward_scratch(
        1, q, k, v, min(q.shape[2], QUERY_BLOCK))
    inv_buf = np.empty((1, QUERY_BLOCK), dtype=q.dtype)
    for item in range(q.shape[0] * q.shape[1]):
        _dot_forward_item(item, q, k, v, mask, causal, scale, context, weights, store_weights,
                          log_sum_exp, skip_queries, idx[0], counts[0], key_buf[0], value_buf[0],
                          score_buf[0], inv_buf[0])


@jit(parallel=True)
def dot_attention_forward_parallel(q, k, v, mask, causal, scale, context, weights,
                                   store_weights, log_sum_exp, skip_queries, n_threads):
    """Dot-family attention forward pass over all Numba threads.

    Same parameters as :func:`dot_attention_forward_serial`, plus ``n_threads``,
    the Numba thread count in force (it sizes the per-thread scratch).
    """
    idx, counts, key_buf, value_buf, score_buf = _forward_scratch(
        n_threads, q, k, v, min(q.shape[2], QUERY_BLOCK))
    inv_buf = np.empty((n_threads, QUERY_BLOCK), dtype=q.dtype)
    for item in prange(q.shape[0] * q.shape[1]):
        t = numba.get_thread_id()
        _dot_forward_item(item, q, k, v, mask, causal, scale, context, weights, store_weights,
                          log_sum_exp, skip_queries, idx[t], counts[t], key_buf[t], value_buf[t],
                          score_buf[t], inv_buf[t])


@jit()
def dot_attention_backward_serial(q, k, v, mask, causal, scale, weights, use_weights,
                                  log_sum_exp, grad_context, grad_q, grad_k, grad_v,
                                  skip_queries=False):
    """Dot-family attention backward pass, one thread.

    Parameters
    ----------
    q, k, v, mask, causal, scale :
        As in :func:`dot_attention_forward_serial`.
    weights : ndarray of shape (B, H, Lq, Lk)
        Weights returned by the forward pass (read when ``use_weights``).
    use_weights : bool
        False recomputes the weights from the scores and ``log_sum_exp``.
    log_sum_exp : ndarray of shape (B, H, Lq)
        Row statistics returned by the forward pass.
    grad_context : ndarray of shape (B, H, Lq, Dv)
    grad_q : ndarray of shape (B, H, Lq, D)
        Output.
    grad_k : ndarray of shape (B, H, Lk, D)
        Output.
    grad_v : ndarray of shape (B, H, Lk, Dv)
        Output.
    skip_queries : bool, default=False
        As in the forward pass: padded query rows get a zero ``grad_q`` and
        their ``grad_context`` rows (which must be 0) are not read.
    """
    scratch = _dot_backward_scratch(1, q, k, v)
    for item in range(q.shape[0] * q.shape[1]):
        _dot_backward_item(item, q, k, v, mask, causal, scale, weights, use_weights,
                           log_sum_exp, grad_context, grad_q, grad_k, grad_v, skip_queries,
                           scratch[0][0], scratch[1][0], scratch[2][0], scratch[3][0],
                           scratch[4][0], scratch[5][0], scratch[6][0], scratch[7][0],
                           scratch[8][0])


@jit(parallel=True)
def dot_attention_backward_parallel(q, k, v, mask, causal, scale, weights, use_weights,
                                    log_sum_exp, grad_context, grad_q, grad_k, grad_v,
                                    skip_queries, n_threads):
    """Dot-family attention backward pass over all Numba threads.

    Same parameters as :func:`dot_attention_backward_serial`, plus ``n_threads``.
    """
    scratch = _dot_backward_scratch(n_threads, q, k, v)
    for item in prange(q.shape[0] * q.shape[1]):
        t = numba.get_thread_id()
        _dot_backward_item(item, q, k, v, mask, causal, scale, weights, use_weights,
                           log_sum_exp, grad_context, grad_q, grad_k, grad_v, skip_queries,
                           scratch[0][t], scratch[1][t], scratch[2][t], scratch[3][t],
                           scratch[4][t], scratch[5][t], scratch[6][t], scratch[7][t],
                           scratch[8][t])
