"""Array operations of the CUDA backend, and the helpers its kernel modules share.

Mirrors :mod:`._cpu_arrays` method for method, on Numba device arrays: the
network allocates and rearranges every activation through its backend, so
activations never leave the device between the first upload and the loss.

Kernel conventions (shared by :mod:`._cuda_layers` and :mod:`._cuda_training`):

* One thread per output element, guarded by ``idx < n``; launch sizes are
  computed in the Python methods from module constants (``THREADS`` here),
  which the simulator tests monkeypatch small. On a GPU the constants are
  frozen into a kernel when it is compiled, so never change them at runtime.
* No atomics and no early ``return`` before ``cuda.syncthreads()``: every
  output element is written by one thread that sums in a fixed order, and
  block reductions are shared-memory trees of a fixed shape, so results do
  not depend on scheduling (same inputs, same GPU, same bits).
* Optional arrays are passed as a dummy array plus a boolean flag: kernels
  compiled to PTX for one signature cannot take ``None``.
* Only NumPy scalars, arrays and ``math`` in kernels: the simulator would
  run Python objects that ``cuda.compile_ptx`` rejects.
* No ``cuda.jit(device=True)`` helpers: in numba-cuda 0.30 typing a call to
  one asks the driver for the current device, so ``compile_ptx`` would need
  a GPU. Short shared pieces (block reductions, activations) are written
  out in each kernel instead.
* Shared-array shapes are module constants (an expression such as
  ``TILE + 1`` inside the kernel is not a compile-time constant).

Shape letters as in :mod:`._cpu_arrays`.
"""

import contextlib
import math

import numpy as np
from numba import cuda, float64, int32

__all__ = ["CUDAArrayOps", "THREADS", "COLUMN_ROWS", "PTX_KERNELS", "is_device_array",
           "launch_1d", "flat", "host_int64"]

#: Threads per block of the one-dimensional kernels (a multiple of 32 on a GPU).
THREADS = 256
#: Rows summed by one thread of a column-sum kernel before the partials meet.
COLUMN_ROWS = 256


# ------------------------------------------------------------------ helpers


def is_device_array(array):
    """Whether ``array`` lives on the device (a Numba device array, real or simulated)."""
    return hasattr(array, "copy_to_host")


