"""Attention as plain functions on NumPy arrays.

The textbook mechanism: a score between each query and each key, a softmax
over the keys that turns the scores into weights, and the weighted sum of the
values as the context vector of each query. Computed by the Numba kernels of
the CPU backend; the gradients come from hand-written backward kernels.

Shape letters: ``B`` batch, ``H`` heads, ``Lq`` queries, ``Lk`` keys,
``D`` query/key width, ``Dv`` value width, ``A`` additive-score width.

Scores (``q_i`` a query row, ``k_j`` a key row):

========== ==================================== ==============================
score      s_ij                                 score_params
========== ==================================== ==============================
dot        ``q_i . k_j``                        none
scaled_dot ``q_i . k_j / sqrt(D)``              none
general    ``q_i W k_j`` (Luong)                ``{"W": (D, D)}``
additive   ``v . tanh(q_i W_q + k_j W_k)``      ``{"W_q": (D, A), "W_k": (D, A),
           (Bahdanau)                           "v": (A,)}``
========== ==================================== ==============================
"""

from collections import namedtuple

import numpy as np

from ._backend import get_backend

__all__ = ["attention", "attention_backward", "AttentionGradients", "SCORES"]

SCORES = ("dot", "scaled_dot", "general", "additive")

_SCORE_PARAMS = {
    "dot": (),
    "scaled_dot": (),
    "general": ("W",),
    "additive": ("W_q", "W_k", "v"),
}

AttentionGradients = namedtuple(
    "AttentionGradients", ["query", "key", "value", "score_params"]
)
AttentionGradients.__doc__ = """Gradients returned by :func:`attention_backward`.

Attributes
----------
query : ndarray of shape (B, H, Lq, D)
key : ndarray of shape (B, H, Lk, D)
value : ndarray of shape (B, H, Lk, Dv)
score_params : dict of str to ndarray
    Gradients of the score parameters, keyed and shaped like ``score_params``
    (empty for "dot" and "scaled_dot").
"""


def _float_dtype(*arrays):
    """float32 if every input is float32, else float64."""
    if all(np.asarray(a).dtype == np.float32 for a in arrays):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _as_float_array(array, name, dtype, ndim):
    """Validate one numeric input and return a writeable C-contiguous copy or view."""
    try:
        array = np.asarray(array)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be converted to an array: {exc}") from exc
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {array.dtype}.")
    if array.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {array.shape}.")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinity.")
    # Writeable and C-contiguous, so that every call hits one compiled
    # specialisation per dtype (read-only arrays would compile another).
    return np.require(array, dtype=dtype, requirements=["C", "W"])


def _validate(query, key, value, key_mask, score, score_params, causal):
    """Check the inputs of :func:`attention` and bring them to one dtype and layout."""
    if score not in _SCORE_PARAMS:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}.")
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"causal must be a bool, got {causal!r}.")
    score_params = {} if score_params is None else dict(score_params)
    expected = _SCORE_PARAMS[score]
    unknown = sorted(set(score_params) - set(expected))
    missing = [name for name in expected if name not in score_params]
    if unknown or missing:
        raise ValueError(
            f"score={score!r} takes score_params with keys {list(expected)}; "
            f"missing {missing}, unexpected {unknown}."
        )
    dtype = _float_dtype(query, key, value, *score_params.values())
    q = _as_float_array(query, "query", dtype, 4)
    k = _as_float_array(key, "key", dtype, 4)
    v = _as_float_array(value, "value", dtype, 4)
    batch, heads, _, width = q.shape
    if k.shape[:2] != (batch, heads) or k.shape[3] != width:
        raise ValueError(
            f"key must have shape (B, H, Lk, D) = ({batch}, {heads}, Lk, {width}) "
            f"to match query {q.shape}, got {k.shape}."
        )
    if v.shape[:3] != k.shape[:3]:
        raise ValueError(
            f"value must have shape (B, H, Lk, Dv) with (B, H, Lk) = {k.shape[:3]} "
            f"as in key, got {v.shape}."
        )
    if min(q.shape) == 0 or min(k.shape) == 0 or v.shape[3] == 0:
        raise ValueError(
            f"attention needs non-empty arrays, got query {q.shape}, key {k.shape}, "
            f"value {v.shape}."
        )
    n_keys = k.shape[2]
    if key_mask is None:
        mask = np.ones((batch, n_keys), dtype=np.bool_)
    else:
        mask = np.asarray(key_mask)
        if mask.dtype != np.bool_:
            raise TypeError(f"key_mask must be a boolean array, got dtype {mask.dtype}.")
        if mask.shape != (batch, n_keys):
            raise ValueError(
                f"key_mask must have shape (B, Lk) = ({batch}, {n_keys}), got {mask.shape}."
            )
        mask = np.require(mask, requirements=["C", "W"])
    params = {}
    if score == "general":
        params["W"] = _as_float_array(score_params["W"], "score_params['W']", dtype, 2)
        if params["W"].shape != (width, width):
            raise ValueError(
                f"score_params['W'] must have shape (D, D) = ({width}, {width}), "
                f"got {params['W'].shape}."
            )
    elif score == "additive":
        w_q = _as_float_array(score_params["W_q"], "score_params['W_q']", dtype, 2)
        w_k = _as_float_array(score_params["W_k"], "score_params['W_k']", dtype, 2)
        v_a = _as_float_array(score_params["v"], "score_params['v']", dtype, 1)
        hidden = v_a.shape[0]
        for name, matrix in (("W_q", w_q), ("W_k", w_k)):
            if matrix.shape != (width, hidden):
                raise ValueError(
                    f"score_params['{name}'] must have shape (D, A) = ({width}, {hidden}) "
                    f"with A = len(score_params['v']), got {matrix.shape}."
                )
        params.update(W_q=w_q, W_k=w_k, v=v_a)
    return q, k, v, mask, params, dtype


