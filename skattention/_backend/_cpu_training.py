"""Numba CPU kernels of the training step: losses, optimizers (and the mixin
that also exposes attention pooling from :mod:`._cpu_pooling`).

Shape letters: ``B`` batch, ``H`` heads, ``L`` positions, ``D`` key/query
width, ``Dv`` value width, ``N`` samples, ``C`` classes, ``T`` regression
targets, ``P`` entries of the flat parameter buffer.

* Attention pooling with a learned query (the last layer of a sequence
  model): ``z_l = scale * query[h] . keys[b, h, l]``, softmax over the real
  positions, context = weighted sum of the values.
* Losses weighted by ``sample_weight``, returning the loss and filling its
  gradient with respect to the network output.
* Optimizers (Adam/AdamW, SGD with momentum, gradient-norm clipping) that
  update a flat parameter buffer in place, ``prange`` over fixed-size chunks.

Determinism: results are bitwise identical for the serial build and the
parallel build at any thread count. ``prange`` iterations write disjoint
slices and share no float accumulator; a sum over iterations (query gradient
over the batch, loss over samples, squared norm over the buffer) is written
as one partial per item or per ``_CHUNK``-entry chunk, and the partials are
summed serially in index order. The serial build uses the same decomposition.

Precision: sums and exponentials run in float64 scalars whatever the array
dtype; results are rounded once when stored. The Adam update runs in the
buffer's dtype (like torch's), so that it vectorises.

As in :mod:`._cpu_attention`, serial and parallel drivers are distinct
functions (Numba's cache key ignores ``parallel``); parallel drivers hold no
array expressions or NumPy reductions (Numba would parallelise them), and
those needing per-thread scratch take the thread count as a trailing argument
(``run_scratch``), since ``numba.get_num_threads()`` inside a kernel stops
Numba from caching it.
"""

import math

import numpy as np
from numba import prange

from .._jit import jit
from ._cpu_pooling import (
    attention_pooling_backward_parallel,
    attention_pooling_backward_serial,
    attention_pooling_forward_parallel,
    attention_pooling_forward_serial,
    packed_pooling_backward_parallel,
    packed_pooling_backward_serial,
    packed_pooling_forward_parallel,
    packed_pooling_forward_serial,
)

__all__ = [
    "CPUTrainingOps", "NonFiniteLossError",
    "softmax_cross_entropy_serial", "softmax_cross_entropy_parallel",
    "squared_error_serial", "squared_error_parallel",
    "adam_step_serial", "adam_step_parallel",
    "sgd_step_serial", "sgd_step_parallel",
    "clip_grad_norm_serial", "clip_grad_norm_parallel",
]

# Entries of the flat buffer handled by one prange iteration of the optimizer
# and norm kernels. A constant (not derived from the thread count) so that the
# chunk partials of the norm, and hence its value, never depend on threads.
_CHUNK = 4096


# ------------------------------------------------------------ shared helpers


@jit()
def _fixed_order_sum(values):
    """float64 sum of a vector of shape (n,), serially from first to last entry."""
    total = 0.0
    for i in range(values.shape[0]):
        total += values[i]
    return total


@jit()
def _n_chunks(size):
    """Number of ``_CHUNK``-entry chunks covering a buffer of ``size`` entries."""
    return (size + _CHUNK - 1) // _CHUNK


@jit()
def _chunk_bounds(chunk, size):
    """Entries ``start <= i < stop`` of chunk ``chunk`` of a buffer of ``size`` entries."""
    start = chunk * _CHUNK
    return start, min(start + _CHUNK, size)


# -------------------------------------------------------------------- losses


