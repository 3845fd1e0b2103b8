"""Array operations of the CPU backend: allocation, head layouts, pooling glue.

The network (:mod:`skattention._nn`) never allocates or rearranges an
activation itself; it asks its backend, so that the same network code runs
on host arrays here and on device arrays in the CUDA backend
(:mod:`._cuda_arrays` mirrors every method with the same contract). On the
CPU these are thin NumPy operations: each is one vectorised copy or
reduction, so routing them through the backend costs a method call.

Shape letters: ``N`` sequences, ``L`` positions, ``H`` heads, ``Dh`` head
width, ``C`` columns of a token-row matrix, ``M`` columns of a reduction.
"""

import contextlib
import math

import numpy as np
from numba import prange

from .._jit import jit
from ._threads import hold_blas

__all__ = ["CPUArrayOps"]


# Head layout copies as Numba kernels: NumPy's transposed copyto runs on one
# thread at ~2 ns per element, and four of them per layer cost inference more
# than its attention (256 x 128 tokens, 1 layer: 17 ms of 100).


@jit()
def _split_item(item, x, out, offset):
    n_heads, length, width = out.shape[1], out.shape[2], out.shape[3]
    n, h = item // n_heads, item % n_heads
    dst = out[n, h]
    start = offset + h * width
    for position in range(length):
        src = x[n * length + position, start:start + width]
        row = dst[position]
        for e in range(width):
            row[e] = src[e]


@jit()
def _merge_item(item, x, out, offset):
    n_heads, length, width = x.shape[1], x.shape[2], x.shape[3]
    n, h = item // n_heads, item % n_heads
    src = x[n, h]
    start = offset + h * width
    for position in range(length):
        dst = out[n * length + position, start:start + width]
        row = src[position]
        for e in range(width):
            dst[e] = row[e]


@jit()
def split_heads_serial(x, out, offset):
    for item in range(out.shape[0] * out.shape[1]):
        _split_item(item, x, out, offset)


@jit(parallel=True)
def split_heads_parallel(x, out, offset):
    for item in prange(out.shape[0] * out.shape[1]):
        _split_item(item, x, out, offset)


@jit()
def merge_heads_serial(x, out, offset):
    for item in range(x.shape[0] * x.shape[1]):
        _merge_item(item, x, out, offset)


@jit(parallel=True)
def merge_heads_parallel(x, out, offset):
    for item in prange(x.shape[0] * x.shape[1]):
        _merge_item(item, x, out, offset)


#: Rows per block of :func:`gather_rows_parallel` (the ~1,500 real rows of a
#: training batch at L = 32 make six blocks, three per thread, not 2 + 1).
GATHER_BLOCK = 256


@jit()
def _gather_block(block, x, index, out):
    start = block * GATHER_BLOCK
    stop = min(start + GATHER_BLOCK, out.shape[0])
    zero = out.dtype.type(0)
    for i in range(start, stop):
        row = out[i]
        source = index[i]
        if source < 0:
            for e in range(row.shape[0]):
                row[e] = zero
        else:
            src = x[source]
            for e in range(row.shape[0]):
                row[e] = src[e]


