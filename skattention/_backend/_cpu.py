"""The CPU backend: Numba kernels behind one object.

Methods take preallocated outputs, so the training loop can keep its
buffers across batches. Inputs must be C-contiguous arrays of one float
dtype (float32 or float64); the public wrappers (:mod:`skattention.functional`)
and the network make sure of that.
"""

import numpy as np

from . import _cpu_additive as additive
from . import _cpu_attention as attn
from . import _cpu_packed as packed
from ._cpu_arrays import CPUArrayOps
from ._cpu_layers import CPULayerOps
from ._cpu_training import CPUTrainingOps
from ._threads import default_n_threads, kernel_threads

__all__ = ["CPUBackend"]


class CPUBackend(CPULayerOps, CPUTrainingOps, CPUArrayOps):
    """Numba CPU kernels with a thread budget.

    The attention kernels are methods of this class; the layer kernels
    (linear, layer norm, activations, embedding, dropout) come from
    :class:`~._cpu_layers.CPULayerOps`, the training kernels (pooling,
    losses, optimizers) from :class:`~._cpu_training.CPUTrainingOps` and
    the array operations the network routes through its backend
    (allocation, head layouts, mean pooling) from
    :class:`~._cpu_arrays.CPUArrayOps`.

    Parameters
    ----------
    n_threads : int or None, default=None
        Threads for the ``prange`` kernels. 1 runs the serial builds (no
        threading layer is started); None uses Numba's current thread count.

    Attributes
    ----------
    name : str
        ``"cpu"``.
    n_threads : int
        The resolved thread count.
    """

    name = "cpu"

    def __init__(self, n_threads=None):
        self.n_threads = default_n_threads() if n_threads is None else max(1, int(n_threads))

    def __repr__(self):
        return f"CPUBackend(n_threads={self.n_threads})"

    def run(self, serial_kernel, parallel_kernel, *args):
        """Run the serial or the parallel build of a kernel under the thread budget.

        Parameters
        ----------
        serial_kernel, parallel_kernel : numba dispatchers
            The two builds of one kernel (same arguments).
        *args
            Arguments of the kernel.

        Returns
        -------
        result
            What the kernel returns.
        """
        with kernel_threads(self.n_threads) as n_threads:
            if n_threads == 1:
                return serial_kernel(*args)
            return parallel_kernel(*args)

    def run_scratch(self, serial_kernel, parallel_kernel, *args):
        """Like :meth:`run`, for parallel builds that take the thread count last.

        Kernels with per-thread scratch size it from a trailing ``n_threads``
        argument (calling ``numba.get_num_threads()`` inside a kernel would
        stop Numba from caching it).

        Parameters
        ----------
        serial_kernel, parallel_kernel : numba dispatchers
            ``parallel_kernel`` takes the serial arguments plus ``n_threads``.
        *args
            Arguments of the serial kernel.

        Returns
        -------
        result
            What the kernel returns.
        """
        with kernel_threads(self.n_threads) as n_threads:
            if n_threads == 1:
                return serial_kernel(*args)
            return parallel_kernel(*args, n_threads)

    # --------------------------------------------------------- attention

    def dot_attention_forward(self, q, k, v, mask, causal, scale, context, weights,
                              log_sum_exp, skip_queries=False):
        """Dot-family attention forward pass.

        Parameters
        ----------
        q, k, v : ndarrays of shape (B, H, Lq, D), (B, H, Lk, D), (B, H, Lk, Dv)
        mask : ndarray of shape (B, Lk), bool
            True at real keys.
        causal : bool
        scale : float
            Score multiplier of the arrays' dtype.
        context : ndarray of shape (B, H, Lq, Dv)
            Output.
        weights : ndarray of shape (B, H, Lq, Lk) or None
            Output; None skips materialising the weights (training), and the
            backward pass then recomputes them from ``log_sum_exp``.
        log_sum_exp : ndarray of shape (B, H, Lq)
            Output: the softmax row statistics.
        skip_queries : bool, default=False
            Self-attention (queries are the masked steps too): the rows of
            padded queries are not needed and may be skipped; where they are
            (trailing padding), their context, weights and statistics rows are 0.
        """
        store = weights is not None
        if not store:
            weights = np.empty((1, 1, 1, 1), dtype=q.dtype)
        self.run_scratch(attn.dot_attention_forward_serial, attn.dot_attention_forward_parallel,
                         q, k, v, mask, causal, scale, context, weights, store, log_sum_exp,
                         skip_queries)

    def dot_attention_backward(self, q, k, v, mask, causal, scale, weights, log_sum_exp,
                               grad_context, grad_q, grad_k, grad_v, skip_queries=False):
        """Backward of :meth:`dot_attention_forward`; fills ``grad_q, grad_k, grad_v``.

        ``weights`` may be None when the forward pass did not store them. With
        ``skip_queries``, the ``grad_context`` rows of padded queries must be 0
        (they may be left unread) and their ``grad_q`` rows are 0.
        """
        use = weights is not None
        if not use:
            weights = np.empty((1, 1, 1, 1), dtype=q.dtype)
        self.run_scratch(attn.dot_attention_backward_serial,
                         attn.dot_attention_backward_parallel,
                         q, k, v, mask, causal, scale, weights, use, log_sum_exp,
                         grad_context, grad_q, grad_k, grad_v, skip_queries)

    def packed_attention_forward(self, queries, qkv, offsets, n_heads, scale, context,
                                 log_sum_exp):
        """Dot-family self-attention over packed rows (the real tokens only).

        Parameters
        ----------
        queries : ndarray of shape (R, >= d)
            Head ``h``'s queries in columns ``h * Dh .. (h + 1) * Dh``; pass
            ``qkv`` itself for the "dot" and "scaled_dot" scores.
        qkv : ndarray of shape (R, 3 d)
            Keys in columns ``d .. 2 d``, values in ``2 d .. 3 d``.
        offsets : ndarray of shape (B + 1,), int64
            Sequence ``b`` owns rows ``offsets[b] .. offsets[b + 1]``
            (non-decreasing, ``offsets[-1] == R``).
        n_heads : int
        scale : float
            Score multiplier of the arrays' dtype.
        context : ndarray of shape (R, d)
            Output.
        log_sum_exp : ndarray of shape (R, H)
            Output: the softmax row statistics.
        """
        n_rows, d = context.shape
        if qkv.shape != (n_rows, 3 * d) or queries.shape[0] != n_rows or \
                queries.shape[1] < d or log_sum_exp.shape != (n_rows, n_heads) or \
                d % n_heads or offsets.ndim != 1 or offsets.shape[0] < 1 or \
                offsets[0] != 0 or offsets[-1] != n_rows:
            raise ValueError(
                f"packed_attention_forward: inconsistent shapes (queries {queries.shape}, "
                f"qkv {qkv.shape}, context {context.shape}, log_sum_exp "
                f"{log_sum_exp.shape}, {n_heads} heads, offsets ending at "
                f"{offsets[-1] if offsets.size else None}).")
        self.run_scratch(packed.packed_attention_forward_serial,
                         packed.packed_attention_forward_parallel,
                         queries, qkv, offsets, n_heads, scale, context, log_sum_exp)

    def packed_attention_backward(self, queries, qkv, offsets, n_heads, scale, log_sum_exp,
                                  grad_context, grad_queries, grad_qkv):
        """Backward of :meth:`packed_attention_forward`.

        Fills the key and value gradients (columns ``d .. 3 d`` of
        ``grad_qkv``) and the query gradients (``grad_queries``, which is
        ``grad_qkv`` itself when ``queries`` is ``qkv``); see
        :func:`._cpu_packed.packed_attention_backward_serial`.
        """
        n_rows, d = grad_context.shape
        if grad_qkv.shape != (n_rows, 3 * d) or qkv.shape != (n_rows, 3 * d) or \
                grad_queries.shape[0] != n_rows or grad_queries.shape[1] < d or \
                log_sum_exp.shape != (n_rows, n_heads):
            raise ValueError(
                f"packed_attention_backward: inconsistent shapes (qkv {qkv.shape}, grad_qkv "
                f"{grad_qkv.shape}, grad_context {grad_context.shape}, grad_queries "
                f"{grad_queries.shape}, log_sum_exp {log_sum_exp.shape}).")
        self.run_scratch(packed.packed_attention_backward_serial,
                         packed.packed_attention_backward_parallel,
                         queries, qkv, offsets, n_heads, scale, log_sum_exp, grad_context,
                         grad_queries, grad_qkv)

    def additive_attention_forward(self, query_proj, key_proj, score_vector, v, mask, causal,
                                   scale, context, weights, log_sum_exp):
        """Additive attention; see :func:`_cpu_attention.additive_attention_forward_serial`."""
        self.run_scratch(additive.additive_attention_forward_serial,
                         additive.additive_attention_forward_parallel,
                         query_proj, key_proj, score_vector, v, mask, causal, scale, context,
                         weights, log_sum_exp)

    def additive_attention_backward(self, query_proj, key_proj, score_vector, v, mask, causal,
                                    scale, weights, grad_context, grad_query_proj,
                                    grad_key_proj, grad_v, grad_score_vector):
        """Backward of :meth:`additive_attention_forward`.

        ``grad_score_vector`` has shape (B, H, A) and receives per-``(b, h)``
        contributions that the caller sums.
        """
        self.run_scratch(additive.additive_attention_backward_serial,
                         additive.additive_attention_backward_parallel,
                         query_proj, key_proj, score_vector, v, mask, causal, scale, weights,
                         grad_context, grad_query_proj, grad_key_proj, grad_v,
                         grad_score_vector)
