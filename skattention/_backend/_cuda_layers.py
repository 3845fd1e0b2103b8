"""numba.cuda kernels of the per-token layers, behind one mixin class.

The CUDA twin of :mod:`._cpu_layers` (same method names, signatures and
semantics, on device arrays): linear maps with a fused bias and activation,
the element-wise activations, layer norm with a fused residual add, the
token embedding and dropout, forward and backward.

* Linear maps are one tiled shared-memory GEMM kernel (``TILE x TILE``
  threads per block, each computing one output entry over ``TILE``-wide
  slices of the reduction axis) with transposition flags, a bias and
  activation epilogue, and an optional split of the reduction axis for the
  weight gradient ``x^T g`` (whose reduction axis, the tokens, is long):
  each split writes its own partial matrix and a second kernel adds the
  partials in split order. The number of splits depends on shapes only.
* Layer norm: one block of ``NORM_THREADS`` threads per row, statistics as
  float64 shared-memory trees; the ``gamma``/``beta`` gradients are column
  sums over row chunks (one thread per column and chunk), added in order.
* The embedding gradient groups tokens by id on the host (a stable sort of
  the ids, which are small) and gives one thread to each ``(id, column)``,
  adding that id's token rows in token order: no atomics, and the same
  summation order as the CPU kernel.

Arithmetic is float32 (the CUDA backend's only float dtype) except the
reductions named above, which accumulate in float64 as on the CPU.
Shapes as in :mod:`._cpu_linear` and :mod:`._cpu_norm`.
"""

import math

import numpy as np
from numba import cuda, float32, float64

from . import _cuda_arrays as arrays
from ._cpu_layers import _activation_code, _check_shape
from ._cpu_linear import GELU, IDENTITY, RELU
from ._cuda_arrays import flat, host_int64, launch_1d

__all__ = ["CUDALayerOps", "PTX_KERNELS", "TILE", "TILE_PAD", "NORM_THREADS", "SPLIT_ROWS",
           "MAX_SPLITS"]

#: Side of the GEMM tiles: blocks of TILE x TILE threads, shared tiles of TILE x TILE.
TILE = 16
#: Row length of the shared tiles: one spare column keeps the transposed
#: stores of the backward products free of bank conflicts. Always TILE + 1.
TILE_PAD = TILE + 1
#: Threads per row of the layer-norm kernels (a power of two).
NORM_THREADS = 128
#: Tokens per split of the weight-gradient product (rounded up to a multiple of TILE).
SPLIT_ROWS = 1024
#: Most splits of the weight-gradient product (bounds the partials' memory).
MAX_SPLITS = 16

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# ------------------------------------------------------------- activations


@cuda.jit
def activation_kernel(x, grad_out, has_grad, code, out):
    """Flat arrays of shape (M,): ``out = act(x)``, or ``grad_out * act'(x)`` with ``has_grad``.

    GELU is the exact form ``0.5 v (1 + erf(v / sqrt 2))``, its derivative
    ``Phi(v) + v phi(v)``. ``out`` may be ``x`` or ``grad_out`` (each thread
    reads its entry first).
    """
    i = cuda.grid(1)
    if i < out.shape[0]:
        v = x[i]
        if has_grad:
            g = grad_out[i]
            if code == RELU:
                g = g if v > float32(0.0) else float32(0.0)
            elif code == GELU:
                cdf = float32(0.5) * (float32(1.0) + math.erf(v * float32(_INV_SQRT2)))
                g = g * (cdf + v * float32(_INV_SQRT_2PI) * math.exp(float32(-0.5) * v * v))
            out[i] = g
        else:
            if code == RELU:
                v = v if v > float32(0.0) else float32(0.0)
            elif code == GELU:
                v = float32(0.5) * v * (float32(1.0) + math.erf(v * float32(_INV_SQRT2)))
            out[i] = v


# -------------------------------------------------------------------- GEMM