def _scale(score, width, dtype):
    """Score multiplier of the dot family, typed like the arrays."""
    return dtype.type(1.0 / np.sqrt(width) if score == "scaled_dot" else 1.0)


def attention(query, key, value, key_mask=None, *, score="scaled_dot", causal=False,
              score_params=None):
    """Masked multi-head attention: weights and context vectors.

    Parameters
    ----------
    query : array-like of shape (B, H, Lq, D)
        Queries.
    key : array-like of shape (B, H, Lk, D)
        Keys.
    value : array-like of shape (B, H, Lk, Dv)
        Values.
    key_mask : array-like of bool of shape (B, Lk), default=None
        True at real keys, False at padding. Padded keys get exactly zero
        weight. None means every key is real.
    score : {"dot", "scaled_dot", "general", "additive"}, default="scaled_dot"
        Scoring function (see the module docstring).
    causal : bool, default=False
        If True, query ``i`` attends only to keys ``j <= i`` (top-left
        aligned, as in PyTorch's ``scaled_dot_product_attention``).
    score_params : dict of str to array-like, default=None
        ``{"W": (D, D)}`` for "general"; ``{"W_q": (D, A), "W_k": (D, A),
        "v": (A,)}`` for "additive"; nothing for the other scores.

    Returns
    -------
    context : ndarray of shape (B, H, Lq, Dv)
        Weighted sums of the values.
    weights : ndarray of shape (B, H, Lq, Lk)
        Attention weights. Each row sums to 1 over the keys the query may
        see; a query that sees no real key has all-zero weights and a zero
        context (never NaN).

    Notes
    -----
    float32 inputs give float32 outputs; any other numeric input is computed
    in float64. Inputs may be non-contiguous or read-only. Scores are
    max-subtracted before the exponential, so logits of any magnitude stay
    finite. The kernels use Numba's current thread count
    (``numba.set_num_threads``); results do not depend on it.

    Examples
    --------
    >>> import numpy as np
    >>> from skattention.functional import attention
    >>> rng = np.random.default_rng(0)
    >>> q = rng.normal(size=(2, 1, 3, 4))
    >>> k = rng.normal(size=(2, 1, 5, 4))
    >>> v = rng.normal(size=(2, 1, 5, 6))
    >>> mask = np.array([[True] * 5, [True, True, False, False, False]])
    >>> context, weights = attention(q, k, v, mask)
    >>> context.shape, weights.shape
    ((2, 1, 3, 6), (2, 1, 3, 5))
    >>> bool(np.allclose(weights.sum(-1), 1.0)), float(weights[1, :, :, 2:].max())
    (True, 0.0)
    """
    q, k, v, mask, params, dtype = _validate(query, key, value, key_mask, score,
                                             score_params, causal)
    batch, heads, n_queries, width = q.shape
    context = np.empty((batch, heads, n_queries, v.shape[3]), dtype=dtype)
    weights = np.empty((batch, heads, n_queries, k.shape[2]), dtype=dtype)
    log_sum_exp = np.empty((batch, heads, n_queries), dtype=dtype)
    backend = get_backend("cpu")
    if score == "additive":
        query_proj = np.ascontiguousarray(q @ params["W_q"])
        key_proj = np.ascontiguousarray(k @ params["W_k"])
        backend.additive_attention_forward(query_proj, key_proj, params["v"], v, mask,
                                           bool(causal), dtype.type(1.0), context, weights,
                                           log_sum_exp)
    else:
        if score == "general":
            q = np.ascontiguousarray(q @ params["W"])
        backend.dot_attention_forward(q, k, v, mask, bool(causal), _scale(score, width, dtype),
                                      context, weights, log_sum_exp)
    return context, weights