def launch_1d(n):
    """Grid and block of a one-thread-per-item launch over ``n >= 1`` items."""
    return ((n + THREADS - 1) // THREADS,), (THREADS,)


def flat(name, array):
    """One-dimensional view of a C-contiguous device array; ValueError otherwise.

    A flattened copy would leave an output unwritten.
    """
    if not array.is_c_contiguous():
        raise ValueError(f"{name} must be C-contiguous.")
    return array.reshape(array.size)


def host_int64(name, array):
    """A flat int64 host copy of an integer array (host or device).

    Raises
    ------
    ValueError
        If ``array`` does not hold integers.
    """
    host = array.copy_to_host() if is_device_array(array) else np.asarray(array)
    if host.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integers; got dtype {host.dtype}")
    return np.ascontiguousarray(host.reshape(-1), dtype=np.int64)


# ------------------------------------------------------------------ kernels


@cuda.jit
def fill_kernel(x, value):
    """``x[:] = value`` on a flat array of shape (M,)."""
    i = cuda.grid(1)
    if i < x.shape[0]:
        x[i] = value


@cuda.jit
def copy_kernel(src, dst):
    """``dst[:] = src`` on flat arrays of shape (M,) (casting to ``dst``'s dtype)."""
    i = cuda.grid(1)
    if i < dst.shape[0]:
        dst[i] = src[i]


@cuda.jit
def add_kernel(x, y):
    """``x += y`` on flat arrays of shape (M,)."""
    i = cuda.grid(1)
    if i < x.shape[0]:
        x[i] += y[i]


@cuda.jit
def scale_rows_kernel(x, scale):
    """``x[n, j] *= scale[n]`` for x (N, d); one thread per entry."""
    i = cuda.grid(1)
    if i < x.shape[0] * x.shape[1]:
        n = i // x.shape[1]
        x[n, i % x.shape[1]] *= scale[n]


@cuda.jit
def split_heads_kernel(x, out, offset):
    """``out[n, h, l, e] = x[n*L + l, offset + h*Dh + e]``; one thread per ``out`` entry."""
    i = cuda.grid(1)
    batch, n_heads, length, width = out.shape
    if i < batch * n_heads * length * width:
        e = i % width
        rest = i // width
        pos = rest % length
        rest //= length
        h = rest % n_heads
        n = rest // n_heads
        out[n, h, pos, e] = x[n * length + pos, offset + h * width + e]


@cuda.jit
def merge_heads_kernel(x, out, offset):
    """``out[n*L + l, offset + h*Dh + e] = x[n, h, l, e]``; one thread per ``x`` entry."""
    i = cuda.grid(1)
    batch, n_heads, length, width = x.shape
    if i < batch * n_heads * length * width:
        e = i % width
        rest = i // width
        pos = rest % length
        rest //= length
        h = rest % n_heads
        n = rest // n_heads
        out[n * length + pos, offset + h * width + e] = x[n, h, pos, e]


@cuda.jit
def add_rows_kernel(x, rows):
    """``x[n, l, j] += rows[l, j]`` for x (N, L, d); one thread per entry."""
    i = cuda.grid(1)
    batch, length, width = x.shape
    if i < batch * length * width:
        j = i % width
        pos = (i // width) % length
        n = i // (width * length)
        x[n, pos, j] += rows[pos, j]


@cuda.jit
def column_partials_kernel(x, rows_per_chunk, partials):
    """Column sums of one row chunk: ``partials[c, j] = sum x[rows of c, j]``, float64.

    Grid ``(ceil(M / THREADS), n_chunks)``: a thread owns one column of one
    chunk and adds its rows in order (neighbouring threads read neighbouring
    columns, so the loads coalesce).
    """
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    c = cuda.blockIdx.y
    if j < x.shape[1]:
        start = c * rows_per_chunk
        stop = min(start + rows_per_chunk, x.shape[0])
        acc = float64(0.0)
        for r in range(start, stop):
            acc += x[r, j]
        partials[c, j] = acc


@cuda.jit
def sum_partials_kernel(partials, out):
    """``out[j] = sum_c partials[c, j]`` in chunk order, float64 accumulator."""
    j = cuda.grid(1)
    if j < out.shape[0]:
        acc = float64(0.0)
        for c in range(partials.shape[0]):
            acc += partials[c, j]
        out[j] = acc


@cuda.jit
def tile_rows_kernel(x, out):
    """``out[n, j] = x[j]`` for out (N, M)."""
    i = cuda.grid(1)
    width = out.shape[1]
    if i < out.shape[0] * width:
        out[i // width, i % width] = x[i % width]


@cuda.jit
def mean_pool_forward_kernel(states, weights, out):
    """``out[n, j] = sum_l weights[n, l] states[n, l, j]``, positions in order."""
    i = cuda.grid(1)
    batch, length, width = states.shape
    if i < batch * width:
        n = i // width
        j = i % width
        acc = float64(0.0)
        for pos in range(length):
            acc += weights[n, pos] * states[n, pos, j]
        out[n, j] = acc


@cuda.jit
def mean_pool_backward_kernel(weights, grad, out):
    """``out[n, l, j] = weights[n, l] grad[n, j]``."""
    i = cuda.grid(1)
    batch, length, width = out.shape
    if i < batch * length * width:
        j = i % width
        pos = (i // width) % length
        n = i // (width * length)
        out[n, pos, j] = weights[n, pos] * grad[n, j]


@cuda.jit
def nonfinite_kernel(x, flag):
    """Set ``flag[0] = 1`` if any entry of the flat ``x`` is NaN or infinite.

    Every writer stores the same constant, so the outcome does not depend
    on which thread wins.
    """
    i = cuda.grid(1)
    if i < x.shape[0]:
        if not math.isfinite(x[i]):
            flag[0] = int32(1)


@cuda.jit
def gather_rows_kernel(x, index, out):
    """``out[k] = x[index[k]]``, zero where ``index[k] < 0``; x (N, W), out (K, W)."""
    i = cuda.grid(1)
    width = out.shape[1]
    if i < out.shape[0] * width:
        k = i // width
        source = index[k]
        if source >= 0:
            out[k, i % width] = x[source, i % width]
        else:
            out[k, i % width] = 0


_F1 = "float32[::1]"
_F2 = "float32[:, ::1]"
_F3 = "float32[:, :, ::1]"
_F4 = "float32[:, :, :, ::1]"
#: ``(name, kernel, signature)`` of every kernel here, for the PTX compile test.
PTX_KERNELS = [
    ("fill", fill_kernel, f"{_F1}, float32"),
    ("copy", copy_kernel, f"{_F1}, {_F1}"),
    ("add", add_kernel, f"{_F1}, {_F1}"),
    ("split_heads", split_heads_kernel, f"{_F2}, {_F4}, int64"),
    ("merge_heads", merge_heads_kernel, f"{_F4}, {_F2}, int64"),
    ("add_rows", add_rows_kernel, f"{_F3}, {_F2}"),
    ("scale_rows", scale_rows_kernel, f"{_F2}, {_F1}"),
    ("column_partials", column_partials_kernel, f"{_F2}, int64, float64[:, ::1]"),
    ("column_partials_direct", column_partials_kernel, f"{_F2}, int64, {_F2}"),
    ("sum_partials", sum_partials_kernel, f"float64[:, ::1], {_F1}"),
    ("sum_partials_f32", sum_partials_kernel, f"{_F2}, {_F1}"),
    ("tile_rows", tile_rows_kernel, f"{_F1}, {_F2}"),
    ("mean_pool_forward", mean_pool_forward_kernel, f"{_F3}, {_F2}, {_F2}"),
    ("mean_pool_backward", mean_pool_backward_kernel, f"{_F2}, {_F2}, {_F3}"),
    ("nonfinite", nonfinite_kernel, f"{_F1}, int32[::1]"),
    ("gather_rows", gather_rows_kernel, f"{_F2}, int64[::1], {_F2}"),
]


# -------------------------------------------------------------------- mixin


def _check_shape(name, array, shape):
    """Raise ValueError unless ``array.shape == shape`` (device code does not bounds-check)."""
    if array is not None and tuple(array.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(array.shape)}; expected {tuple(shape)}.")


class CUDAArrayOps:
    """Array operations on Numba device arrays; mixed into :class:`~._cuda.CUDABackend`.

    The contracts are those of :class:`~._cpu_arrays.CPUArrayOps`; inputs
    and outputs are C-contiguous device arrays unless a method says
    otherwise. Kernels run on the default stream, so consecutive calls are
    ordered; only :meth:`to_host`, :meth:`all_finite` and the loss and norm
    methods (which return Python floats) wait for the device.
    """

    # ---------------------------------------------------------- memory

    def reuse_buffers(self, key):
        """No-op context (the CPU backend's buffer recycling; see ``CPUArrayOps``)."""
        return contextlib.nullcontext()

    def empty(self, shape, dtype):
        """An uninitialised C-contiguous device array.

        Parameters
        ----------
        shape : int or tuple of int
        dtype : numpy dtype

        Returns
        -------
        array : device array
        """
        return cuda.device_array(shape, dtype=np.dtype(dtype))

    def zeros(self, shape, dtype):
        """A zero-filled C-contiguous device array."""
        array = self.empty(shape, dtype)
        self.fill_zero(array)
        return array

    def asarray(self, array, dtype):
        """Bring an array onto the device as a C-contiguous array of ``dtype``.

        Parameters
        ----------
        array : array-like or device array
        dtype : numpy dtype

        Returns
        -------
        array : device array
            ``array`` itself when it is already a C-contiguous device array
            of ``dtype``; a device-side cast of a device array of another
            dtype (ValueError unless C-contiguous); else an upload.
        """
        dtype = np.dtype(dtype)
        if is_device_array(array):
            if array.dtype == dtype and array.is_c_contiguous():
                return array
            out = self.empty(array.shape, dtype)
            if array.size:
                grid, block = launch_1d(array.size)
                copy_kernel[grid, block](flat("array", array), flat("out", out))
            return out
        return cuda.to_device(np.ascontiguousarray(array, dtype=dtype))

    def to_host(self, array):
        """A NumPy copy of a device array (host arrays are returned as they are)."""
        return array.copy_to_host() if is_device_array(array) else np.asarray(array)

    def fill_zero(self, x):
        """Set every entry of the device array ``x`` to zero, in place."""
        if x.size:
            grid, block = launch_1d(x.size)
            fill_kernel[grid, block](flat("x", x), x.dtype.type(0))

    def _dummy(self, ndim, dtype):
        """A cached one-element device array standing for an absent optional argument."""
        cache = self.__dict__.setdefault("_dummies", {})
        key = (ndim, np.dtype(dtype))
        if key not in cache:
            cache[key] = cuda.device_array((1,) * ndim, dtype=key[1])
        return cache[key]

    # ----------------------------------------------------- head layouts

    def split_heads(self, x, n_heads, out, offset=0):
        """Token rows to per-head blocks.

        Parameters
        ----------
        x : device array of shape (N*L, C)
            Columns ``offset`` to ``offset + H*Dh`` are read.
        n_heads : int
        out : device array of shape (N, H, L, Dh)
            Receives ``out[n, h, l, e] = x[n*L + l, offset + h*Dh + e]``.
        offset : int, default=0
        """
        batch, heads, length, width = out.shape
        self._check_heads(x, heads, n_heads, batch, length, width, offset)
        if out.size:
            grid, block = launch_1d(out.size)
            split_heads_kernel[grid, block](x, out, int(offset))

    def merge_heads(self, x, out, offset=0):
        """Per-head blocks to token rows; the inverse of :meth:`split_heads`.

        Parameters
        ----------
        x : device array of shape (N, H, L, Dh)
        out : device array of shape (N*L, C)
            Columns ``offset`` to ``offset + H*Dh`` receive
            ``out[n*L + l, offset + h*Dh + e] = x[n, h, l, e]``; the other
            columns are left untouched.
        offset : int, default=0
        """
        batch, heads, length, width = x.shape
        self._check_heads(out, heads, heads, batch, length, width, offset)
        if x.size:
            grid, block = launch_1d(x.size)
            merge_heads_kernel[grid, block](x, out, int(offset))

    def heads_of(self, x, shape, offset=0):
        """The heads of token rows as a new ``(N, H, L, Dh)`` device array.

        The CUDA kernels take contiguous arrays, so this is a
        :meth:`split_heads` copy (the CPU backend returns a view).
        """
        heads = self.empty(tuple(shape), x.dtype)
        self.split_heads(x, shape[1], heads, offset)
        return heads

    def heads_out(self, x, shape, offset=0):
        """A new ``(N, H, L, Dh)`` device array; :meth:`heads_done` moves it into ``x``."""
        batch, heads, length, width = shape
        self._check_heads(x, heads, heads, batch, length, width, offset)
        return self.empty(tuple(shape), x.dtype)

    def heads_done(self, heads, x, offset=0):
        """Write heads filled after :meth:`heads_out` into columns of ``x``."""
        self.merge_heads(heads, x, offset)

    def copy_(self, dst, src):
        """``dst[...] = src`` for two contiguous device arrays of one shape."""
        if tuple(dst.shape) != tuple(src.shape):
            raise ValueError(f"copy_: shapes {tuple(dst.shape)} and {tuple(src.shape)} differ.")
        if dst.size:
            dst.copy_to_device(src)

    @staticmethod
    def _check_heads(rows, heads, n_heads, batch, length, width, offset):
        if heads != n_heads:
            raise ValueError(f"the head array has {heads} heads; expected n_heads={n_heads}.")
        if len(rows.shape) != 2 or rows.shape[0] != batch * length:
            raise ValueError(f"the token-row array has shape {tuple(rows.shape)}; expected "
                             f"({batch * length}, C) for N={batch}, L={length}.")
        if offset < 0 or offset + heads * width > rows.shape[1]:
            raise ValueError(f"columns {offset} to {offset + heads * width} do not fit in "
                             f"{rows.shape[1]} columns.")

    # ------------------------------------------------------ elementwise

    def add_rows(self, x, rows):
        """``x[n] += rows`` for every sequence ``n`` (position encodings).

        Parameters
        ----------
        x : device array of shape (N, L, d)
            Updated in place.
        rows : device array of shape (L, d)
        """
        _check_shape("rows", rows, x.shape[1:])
        if x.size:
            grid, block = launch_1d(x.size)
            add_rows_kernel[grid, block](x, self.asarray(rows, x.dtype))

    def add_(self, x, y):
        """``x += y`` in place (same shapes)."""
        _check_shape("y", y, x.shape)
        if x.size:
            grid, block = launch_1d(x.size)
            add_kernel[grid, block](flat("x", x), flat("y", self.asarray(y, x.dtype)))

    def scale_rows_(self, x, scale):
        """``x[n] *= scale[n]`` in place.

        Parameters
        ----------
        x : device array of shape (N, d)
        scale : array of shape (N,)
        """
        _check_shape("scale", scale, x.shape[:1])
        if x.size:
            grid, block = launch_1d(x.size)
            scale_rows_kernel[grid, block](x, self.asarray(scale, x.dtype))

    def sum_axis0(self, x, out):
        """Column sums in a fixed order.

        Parameters
        ----------
        x : device array of shape (N, M)
        out : device array of shape (M,)
            Receives ``x.sum(axis=0)``: chunks of ``COLUMN_ROWS`` rows summed
            in row order, then the chunk partials in chunk order (float64).
        """
        _check_shape("out", out, x.shape[1:])
        self._column_sums(x, out)

    def _column_sums(self, x, out):
        """``out[j] = sum_r x[r, j]`` for x (N, M), out (M,); see :meth:`sum_axis0`."""
        n, m = x.shape
        if m == 0:
            return
        n_chunks = max(1, (n + COLUMN_ROWS - 1) // COLUMN_ROWS)
        grid = ((m + THREADS - 1) // THREADS, n_chunks)
        if n_chunks == 1:
            # One chunk: its partial is the answer.
            column_partials_kernel[grid, (THREADS,)](x, COLUMN_ROWS, out.reshape(1, m))
            return
        partials = cuda.device_array((n_chunks, m), dtype=np.float64)
        column_partials_kernel[grid, (THREADS,)](x, COLUMN_ROWS, partials)
        grid, block = launch_1d(m)
        sum_partials_kernel[grid, block](partials, out)

    def tile_rows(self, x, out):
        """Copy one row into every row of ``out``.

        Parameters
        ----------
        x : device array of shape (M,)
        out : device array of shape (N, M)
        """
        _check_shape("x", x, out.shape[1:])
        if out.size:
            grid, block = launch_1d(out.size)
            tile_rows_kernel[grid, block](x, out)

    def all_finite(self, x):
        """Whether the device array ``x`` holds no NaN or infinity (waits for the device).

        Returns
        -------
        finite : bool
        """
        if x.size == 0:
            return True
        flag = cuda.to_device(np.zeros(1, dtype=np.int32))
        grid, block = launch_1d(x.size)
        nonfinite_kernel[grid, block](flat("x", x), flag)
        return not bool(flag.copy_to_host()[0])

    def take_rows(self, x, index, out):
        """Gather along the first axis: ``out[i] = x[index[i]]``.

        Parameters
        ----------
        x : device array of shape (N, ...)
        index : array of shape (K,), integer (host or device)
            Entries in ``[0, N)`` (checked: a copy of a device index is
            brought to the host for that).
        out : device array of shape (K, ...)
        """
        host = host_int64("index", index)
        _check_shape("out", out, host.shape + tuple(x.shape[1:]))
        if host.size and (host.min() < 0 or host.max() >= x.shape[0]):
            bad = host.min() if host.min() < 0 else host.max()
            raise IndexError(f"index {bad} is out of bounds for axis 0 with size {x.shape[0]}")
        if out.size:
            width = out.size // out.shape[0]
            grid, block = launch_1d(out.size)
            gather_rows_kernel[grid, block](x.reshape(x.shape[0], width), cuda.to_device(host),
                                            out.reshape(out.shape[0], width))

    def gather_rows(self, x, index, out):
        """Rows by index, zero rows where the index is negative (see the CPU backend).

        Parameters
        ----------
        x : device array of shape (N, C)
        index : device array of shape (K,), int64
            Entries in ``[-1, N)``; not checked (the network builds them).
        out : device array of shape (K, C)
        """
        if len(x.shape) != 2 or tuple(out.shape) != (index.shape[0], x.shape[1]):
            raise ValueError(f"gather_rows: out {tuple(out.shape)} does not match "
                             f"{index.shape[0]} rows of x {tuple(x.shape)}.")
        if out.size:
            grid, block = launch_1d(out.size)
            gather_rows_kernel[grid, block](x, self.asarray(index, np.int64), out)

    # ------------------------------------------------------ mean pooling

    def mean_pool_forward(self, states, weights, out):
        """Weighted sum over positions (masked mean pooling).

        Parameters
        ----------
        states : device array of shape (N, L, d)
        weights : array of shape (N, L)
            ``1 / n_real`` at real positions, 0 on padding.
        out : device array of shape (N, d)
            Receives ``sum_l weights[n, l] * states[n, l]`` (positions in order).
        """
        batch, length, width = states.shape
        _check_shape("weights", weights, (batch, length))
        _check_shape("out", out, (batch, width))
        if out.size:
            grid, block = launch_1d(out.size)
            mean_pool_forward_kernel[grid, block](states, self.asarray(weights, states.dtype),
                                                  out)

    def mean_pool_backward(self, weights, grad, out):
        """Backward of :meth:`mean_pool_forward`.

        Parameters
        ----------
        weights : array of shape (N, L)
        grad : device array of shape (N, d)
        out : device array of shape (N, L, d)
            Receives ``weights[n, l] * grad[n]``.
        """
        batch, length, width = out.shape
        _check_shape("weights", weights, (batch, length))
        _check_shape("grad", grad, (batch, width))
        if out.size:
            grid, block = launch_1d(out.size)
            mean_pool_backward_kernel[grid, block](self.asarray(weights, out.dtype), grad, out)
