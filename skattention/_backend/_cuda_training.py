"""numba.cuda kernels of the training step: losses and optimizers, behind one mixin.

The CUDA twin of the loss and optimizer part of :mod:`._cpu_training` (same
method names, signatures, return values and errors; attention pooling lives
with the attention kernels in :mod:`._cuda_attention`).

* Losses: one thread per sample computes the sample's weighted loss (float64)
  and its gradient row; the per-sample losses are copied to the host and
  added in sample order, as the CPU does, so the loss is a Python float.
  Targets and sample weights are validated on the host (they come from
  there; a device array is copied back for the checks).
* Optimizers: one thread per entry of the flat parameter buffer, float64
  arithmetic rounded once when stored, as on the CPU.
* Gradient-norm clipping: one block per ``NORM_CHUNK`` entries sums squares
  as a fixed shared-memory tree; the block partials are added on the host in
  block order. No atomics anywhere.

Shape letters as in :mod:`._cpu_training`.
"""

import math

import numpy as np
from numba import cuda, float64

from ._cpu_training import NonFiniteLossError, _check_shape, _check_weights, _checked_loss
from ._cuda_arrays import flat, is_device_array, launch_1d

__all__ = ["CUDATrainingOps", "NonFiniteLossError", "PTX_KERNELS", "NORM_THREADS",
           "NORM_CHUNK"]

#: Threads per block of the squared-norm kernel (a power of two).
NORM_THREADS = 256
#: Entries of the flat gradient summed by one block of the squared-norm kernel.
NORM_CHUNK = 8192


# -------------------------------------------------------------------- losses


@cuda.jit
def cross_entropy_kernel(logits, targets, sample_weight, weight_total, grad_logits,
                         row_losses):
    """Weighted softmax cross-entropy of sample ``i`` and its logit gradient.

    ``row_losses[i] = w_i (logsumexp(logits_i) - logits_i[y_i])`` (float64) and
    ``grad_logits[i] = w_i / W (softmax(logits_i) - onehot(y_i))``; written as
    the CPU's ``_cross_entropy_row``.
    """
    i = cuda.grid(1)
    if i < logits.shape[0]:
        n_classes = logits.shape[1]
        row_max = float64(logits[i, 0])
        for c in range(1, n_classes):
            if logits[i, c] > row_max:
                row_max = float64(logits[i, c])
        total = float64(0.0)
        for c in range(n_classes):
            total += math.exp(logits[i, c] - row_max)
        y = targets[i]
        weight = float64(sample_weight[i])
        row_losses[i] = weight * ((row_max - logits[i, y]) + math.log(total))
        factor = weight / weight_total
        inv_total = 1.0 / total
        for c in range(n_classes):
            grad_logits[i, c] = factor * (math.exp(logits[i, c] - row_max) * inv_total)
        grad_logits[i, y] = factor * (math.exp(logits[i, y] - row_max) * inv_total - 1.0)


@cuda.jit
def squared_error_kernel(pred, target, sample_weight, weight_total, grad_pred, row_losses):
    """Weighted half squared error of sample ``i`` and its gradient.

    ``row_losses[i] = w_i 0.5 ||pred_i - target_i||^2`` (float64) and
    ``grad_pred[i] = w_i / W (pred_i - target_i)``.
    """
    i = cuda.grid(1)
    if i < pred.shape[0]:
        weight = float64(sample_weight[i])
        factor = weight / weight_total
        total = float64(0.0)
        for t in range(pred.shape[1]):
            diff = float64(pred[i, t]) - target[i, t]
            total += diff * diff
            grad_pred[i, t] = factor * diff
        row_losses[i] = weight * (0.5 * total)


# ---------------------------------------------------------------- optimizers


@cuda.jit
def adam_kernel(params, grads, m, v, learning_rate, beta1, beta2, eps, weight_decay,
                decoupled, step_size, bias2_sqrt):
    """Adam/AdamW update of entry ``i`` (see ``_cpu_training._adam_chunk``)."""
    i = cuda.grid(1)
    if i < params.shape[0]:
        p = float64(params[i])
        g = float64(grads[i])
        # As torch, no decay terms at weight_decay == 0 (an inf parameter
        # would otherwise become 0 * inf = nan).
        if weight_decay != 0.0:
            if decoupled:
                p *= 1.0 - learning_rate * weight_decay
            else:
                g += weight_decay * p
        mi = beta1 * m[i] + (1.0 - beta1) * g
        vi = beta2 * v[i] + (1.0 - beta2) * (g * g)
        m[i] = mi
        v[i] = vi
        params[i] = p - step_size * (mi / (math.sqrt(vi) / bias2_sqrt + eps))


