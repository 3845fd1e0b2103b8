"""Plain NumPy oracle of the layer kernels in ``skattention._backend._cpu_layers``.

Deliberately naive: float64 throughout, explicit per-row loops where the
kernels fuse, and derivations that differ from the kernels' (the layer-norm
gradient goes through the explicit Jacobian of each row). No Numba.
"""

import math

import numpy as np

__all__ = [
    "activation",
    "activation_grad",
    "linear_forward",
    "linear_backward",
    "layer_norm_forward",
    "layer_norm_backward",
    "embedding_forward",
    "embedding_backward",
    "dropout",
]


def _erf(x):
    """math.erf applied to every element."""
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def activation(x, name):
    """Activation ``name`` of every element of ``x`` (float64)."""
    x = np.asarray(x, dtype=np.float64)
    if name == "identity":
        return x.copy()
    if name == "relu":
        return np.where(x > 0, x, 0.0)
    if name == "gelu":
        return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))
    raise ValueError(name)


def activation_grad(x, name):
    """Derivative of activation ``name`` at every element of ``x`` (float64)."""
    x = np.asarray(x, dtype=np.float64)
    if name == "identity":
        return np.ones_like(x)
    if name == "relu":
        return (x > 0).astype(np.float64)
    if name == "gelu":
        cdf = 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))
        pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        return cdf + x * pdf
    raise ValueError(name)


def linear_forward(x, weight, bias, name):
    """Return ``(out, pre)`` with ``pre = x W + bias`` and ``out = act(pre)``."""
    x, weight = np.asarray(x, np.float64), np.asarray(weight, np.float64)
    pre = x @ weight
    if bias is not None:
        pre = pre + np.asarray(bias, np.float64)
    return activation(pre, name), pre


def linear_backward(x, weight, pre, grad_out, name):
    """Return ``(grad_x, grad_weight, grad_bias)`` of :func:`linear_forward`."""
    x, weight = np.asarray(x, np.float64), np.asarray(weight, np.float64)
    g = np.asarray(grad_out, np.float64) * activation_grad(pre, name)
    grad_bias = np.zeros(g.shape[1])
    for i in range(g.shape[0]):
        grad_bias += g[i]
    return g @ weight.T, x.T @ g, grad_bias


def layer_norm_forward(x, residual, gamma, beta, eps):
    """Return ``(out, s, mean, rstd)`` of layer norm over ``s = x + residual``."""
    s = np.array(x, dtype=np.float64)
    if residual is not None:
        s = s + np.asarray(residual, np.float64)
    n, d = s.shape
    out = np.empty((n, d))
    mean = np.empty(n)
    rstd = np.empty(n)
    for i in range(n):
        mean[i] = s[i].sum() / d
        var = ((s[i] - mean[i]) ** 2).sum() / d
        rstd[i] = 1.0 / math.sqrt(var + eps)
        out[i] = (s[i] - mean[i]) * rstd[i] * np.asarray(gamma, np.float64) + beta
    return out, s, mean, rstd


def layer_norm_backward(grad_out, s, mean, rstd, gamma):
    """Return ``(grad_s, grad_gamma, grad_beta)``, each row through its Jacobian.

    ``xh = (s - mean) rstd`` has Jacobian ``rstd (I - 1/d - xh xh^T / d)``
    (symmetric), applied to ``grad_out * gamma``.
    """
    grad_out = np.asarray(grad_out, np.float64)
    s = np.asarray(s, np.float64)
    gamma = np.asarray(gamma, np.float64)
    n, d = s.shape
    grad_s = np.empty((n, d))
    grad_gamma = np.zeros(d)
    grad_beta = np.zeros(d)
    for i in range(n):
        xh = (s[i] - float(mean[i])) * float(rstd[i])
        jac = float(rstd[i]) * (np.eye(d) - 1.0 / d - np.outer(xh, xh) / d)
        grad_s[i] = jac.T @ (grad_out[i] * gamma)
        grad_gamma += grad_out[i] * xh
        grad_beta += grad_out[i]
    return grad_s, grad_gamma, grad_beta


def embedding_forward(ids, table):
    """Rows ``table[ids]`` (float64)."""
    table = np.asarray(table, np.float64)
    return np.stack([table[i] for i in np.ravel(ids)]) if np.size(ids) else \
        np.empty((0, table.shape[1]))


def embedding_backward(ids, grad_out, n_rows):
    """Table gradient: row ``v`` is the sum of ``grad_out[i]`` over ``ids[i] == v``."""
    grad_out = np.asarray(grad_out, np.float64)
    grad_table = np.zeros((n_rows, grad_out.shape[1]))
    for i, v in enumerate(np.ravel(ids)):
        grad_table[v] += grad_out[i]
    return grad_table


def dropout(x, mask):
    """``x * mask`` (float64); the backward pass is the same product."""
    return np.asarray(x, np.float64) * np.asarray(mask, np.float64)