def attention_backward(query, key, value, weights, grad_context, key_mask=None, *,
                       score="scaled_dot", causal=False, score_params=None):
    """Gradients of :func:`attention` with respect to its inputs and score parameters.

    Parameters
    ----------
    query, key, value, key_mask, score, causal, score_params :
        The arguments given to :func:`attention`.
    weights : array-like of shape (B, H, Lq, Lk)
        The weights :func:`attention` returned for these arguments.
    grad_context : array-like of shape (B, H, Lq, Dv)
        Gradient of the loss with respect to the context.

    Returns
    -------
    gradients : AttentionGradients
        Named tuple ``(query, key, value, score_params)`` of arrays shaped
        like the inputs; ``score_params`` is a dict with the gradient of
        each score parameter.

    Notes
    -----
    Gradients are exactly zero on padded keys. Reductions over the batch
    (the score parameters' gradients) run in a fixed order, so results are
    reproducible bit for bit.

    Examples
    --------
    >>> import numpy as np
    >>> from skattention.functional import attention, attention_backward
    >>> rng = np.random.default_rng(0)
    >>> q, k, v = (rng.normal(size=(1, 2, 4, 3)) for _ in range(3))
    >>> context, weights = attention(q, k, v)
    >>> grads = attention_backward(q, k, v, weights, np.ones_like(context))
    >>> grads.query.shape, grads.value.shape
    ((1, 2, 4, 3), (1, 2, 4, 3))
    """
    q, k, v, mask, params, dtype = _validate(query, key, value, key_mask, score,
                                             score_params, causal)
    batch, heads, n_queries, width = q.shape
    n_keys, value_width = k.shape[2], v.shape[3]
    w = _as_float_array(weights, "weights", dtype, 4)
    if w.shape != (batch, heads, n_queries, n_keys):
        raise ValueError(
            f"weights must have shape (B, H, Lq, Lk) = {(batch, heads, n_queries, n_keys)}, "
            f"got {w.shape}."
        )
    grad_out = _as_float_array(grad_context, "grad_context", dtype, 4)
    if grad_out.shape != (batch, heads, n_queries, value_width):
        raise ValueError(
            f"grad_context must have shape (B, H, Lq, Dv) = "
            f"{(batch, heads, n_queries, value_width)}, got {grad_out.shape}."
        )
    grad_v = np.empty_like(v)
    backend = get_backend("cpu")
    grad_params = {}
    if score == "additive":
        w_q, w_k, v_a = params["W_q"], params["W_k"], params["v"]
        hidden = v_a.shape[0]
        query_proj = np.ascontiguousarray(q @ w_q)
        key_proj = np.ascontiguousarray(k @ w_k)
        grad_query_proj = np.empty_like(query_proj)
        grad_key_proj = np.empty_like(key_proj)
        grad_v_a = np.empty((batch, heads, hidden), dtype=dtype)
        backend.additive_attention_backward(query_proj, key_proj, v_a, v, mask, bool(causal),
                                            dtype.type(1.0), w, grad_out, grad_query_proj,
                                            grad_key_proj, grad_v, grad_v_a)
        grad_q = grad_query_proj @ w_q.T
        grad_k = grad_key_proj @ w_k.T
        grad_params["W_q"] = q.reshape(-1, width).T @ grad_query_proj.reshape(-1, hidden)
        grad_params["W_k"] = k.reshape(-1, width).T @ grad_key_proj.reshape(-1, hidden)
        grad_params["v"] = grad_v_a.reshape(-1, hidden).sum(axis=0)
    else:
        projected = np.ascontiguousarray(q @ params["W"]) if score == "general" else q
        grad_projected = np.empty_like(q)
        grad_k = np.empty_like(k)
        # The given weights are used as they are, so no row statistics are needed.
        unused_log_sum_exp = np.zeros((1, 1, 1), dtype=dtype)
        backend.dot_attention_backward(projected, k, v, mask, bool(causal),
                                       _scale(score, width, dtype), w, unused_log_sum_exp,
                                       grad_out, grad_projected, grad_k, grad_v)
        if score == "general":
            grad_q = grad_projected @ params["W"].T
            grad_params["W"] = q.reshape(-1, width).T @ grad_projected.reshape(-1, width)
        else:
            grad_q = grad_projected
    return AttentionGradients(grad_q, grad_k, grad_v, grad_params)