@cuda.jit
def sgd_kernel(params, grads, velocity, learning_rate, momentum, nesterov, weight_decay):
    """SGD-with-momentum update of entry ``i`` (see ``_cpu_training._sgd_chunk``)."""
    i = cuda.grid(1)
    if i < params.shape[0]:
        p = float64(params[i])
        g = float64(grads[i])
        if weight_decay != 0.0:
            g += weight_decay * p
        vel = momentum * velocity[i] - learning_rate * g
        velocity[i] = vel
        if nesterov:
            params[i] = p + (momentum * vel - learning_rate * g)
        else:
            params[i] = p + vel


@cuda.jit
def sum_squares_kernel(grads, partials):
    """``partials[b] = sum grads[k]^2`` over block ``b``'s ``NORM_CHUNK`` entries, float64.

    Thread ``t`` adds entries ``t, t + NORM_THREADS, ...`` of the chunk in
    order (coalesced), then the block adds the thread sums as a fixed tree.
    """
    buf = cuda.shared.array(NORM_THREADS, float64)
    t = cuda.threadIdx.x
    start = cuda.blockIdx.x * NORM_CHUNK
    stop = min(start + NORM_CHUNK, grads.shape[0])
    acc = float64(0.0)
    for k in range(start + t, stop, NORM_THREADS):
        g = float64(grads[k])
        acc += g * g
    buf[t] = acc
    cuda.syncthreads()
    stride = NORM_THREADS // 2
    while stride > 0:
        if t < stride:
            buf[t] += buf[t + stride]
        cuda.syncthreads()
        stride //= 2
    if t == 0:
        partials[cuda.blockIdx.x] = buf[0]


@cuda.jit
def scale_kernel(x, factor):
    """``x *= factor`` on a flat array, the product taken in float64."""
    i = cuda.grid(1)
    if i < x.shape[0]:
        x[i] = x[i] * factor


_F1 = "float32[::1]"
_F2 = "float32[:, ::1]"
#: ``(name, kernel, signature)`` of every kernel here, for the PTX compile test.
PTX_KERNELS = [
    ("cross_entropy", cross_entropy_kernel,
     f"{_F2}, int64[::1], {_F1}, float64, {_F2}, float64[::1]"),
    ("squared_error", squared_error_kernel,
     f"{_F2}, {_F2}, {_F1}, float64, {_F2}, float64[::1]"),
    ("squared_error_f64_target", squared_error_kernel,
     f"{_F2}, float64[:, ::1], {_F1}, float64, {_F2}, float64[::1]"),
    ("adam", adam_kernel,
     f"{_F1}, {_F1}, {_F1}, {_F1}, float64, float64, float64, float64, float64, boolean, "
     "float64, float64"),
    ("sgd", sgd_kernel, f"{_F1}, {_F1}, {_F1}, float64, float64, boolean, float64"),
    ("sum_squares", sum_squares_kernel, f"{_F1}, float64[::1]"),
    ("scale", scale_kernel, f"{_F1}, float64"),
]


# -------------------------------------------------------------- Python layer


def _host(array):
    """A NumPy view or copy of a host or device array."""
    return array.copy_to_host() if is_device_array(array) else np.asarray(array)


