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

import numpy as np

__all__ = ["CPUArrayOps"]


class CPUArrayOps:
    """NumPy array operations; mixed into :class:`~._cpu.CPUBackend`."""

    # ---------------------------------------------------------- memory

    def empty(self, shape, dtype):
        """An uninitialised C-contiguous array on this backend.

        Parameters
        ----------
        shape : tuple of int
        dtype : numpy dtype

        Returns
        -------
        array : ndarray
        """
        return np.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        """A zero-filled C-contiguous array on this backend."""
        return np.zeros(shape, dtype=dtype)

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
        batch, _, length, width = out.shape
        block = x[:, offset:offset + n_heads * width]
        np.copyto(out, block.reshape(batch, length, n_heads, width).transpose(0, 2, 1, 3))

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
        block = out[:, offset:offset + n_heads * width]
        np.copyto(block.reshape(batch, length, n_heads, width), x.transpose(0, 2, 1, 3))

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
        return bool(np.isfinite(x).all())

    def take_rows(self, x, index, out):
        """Gather along the first axis: ``out[i] = x[index[i]]``.

        Parameters
        ----------
        x : ndarray of shape (N, ...)
        index : ndarray of shape (K,), integer
        out : ndarray of shape (K, ...)
        """
        np.take(x, index, axis=0, out=out)

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