@jit()
def _cross_entropy_row(i, logits, targets, sample_weight, weight_total, grad_logits,
                       row_losses):
    """Weighted softmax cross-entropy of one sample and its logit gradient.

    Parameters
    ----------
    i : int
        Sample index.
    logits, targets, sample_weight, grad_logits :
        As in :func:`softmax_cross_entropy_serial`; row ``i`` of ``grad_logits``
        is written.
    weight_total : float
        ``W = sum_i sample_weight[i]``.
    row_losses : ndarray of shape (N,), float64
        Output entry ``i``: ``w_i * (logsumexp(logits_i) - logits_i[y_i])``.
    """
    row = logits[i]
    n_classes = row.shape[0]
    row_max = np.float64(row[0])
    for c in range(1, n_classes):
        if row[c] > row_max:
            row_max = np.float64(row[c])
    total = 0.0
    for c in range(n_classes):
        total += math.exp(row[c] - row_max)
    # log-sum-exp minus the target logit, written as (max - x_y) + log(sum):
    # both terms are >= 0, so the loss is >= 0 and finite for logits of any
    # finite magnitude.
    y = targets[i]
    weight = np.float64(sample_weight[i])
    row_losses[i] = weight * ((row_max - row[y]) + math.log(total))
    factor = weight / weight_total
    inv_total = 1.0 / total
    for c in range(n_classes):
        grad_logits[i, c] = factor * (math.exp(row[c] - row_max) * inv_total)
    grad_logits[i, y] = factor * (math.exp(row[y] - row_max) * inv_total - 1.0)


@jit()
def _squared_error_row(i, pred, target, sample_weight, weight_total, grad_pred, row_losses):
    """Weighted half squared error of one sample and its gradient.

    Parameters
    ----------
    i : int
        Sample index.
    pred, target, sample_weight, grad_pred :
        As in :func:`squared_error_serial`; row ``i`` of ``grad_pred`` is written.
    weight_total : float
        ``W = sum_i sample_weight[i]``.
    row_losses : ndarray of shape (N,), float64
        Output entry ``i``: ``w_i * 0.5 * ||pred_i - target_i||^2``.
    """
    weight = np.float64(sample_weight[i])
    factor = weight / weight_total
    total = 0.0
    for t in range(pred.shape[1]):
        diff = np.float64(pred[i, t]) - target[i, t]
        total += diff * diff
        grad_pred[i, t] = factor * diff
    row_losses[i] = weight * (0.5 * total)


@jit()
def softmax_cross_entropy_serial(logits, targets, sample_weight, grad_logits):
    """Weighted mean softmax cross-entropy and its gradient, one thread.

    Parameters
    ----------
    logits : ndarray of shape (N, C)
    targets : ndarray of shape (N,), int64
        Class indices in ``[0, C)``.
    sample_weight : ndarray of shape (N,)
        Weights with a nonzero sum.
    grad_logits : ndarray of shape (N, C)
        Output: ``w_i / W * (softmax(logits_i) - onehot(y_i))``, ``W = sum(w)``.

    Returns
    -------
    loss : float
        ``sum_i w_i * (-log softmax(logits_i)[y_i]) / sum_i w_i``.
    """
    n_samples = logits.shape[0]
    weight_total = _fixed_order_sum(sample_weight)
    row_losses = np.empty(n_samples, dtype=np.float64)
    for i in range(n_samples):
        _cross_entropy_row(i, logits, targets, sample_weight, weight_total, grad_logits,
                           row_losses)
    return _fixed_order_sum(row_losses) / weight_total


@jit(parallel=True)
def softmax_cross_entropy_parallel(logits, targets, sample_weight, grad_logits):
    """Parallel build of :func:`softmax_cross_entropy_serial`."""
    n_samples = logits.shape[0]
    weight_total = _fixed_order_sum(sample_weight)
    row_losses = np.empty(n_samples, dtype=np.float64)
    for i in prange(n_samples):
        _cross_entropy_row(i, logits, targets, sample_weight, weight_total, grad_logits,
                           row_losses)
    return _fixed_order_sum(row_losses) / weight_total