def _ordered_sum(values):
    """float64 sum of a host vector from first to last entry (``cumsum`` is sequential)."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.cumsum(values)[-1]) if values.size else 0.0


def _require_float32(name, array):
    if array.dtype != np.float32:
        raise ValueError(f"the CUDA backend computes in float32; {name} has dtype "
                         f"{array.dtype}.")


class CUDATrainingOps:
    """Loss and optimizer kernels of the CUDA backend (mixin of ``CUDABackend``).

    Same contracts as the matching methods of
    :class:`~._cpu_training.CPUTrainingOps`: float32 device arrays for the
    network output and the parameter buffers; targets and sample weights may
    be host arrays. The host class provides ``asarray`` and ``empty``.
    """

    def _weights(self, sample_weight, n_samples, dtype):
        """Validated host weights of ``dtype`` and their sum added in order."""
        sample_weight = np.ascontiguousarray(_host(sample_weight), dtype=dtype)
        _check_weights(sample_weight, n_samples)
        return sample_weight, _ordered_sum(sample_weight)

    def softmax_cross_entropy(self, logits, targets, sample_weight, grad_logits):
        """Weighted mean softmax cross-entropy and its gradient.

        Parameters
        ----------
        logits : device array of shape (N, C)
        targets : integer array of shape (N,) (host or device)
            Class indices in ``[0, C)``.
        sample_weight : array of shape (N,) (host or device)
            Weights with a positive sum; cast to float32.
        grad_logits : device array of shape (N, C)
            Receives ``w_i / W * (softmax(logits_i) - onehot(y_i))``, ``W = sum(w)``.

        Returns
        -------
        loss : float
            ``sum_i w_i * (-log softmax(logits_i)[y_i]) / W``.

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
        _require_float32("logits", logits)
        _require_float32("grad_logits", grad_logits)
        targets = _host(targets)
        _check_shape("targets", targets, (n_samples,))
        if not np.issubdtype(targets.dtype, np.integer):
            raise ValueError(f"targets must be integer class indices; got {targets.dtype}.")
        sample_weight, weight_total = self._weights(sample_weight, n_samples, logits.dtype)
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= n_classes:
            raise ValueError(
                f"target class {low if low < 0 else high} is out of range: targets must "
                f"be class indices in [0, {n_classes}).")
        row_losses = cuda.device_array(n_samples, np.float64)
        grid, block = launch_1d(n_samples)
        cross_entropy_kernel[grid, block](
            logits, cuda.to_device(np.ascontiguousarray(targets, dtype=np.int64)),
            cuda.to_device(sample_weight), weight_total, grad_logits, row_losses)
        loss = _ordered_sum(row_losses.copy_to_host()) / weight_total
        return _checked_loss(loss, "softmax_cross_entropy")

    def squared_error(self, pred, target, sample_weight, grad_pred):
        """Weighted mean half squared error and its gradient.

        Parameters
        ----------
        pred : device array of shape (N, T)
        target : array of shape (N, T) (host or device)
            Kept in float64 when it is float64 (as on the CPU), else cast to
            float32.
        sample_weight : array of shape (N,) (host or device)
            Weights with a positive sum; cast to float32.
        grad_pred : device array of shape (N, T)
            Receives ``w_i / W * (pred_i - target_i)``.

        Returns
        -------
        loss : float
            ``sum_i w_i * 0.5 * ||pred_i - target_i||^2 / W``.

        Raises
        ------
        ValueError
            Bad shapes or weights without a positive sum.
        NonFiniteLossError
            The loss is inf or nan.
        """
        _check_shape("target", target, pred.shape)
        _check_shape("grad_pred", grad_pred, pred.shape)
        _require_float32("pred", pred)
        _require_float32("grad_pred", grad_pred)
        sample_weight, weight_total = self._weights(sample_weight, pred.shape[0], pred.dtype)
        n_samples = pred.shape[0]
        target_dtype = np.float64 if target.dtype == np.float64 else np.float32
        row_losses = cuda.device_array(n_samples, np.float64)
        if n_samples:
            grid, block = launch_1d(n_samples)
            squared_error_kernel[grid, block](
                pred, self.asarray(target, target_dtype), cuda.to_device(sample_weight),
                weight_total, grad_pred, row_losses)
        loss = _ordered_sum(row_losses.copy_to_host()) / weight_total
        return _checked_loss(loss, "squared_error")

    def adam_step(self, params, grads, m, v, step, learning_rate, beta1, beta2, eps,
                  weight_decay, decoupled):
        """One Adam (or AdamW) step in place on flat device buffers of shape (P,).

        See :func:`._cpu_training.adam_step_serial` for the arguments.

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
        learning_rate, beta1, beta2 = float(learning_rate), float(beta1), float(beta2)
        step_size = learning_rate / (1.0 - beta1 ** step)
        bias2_sqrt = math.sqrt(1.0 - beta2 ** step)
        if params.size:
            grid, block = launch_1d(params.size)
            adam_kernel[grid, block](
                flat("params", params), flat("grads", grads), flat("m", m), flat("v", v),
                learning_rate, beta1, beta2, float(eps), float(weight_decay), bool(decoupled),
                step_size, bias2_sqrt)

    def sgd_step(self, params, grads, velocity, learning_rate, momentum, nesterov,
                 weight_decay):
        """One SGD step with momentum in place; see :func:`._cpu_training.sgd_step_serial`."""
        for name, array in (("grads", grads), ("velocity", velocity)):
            _check_shape(name, array, params.shape)
        if params.size:
            grid, block = launch_1d(params.size)
            sgd_kernel[grid, block](flat("params", params), flat("grads", grads),
                                    flat("velocity", velocity), float(learning_rate),
                                    float(momentum), bool(nesterov), float(weight_decay))

    def clip_grad_norm(self, grads, max_norm):
        """Scale a flat gradient so that its L2 norm is at most ``max_norm``, in place.

        Parameters
        ----------
        grads : device array of shape (P,)
            Scaled by ``max_norm / (norm + 1e-6)`` when that is below 1; left
            alone when the norm is not finite.
        max_norm : float

        Returns
        -------
        total_norm : float
            The norm before clipping (block partials added in block order).
        """
        if len(grads.shape) != 1:
            raise ValueError(f"grads must be a flat buffer; got shape {tuple(grads.shape)}.")
        size = grads.shape[0]
        if size == 0:
            return 0.0
        n_blocks = -(-size // NORM_CHUNK)
        partials = cuda.device_array(n_blocks, np.float64)
        sum_squares_kernel[(n_blocks,), (NORM_THREADS,)](grads, partials)
        total_norm = math.sqrt(_ordered_sum(partials.copy_to_host()))
        max_norm = float(max_norm)
        factor = max_norm / (total_norm + 1e-6)
        if math.isfinite(total_norm) and factor < 1.0:
            grid, block = launch_1d(size)
            scale_kernel[grid, block](grads, factor)
        return total_norm
