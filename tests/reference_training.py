"""Plain-NumPy oracle of the training kernels (``_backend/_cpu_training.py``).

Deliberately naive: Python loops over samples and heads, float64 throughout,
and formulas written differently from the kernels where that is natural (the
softmax backward through its full Jacobian, Adam in torch's own operation
order). The package never imports this module.
"""

import numpy as np


def _softmax(z):
    """Softmax of a vector (float64)."""
    e = np.exp(z - np.max(z))
    return e / np.sum(e)


def attention_pooling_forward(keys, values, query, mask, scale):
    """Attention pooling with a learned query.

    Parameters
    ----------
    keys : ndarray of shape (B, H, L, D)
    values : ndarray of shape (B, H, L, Dv)
    query : ndarray of shape (H, D)
    mask : ndarray of shape (B, L), bool
    scale : float

    Returns
    -------
    context : ndarray of shape (B, H, Dv)
    weights : ndarray of shape (B, H, L)
    """
    keys, values, query = (np.asarray(a, dtype=np.float64) for a in (keys, values, query))
    batch, n_heads, n_positions, _ = keys.shape
    context = np.zeros((batch, n_heads, values.shape[3]))
    weights = np.zeros((batch, n_heads, n_positions))
    for b in range(batch):
        real = np.flatnonzero(mask[b])
        if real.size == 0:
            continue
        for h in range(n_heads):
            p = _softmax(scale * (keys[b, h, real] @ query[h]))
            weights[b, h, real] = p
            context[b, h] = p @ values[b, h, real]
    return context, weights


def attention_pooling_backward(keys, values, query, mask, scale, grad_context):
    """Gradients of attention pooling, recomputing the forward pass.

    Parameters
    ----------
    keys, values, query, mask, scale :
        As in :func:`attention_pooling_forward`.
    grad_context : ndarray of shape (B, H, Dv)

    Returns
    -------
    grad_keys : ndarray of shape (B, H, L, D)
    grad_values : ndarray of shape (B, H, L, Dv)
    grad_query : ndarray of shape (H, D)
    """
    keys, values, query, grad_context = (
        np.asarray(a, dtype=np.float64) for a in (keys, values, query, grad_context))
    grad_keys = np.zeros_like(keys)
    grad_values = np.zeros_like(values)
    grad_query = np.zeros_like(query)
    for b in range(keys.shape[0]):
        real = np.flatnonzero(mask[b])
        if real.size == 0:
            continue
        for h in range(keys.shape[1]):
            k, v, g = keys[b, h, real], values[b, h, real], grad_context[b, h]
            p = _softmax(scale * (k @ query[h]))
            jacobian = np.diag(p) - np.outer(p, p)
            grad_z = jacobian @ (v @ g)
            grad_values[b, h, real] = np.outer(p, g)
            grad_keys[b, h, real] = scale * np.outer(grad_z, query[h])
            grad_query[h] += scale * (grad_z @ k)
    return grad_keys, grad_values, grad_query


def softmax_cross_entropy(logits, targets, sample_weight):
    """Weighted mean softmax cross-entropy and its gradient.

    Parameters
    ----------
    logits : ndarray of shape (N, C)
    targets : ndarray of shape (N,), int
    sample_weight : ndarray of shape (N,)

    Returns
    -------
    loss : float
    grad_logits : ndarray of shape (N, C)
    """
    logits = np.asarray(logits, dtype=np.float64)
    w = np.asarray(sample_weight, dtype=np.float64)
    total = w.sum()
    loss = 0.0
    grad = np.zeros_like(logits)
    for i in range(logits.shape[0]):
        p = _softmax(logits[i])
        shifted = logits[i] - np.max(logits[i])
        log_p = shifted - np.log(np.sum(np.exp(shifted)))
        loss += w[i] * -log_p[targets[i]]
        onehot = np.zeros(logits.shape[1])
        onehot[targets[i]] = 1.0
        grad[i] = w[i] / total * (p - onehot)
    return loss / total, grad


def squared_error(pred, target, sample_weight):
    """Weighted mean half squared error and its gradient.

    Parameters
    ----------
    pred, target : ndarrays of shape (N, T)
    sample_weight : ndarray of shape (N,)

    Returns
    -------
    loss : float
    grad_pred : ndarray of shape (N, T)
    """
    diff = np.asarray(pred, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    w = np.asarray(sample_weight, dtype=np.float64)
    total = w.sum()
    loss = sum(w[i] * 0.5 * np.dot(diff[i], diff[i]) for i in range(diff.shape[0]))
    return loss / total, w[:, None] / total * diff


def adam_step(params, grads, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """One step of torch.optim.Adam / AdamW (single-tensor code path), in place.

    Parameters
    ----------
    params, grads, m, v : ndarrays of shape (P,), float64
    step : int
        1-based.
    lr, beta1, beta2, eps, weight_decay : float
    decoupled : bool
    """
    grad = grads.copy()
    if weight_decay != 0:
        if decoupled:
            params *= 1 - lr * weight_decay
        else:
            grad = grad + weight_decay * params
    m += (grad - m) * (1 - beta1)          # torch: exp_avg.lerp_(grad, 1 - beta1)
    v *= beta2
    v += (1 - beta2) * grad * grad
    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    step_size = lr / bias_correction1
    denom = np.sqrt(v) / np.sqrt(bias_correction2) + eps
    params += -step_size * (m / denom)


def sgd_step(params, grads, velocity, lr, momentum, nesterov, weight_decay):
    """One step of scikit-learn's SGDOptimizer (velocity form), in place.

    Parameters
    ----------
    params, grads, velocity : ndarrays of shape (P,), float64
    lr, momentum : float
    nesterov : bool
    weight_decay : float
    """
    grad = grads + weight_decay * params
    velocity[:] = momentum * velocity - lr * grad
    update = momentum * velocity - lr * grad if nesterov else velocity
    params += update


def clip_grad_norm(grads, max_norm):
    """torch.nn.utils.clip_grad_norm_ on one flat tensor, in place.

    Parameters
    ----------
    grads : ndarray of shape (P,), float64
    max_norm : float

    Returns
    -------
    total_norm : float
    """
    total_norm = float(np.linalg.norm(grads))
    coef = min(max_norm / (total_norm + 1e-6), 1.0)
    grads *= coef
    return total_norm