@jit()
def squared_error_serial(pred, target, sample_weight, grad_pred):
    """Weighted mean half squared error and its gradient, one thread.

    Parameters
    ----------
    pred : ndarray of shape (N, T)
    target : ndarray of shape (N, T)
    sample_weight : ndarray of shape (N,)
        Weights with a nonzero sum.
    grad_pred : ndarray of shape (N, T)
        Output: ``w_i / W * (pred_i - target_i)``, ``W = sum(w)``.

    Returns
    -------
    loss : float
        ``sum_i w_i * 0.5 * ||pred_i - target_i||^2 / sum_i w_i``.
    """
    n_samples = pred.shape[0]
    weight_total = _fixed_order_sum(sample_weight)
    row_losses = np.empty(n_samples, dtype=np.float64)
    for i in range(n_samples):
        _squared_error_row(i, pred, target, sample_weight, weight_total, grad_pred,
                           row_losses)
    return _fixed_order_sum(row_losses) / weight_total


@jit(parallel=True)
def squared_error_parallel(pred, target, sample_weight, grad_pred):
    """Parallel build of :func:`squared_error_serial`."""
    n_samples = pred.shape[0]
    weight_total = _fixed_order_sum(sample_weight)
    row_losses = np.empty(n_samples, dtype=np.float64)
    for i in prange(n_samples):
        _squared_error_row(i, pred, target, sample_weight, weight_total, grad_pred,
                           row_losses)
    return _fixed_order_sum(row_losses) / weight_total


# ---------------------------------------------------------------- optimizers


@jit()
def _adam_chunk(chunk, params, grads, m, v, learning_rate, beta1, beta2, eps,
                weight_decay, decoupled, step_size, bias2_sqrt):
    """Adam/AdamW update of one chunk of the flat buffer, in place.

    Parameters
    ----------
    chunk : int
    params, grads, m, v, learning_rate, beta1, beta2, eps, weight_decay, decoupled :
        As in :func:`adam_step_serial`.
    step_size : float
        ``learning_rate / (1 - beta1**step)``.
    bias2_sqrt : float
        ``sqrt(1 - beta2**step)``.
    """
    start, stop = _chunk_bounds(chunk, params.shape[0])
    # The update runs in the buffer's dtype, as torch's Adam does, and on
    # slices indexed from 0: both are needed for LLVM to vectorise the loop
    # (float64 math, or indices from range(start, stop) that Numba must
    # check for wraparound, kept it scalar and 14x slower).
    params, grads = params[start:stop], grads[start:stop]
    m, v = m[start:stop], v[start:stop]
    c = np.empty(7, dtype=params.dtype)  # casts the scalars to that dtype once
    c[0], c[1], c[2], c[3] = beta1, 1.0 - beta1, beta2, 1.0 - beta2
    c[4], c[5], c[6] = step_size, bias2_sqrt, eps
    b1, one_b1, b2, one_b2, size, b2_sqrt, tiny = c[0], c[1], c[2], c[3], c[4], c[5], c[6]
    # L2 (coupled) decay enters the gradient; decoupled decay scales the
    # parameter, and without decay that factor is exactly 1, which leaves
    # every value (inf included) as torch's skipped term would. Two loops keep
    # the branch out of the vectorised body.
    if weight_decay != 0.0 and not decoupled:
        c[0] = weight_decay
        decay_rate = c[0]
        for i in range(params.shape[0]):
            g = grads[i] + decay_rate * params[i]
            mi = b1 * m[i] + one_b1 * g
            vi = b2 * v[i] + one_b2 * (g * g)
            m[i] = mi
            v[i] = vi
            params[i] = params[i] - size * (mi / (math.sqrt(vi) / b2_sqrt + tiny))
    else:
        c[0] = 1.0 - learning_rate * weight_decay
        decay = c[0]
        for i in range(params.shape[0]):
            g = grads[i]
            mi = b1 * m[i] + one_b1 * g
            vi = b2 * v[i] + one_b2 * (g * g)
            m[i] = mi
            v[i] = vi
            params[i] = params[i] * decay - size * (mi / (math.sqrt(vi) / b2_sqrt + tiny))


