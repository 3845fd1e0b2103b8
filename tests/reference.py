"""Plain-NumPy oracle of the attention kernels.

Deliberately naive: dense masks with ``-inf``, explicit einsums, no skipped
keys, no fused passes. The package never imports this module. The oracles of
the other kernels live in ``reference_layers.py`` and
``reference_training.py``; their names are re-exported here so that
``reference`` is the single oracle namespace.
"""

import numpy as np


def visible_mask(key_mask, n_queries, causal):
    """Boolean mask of shape (B, 1, Lq, Lk): may query i see key j."""
    key_mask = np.asarray(key_mask, dtype=bool)
    batch, n_keys = key_mask.shape
    visible = np.broadcast_to(key_mask[:, None, None, :], (batch, 1, n_queries, n_keys))
    if causal:
        rows = np.arange(n_queries)[:, None]
        cols = np.arange(n_keys)[None, :]
        visible = visible & (cols <= rows)
    return visible


def scores(q, k, score, score_params):
    """Raw scores of shape (B, H, Lq, Lk) for each scoring function."""
    if score == "dot":
        return np.einsum("bhid,bhjd->bhij", q, k)
    if score == "scaled_dot":
        return np.einsum("bhid,bhjd->bhij", q, k) / np.sqrt(q.shape[-1])
    if score == "general":
        return np.einsum("bhid,de,bhje->bhij", q, score_params["W"], k)
    if score == "additive":
        qp = q @ score_params["W_q"]
        kp = k @ score_params["W_k"]
        hidden = np.tanh(qp[:, :, :, None, :] + kp[:, :, None, :, :])
        return hidden @ score_params["v"]
    raise ValueError(score)


def attention(q, k, v, key_mask=None, score="scaled_dot", causal=False, score_params=None):
    """Reference attention: returns (context (B,H,Lq,Dv), weights (B,H,Lq,Lk))."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    if key_mask is None:
        key_mask = np.ones((q.shape[0], k.shape[2]), dtype=bool)
    s = scores(q, k, score, score_params)
    visible = visible_mask(key_mask, q.shape[2], causal)
    s = np.where(visible, s, -np.inf)
    row_max = s.max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    e = np.where(visible, np.exp(s - row_max), 0.0)
    total = e.sum(axis=-1, keepdims=True)
    weights = np.divide(e, total, out=np.zeros_like(e), where=total > 0)
    return weights @ v, weights


def attention_backward(q, k, v, weights, grad_context, key_mask=None, score="scaled_dot",
                       causal=False, score_params=None):
    """Reference gradients: returns (dq, dk, dv, dict of score-parameter grads)."""
    q, k, v, weights, grad_context = (
        np.asarray(a, dtype=np.float64) for a in (q, k, v, weights, grad_context)
    )
    grad_v = np.einsum("bhij,bhid->bhjd", weights, grad_context)
    grad_w = np.einsum("bhid,bhjd->bhij", grad_context, v)
    grad_s = weights * (grad_w - (weights * grad_w).sum(axis=-1, keepdims=True))
    params = {}
    if score in ("dot", "scaled_dot"):
        c = 1.0 / np.sqrt(q.shape[-1]) if score == "scaled_dot" else 1.0
        grad_q = c * np.einsum("bhij,bhjd->bhid", grad_s, k)
        grad_k = c * np.einsum("bhij,bhid->bhjd", grad_s, q)
    elif score == "general":
        w = score_params["W"]
        grad_q = np.einsum("bhij,de,bhje->bhid", grad_s, w, k)
        grad_k = np.einsum("bhij,bhid,de->bhje", grad_s, q, w)
        params["W"] = np.einsum("bhij,bhid,bhje->de", grad_s, q, k)
    else:
        w_q, w_k, v_a = score_params["W_q"], score_params["W_k"], score_params["v"]
        qp = q @ w_q
        kp = k @ w_k
        t = np.tanh(qp[:, :, :, None, :] + kp[:, :, None, :, :])
        grad_pre = grad_s[..., None] * v_a * (1.0 - t**2)
        grad_qp = grad_pre.sum(axis=3)
        grad_kp = grad_pre.sum(axis=2)
        grad_q = grad_qp @ w_q.T
        grad_k = grad_kp @ w_k.T
        params["W_q"] = np.einsum("bhid,bhia->da", q, grad_qp)
        params["W_k"] = np.einsum("bhjd,bhja->da", k, grad_kp)
        params["v"] = np.einsum("bhij,bhija->a", grad_s, t)
    return grad_q, grad_k, grad_v, params


# The oracles of the layer and training kernels, under the same namespace.
from reference_layers import *  # noqa: E402,F401,F403
from reference_training import *  # noqa: E402,F401,F403