@cuda.jit
def gemm_kernel(a, b, trans_a, trans_b, k_split, bias, has_bias, code, out, pre, has_pre):
    """``out[z] = act(op(a)[:, K_z] @ op(b)[K_z, :] + bias)`` for split ``z = blockIdx.z``.

    Grid ``(ceil(M / TILE), ceil(Nc / TILE), n_splits)``, blocks of
    ``(TILE, TILE)`` threads; thread ``(x, y)`` of a block computes entry
    ``(row0 + y, col0 + x)``.

    Parameters
    ----------
    a : array of shape (M, K), or (K, M) when ``trans_a``
    b : array of shape (K, Nc), or (Nc, K) when ``trans_b``
    trans_a, trans_b : bool
        Use the transpose (tiles are loaded so that neighbouring threads
        read neighbouring addresses either way).
    k_split : int
        Reduction entries per split: split ``z`` sums ``k`` in
        ``[z * k_split, (z + 1) * k_split)``, in order, one TILE slice at a time.
    bias : array of shape (Nc,)
        Added when ``has_bias``.
    code : int
        Activation code applied last.
    out : array of shape (n_splits, M, Nc)
        Output.
    pre : array of shape (1, M, Nc)
        Output, the pre-activation, when ``has_pre`` (no split then).
    """
    sa = cuda.shared.array((TILE, TILE_PAD), float32)
    sb = cuda.shared.array((TILE, TILE_PAD), float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    # Row tiles on the x axis of the grid (up to 2**31 - 1 blocks; y and z
    # stop at 65535): the token axis may be long.
    row0 = cuda.blockIdx.x * TILE
    col0 = cuda.blockIdx.y * TILE
    z = cuda.blockIdx.z
    m = out.shape[1]
    n = out.shape[2]
    k_total = a.shape[0] if trans_a else a.shape[1]
    k0 = z * k_split
    k1 = min(k0 + k_split, k_total)
    acc = float32(0.0)
    for t in range(k0, k1, TILE):
        # sa[r, kk] = A[row0 + r, t + kk] and sb[kk, c] = B[t + kk, col0 + c].
        if trans_a:
            k = t + ty
            i = row0 + tx
            sa[tx, ty] = a[k, i] if (k < k1 and i < m) else float32(0.0)
        else:
            k = t + tx
            i = row0 + ty
            sa[ty, tx] = a[i, k] if (k < k1 and i < m) else float32(0.0)
        if trans_b:
            k = t + tx
            j = col0 + ty
            sb[tx, ty] = b[j, k] if (k < k1 and j < n) else float32(0.0)
        else:
            k = t + ty
            j = col0 + tx
            sb[ty, tx] = b[k, j] if (k < k1 and j < n) else float32(0.0)
        cuda.syncthreads()
        for kk in range(TILE):
            acc += sa[ty, kk] * sb[kk, tx]
        cuda.syncthreads()
    row = row0 + ty
    col = col0 + tx
    if row < m and col < n:
        if has_bias:
            acc += bias[col]
        if has_pre:
            pre[0, row, col] = acc
        # The epilogue of activation_kernel, written out (see _cuda_arrays).
        if code == RELU:
            acc = acc if acc > float32(0.0) else float32(0.0)
        elif code == GELU:
            acc = float32(0.5) * acc * (float32(1.0) + math.erf(acc * float32(_INV_SQRT2)))
        out[z, row, col] = acc


# -------------------------------------------------------------- layer norm


@cuda.jit
def layer_norm_forward_kernel(x, residual, has_residual, gamma, beta, eps, out, summed,
                              has_summed, mean, rstd):
    """Layer norm of ``s = x + residual``, one block of NORM_THREADS threads per row.

    Two passes as on the CPU (sum, then centred squares), each reduced as a
    fixed float64 shared-memory tree. ``s`` is recomputed in float32 rather
    than read back, so ``out`` may be ``x`` or ``residual``: each thread
    reads its entries of the row before it writes them.
    """
    buf = cuda.shared.array(NORM_THREADS, float64)
    i = cuda.blockIdx.x
    t = cuda.threadIdx.x
    d = x.shape[1]
    mu = float64(0.0)
    var = float64(0.0)
    for phase in range(2):
        acc = float64(0.0)
        for j in range(t, d, NORM_THREADS):
            v = x[i, j] + residual[i, j] if has_residual else x[i, j]
            if phase == 0:
                acc += v
            else:
                c = v - mu
                acc += c * c
        buf[t] = acc
        cuda.syncthreads()
        stride = NORM_THREADS // 2
        while stride > 0:
            if t < stride:
                buf[t] += buf[t + stride]
            cuda.syncthreads()
            stride //= 2
        if phase == 0:
            mu = buf[0] / d
        else:
            var = buf[0] / d
        cuda.syncthreads()
    rs = 1.0 / math.sqrt(var + eps)
    if t == 0:
        mean[i] = mu
        rstd[i] = rs
    for j in range(t, d, NORM_THREADS):
        v = x[i, j] + residual[i, j] if has_residual else x[i, j]
        if has_summed:
            summed[i, j] = v
        out[i, j] = (v - mu) * rs * gamma[j] + beta[j]


@cuda.jit
def layer_norm_backward_kernel(grad_out, s, mean, rstd, gamma, grad_x, grad_summed,
                               has_grad_summed):
    """Gradient at ``s``, one block of NORM_THREADS threads per row.

    ``grad_s = rstd (gh - mean(gh) - xh mean(gh xh))`` with ``xh = (s - mean)
    rstd`` and ``gh = grad_out gamma``, plus ``grad_summed`` when given (it
    may be ``grad_x``). The two row sums share one fixed float64 tree.
    """
    buf = cuda.shared.array((NORM_THREADS, 2), float64)
    i = cuda.blockIdx.x
    t = cuda.threadIdx.x
    d = s.shape[1]
    mu = float64(mean[i])
    rs = float64(rstd[i])
    acc_gh = float64(0.0)
    acc_ghxh = float64(0.0)
    for j in range(t, d, NORM_THREADS):
        xh = (s[i, j] - mu) * rs
        gh = grad_out[i, j] * gamma[j]
        acc_gh += gh
        acc_ghxh += gh * xh
    buf[t, 0] = acc_gh
    buf[t, 1] = acc_ghxh
    cuda.syncthreads()
    stride = NORM_THREADS // 2
    while stride > 0:
        if t < stride:
            buf[t, 0] += buf[t + stride, 0]
            buf[t, 1] += buf[t + stride, 1]
        cuda.syncthreads()
        stride //= 2
    a = buf[0, 0] / d
    b = buf[0, 1] / d
    for j in range(t, d, NORM_THREADS):
        xh = (s[i, j] - mu) * rs
        v = rs * (grad_out[i, j] * gamma[j] - a - xh * b)
        if has_grad_summed:
            v += grad_summed[i, j]
        grad_x[i, j] = v


@cuda.jit
def layer_norm_param_partials_kernel(grad_out, s, mean, rstd, rows_per_chunk, gamma_partials,
                                     beta_partials):
    """Partial ``gamma``/``beta`` gradients of one row chunk per ``blockIdx.y``, float64.

    ``gamma_partials[c, j] = sum grad_out[r, j] xh[r, j]`` and
    ``beta_partials[c, j] = sum grad_out[r, j]`` over the chunk's rows, in order.
    """
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    c = cuda.blockIdx.y
    if j < s.shape[1]:
        start = c * rows_per_chunk
        stop = min(start + rows_per_chunk, s.shape[0])
        acc_g = float64(0.0)
        acc_b = float64(0.0)
        for r in range(start, stop):
            xh = (s[r, j] - float64(mean[r])) * float64(rstd[r])
            gy = grad_out[r, j]
            acc_g += gy * xh
            acc_b += gy
        gamma_partials[c, j] = acc_g
        beta_partials[c, j] = acc_b


# ---------------------------------------------------------------- embedding


@cuda.jit
def embedding_forward_kernel(ids, table, out):
    """``out[r, j] = table[ids[r], j]`` for out (N, d); ids checked by the caller."""
    i = cuda.grid(1)
    width = out.shape[1]
    if i < out.shape[0] * width:
        r = i // width
        out[r, i % width] = table[ids[r], i % width]


@cuda.jit
def embedding_backward_kernel(order, unique_ids, bounds, grad_out, grad_table, accumulate):
    """Row ``unique_ids[u]`` of ``grad_table`` from its tokens, one thread per (u, column).

    Parameters
    ----------
    order : array of shape (N,), int64
        Token indices sorted stably by id.
    unique_ids : array of shape (U,), int64
        The distinct ids, ascending.
    bounds : array of shape (U + 1,), int64
        Tokens ``order[bounds[u]:bounds[u + 1]]`` have id ``unique_ids[u]``.
    grad_out : array of shape (N, d)
    grad_table : array of shape (V, d)
        Rows of ``unique_ids`` receive (or, with ``accumulate``, add) the sum of
        their tokens' gradients, in token order.
    """
    i = cuda.grid(1)
    width = grad_table.shape[1]
    if i < unique_ids.shape[0] * width:
        u = i // width
        j = i % width
        row = unique_ids[u]
        acc = grad_table[row, j] if accumulate else float32(0.0)
        for k in range(bounds[u], bounds[u + 1]):
            acc += grad_out[order[k], j]
        grad_table[row, j] = acc


@cuda.jit
def multiply_kernel(x, mask, out):
    """``out = x * mask`` on flat arrays of shape (M,); ``out`` may be ``x``."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = x[i] * mask[i]


_F1 = "float32[::1]"
_F2 = "float32[:, ::1]"
_F3 = "float32[:, :, ::1]"
_I1 = "int64[::1]"
#: ``(name, kernel, signature)`` of every kernel here, for the PTX compile test.
PTX_KERNELS = [
    ("activation", activation_kernel, f"{_F1}, {_F1}, boolean, int64, {_F1}"),
    ("gemm", gemm_kernel,
     f"{_F2}, {_F2}, boolean, boolean, int64, {_F1}, boolean, int64, {_F3}, {_F3}, boolean"),
    ("layer_norm_forward", layer_norm_forward_kernel,
     f"{_F2}, {_F2}, boolean, {_F1}, {_F1}, float64, {_F2}, {_F2}, boolean, {_F1}, {_F1}"),
    ("layer_norm_backward", layer_norm_backward_kernel,
     f"{_F2}, {_F2}, {_F1}, {_F1}, {_F1}, {_F2}, {_F2}, boolean"),
    ("layer_norm_param_partials", layer_norm_param_partials_kernel,
     f"{_F2}, {_F2}, {_F1}, {_F1}, int64, float64[:, ::1], float64[:, ::1]"),
    ("embedding_forward", embedding_forward_kernel, f"{_I1}, {_F2}, {_F2}"),
    ("embedding_backward", embedding_backward_kernel,
     f"{_I1}, {_I1}, {_I1}, {_F2}, {_F2}, boolean"),
    ("multiply", multiply_kernel, f"{_F1}, {_F1}, {_F1}"),
]


# -------------------------------------------------------------------- mixin


def _require_float32(**named):
    """ValueError unless every given (non-None) array is float32."""
    for name, array in named.items():
        if array is not None and array.dtype != np.float32:
            raise ValueError(f"the CUDA backend computes in float32; {name} has dtype "
                             f"{array.dtype}.")


def _shape(array):
    """Shape of a host array-like or a device array, as a tuple."""
    return tuple(array.shape) if hasattr(array, "shape") else np.shape(array)


def _checked_ids(ids, n_rows):
    """Flat int64 host copy of ``ids`` (host or device); ValueError outside ``[0, n_rows)``."""
    host = host_int64("ids", ids)
    if host.size:
        low, high = int(host.min()), int(host.max())
        if low < 0 or high >= n_rows:
            raise ValueError(
                f"ids must lie in [0, {n_rows}) (the embedding table has {n_rows} rows); "
                f"found id {low if low < 0 else high}")
    return host


class CUDALayerOps:
    """Per-token layer kernels of the CUDA backend (mixin of ``CUDABackend``).

    Same contracts as :class:`~._cpu_layers.CPULayerOps`, on C-contiguous
    float32 device arrays; outputs are preallocated and overwritten. The
    host class provides the :class:`~._cuda_arrays.CUDAArrayOps` methods.
    """

    def _gemm(self, a, b, trans_a, trans_b, out, bias=None, code=IDENTITY, pre=None):
        """``out = act(op(a) @ op(b) + bias)``; ``out`` (M, Nc) 2-D, ``pre`` like it or None.

        Without epilogue, a long reduction axis is split (see the module notes).
        """
        m, n = out.shape
        k = a.shape[0] if trans_a else a.shape[1]
        if m == 0 or n == 0:
            return
        splits = 1
        if bias is None and pre is None and code == IDENTITY:
            splits = min(MAX_SPLITS, max(1, -(-k // SPLIT_ROWS)))
        k_split = -(-max(k, 1) // splits)
        k_split = -(-k_split // TILE) * TILE
        splits = max(1, -(-k // k_split))
        if splits == 1:
            target = out.reshape(1, m, n)
        else:
            target = cuda.device_array((splits, m, n), np.float32)
        grid = (-(-m // TILE), -(-n // TILE), splits)
        gemm_kernel[grid, (TILE, TILE)](
            a, b, bool(trans_a), bool(trans_b), k_split,
            self._dummy(1, np.float32) if bias is None else bias, bias is not None, int(code),
            target, self._dummy(3, np.float32) if pre is None else pre.reshape(1, m, n),
            pre is not None)
        if splits > 1:
            grid, block = launch_1d(m * n)
            arrays.sum_partials_kernel[grid, block](target.reshape(splits, m * n),
                                                    flat("out", out))

    def linear_forward(self, x, weight, bias, activation, out, pre=None):
        """``out = act(x W + bias)`` in one tiled GEMM with a fused epilogue.

        Parameters
        ----------
        x : device array of shape (N, In)
        weight : device array of shape (In, Out)
        bias : device array of shape (Out,) or None
        activation : {"identity", "relu", "gelu"}
            GELU is the exact erf form.
        out : device array of shape (N, Out)
        pre : device array of shape (N, Out) or None
            Receives the pre-activation ``x W + bias`` when given.
        """
        code = _activation_code(activation)
        shape = (x.shape[0], weight.shape[1])
        _check_shape("x", x, (x.shape[0], weight.shape[0]))
        _check_shape("bias", bias, shape[1:])
        _check_shape("out", out, shape)
        _check_shape("pre", pre, shape)
        _require_float32(x=x, weight=weight, bias=bias, out=out, pre=pre)
        self._gemm(x, weight, False, False, out, bias, code, pre)

    def linear_backward(self, x, weight, pre, grad_out, activation, grad_x, grad_weight,
                        grad_bias, grad_pre=None):
        """Backward pass of :meth:`linear_forward`.

        Parameters
        ----------
        x : device array of shape (N, In)
        weight : device array of shape (In, Out)
        pre : device array of shape (N, Out) or None
            Forward pre-activation (ReLU: its output works too; ignored for
            the identity, required otherwise).
        grad_out : device array of shape (N, Out)
        activation : {"identity", "relu", "gelu"}
        grad_x : device array of shape (N, In) or None
            Receives ``g W^T`` when given.
        grad_weight : device array of shape (In, Out)
            Receives ``x^T g``.
        grad_bias : device array of shape (Out,) or None
            Receives the column sums of ``g`` when given.
        grad_pre : device array of shape (N, Out) or None
            Receives ``g``, the gradient at the pre-activation; may be
            ``grad_out`` (overwritten); allocated when None.
        """
        code = _activation_code(activation)
        shape = grad_out.shape
        _check_shape("grad_out", grad_out, (x.shape[0], weight.shape[1]))
        _check_shape("grad_x", grad_x, x.shape)
        _check_shape("grad_weight", grad_weight, weight.shape)
        _check_shape("grad_bias", grad_bias, shape[1:])
        _require_float32(x=x, weight=weight, grad_out=grad_out, grad_x=grad_x,
                         grad_weight=grad_weight, grad_bias=grad_bias)
        if code == IDENTITY:
            g = grad_out
        else:
            if pre is None:
                raise ValueError(f"linear_backward with activation {activation!r} needs pre")
            _check_shape("pre", pre, shape)
            _check_shape("grad_pre", grad_pre, shape)
            _require_float32(pre=pre, grad_pre=grad_pre)
            g = self.empty(shape, np.float32) if grad_pre is None else grad_pre
            if g.size:
                grid, block = launch_1d(g.size)
                activation_kernel[grid, block](flat("pre", pre), flat("grad_out", grad_out),
                                               True, code, flat("grad_pre", g))
        if grad_bias is not None:
            self._column_sums(g, grad_bias)
        if grad_x is not None:
            self._gemm(g, weight, False, True, grad_x)
        self._gemm(x, g, True, False, grad_weight)

    def _elementwise(self, code, x, grad_out, out):
        _check_shape("grad_out", grad_out, x.shape)
        _check_shape("out", out, x.shape)
        _require_float32(x=x, grad_out=grad_out, out=out)
        if x.size:
            grid, block = launch_1d(x.size)
            has_grad = grad_out is not None
            activation_kernel[grid, block](flat("x", x),
                                           flat("grad_out", grad_out) if has_grad else
                                           self._dummy(1, np.float32),
                                           has_grad, code, flat("out", out))

    def relu_forward(self, x, out):
        """``out = max(x, 0)``, any shape; ``out`` may be ``x``."""
        self._elementwise(RELU, x, None, out)

    def relu_backward(self, x, grad_out, grad_x):
        """``grad_x = grad_out * (x > 0)``; ``x`` is the ReLU input (or output)."""
        self._elementwise(RELU, x, grad_out, grad_x)

    def gelu_forward(self, x, out):
        """``out = 0.5 x (1 + erf(x / sqrt 2))``, any shape; ``out`` may be ``x``."""
        self._elementwise(GELU, x, None, out)

    def gelu_backward(self, x, grad_out, grad_x):
        """``grad_x = grad_out * gelu'(x)``; ``x`` is the GELU input."""
        self._elementwise(GELU, x, grad_out, grad_x)

    def layer_norm_forward(self, x, residual, gamma, beta, eps, out, summed, mean, rstd):
        """Layer norm of ``s = x + residual`` over the last axis.

        Parameters
        ----------
        x : device array of shape (N, d)
        residual : device array of shape (N, d) or None
        gamma, beta : device arrays of shape (d,)
        eps : float
        out : device array of shape (N, d)
            Receives ``(s - mean) / sqrt(var + eps) * gamma + beta`` (biased
            variance); may be ``x`` or ``residual``.
        summed : device array of shape (N, d) or None
            Receives ``s`` when given.
        mean, rstd : device arrays of shape (N,)
            Receive the row means and ``1 / sqrt(var + eps)``.
        """
        n, d = x.shape
        for name, array, shape in (("residual", residual, x.shape), ("gamma", gamma, (d,)),
                                   ("beta", beta, (d,)), ("out", out, x.shape),
                                   ("summed", summed, x.shape), ("mean", mean, (n,)),
                                   ("rstd", rstd, (n,))):
            _check_shape(name, array, shape)
        _require_float32(x=x, residual=residual, gamma=gamma, beta=beta, out=out,
                         summed=summed, mean=mean, rstd=rstd)
        if n == 0:
            return
        dummy = self._dummy(2, np.float32)
        layer_norm_forward_kernel[(n,), (NORM_THREADS,)](
            x, dummy if residual is None else residual, residual is not None, gamma, beta,
            float(eps), out, dummy if summed is None else summed, summed is not None, mean,
            rstd)

    def layer_norm_backward(self, grad_out, s, mean, rstd, gamma, grad_x, grad_gamma,
                            grad_beta, grad_summed=None):
        """Backward pass of :meth:`layer_norm_forward`.

        Parameters
        ----------
        grad_out : device array of shape (N, d)
        s : device array of shape (N, d)
            The normalised input (``summed`` of the forward pass, or ``x``).
        mean, rstd : device arrays of shape (N,)
        gamma : device array of shape (d,)
        grad_x : device array of shape (N, d)
            Receives the gradient at ``s``.
        grad_gamma, grad_beta : device arrays of shape (d,)
            Receive column sums over row chunks, added in chunk order.
        grad_summed : device array of shape (N, d) or None
            Gradient reaching ``s`` through the residual stream, added into
            ``grad_x`` (it may be ``grad_x``).
        """
        n, d = s.shape
        for name, array, shape in (("grad_out", grad_out, s.shape), ("mean", mean, (n,)),
                                   ("rstd", rstd, (n,)), ("gamma", gamma, (d,)),
                                   ("grad_x", grad_x, s.shape), ("grad_gamma", grad_gamma, (d,)),
                                   ("grad_beta", grad_beta, (d,)),
                                   ("grad_summed", grad_summed, s.shape)):
            _check_shape(name, array, shape)
        _require_float32(grad_out=grad_out, s=s, mean=mean, rstd=rstd, gamma=gamma,
                         grad_x=grad_x, grad_gamma=grad_gamma, grad_beta=grad_beta,
                         grad_summed=grad_summed)
        if d == 0:
            return
        # Parameter gradients first: grad_x may share memory with grad_out.
        rows = arrays.COLUMN_ROWS
        n_chunks = max(1, -(-n // rows))
        gamma_partials = cuda.device_array((n_chunks, d), np.float64)
        beta_partials = cuda.device_array((n_chunks, d), np.float64)
        layer_norm_param_partials_kernel[(-(-d // arrays.THREADS), n_chunks), (arrays.THREADS,)](
            grad_out, s, mean, rstd, rows, gamma_partials, beta_partials)
        grid, block = launch_1d(d)
        arrays.sum_partials_kernel[grid, block](gamma_partials, grad_gamma)
        arrays.sum_partials_kernel[grid, block](beta_partials, grad_beta)
        if n:
            layer_norm_backward_kernel[(n,), (NORM_THREADS,)](
                grad_out, s, mean, rstd, gamma, grad_x,
                self._dummy(2, np.float32) if grad_summed is None else grad_summed,
                grad_summed is not None)

    def embedding_forward(self, ids, table, out, positions=None, steps=None):
        """``out[...] = table[ids]``, plus ``positions[steps]`` when given.

        Parameters
        ----------
        ids : integer array of any shape (host or device)
            Checked against ``[0, V)`` on the host (a device array is copied
            there; ValueError outside).
        table : device array of shape (V, d)
        out : device array of shape ``ids.shape + (d,)``
        positions : device array of shape (L, d), optional
        steps : integer array of shape ``ids.shape``, optional
            Each token's row of ``positions`` (required with ``positions``).
        """
        if positions is not None:
            self.embedding_forward(ids, table, out)
            if steps is None:
                raise ValueError("embedding_forward: positions need steps")
            position_rows = self.empty(tuple(out.shape), out.dtype)
            flat_steps = _checked_ids(steps, positions.shape[0]).reshape(-1)
            self.gather_rows(positions, self.asarray(flat_steps, np.int64),
                             position_rows.reshape(flat_steps.size, table.shape[1]))
            self.add_(out, position_rows)
            return
        _check_shape("out", out, _shape(ids) + tuple(table.shape[1:]))
        _require_float32(table=table, out=out)
        host = _checked_ids(ids, table.shape[0])
        if out.size:
            ids = ids.reshape(ids.size) if arrays.is_device_array(ids) and \
                ids.dtype == np.int64 and ids.is_c_contiguous() else cuda.to_device(host)
            grid, block = launch_1d(out.size)
            embedding_forward_kernel[grid, block](ids, table,
                                                  out.reshape(host.size, table.shape[1]))

    def embedding_backward(self, ids, grad_out, grad_table, accumulate=False):
        """Add ``grad_out`` rows into rows ``ids`` of ``grad_table`` (token order per row).

        Parameters
        ----------
        ids : integer array of any shape (host or device)
            ValueError outside ``[0, V)``. Grouped by id on the host.
        grad_out : device array of shape ``ids.shape + (d,)``
        grad_table : device array of shape (V, d)
            Overwritten unless ``accumulate``.
        accumulate : bool, default=False
        """
        _check_shape("grad_out", grad_out, _shape(ids) + tuple(grad_table.shape[1:]))
        _require_float32(grad_out=grad_out, grad_table=grad_table)
        host = _checked_ids(ids, grad_table.shape[0])
        if not accumulate:
            self.fill_zero(grad_table)
        width = grad_table.shape[1]
        if host.size == 0 or width == 0:
            return
        order = np.argsort(host, kind="stable")
        ordered = host[order]
        starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
        bounds = np.append(starts, host.size).astype(np.int64)
        unique_ids = np.ascontiguousarray(ordered[starts])
        grid, block = launch_1d(unique_ids.size * width)
        embedding_backward_kernel[grid, block](
            cuda.to_device(order.astype(np.int64)), cuda.to_device(unique_ids),
            cuda.to_device(bounds), grad_out.reshape(host.size, width), grad_table,
            bool(accumulate))

    def dropout_forward(self, x, mask, out):
        """``out = x * mask``, any shape; a None mask (rate 0) copies ``x``; ``out`` may be ``x``.

        ``mask`` (from :func:`._cpu_norm.dropout_mask`) may be a host array:
        it is uploaded.
        """
        _check_shape("out", out, x.shape)
        _require_float32(x=x, out=out)
        if x.size == 0:
            return
        grid, block = launch_1d(x.size)
        if mask is None:
            if out is not x:
                arrays.copy_kernel[grid, block](flat("x", x), flat("out", out))
            return
        _check_shape("mask", mask, x.shape)
        multiply_kernel[grid, block](flat("x", x), flat("mask", self.asarray(mask, np.float32)),
                                     flat("out", out))

    def dropout_backward(self, grad_out, mask, grad_x):
        """``grad_x = grad_out * mask``, the backward pass of :meth:`dropout_forward`."""
        self.dropout_forward(grad_out, mask, grad_x)