@jit()
def adam_step_serial(params, grads, m, v, step, learning_rate, beta1, beta2, eps,
                     weight_decay, decoupled):
    """One Adam (or AdamW) step on a flat buffer, one thread.

    Parameters
    ----------
    params : ndarray of shape (P,)
        Updated in place.
    grads : ndarray of shape (P,)
    m, v : ndarrays of shape (P,)
        First and second moment estimates, updated in place (zeros before
        the first step).
    step : int
        1-based count of this step (already incremented).
    learning_rate, beta1, beta2, eps, weight_decay : float
    decoupled : bool
        False: L2 penalty added to the gradient (``torch.optim.Adam``).
        True: decoupled decay ``params *= 1 - lr * weight_decay`` before the
        update (``torch.optim.AdamW``).
    """
    step_size = learning_rate / (1.0 - beta1 ** step)
    bias2_sqrt = math.sqrt(1.0 - beta2 ** step)
    for chunk in range(_n_chunks(params.shape[0])):
        _adam_chunk(chunk, params, grads, m, v, learning_rate, beta1, beta2, eps,
                    weight_decay, decoupled, step_size, bias2_sqrt)


@jit(parallel=True)
def adam_step_parallel(params, grads, m, v, step, learning_rate, beta1, beta2, eps,
                       weight_decay, decoupled):
    """Parallel build of :func:`adam_step_serial`."""
    step_size = learning_rate / (1.0 - beta1 ** step)
    bias2_sqrt = math.sqrt(1.0 - beta2 ** step)
    for chunk in prange(_n_chunks(params.shape[0])):
        _adam_chunk(chunk, params, grads, m, v, learning_rate, beta1, beta2, eps,
                    weight_decay, decoupled, step_size, bias2_sqrt)


@jit()
def _sgd_chunk(chunk, params, grads, velocity, learning_rate, momentum, nesterov,
               weight_decay):
    """SGD-with-momentum update of one chunk of the flat buffer, in place.

    Parameters
    ----------
    chunk : int
    params, grads, velocity, learning_rate, momentum, nesterov, weight_decay :
        As in :func:`sgd_step_serial`.
    """
    start, stop = _chunk_bounds(chunk, params.shape[0])
    for i in range(start, stop):
        p = np.float64(params[i])
        g = np.float64(grads[i])
        if weight_decay != 0.0:
            g += weight_decay * p
        vel = momentum * velocity[i] - learning_rate * g
        velocity[i] = vel
        if nesterov:
            params[i] = p + (momentum * vel - learning_rate * g)
        else:
            params[i] = p + vel


@jit()
def sgd_step_serial(params, grads, velocity, learning_rate, momentum, nesterov,
                    weight_decay):
    """One SGD step with momentum on a flat buffer, one thread.

    The velocity form of scikit-learn's ``MLPClassifier(solver="sgd")``:
    ``velocity = momentum * velocity - lr * grad``, then
    ``params += velocity``, or with ``nesterov``
    ``params += momentum * velocity - lr * grad`` (the new velocity).

    Parameters
    ----------
    params : ndarray of shape (P,)
        Updated in place.
    grads : ndarray of shape (P,)
    velocity : ndarray of shape (P,)
        Updated in place (zeros before the first step).
    learning_rate, momentum : float
    nesterov : bool
    weight_decay : float
        L2 penalty added to the gradient of every entry (``grad + wd * params``).
    """
    for chunk in range(_n_chunks(params.shape[0])):
        _sgd_chunk(chunk, params, grads, velocity, learning_rate, momentum, nesterov,
                   weight_decay)


@jit(parallel=True)
def sgd_step_parallel(params, grads, velocity, learning_rate, momentum, nesterov,
                      weight_decay):
    """Parallel build of :func:`sgd_step_serial`."""
    for chunk in prange(_n_chunks(params.shape[0])):
        _sgd_chunk(chunk, params, grads, velocity, learning_rate, momentum, nesterov,
                   weight_decay)


@jit()
def _chunk_sum_squares(chunk, grads):
    """float64 sum of squares of chunk ``chunk`` of ``grads`` (P,), in index order."""
    start, stop = _chunk_bounds(chunk, grads.shape[0])
    total = 0.0
    for i in range(start, stop):
        g = np.float64(grads[i])
        total += g * g
    return total