@jit()
def gather_rows_serial(x, index, out):
    for block in range((out.shape[0] + GATHER_BLOCK - 1) // GATHER_BLOCK):
        _gather_block(block, x, index, out)


@jit(parallel=True)
def gather_rows_parallel(x, index, out):
    for block in prange((out.shape[0] + GATHER_BLOCK - 1) // GATHER_BLOCK):
        _gather_block(block, x, index, out)


#: Elements per block of :func:`nonfinite_parallel`.
FINITE_BLOCK = 65536


@jit()
def _nonfinite_block(block, bits, exponent):
    """1 if an element of one block has every exponent bit set (NaN or infinity), else 0.

    ``bits`` is the float buffer viewed as unsigned integers of its width:
    an integer OR-reduction vectorises, where a float comparison loop stays
    scalar and ran 3x slower than ``np.isfinite``.
    """
    start = block * FINITE_BLOCK
    chunk = bits[start:min(start + FINITE_BLOCK, bits.shape[0])]
    found = np.uint32(0)
    for i in range(chunk.shape[0]):
        found |= np.uint32((chunk[i] & exponent) == exponent)
    return found


@jit()
def nonfinite_serial(bits, exponent):
    """Whether a flat float buffer holds a NaN or an infinity, one thread.

    Parameters
    ----------
    bits : ndarray of shape (M,), uint32 or uint64
        The float32 or float64 buffer viewed as integers.
    exponent : uint32 or uint64
        The exponent mask of that float type.

    Returns
    -------
    found : bool
    """
    found = np.uint32(0)
    for block in range((bits.shape[0] + FINITE_BLOCK - 1) // FINITE_BLOCK):
        found |= _nonfinite_block(block, bits, exponent)
    return found != 0


@jit(parallel=True)
def nonfinite_parallel(bits, exponent):
    """Parallel build of :func:`nonfinite_serial`."""
    n_blocks = (bits.shape[0] + FINITE_BLOCK - 1) // FINITE_BLOCK
    flags = np.empty(n_blocks, dtype=np.uint32)
    for block in prange(n_blocks):
        flags[block] = _nonfinite_block(block, bits, exponent)
    found = np.uint32(0)
    for block in range(n_blocks):
        found |= flags[block]
    return found != 0


#: Integer views and exponent masks of the float types the finite check reads bitwise.
_EXPONENT_BITS = {np.dtype(np.float32): (np.uint32, np.uint32(0x7F800000)),
                  np.dtype(np.float64): (np.uint64, np.uint64(0x7FF0000000000000))}


class CPUArrayOps:
    """NumPy array operations; mixed into :class:`~._cpu.CPUBackend`."""

    #: The buffer pool of the pass in progress (see :meth:`reuse_buffers`).
    _pool = None
    _pool_index = 0

    # ---------------------------------------------------------- memory

    def empty(self, shape, dtype):
        """An uninitialised C-contiguous array on this backend.

        Inside :meth:`reuse_buffers`, the k-th request of a pass is served
        from the memory of the previous pass's k-th request when that is
        large enough and of the same dtype (a view of its first elements:
        batches packed to their real tokens differ in size from step to step).

        Parameters
        ----------
        shape : tuple of int
        dtype : numpy dtype

        Returns
        -------
        array : ndarray
        """
        pool = self._pool
        if pool is None:
            return np.empty(shape, dtype=dtype)
        # A training step makes ~50 of these calls: keep the Python lean.
        size = math.prod(shape) if type(shape) is tuple else int(shape)
        index = self._pool_index
        self._pool_index = index + 1
        if index < len(pool):
            memory = pool[index]
            if memory.size >= size and memory.dtype == dtype:
                return memory[:size].reshape(shape)
        memory = np.empty(size, dtype=dtype)
        if index < len(pool):
            pool[index] = memory
        else:
            pool.append(memory)
        return memory.reshape(shape)

    def zeros(self, shape, dtype):
        """A zero-filled C-contiguous array on this backend (see :meth:`empty`)."""
        array = self.empty(shape, dtype)
        array.fill(0)
        return array

    @contextlib.contextmanager
    def reuse_buffers(self, key):
        """Recycle the arrays of one pass (forward, or a training step) in the next.

        A fresh large ``np.empty`` is fresh memory from the OS: writing it
        page-faults and zero-fills every page, which cost more than the
        layer norm that wrote it (4 ms against 1 ms on 32,768 x 64 rows).
        Passes over similar batches request arrays in the same order, so the
        k-th request of a pass reuses the memory of the k-th request of the
        previous pass with that ``key`` (see :meth:`empty`). Only use it where nothing from the
        previous pass is read again (its arrays are overwritten); results
        that outlive the pass must be copied. The kernels' BLAS is held at
        one thread for the whole pass (see :func:`._threads.hold_blas`).

        Parameters
        ----------
        key : str
            Separate pools for separate kinds of pass ("train", "predict").
        """
        pools = self.__dict__.setdefault("_pools", {})
        saved = self._pool, self._pool_index
        self._pool, self._pool_index = pools.setdefault(key, []), 0
        try:
            # A pass is dozens of kernel calls: hold the BLAS limit once.
            with hold_blas():
                yield
        finally:
            self._pool, self._pool_index = saved

    def asarray(self, array, dtype):
        """Bring an array onto this backend's memory as a C-contiguous array.

        Parameters
        ----------
        array : array-like
        dtype : numpy dtype

        Returns
        -------
        array : ndarray
            ``array`` itself when it already qualifies.
        """
        return np.ascontiguousarray(array, dtype=dtype)

    def to_host(self, array):
        """Return a host (NumPy) array; a no-op on the CPU."""
        return array

    def fill_zero(self, x):
        """Set every entry of ``x`` to zero, in place."""
        x[...] = 0

    # ----------------------------------------------------- head layouts

    def split_heads(self, x, n_heads, out, offset=0):
        """Token rows to per-head blocks.

        Parameters
        ----------
        x : ndarray of shape (N*L, C)
            Rows of an ``(N, L)`` batch; columns ``offset`` to
            ``offset + H*Dh`` are read.
        n_heads : int
        out : ndarray of shape (N, H, L, Dh)
            Receives ``out[n, h, l, e] = x[n*L + l, offset + h*Dh + e]``.
        offset : int, default=0
        """
        if out.shape[1] != n_heads or x.shape[0] != out.shape[0] * out.shape[2] or \
                x.shape[1] < offset + n_heads * out.shape[3]:
            raise ValueError(f"split_heads: x {x.shape} does not hold {n_heads} heads of "
                             f"out {out.shape} at column {offset}.")
        self.run(split_heads_serial, split_heads_parallel, x, out, offset)

    def merge_heads(self, x, out, offset=0):
        """Per-head blocks to token rows; the inverse of :meth:`split_heads`.

        Parameters
        ----------
        x : ndarray of shape (N, H, L, Dh)
        out : ndarray of shape (N*L, C)
            Columns ``offset`` to ``offset + H*Dh`` receive
            ``out[n*L + l, offset + h*Dh + e] = x[n, h, l, e]``; the other
            columns are left untouched.
        offset : int, default=0
        """
        batch, n_heads, length, width = x.shape
        if out.shape[0] != batch * length or out.shape[1] < offset + n_heads * width:
            raise ValueError(f"merge_heads: out {out.shape} cannot hold x {x.shape} at "
                             f"column {offset}.")
        self.run(merge_heads_serial, merge_heads_parallel, x, out, offset)

    def heads_of(self, x, shape, offset=0):
        """The heads of token rows in ``(N, H, L, Dh)`` layout, for reading.

        On the CPU this is a strided view of ``x`` (no copy): the attention
        kernels read head rows in place through BLAS leading dimensions.

        Parameters
        ----------
        x : ndarray of shape (N*L, C)
            Columns ``offset`` to ``offset + H*Dh`` hold the heads.
        shape : tuple of int
            ``(N, H, L, Dh)``.
        offset : int, default=0

        Returns
        -------
        heads : ndarray of shape (N, H, L, Dh)
            ``heads[n, h, l, e] = x[n*L + l, offset + h*Dh + e]``.
        """
        batch, n_heads, length, width = shape
        columns = n_heads * width
        if x.ndim != 2 or x.shape[0] != batch * length or offset < 0 or \
                x.shape[1] < offset + columns:
            raise ValueError(f"heads_of: x {x.shape} does not hold {n_heads} heads of width "
                             f"{width} for N={batch}, L={length} at column {offset}.")
        rows = x.reshape(batch, length, x.shape[1])[:, :, offset:offset + columns]
        return rows.reshape(batch, length, n_heads, width).transpose(0, 2, 1, 3)

    def heads_out(self, x, shape, offset=0):
        """An ``(N, H, L, Dh)`` array whose contents end up in columns of ``x``.

        Write the heads into it, then call :meth:`heads_done`. On the CPU it
        is the view of :meth:`heads_of`, so writes land in ``x`` directly.
        """
        return self.heads_of(x, shape, offset)

    def heads_done(self, heads, x, offset=0):
        """Finish :meth:`heads_out`: a no-op on the CPU (the view wrote ``x``)."""

    def copy_(self, dst, src):
        """``dst[...] = src`` (same shapes; either may be a strided view)."""
        np.copyto(dst, src)

    # ------------------------------------------------------ elementwise

    def add_rows(self, x, rows):
        """``x[n] += rows`` for every sequence ``n`` (position encodings).

        Parameters
        ----------
        x : ndarray of shape (N, L, d)
            Updated in place.
        rows : ndarray of shape (L, d)
        """
        x += rows

    def add_(self, x, y):
        """``x += y`` in place (same shapes)."""
        x += y

    def scale_rows_(self, x, scale):
        """``x[n] *= scale[n]`` in place.

        Parameters
        ----------
        x : ndarray of shape (N, d)
        scale : ndarray of shape (N,)
        """
        x *= scale[:, None]

    def sum_axis0(self, x, out):
        """Column sums.

        Parameters
        ----------
        x : ndarray of shape (N, M)
        out : ndarray of shape (M,)
            Receives ``x.sum(axis=0)``.
        """
        np.sum(x, axis=0, out=out)

    def tile_rows(self, x, out):
        """Copy one row into every row of ``out``.

        Parameters
        ----------
        x : ndarray of shape (M,)
        out : ndarray of shape (N, M)
        """
        out[...] = x

    def all_finite(self, x):
        """Whether ``x`` holds no NaN or infinity.

        Returns
        -------
        finite : bool
        """
        bitwise = _EXPONENT_BITS.get(x.dtype)
        if bitwise is None or not x.flags.c_contiguous:
            return bool(np.isfinite(x).all())
        view, exponent = bitwise
        return not self.run(nonfinite_serial, nonfinite_parallel, x.reshape(-1).view(view),
                            exponent)

    def take_rows(self, x, index, out):
        """Gather along the first axis: ``out[i] = x[index[i]]``.

        Parameters
        ----------
        x : ndarray of shape (N, ...)
        index : ndarray of shape (K,), integer
        out : ndarray of shape (K, ...)
        """
        np.take(x, index, axis=0, out=out)

    def gather_rows(self, x, index, out):
        """Rows of a token-row matrix by index, zero rows where the index is negative.

        Packs the real tokens of a padded batch (``index`` = their row
        numbers) and unpacks them again (``index`` = each padded row's packed
        row, -1 on padding, which becomes a zero row).

        Parameters
        ----------
        x : ndarray of shape (N, C)
        index : ndarray of shape (K,), int64
            Entries in ``[-1, N)``; not checked (the network builds them).
        out : ndarray of shape (K, C)
            Receives ``x[index[k]]``, or zeros where ``index[k] < 0``.
        """
        if x.ndim != 2 or out.shape != (index.shape[0], x.shape[1]):
            raise ValueError(f"gather_rows: out {out.shape} does not match {index.shape[0]} "
                             f"rows of x {x.shape}.")
        self.run(gather_rows_serial, gather_rows_parallel, x, index, out)

    # ------------------------------------------------------ mean pooling

    def mean_pool_forward(self, states, weights, out):
        """Weighted sum over positions (masked mean pooling).

        Parameters
        ----------
        states : ndarray of shape (N, L, d)
        weights : ndarray of shape (N, L)
            ``1 / n_real`` at real positions, 0 on padding.
        out : ndarray of shape (N, d)
            Receives ``sum_l weights[n, l] * states[n, l]``.
        """
        np.einsum("bl,bld->bd", weights, states, out=out)

    def mean_pool_backward(self, weights, grad, out):
        """Backward of :meth:`mean_pool_forward`.

        Parameters
        ----------
        weights : ndarray of shape (N, L)
        grad : ndarray of shape (N, d)
        out : ndarray of shape (N, L, d)
            Receives ``weights[n, l] * grad[n]``.
        """
        np.multiply(weights[:, :, None], grad[:, None, :], out=out)
