"""Forward/backward pairs of the network's composite layers, on backend kernels.

Everything here is plain NumPy glue around the backend: head splitting and
merging (layout changes only), the score-dependent parts of self-attention
and of attention pooling (query/key projections of the "general" and
"additive" scores and the chain rule through them), masked mean pooling and
the fixed sinusoidal positions.

Shape letters: ``B`` batch, ``L`` positions, ``T = B * L`` flattened tokens,
``d`` model width, ``H`` heads, ``dh = d / H`` head width, ``A`` additive
score width (``A = dh`` in this network).

Projections go through ``backend.linear_forward``/``linear_backward`` rather
than NumPy's ``@``, so that every product of a training step runs in the
backend's thread pool (see the notes of :mod:`skattention._backend._cpu_layers`).
"""

import math

import numpy as np

__all__ = [
    "SCORES", "sinusoidal_positions", "score_param_shapes",
    "self_attention_forward", "self_attention_backward",
    "attention_pool_forward", "attention_pool_backward",
    "mean_pool_weights",
]

#: Attention scores the network supports.
SCORES = ("dot", "scaled_dot", "general", "additive")


def sinusoidal_positions(n_positions, d_model):
    """Fixed sinusoidal position encodings (Vaswani et al., 2017).

    ``P[p, 2i] = sin(p / 10000^(2i/d))`` and ``P[p, 2i+1] = cos(...)``; an odd
    ``d`` drops the last cosine.

    Parameters
    ----------
    n_positions : int
    d_model : int

    Returns
    -------
    table : ndarray of shape (n_positions, d_model), float64
    """
    positions = np.arange(n_positions, dtype=np.float64)[:, None]
    rates = np.exp(-math.log(10000.0) * np.arange(0, d_model, 2, dtype=np.float64) / d_model)
    angles = positions * rates[None, :]
    table = np.empty((n_positions, d_model), dtype=np.float64)
    table[:, 0::2] = np.sin(angles)
    table[:, 1::2] = np.cos(angles[:, : d_model // 2])
    return table


def score_param_shapes(score, head_dim):
    """Parameter blocks of a score function, shared by all heads.

    Parameters
    ----------
    score : {"dot", "scaled_dot", "general", "additive"}
    head_dim : int

    Returns
    -------
    blocks : list of (str, tuple of int)
        Suffixes and shapes: ``W (dh, dh)`` for "general"; ``W_q (dh, A)``,
        ``W_k (dh, A)`` and ``v (A,)`` with ``A = dh`` for "additive"; none
        for the dot scores.
    """
    if score == "general":
        return [("W", (head_dim, head_dim))]
    if score == "additive":
        return [("W_q", (head_dim, head_dim)), ("W_k", (head_dim, head_dim)),
                ("v", (head_dim,))]
    return []


def _scale(score, head_dim):
    """Score multiplier: ``1/sqrt(dh)`` for "scaled_dot", else 1."""
    return 1.0 / math.sqrt(head_dim) if score == "scaled_dot" else 1.0


def _project(backend, x, weight):
    """``x @ weight`` over the last axis, through the backend's linear kernel.

    Parameters
    ----------
    x : ndarray of shape (..., In), C-contiguous
    weight : ndarray of shape (In, Out)

    Returns
    -------
    y : ndarray of shape (..., Out)
    """
    out = backend.empty(x.shape[:-1] + (weight.shape[1],), x.dtype)
    # Shapes of device arrays on Numba's CUDA simulator reject negative indices.
    backend.linear_forward(x.reshape(-1, x.shape[x.ndim - 1]), weight, None, "identity",
                           out.reshape(-1, weight.shape[1]))
    return out


def _project_backward(backend, x, weight, grad_y, grad_weight, need_grad_x=True, out=None):
    """Backward of :func:`_project`: fills ``grad_weight``, returns ``grad_x``.

    Parameters
    ----------
    x : ndarray of shape (..., In)
    weight : ndarray of shape (In, Out)
    grad_y : ndarray of shape (..., Out)
    grad_weight : ndarray of shape (In, Out)
        Output (overwritten).
    need_grad_x : bool, default=True
    out : ndarray of shape (..., In), optional
        Receives ``grad_x`` (allocated when None).

    Returns
    -------
    grad_x : ndarray of shape (..., In) or None
    """
    grad_x = out
    if need_grad_x and grad_x is None:
        grad_x = backend.empty(x.shape, x.dtype)
    backend.linear_backward(x.reshape(-1, x.shape[x.ndim - 1]), weight, None,
                            grad_y.reshape(-1, weight.shape[1]), "identity",
                            None if grad_x is None else grad_x.reshape(-1, x.shape[x.ndim - 1]),
                            grad_weight, None)
    return grad_x


# ------------------------------------------------------------ self-attention


def self_attention_forward(backend, score, q, k, v, mask, score_params, store_weights, keep,
                           context=None):
    """Masked multi-head self-attention with a chosen score.

    Parameters
    ----------
    backend : CPUBackend
    score : {"dot", "scaled_dot", "general", "additive"}
    q, k, v : ndarrays of shape (B, H, L, dh)
    mask : ndarray of shape (B, L), bool
        True at real positions; padded keys are never attended.
    score_params : dict of str to ndarray
        Views of the score's parameter blocks (see :func:`score_param_shapes`).
    store_weights : bool
        Materialise the ``(B, H, L, L)`` weights (the additive kernel always
        does). Training passes False: the dot backward recomputes them from
        the row statistics.
    keep : bool
        Return what :func:`self_attention_backward` needs.
    context : ndarray of shape (B, H, L, dh), optional
        Output (may be a strided view, e.g. from ``backend.heads_out``);
        allocated when None.

    Returns
    -------
    context : ndarray of shape (B, H, L, dh)
    weights : ndarray of shape (B, H, L, L) or None
    saved : dict or None
        The backward pass's inputs when ``keep``.
    """
    dtype = q.dtype
    head_dim = q.shape[3]
    if context is None:
        context = backend.empty(v.shape, dtype)
    log_sum_exp = backend.empty(q.shape[:3], dtype)
    if score == "additive":
        query_proj = _project(backend, q, score_params["W_q"])
        key_proj = _project(backend, k, score_params["W_k"])
        weights = backend.empty(q.shape[:3] + (k.shape[2],), dtype)
        backend.additive_attention_forward(query_proj, key_proj, score_params["v"], v, mask,
                                           False, dtype.type(1.0), context, weights,
                                           log_sum_exp)
        saved = dict(q=q, k=k, v=v, query_proj=query_proj, key_proj=key_proj,
                     weights=weights) if keep else None
        return context, (weights if store_weights else None), saved
    query = _project(backend, q, score_params["W"]) if score == "general" else q
    weights = backend.empty(q.shape[:3] + (k.shape[2],), dtype) if store_weights else None
    scale = dtype.type(_scale(score, head_dim))
    # Queries are the masked steps too: padded query rows need not be computed.
    backend.dot_attention_forward(query, k, v, mask, False, scale, context, weights,
                                  log_sum_exp, skip_queries=True)
    saved = dict(q=q, query=query, k=k, v=v, weights=weights,
                 log_sum_exp=log_sum_exp) if keep else None
    return context, weights, saved


def packed_self_attention_forward(backend, score, qkv, offsets, n_heads, score_params,
                                  keep=False):
    """Dot-family self-attention over packed rows (the real tokens only).

    Parameters
    ----------
    backend : CPUBackend
        A backend with ``packed_attention_forward``.
    score : {"dot", "scaled_dot", "general"}
    qkv : ndarray of shape (R, 3 d)
        The fused query/key/value projection of a batch's real tokens,
        sequence after sequence.
    offsets : ndarray of shape (B + 1,), int64
        Sequence ``b`` owns rows ``offsets[b] .. offsets[b + 1]``.
    n_heads : int
    score_params : dict of str to ndarray
        Views of the score's parameter blocks.
    keep : bool, default=False
        Return what :func:`packed_self_attention_backward` needs.

    Returns
    -------
    context : ndarray of shape (R, d)
        The heads' contexts side by side (the merged layout).
    saved : dict or None
    """
    n_rows, d = qkv.shape[0], qkv.shape[1] // 3
    head_dim = d // n_heads
    dtype = qkv.dtype
    queries, heads = qkv, None
    if score == "general":
        heads = np.ascontiguousarray(qkv[:, :d]).reshape(n_rows, n_heads, head_dim)
        queries = _project(backend, heads, score_params["W"]).reshape(n_rows, d)
    context = backend.empty((n_rows, d), dtype)
    log_sum_exp = backend.empty((n_rows, n_heads), dtype)
    backend.packed_attention_forward(queries, qkv, offsets, n_heads,
                                     dtype.type(_scale(score, head_dim)), context, log_sum_exp)
    saved = dict(packed=True, qkv=qkv, heads=heads, queries=queries, offsets=offsets,
                 log_sum_exp=log_sum_exp) if keep else None
    return context, saved


def packed_self_attention_backward(backend, score, saved, n_heads, score_params, grad_context,
                                   grad_score_params):
    """Backward pass of :func:`packed_self_attention_forward`.

    Parameters
    ----------
    backend : CPUBackend
    score : {"dot", "scaled_dot", "general"}
    saved : dict
        From the forward pass.
    n_heads : int
    score_params : dict of str to ndarray
    grad_context : ndarray of shape (R, d)
    grad_score_params : dict of str to ndarray
        Gradient views of the score's parameter blocks (overwritten).

    Returns
    -------
    grad_qkv : ndarray of shape (R, 3 d)
    """
    qkv, queries = saved["qkv"], saved["queries"]
    n_rows, d = grad_context.shape
    head_dim = d // n_heads
    dtype = qkv.dtype
    grad_qkv = backend.empty(qkv.shape, dtype)
    grad_queries = backend.empty((n_rows, d), dtype) if score == "general" else grad_qkv
    backend.packed_attention_backward(queries, qkv, saved["offsets"], n_heads,
                                      dtype.type(_scale(score, head_dim)), saved["log_sum_exp"],
                                      grad_context, grad_queries, grad_qkv)
    if score == "general":
        grad_heads = _project_backward(backend, saved["heads"], score_params["W"],
                                       grad_queries.reshape(n_rows, n_heads, head_dim),
                                       grad_score_params["W"])
        grad_qkv[:, :d] = grad_heads.reshape(n_rows, d)
    return grad_qkv


def self_attention_backward(backend, score, saved, mask, score_params, grad_context,
                            grad_score_params, out=None):
    """Backward pass of :func:`self_attention_forward`.

    Parameters
    ----------
    backend : CPUBackend
    score : str
    saved : dict
        From the forward pass.
    mask : ndarray of shape (B, L), bool
    score_params : dict of str to ndarray
    grad_context : ndarray of shape (B, H, L, dh)
        0 at padded steps (the network's gradients are: nothing reads a
        padded step's output), so that the dot family may skip those queries.
    grad_score_params : dict of str to ndarray
        Gradient views of the score's parameter blocks (overwritten).
    out : tuple of 3 ndarrays of shape (B, H, L, dh), optional
        Outputs for ``grad_q, grad_k, grad_v`` (may be strided views, e.g.
        from ``backend.heads_out``); allocated when None.

    Returns
    -------
    grad_q, grad_k, grad_v : ndarrays of shape (B, H, L, dh)
        The arrays of ``out`` when given.
    """
    q, k, v = saved["q"], saved["k"], saved["v"]
    dtype = q.dtype
    if out is None:
        out = tuple(backend.empty(x.shape, dtype) for x in (q, k, v))
    grad_v = out[2]
    if score == "additive":
        query_proj, key_proj = saved["query_proj"], saved["key_proj"]
        grad_query_proj = backend.empty(query_proj.shape, dtype)
        grad_key_proj = backend.empty(key_proj.shape, dtype)
        grad_vector = backend.empty(q.shape[:2] + (query_proj.shape[3],), dtype)
        backend.additive_attention_backward(query_proj, key_proj, score_params["v"], v, mask,
                                            False, dtype.type(1.0), saved["weights"],
                                            grad_context, grad_query_proj, grad_key_proj,
                                            grad_v, grad_vector)
        width = grad_vector.shape[2]
        backend.sum_axis0(grad_vector.reshape(-1, width), grad_score_params["v"])
        # The projections' input gradients are computed contiguous, then
        # copied: ``out`` may be strided views that a reshape would copy.
        backend.copy_(out[0], _project_backward(backend, q, score_params["W_q"],
                                                grad_query_proj, grad_score_params["W_q"]))
        backend.copy_(out[1], _project_backward(backend, k, score_params["W_k"],
                                                grad_key_proj, grad_score_params["W_k"]))
        return out
    query = saved["query"]
    grad_query = backend.empty(query.shape, dtype) if score == "general" else out[0]
    grad_k = out[1]
    scale = dtype.type(_scale(score, q.shape[3]))
    backend.dot_attention_backward(query, k, v, mask, False, scale, saved["weights"],
                                   saved["log_sum_exp"], grad_context, grad_query, grad_k,
                                   grad_v, skip_queries=True)
    if score == "general":
        backend.copy_(out[0], _project_backward(backend, q, score_params["W"], grad_query,
                                                grad_score_params["W"]))
    return out


# ------------------------------------------------------------------ pooling


def _pooling_query(backend, score, query, score_params):
    """The query the pooling kernels read: ``query W`` for "general", else ``query``."""
    return _project(backend, query, score_params["W"]) if score == "general" else query


def _pooling_query_grad(backend, score, pool_query, grad_query):
    """Where the pooling kernels write the query gradient (scratch for "general")."""
    return backend.empty(pool_query.shape, pool_query.dtype) if score == "general" \
        else grad_query


def _pooling_query_backward(backend, score, query, score_params, grad_pool_query, grad_query,
                            grad_score_params):
    """For "general", carry the gradient of ``query W`` back to ``query`` and ``W``."""
    if score == "general":
        _project_backward(backend, query, score_params["W"], grad_pool_query,
                          grad_score_params["W"], out=grad_query)


def packed_pool_forward(backend, score, states, offsets, steps, query, length, score_params,
                        keep=False):
    """Attention pooling over packed rows (dot-family scores).

    Parameters
    ----------
    backend : CPUBackend
        A backend with ``packed_pooling_forward``.
    score : {"dot", "scaled_dot", "general"}
    states : ndarray of shape (R, H * dh)
        The real steps' states, sequence after sequence.
    offsets : ndarray of shape (B + 1,), int64
        Sequence ``b`` owns rows ``offsets[b] .. offsets[b + 1]``.
    steps : ndarray of shape (R,), int64
        Each row's position in its sequence.
    query : ndarray of shape (H, dh)
    length : int
        ``L``, the padded length of the weights.
    score_params : dict of str to ndarray
    keep : bool, default=False
        Return what :func:`packed_pool_backward` needs.

    Returns
    -------
    context : ndarray of shape (B, H, dh)
    weights : ndarray of shape (B, H, L)
        As from :func:`attention_pool_forward`.
    saved : dict or None
    """
    n_heads, head_dim = query.shape
    batch = offsets.shape[0] - 1
    dtype = states.dtype
    pool_query = _pooling_query(backend, score, query, score_params)
    context = backend.empty((batch, n_heads, head_dim), dtype)
    weights = backend.empty((batch, n_heads, length), dtype)
    backend.packed_pooling_forward(states, offsets, steps, pool_query, _scale(score, head_dim),
                                   context, weights)
    saved = dict(packed=True, states=states, offsets=offsets, steps=steps,
                 pool_query=pool_query, weights=weights) if keep else None
    return context, weights, saved


def packed_pool_backward(backend, score, saved, query, score_params, grad_context, grad_query,
                         grad_score_params):
    """Backward pass of :func:`packed_pool_forward`.

    Parameters
    ----------
    backend : CPUBackend
    score : {"dot", "scaled_dot", "general"}
    saved : dict
    query : ndarray of shape (H, dh)
    score_params : dict of str to ndarray
    grad_context : ndarray of shape (B, H, dh)
    grad_query : ndarray of shape (H, dh)
        Output (overwritten).
    grad_score_params : dict of str to ndarray
        Output views (overwritten).

    Returns
    -------
    grad_states : ndarray of shape (R, H * dh)
        The packed rows' gradients (as keys and as values).
    """
    states, pool_query = saved["states"], saved["pool_query"]
    head_dim = query.shape[1]
    grad_states = backend.empty(states.shape, states.dtype)
    grad_pool_query = _pooling_query_grad(backend, score, pool_query, grad_query)
    backend.packed_pooling_backward(states, saved["offsets"], saved["steps"], pool_query,
                                    _scale(score, head_dim), saved["weights"], grad_context,
                                    grad_states, grad_pool_query)
    _pooling_query_backward(backend, score, query, score_params, grad_pool_query, grad_query,
                            grad_score_params)
    return grad_states


def attention_pool_forward(backend, score, states, query, mask, score_params, keep):
    """Attention pooling: one learned query per head over the real positions.

    Keys and values are both ``states``.

    Parameters
    ----------
    backend : CPUBackend
    score : {"dot", "scaled_dot", "general", "additive"}
    states : ndarray of shape (B, H, L, dh)
    query : ndarray of shape (H, dh)
    mask : ndarray of shape (B, L), bool
    score_params : dict of str to ndarray
    keep : bool
        Return what :func:`attention_pool_backward` needs.

    Returns
    -------
    context : ndarray of shape (B, H, dh)
        Zero for a sequence without real positions.
    weights : ndarray of shape (B, H, L)
        Rows sum to 1 over the real positions, exactly 0 on padding (all 0
        for a sequence without real positions).
    saved : dict or None
    """
    batch, n_heads, length, head_dim = states.shape
    dtype = states.dtype
    if score == "additive":
        query_proj = _project(backend, query, score_params["W_q"])
        query_rows = backend.empty((batch, n_heads, 1, head_dim), dtype)
        backend.tile_rows(query_proj.reshape(-1), query_rows.reshape(batch, -1))
        key_proj = _project(backend, states, score_params["W_k"])
        context = backend.empty((batch, n_heads, 1, head_dim), dtype)
        weights = backend.empty((batch, n_heads, 1, length), dtype)
        log_sum_exp = backend.empty((batch, n_heads, 1), dtype)
        backend.additive_attention_forward(query_rows, key_proj, score_params["v"], states,
                                           mask, False, dtype.type(1.0), context, weights,
                                           log_sum_exp)
        saved = dict(states=states, query_rows=query_rows, key_proj=key_proj,
                     weights=weights) if keep else None
        return (context.reshape(batch, n_heads, head_dim),
                weights.reshape(batch, n_heads, length), saved)
    pool_query = _pooling_query(backend, score, query, score_params)
    context = backend.empty((batch, n_heads, head_dim), dtype)
    weights = backend.empty((batch, n_heads, length), dtype)
    backend.attention_pooling_forward(states, states, pool_query, mask,
                                      _scale(score, head_dim), context, weights)
    saved = dict(states=states, pool_query=pool_query, weights=weights) if keep else None
    return context, weights, saved


def attention_pool_backward(backend, score, saved, query, mask, score_params, grad_context,
                            grad_query, grad_score_params):
    """Backward pass of :func:`attention_pool_forward`.

    Parameters
    ----------
    backend : CPUBackend
    score : str
    saved : dict
    query : ndarray of shape (H, dh)
    mask : ndarray of shape (B, L), bool
    score_params : dict of str to ndarray
    grad_context : ndarray of shape (B, H, dh)
    grad_query : ndarray of shape (H, dh)
        Output (overwritten).
    grad_score_params : dict of str to ndarray
        Output views (overwritten).

    Returns
    -------
    grad_states : ndarray of shape (B, H, L, dh)
        Sum of the key and the value gradients.
    """
    states = saved["states"]
    batch, n_heads, length, head_dim = states.shape
    dtype = states.dtype
    grad_values = backend.empty(states.shape, dtype)
    if score == "additive":
        query_rows, key_proj = saved["query_rows"], saved["key_proj"]
        grad_query_rows = backend.empty(query_rows.shape, dtype)
        grad_key_proj = backend.empty(key_proj.shape, dtype)
        grad_vector = backend.empty((batch, n_heads, head_dim), dtype)
        backend.additive_attention_backward(
            query_rows, key_proj, score_params["v"], states, mask, False, dtype.type(1.0),
            saved["weights"], grad_context.reshape(batch, n_heads, 1, head_dim),
            grad_query_rows, grad_key_proj, grad_values, grad_vector)
        backend.sum_axis0(grad_vector.reshape(-1, head_dim), grad_score_params["v"])
        grad_query_proj = backend.empty((n_heads, head_dim), dtype)
        backend.sum_axis0(grad_query_rows.reshape(batch, -1), grad_query_proj.reshape(-1))
        _project_backward(backend, query, score_params["W_q"], grad_query_proj,
                          grad_score_params["W_q"], out=grad_query)
        grad_keys = _project_backward(backend, states, score_params["W_k"], grad_key_proj,
                                      grad_score_params["W_k"])
    else:
        pool_query = saved["pool_query"]
        grad_keys = backend.empty(states.shape, dtype)
        grad_pool_query = _pooling_query_grad(backend, score, pool_query, grad_query)
        backend.attention_pooling_backward(states, states, pool_query, mask,
                                           _scale(score, head_dim), saved["weights"],
                                           grad_context, grad_keys, grad_values, grad_pool_query)
        _pooling_query_backward(backend, score, query, score_params, grad_pool_query,
                                grad_query, grad_score_params)
    backend.add_(grad_keys, grad_values)
    return grad_keys


def mean_pool_weights(mask, dtype):
    """Uniform weights over the real positions of each sequence.

    Parameters
    ----------
    mask : ndarray of shape (B, L), bool
    dtype : float dtype

    Returns
    -------
    weights : ndarray of shape (B, L)
        ``1 / n_real`` at real positions, 0 on padding; all 0 for a sequence
        without real positions.
    """
    counts = mask.sum(axis=1)
    inverse = 1.0 / np.maximum(counts, 1)
    return (mask * inverse[:, None]).astype(dtype)