@jit()
def _chunk_scale(chunk, grads, factor):
    """Multiply chunk ``chunk`` of ``grads`` (P,) by ``factor``, in place."""
    start, stop = _chunk_bounds(chunk, grads.shape[0])
    for i in range(start, stop):
        grads[i] = grads[i] * factor


@jit()
def _clip_factor(total_norm, max_norm):
    """``max_norm / (total_norm + 1e-6)`` (torch's clip factor) when below 1, else 1."""
    factor = max_norm / (total_norm + 1e-6)
    # A non-finite norm leaves the gradient alone (torch would scale it by 0
    # or nan, destroying what the caller may want to inspect).
    if not math.isfinite(total_norm) or not factor < 1.0:
        return 1.0
    return factor


@jit()
def clip_grad_norm_serial(grads, max_norm):
    """Scale a flat gradient so that its L2 norm is at most ``max_norm``, one thread.

    Parameters
    ----------
    grads : ndarray of shape (P,)
        Scaled in place by ``max_norm / (norm + 1e-6)`` when that is below 1.
    max_norm : float

    Returns
    -------
    total_norm : float
        The L2 norm before clipping, from chunk partials summed in order. When
        it is not finite the gradient is left unchanged.
    """
    n_chunks = _n_chunks(grads.shape[0])
    partials = np.empty(n_chunks, dtype=np.float64)
    for chunk in range(n_chunks):
        partials[chunk] = _chunk_sum_squares(chunk, grads)
    total_norm = math.sqrt(_fixed_order_sum(partials))
    factor = _clip_factor(total_norm, max_norm)
    if factor != 1.0:
        for chunk in range(n_chunks):
            _chunk_scale(chunk, grads, factor)
    return total_norm


@jit(parallel=True)
def clip_grad_norm_parallel(grads, max_norm):
    """Parallel build of :func:`clip_grad_norm_serial`."""
    n_chunks = _n_chunks(grads.shape[0])
    partials = np.empty(n_chunks, dtype=np.float64)
    for chunk in prange(n_chunks):
        partials[chunk] = _chunk_sum_squares(chunk, grads)
    total_norm = math.sqrt(_fixed_order_sum(partials))
    factor = _clip_factor(total_norm, max_norm)
    if factor != 1.0:
        for chunk in prange(n_chunks):
            _chunk_scale(chunk, grads, factor)
    return total_norm


# -------------------------------------------------------------- Python layer


class NonFiniteLossError(FloatingPointError, ValueError):
    """A loss evaluated to inf or nan; both a FloatingPointError and a ValueError."""


def _check_shape(name, array, shape):
    """Raise ValueError unless ``array.shape == shape``.

    Kernels do not bounds-check, so a wrong shape would read or write outside
    the arrays instead of failing.
    """
    if array.shape != tuple(shape):
        raise ValueError(f"{name} has shape {array.shape}; expected {tuple(shape)}.")


def _check_weights(sample_weight, n_samples):
    """Raise ValueError unless ``sample_weight`` has shape (N,) and a positive sum."""
    _check_shape("sample_weight", sample_weight, (n_samples,))
    total = float(np.sum(sample_weight, dtype=np.float64))
    if not total > 0:
        raise ValueError(
            "sample_weight must have a positive sum (are all weights zero?); "
            f"got a sum of {total}.")


def _check_pooling(keys, values, query, mask, **arrays):
    """Raise ValueError unless the pooling arrays have consistent shapes."""
    batch, n_heads, n_positions, width = keys.shape
    value_width = values.shape[-1]
    pooled = (batch, n_heads, value_width)
    expected = dict(values=(batch, n_heads, n_positions, value_width), query=(n_heads, width),
                    mask=(batch, n_positions), context=pooled, grad_context=pooled,
                    weights=(batch, n_heads, n_positions), grad_keys=keys.shape,
                    grad_values=values.shape, grad_query=query.shape)
    for name, array in dict(values=values, query=query, mask=mask, **arrays).items():
        _check_shape(name, array, expected[name])


def _checked_loss(loss, name):
    """Return ``loss`` as a float, or raise NonFiniteLossError."""
    loss = float(loss)
    if not math.isfinite(loss):
        raise NonFiniteLossError(
            f"non-finite loss ({loss}) in {name}: the inputs contain inf or nan, "
            "or training diverged (try a smaller learning rate).")
    return loss


class CPUTrainingOps:
    """Training kernels of the CPU backend (mixin of ``CPUBackend``).

    Arrays are C-contiguous float32 or float64 of one dtype, outputs are
    preallocated; shapes are documented on the ``*_serial`` kernels. The host
    class provides ``run`` and ``run_scratch`` (which also passes the thread
    count to the parallel build). Results do not depend on the thread count.
    """

    def attention_pooling_forward(self, keys, values, query, mask, scale, context,
                                  weights):
        """Attention pooling; see :func:`attention_pooling_forward_serial`."""
        _check_pooling(keys, values, query, mask, context=context, weights=weights)
        self.run_scratch(attention_pooling_forward_serial,
                         attention_pooling_forward_parallel,
                         keys, values, query, mask, float(scale), context, weights)

    def packed_pooling_forward(self, states, offsets, steps, query, scale, context, weights):
        """Attention pooling over packed rows; see :func:`packed_pooling_forward_serial`.

        Parameters
        ----------
        states : ndarray of shape (R, H * D)
        offsets : ndarray of shape (B + 1,), int64
        steps : ndarray of shape (R,), int64
        query : ndarray of shape (H, D)
        scale : float
        context : ndarray of shape (B, H, D)
            Output.
        weights : ndarray of shape (B, H, L)
            Output.
        """
        n_rows = states.shape[0]
        batch = offsets.shape[0] - 1
        n_heads, width = query.shape
        if states.shape != (n_rows, n_heads * width) or steps.shape != (n_rows,) or \
                batch < 0 or offsets[0] != 0 or offsets[-1] != n_rows or \
                context.shape != (batch, n_heads, width) or weights.shape[:2] != (batch, n_heads):
            raise ValueError(
                f"packed_pooling_forward: inconsistent shapes (states {states.shape}, steps "
                f"{steps.shape}, query {query.shape}, context {context.shape}, weights "
                f"{weights.shape}, offsets ending at {offsets[-1] if offsets.size else None}).")
        self.run_scratch(packed_pooling_forward_serial, packed_pooling_forward_parallel,
                         states, offsets, steps, query, float(scale), context, weights)

    def packed_pooling_backward(self, states, offsets, steps, query, scale, weights,
                                grad_context, grad_states, grad_query):
        """Backward of :meth:`packed_pooling_forward`; fills ``grad_states`` and ``grad_query``.

        See :func:`packed_pooling_backward_serial`.
        """
        n_heads, width = query.shape
        batch = offsets.shape[0] - 1
        if grad_states.shape != states.shape or grad_query.shape != query.shape or \
                grad_context.shape != (batch, n_heads, width) or \
                weights.shape[:2] != (batch, n_heads):
            raise ValueError(
                f"packed_pooling_backward: inconsistent shapes (states {states.shape}, "
                f"grad_states {grad_states.shape}, query {query.shape}, grad_query "
                f"{grad_query.shape}, grad_context {grad_context.shape}, weights "
                f"{weights.shape}).")
        self.run_scratch(packed_pooling_backward_serial, packed_pooling_backward_parallel,
                         states, offsets, steps, query, float(scale), weights, grad_context,
                         grad_states, grad_query)

    def attention_pooling_backward(self, keys, values, query, mask, scale, weights,
                                   grad_context, grad_keys, grad_values, grad_query):
        """Backward of :meth:`attention_pooling_forward`; fills the three gradients.

        See :func:`attention_pooling_backward_serial`.
        """
        _check_pooling(keys, values, query, mask, weights=weights, grad_context=grad_context,
                       grad_keys=grad_keys, grad_values=grad_values, grad_query=grad_query)
        self.run_scratch(attention_pooling_backward_serial,
                         attention_pooling_backward_parallel,
                         keys, values, query, mask, float(scale), weights, grad_context,
                         grad_keys, grad_values, grad_query)

    def softmax_cross_entropy(self, logits, targets, sample_weight, grad_logits):
        """Weighted mean cross-entropy; see :func:`softmax_cross_entropy_serial`.

        ``targets`` may be any integer array; ``sample_weight`` is cast to the
        dtype of ``logits``.

        Returns
        -------
        loss : float

        Raises
        ------
        ValueError
            Bad shapes, non-integer or out-of-range targets, weights without a
            positive sum.
        NonFiniteLossError
            The loss is inf or nan.
        """
        n_samples, n_classes = logits.shape
        _check_shape("grad_logits", grad_logits, logits.shape)
        targets = np.asarray(targets)
        _check_shape("targets", targets, (n_samples,))
        if not np.issubdtype(targets.dtype, np.integer):
            raise ValueError(f"targets must be integer class indices; got {targets.dtype}.")
        sample_weight = np.ascontiguousarray(sample_weight, dtype=logits.dtype)
        _check_weights(sample_weight, n_samples)
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= n_classes:
            raise ValueError(
                f"target class {low if low < 0 else high} is out of range: targets must "
                f"be class indices in [0, {n_classes}).")
        targets = np.ascontiguousarray(targets, dtype=np.int64)
        loss = self.run(softmax_cross_entropy_serial, softmax_cross_entropy_parallel,
                        logits, targets, sample_weight, grad_logits)
        return _checked_loss(loss, "softmax_cross_entropy")

    def squared_error(self, pred, target, sample_weight, grad_pred):
        """Weighted mean half squared error; see :func:`squared_error_serial`.

        ``sample_weight`` is cast to the dtype of ``pred``.

        Returns
        -------
        loss : float

        Raises
        ------
        ValueError
            Bad shapes or weights without a positive sum.
        NonFiniteLossError
            The loss is inf or nan.
        """
        _check_shape("target", target, pred.shape)
        _check_shape("grad_pred", grad_pred, pred.shape)
        sample_weight = np.ascontiguousarray(sample_weight, dtype=pred.dtype)
        _check_weights(sample_weight, pred.shape[0])
        loss = self.run(squared_error_serial, squared_error_parallel,
                        pred, target, sample_weight, grad_pred)
        return _checked_loss(loss, "squared_error")

    def adam_step(self, params, grads, m, v, step, learning_rate, beta1, beta2, eps,
                  weight_decay, decoupled):
        """Adam or AdamW step in place; see :func:`adam_step_serial`.

        Raises
        ------
        ValueError
            ``step < 1`` or arrays of different shapes.
        """
        step = int(step)
        if step < 1:
            raise ValueError(f"step is the 1-based step count; got {step}.")
        for name, array in (("grads", grads), ("m", m), ("v", v)):
            _check_shape(name, array, params.shape)
        self.run(adam_step_serial, adam_step_parallel, params, grads, m, v, step,
                 float(learning_rate), float(beta1), float(beta2), float(eps),
                 float(weight_decay), bool(decoupled))

    def sgd_step(self, params, grads, velocity, learning_rate, momentum, nesterov,
                 weight_decay):
        """SGD step with momentum in place; see :func:`sgd_step_serial`."""
        for name, array in (("grads", grads), ("velocity", velocity)):
            _check_shape(name, array, params.shape)
        self.run(sgd_step_serial, sgd_step_parallel, params, grads, velocity,
                 float(learning_rate), float(momentum), bool(nesterov),
                 float(weight_decay))

    def clip_grad_norm(self, grads, max_norm):
        """Clip the global L2 norm in place; see :func:`clip_grad_norm_serial`.

        Returns
        -------
        total_norm : float
            The norm before clipping.
        """
        if grads.ndim != 1:
            raise ValueError(f"grads must be a flat buffer; got shape {grads.shape}.")
        return float(self.run(clip_grad_norm_serial, clip_grad_norm_parallel,
                              grads, float(max_norm)))
