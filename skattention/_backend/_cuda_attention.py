"""numba.cuda kernels of masked attention and attention pooling.

The GPU counterparts of :mod:`._cpu_attention`, :mod:`._cpu_additive` and
:mod:`._cpu_pooling`, with the same contracts: padded keys get exactly zero
weight, causal masking is top-left aligned (query ``i`` sees keys
``j <= i``), and a query that sees no real key gets all-zero weights, a zero
context, a zero log-sum-exp and zero gradients. Shape letters: ``B`` batch,
``H`` heads, ``Lq``/``Lk`` query/key positions, ``D`` query/key width, ``Dv``
value width, ``A`` additive-score width, ``L`` pooled positions.

Both score families share the kernels (a uniform ``additive`` flag picks the
score), so the dot and the additive path cannot drift apart:

* dot: ``s_ij = scale * q_i . k_j`` (the caller passes ``q W`` for "general");
* additive: ``s_ij = scale * v_a . tanh(qp_i + kp_j)``.

Determinism by construction: no atomics. Every output element is written by
exactly one thread, which sums in a fixed order, so results are bitwise
reproducible run to run:

* forward: one block per ``(b, h, tile of queries)``, one thread per query;
  the block stages ``TILE`` keys/values at a time in shared memory and each
  thread keeps an online (running-maximum) softmax, then stores the row's
  log-sum-exp so that the backward pass can recompute the weights;
* backward: a *row* kernel (one thread per query: ``dq`` and the row sums
  ``delta_i = sum_j p_ij dp_ij``) followed by a *column* kernel (one thread
  per key: ``dk`` and ``dv``, reading ``delta``); FlashAttention's ``delta``
  trick, with two passes instead of its atomic ``dq`` updates;
* pooling: one block per ``(b, h)``; threads share the positions, thread 0
  takes the row maximum, sum and dot product in position order, and a
  second kernel sums the query gradient over the batch in batch order.

Shared and local arrays need compile-time sizes, so widths are capped at
:data:`MAX_HEAD_DIM`; the host methods raise ValueError above it. Kernels are
built once per float dtype (float32 and float64) by :func:`_build_kernels`;
all arithmetic stays in that dtype (``float32`` literals, ``expf``). The
block-shape constants are module globals, read when a kernel is compiled
(and at every launch under the simulator, where tests shrink them); the
kernels stride by ``blockDim`` rather than by a constant, so a launch with
any block size is correct.
"""

import math
import types

import numba
import numpy as np
from numba import cuda

from ._cpu_training import _check_pooling

__all__ = ["CUDAAttentionOps", "MAX_HEAD_DIM", "PTX_KERNELS"]

#: Largest D, Dv or A the kernels accept (sizes their shared/local arrays).
MAX_HEAD_DIM = 128
#: Threads per block of the attention kernels (queries or keys per block).
THREADS = 64
#: Keys (forward, row kernel) or queries (column kernel) staged in shared
#: memory per step. Two (TILE, MAX_HEAD_DIM) tiles: 16 KiB in float32 and
#: 32 KiB in float64, below the 48 KiB static shared-memory limit.
TILE = 16
#: Threads per block of the pooling kernels (positions or widths per block).
POOL_THREADS = 128
#: Threads per block of the 1-D reduction kernels.
REDUCE_THREADS = 128


def _build_kernels(ft):
    """Compile-on-demand kernels whose arithmetic runs in the float type ``ft``.

    The kernels call no device functions: in numba-cuda 0.30 typing a call to
    a ``cuda.jit(device=True)`` (or ``register_jitable``) function asks the
    driver for the current device, so ``compile_ptx`` would need a GPU. The
    short shared pieces (tile staging, the score) are therefore written out
    in each kernel.

    Parameters
    ----------
    ft : numba float type
        ``numba.float32`` or ``numba.float64``; it types the shared and local
        arrays and the literals, so a float32 kernel never touches float64.

    Returns
    -------
    kernels : types.SimpleNamespace
        The CUDA dispatchers, named as in :data:`PTX_KERNELS`.
    """
    zero = ft(0)
    one = ft(1)

    @cuda.jit
    def attention_forward(q, k, v, score_vector, mask, causal, additive, scale, context,
                          weights, store_weights, log_sum_exp):
        """Forward pass: grid (B*H, ceil(Lq / blockDim)), one thread per query.

        ``q, k`` are (B, H, Lq, D), (B, H, Lk, D) (the projections, width A,
        for the additive score), ``v`` (B, H, Lk, Dv), ``score_vector`` (A,)
        (read only when ``additive``), ``mask`` (B, Lk) bool; outputs
        ``context`` (B, H, Lq, Dv), ``weights`` (B, H, Lq, Lk) (only when
        ``store_weights``) and ``log_sum_exp`` (B, H, Lq).
        """
        k_tile = cuda.shared.array((TILE, MAX_HEAD_DIM), ft)
        v_tile = cuda.shared.array((TILE, MAX_HEAD_DIM), ft)
        sv = cuda.shared.array(MAX_HEAD_DIM, ft)
        q_row = cuda.local.array(MAX_HEAD_DIM, ft)
        acc = cuda.local.array(MAX_HEAD_DIM, ft)
        n_heads, n_queries, width = q.shape[1], q.shape[2], q.shape[3]
        n_keys, value_width = k.shape[2], v.shape[3]
        b = cuda.blockIdx.x // n_heads
        h = cuda.blockIdx.x % n_heads
        tid = cuda.threadIdx.x
        n_threads = cuda.blockDim.x
        first = cuda.blockIdx.y * n_threads
        i = first + tid
        active = i < n_queries
        sc = ft(scale)
        if additive:
            for a in range(tid, width, n_threads):
                sv[a] = score_vector[a]
        if active:
            for d in range(width):
                q_row[d] = q[b, h, i, d]
            for d in range(value_width):
                acc[d] = zero
        row_max = zero
        total = zero
        # Under a causal mask no query of this block sees a key past its
        # last row, so those tiles are skipped (uniformly for the block).
        key_stop = n_keys
        if causal:
            key_stop = min(n_keys, first + n_threads)
        for start in range(0, key_stop, TILE):
            stop = min(start + TILE, key_stop)
            # Stage keys and values; neighbouring threads read neighbouring
            # addresses.
            for e in range(tid, (stop - start) * width, n_threads):
                r = e // width
                k_tile[r, e - r * width] = k[b, h, start + r, e - r * width]
            for e in range(tid, (stop - start) * value_width, n_threads):
                r = e // value_width
                v_tile[r, e - r * value_width] = v[b, h, start + r, e - r * value_width]
            cuda.syncthreads()
            if active:
                for j in range(start, stop):
                    if mask[b, j] and (not causal or j <= i):
                        jj = j - start
                        s = zero
                        if additive:
                            for a in range(width):
                                s += sv[a] * math.tanh(q_row[a] + k_tile[jj, a])
                        else:
                            for d in range(width):
                                s += q_row[d] * k_tile[jj, d]
                        s *= sc
                        # total == 0 until the first visible key, whose score
                        # becomes the running maximum; a larger score rescales
                        # what was summed so far, so that exp() stays <= 1.
                        if total == zero:
                            row_max = s
                        elif s > row_max:
                            factor = math.exp(row_max - s)
                            total *= factor
                            for d in range(value_width):
                                acc[d] *= factor
                            row_max = s
                        p = math.exp(s - row_max)
                        total += p
                        for d in range(value_width):
                            acc[d] += p * v_tile[jj, d]
                        if store_weights:
                            # The raw score for now; normalised below.
                            weights[b, h, i, j] = s
            cuda.syncthreads()
        if active:
            lse = zero
            inv_total = zero
            if total > zero:
                lse = row_max + math.log(total)
                inv_total = one / total
            log_sum_exp[b, h, i] = lse
            for d in range(value_width):
                context[b, h, i, d] = acc[d] * inv_total
            if store_weights:
                for j in range(n_keys):
                    if mask[b, j] and (not causal or j <= i):
                        weights[b, h, i, j] = math.exp(weights[b, h, i, j] - lse)
                    else:
                        weights[b, h, i, j] = zero

    @cuda.jit
    def attention_backward_rows(q, k, v, score_vector, mask, causal, additive, scale, weights,
                                use_weights, log_sum_exp, grad_context, grad_q, delta,
                                score_partial):
        """Row half of the backward pass: grid (B*H, ceil(Lq / blockDim)).

        One thread per query ``i`` sweeps the keys twice: first for
        ``delta_i = sum_j p_ij dp_ij`` (``dp_ij = g_i . v_j``), then for
        ``ds_ij = scale p_ij (dp_ij - delta_i)`` and ``grad_q[b, h, i]``
        (``sum_j ds_ij k_j``, or for the additive score
        ``sum_j ds_ij v_a (1 - t_ij**2)`` with ``t_ij = tanh(qp_i + kp_j)``).
        ``p_ij`` is the stored weight when ``use_weights``, else
        ``exp(s_ij - lse_i)``. Writes ``delta`` (B, H, Lq) for the column
        kernel and, when ``additive``, ``score_partial`` (B, H, Lq, A):
        ``sum_j ds_ij t_ij``.
        """
        k_tile = cuda.shared.array((TILE, MAX_HEAD_DIM), ft)
        v_tile = cuda.shared.array((TILE, MAX_HEAD_DIM), ft)
        sv = cuda.shared.array(MAX_HEAD_DIM, ft)
        q_row = cuda.local.array(MAX_HEAD_DIM, ft)
        g_row = cuda.local.array(MAX_HEAD_DIM, ft)
        acc = cuda.local.array(MAX_HEAD_DIM, ft)
        sv_acc = cuda.local.array(MAX_HEAD_DIM, ft)
        n_heads, n_queries, width = q.shape[1], q.shape[2], q.shape[3]
        n_keys, value_width = k.shape[2], v.shape[3]
        b = cuda.blockIdx.x // n_heads
        h = cuda.blockIdx.x % n_heads
        tid = cuda.threadIdx.x
        n_threads = cuda.blockDim.x
        first = cuda.blockIdx.y * n_threads
        i = first + tid
        active = i < n_queries
        sc = ft(scale)
        if additive:
            for a in range(tid, width, n_threads):
                sv[a] = score_vector[a]
        lse = zero
        if active:
            if not use_weights:
                lse = log_sum_exp[b, h, i]
            for d in range(width):
                q_row[d] = q[b, h, i, d]
                acc[d] = zero
                sv_acc[d] = zero
            for d in range(value_width):
                g_row[d] = grad_context[b, h, i, d]
        key_stop = n_keys
        if causal:
            key_stop = min(n_keys, first + n_threads)
        row_delta = zero
        for sweep in range(2):
            for start in range(0, key_stop, TILE):
                stop = min(start + TILE, key_stop)
                for e in range(tid, (stop - start) * width, n_threads):
                    r = e // width
                    k_tile[r, e - r * width] = k[b, h, start + r, e - r * width]
                for e in range(tid, (stop - start) * value_width, n_threads):
                    r = e // value_width
                    v_tile[r, e - r * value_width] = v[b, h, start + r, e - r * value_width]
                cuda.syncthreads()
                if active:
                    for j in range(start, stop):
                        if mask[b, j] and (not causal or j <= i):
                            jj = j - start
                            if use_weights:
                                p = weights[b, h, i, j]
                            else:
                                s = zero
                                if additive:
                                    for a in range(width):
                                        s += sv[a] * math.tanh(q_row[a] + k_tile[jj, a])
                                else:
                                    for d in range(width):
                                        s += q_row[d] * k_tile[jj, d]
                                p = math.exp(s * sc - lse)
                            dp = zero
                            for d in range(value_width):
                                dp += g_row[d] * v_tile[jj, d]
                            if sweep == 0:
                                row_delta += p * dp
                            else:
                                ds = sc * p * (dp - row_delta)
                                if additive:
                                    for a in range(width):
                                        t = math.tanh(q_row[a] + k_tile[jj, a])
                                        sv_acc[a] += ds * t
                                        acc[a] += ds * sv[a] * (one - t * t)
                                else:
                                    for d in range(width):
                                        acc[d] += ds * k_tile[jj, d]
                # The next staging overwrites the tiles.
                cuda.syncthreads()
        if active:
            delta[b, h, i] = row_delta
            for d in range(width):
                grad_q[b, h, i, d] = acc[d]
            if additive:
                for a in range(width):
                    score_partial[b, h, i, a] = sv_acc[a]

    @cuda.jit
    def attention_backward_columns(q, k, v, score_vector, mask, causal, additive, scale,
                                   weights, use_weights, log_sum_exp, grad_context, delta,
                                   grad_k, grad_v):
        """Column half of the backward pass: grid (B*H, ceil(Lk / blockDim)).

        One thread per key ``j`` sweeps the queries (staged ``TILE`` at a
        time): ``grad_v[b, h, j] = sum_i p_ij g_i`` and ``grad_k[b, h, j] =
        sum_i ds_ij q_i`` (additive: ``sum_i ds_ij v_a (1 - t_ij**2)``), with
        ``delta`` from ``attention_backward_rows``. Padded keys get zeros.
        """
        q_tile = cuda.shared.array((TILE, MAX_HEAD_DIM), ft)
        g_tile = cuda.shared.array((TILE, MAX_HEAD_DIM), ft)
        sv = cuda.shared.array(MAX_HEAD_DIM, ft)
        k_row = cuda.local.array(MAX_HEAD_DIM, ft)
        v_row = cuda.local.array(MAX_HEAD_DIM, ft)
        dk = cuda.local.array(MAX_HEAD_DIM, ft)
        dv = cuda.local.array(MAX_HEAD_DIM, ft)
        n_heads, n_queries, width = q.shape[1], q.shape[2], q.shape[3]
        n_keys, value_width = k.shape[2], v.shape[3]
        b = cuda.blockIdx.x // n_heads
        h = cuda.blockIdx.x % n_heads
        tid = cuda.threadIdx.x
        n_threads = cuda.blockDim.x
        first = cuda.blockIdx.y * n_threads
        j = first + tid
        real = False
        if j < n_keys:
            if mask[b, j]:
                real = True
        sc = ft(scale)
        if additive:
            for a in range(tid, width, n_threads):
                sv[a] = score_vector[a]
        if real:
            for d in range(width):
                k_row[d] = k[b, h, j, d]
            for d in range(value_width):
                v_row[d] = v[b, h, j, d]
        for d in range(width):
            dk[d] = zero
        for d in range(value_width):
            dv[d] = zero
        # Under a causal mask the queries before this block's first key see
        # none of its keys.
        query_start = 0
        if causal:
            query_start = min(first, n_queries)
        for start in range(query_start, n_queries, TILE):
            stop = min(start + TILE, n_queries)
            for e in range(tid, (stop - start) * width, n_threads):
                r = e // width
                q_tile[r, e - r * width] = q[b, h, start + r, e - r * width]
            for e in range(tid, (stop - start) * value_width, n_threads):
                r = e // value_width
                g_tile[r, e - r * value_width] = grad_context[b, h, start + r,
                                                              e - r * value_width]
            cuda.syncthreads()
            if real:
                for i in range(start, stop):
                    if not causal or j <= i:
                        ii = i - start
                        if use_weights:
                            p = weights[b, h, i, j]
                        else:
                            s = zero
                            if additive:
                                for a in range(width):
                                    s += sv[a] * math.tanh(q_tile[ii, a] + k_row[a])
                            else:
                                for d in range(width):
                                    s += q_tile[ii, d] * k_row[d]
                            p = math.exp(s * sc - log_sum_exp[b, h, i])
                        dp = zero
                        for d in range(value_width):
                            dp += g_tile[ii, d] * v_row[d]
                            dv[d] += p * g_tile[ii, d]
                        ds = sc * p * (dp - delta[b, h, i])
                        if additive:
                            for a in range(width):
                                t = math.tanh(q_tile[ii, a] + k_row[a])
                                dk[a] += ds * sv[a] * (one - t * t)
                        else:
                            for d in range(width):
                                dk[d] += ds * q_tile[ii, d]
            cuda.syncthreads()
        if j < n_keys:
            for d in range(width):
                grad_k[b, h, j, d] = dk[d]
            for d in range(value_width):
                grad_v[b, h, j, d] = dv[d]

    @cuda.jit
    def sum_rows(partial, out):
        """``out[b, h, a] = sum_i partial[b, h, i, a]`` in index order; one thread each."""
        n_heads, n_rows, width = partial.shape[1], partial.shape[2], partial.shape[3]
        idx = cuda.grid(1)
        if idx < partial.shape[0] * n_heads * width:
            bh = idx // width
            a = idx - bh * width
            b = bh // n_heads
            h = bh - b * n_heads
            total = zero
            for i in range(n_rows):
                total += partial[b, h, i, a]
            out[b, h, a] = total

    @cuda.jit
    def pooling_forward(keys, values, query, mask, scale, context, weights):
        """Attention pooling: grid (B*H,), one block per ``(b, h)``.

        ``keys`` (B, H, L, D), ``values`` (B, H, L, Dv), ``query`` (H, D),
        ``mask`` (B, L) bool; outputs ``context`` (B, H, Dv) and ``weights``
        (B, H, L), which holds the raw scores on the way. Threads share the
        positions, thread 0 takes the maximum and the sum in position order
        (a fixed order, and O(L) like each thread's context sum).
        """
        stat = cuda.shared.array(2, ft)
        n_heads, n_positions, width = keys.shape[1], keys.shape[2], keys.shape[3]
        b = cuda.blockIdx.x // n_heads
        h = cuda.blockIdx.x % n_heads
        tid = cuda.threadIdx.x
        n_threads = cuda.blockDim.x
        sc = ft(scale)
        for pos in range(tid, n_positions, n_threads):
            if mask[b, pos]:
                s = zero
                for d in range(width):
                    s += query[h, d] * keys[b, h, pos, d]
                # Scaling before the maximum keeps the shift valid for a
                # scale of either sign.
                weights[b, h, pos] = s * sc
        # syncthreads also makes the block's global writes visible to it.
        cuda.syncthreads()
        if tid == 0:
            row_max = zero
            seen = False
            for pos in range(n_positions):
                if mask[b, pos] and (not seen or weights[b, h, pos] > row_max):
                    row_max = weights[b, h, pos]
                    seen = True
            # exp(z - max) <= 1 and the maximum contributes 1, so the sum
            # lies in [1, L]; it stays 0 without a real position.
            total = zero
            for pos in range(n_positions):
                if mask[b, pos]:
                    total += math.exp(weights[b, h, pos] - row_max)
            stat[0] = row_max
            stat[1] = total
        cuda.syncthreads()
        row_max = stat[0]
        inv_total = zero
        if stat[1] > zero:
            inv_total = one / stat[1]
        for pos in range(tid, n_positions, n_threads):
            if mask[b, pos]:
                weights[b, h, pos] = math.exp(weights[b, h, pos] - row_max) * inv_total
            else:
                weights[b, h, pos] = zero
        cuda.syncthreads()
        for d in range(tid, values.shape[3], n_threads):
            acc = zero
            for pos in range(n_positions):
                acc += weights[b, h, pos] * values[b, h, pos, d]
            context[b, h, d] = acc

    @cuda.jit
    def pooling_backward(keys, values, query, mask, scale, weights, grad_context, grad_keys,
                         grad_values, grad_scores, partial):
        """Backward of pooling: grid (B*H,), one block per ``(b, h)``.

        ``dp_l = g . v_l``, ``dz_l = scale p_l (dp_l - sum_k p_k dp_k)``,
        ``grad_values[l] = p_l g``, ``grad_keys[l] = dz_l query[h]``; writes
        ``grad_scores`` (B, H, L) (scratch: ``dp``, then ``dz``) and
        ``partial`` (B, H, D), this item's ``sum_l dz_l k_l``, summed over the
        batch by ``sum_over_batch``.
        """
        stat = cuda.shared.array(1, ft)
        n_heads, n_positions, width = keys.shape[1], keys.shape[2], keys.shape[3]
        value_width = values.shape[3]
        b = cuda.blockIdx.x // n_heads
        h = cuda.blockIdx.x % n_heads
        tid = cuda.threadIdx.x
        n_threads = cuda.blockDim.x
        sc = ft(scale)
        for pos in range(tid, n_positions, n_threads):
            dp = zero
            for d in range(value_width):
                dp += grad_context[b, h, d] * values[b, h, pos, d]
            grad_scores[b, h, pos] = dp
        cuda.syncthreads()
        if tid == 0:
            row_dot = zero
            for pos in range(n_positions):
                if mask[b, pos]:
                    row_dot += weights[b, h, pos] * grad_scores[b, h, pos]
            stat[0] = row_dot
        cuda.syncthreads()
        row_dot = stat[0]
        for pos in range(tid, n_positions, n_threads):
            dz = zero
            p = zero
            if mask[b, pos]:
                p = weights[b, h, pos]
                dz = p * (grad_scores[b, h, pos] - row_dot) * sc
            grad_scores[b, h, pos] = dz
            for d in range(value_width):
                grad_values[b, h, pos, d] = p * grad_context[b, h, d]
            for d in range(width):
                grad_keys[b, h, pos, d] = dz * query[h, d]
        cuda.syncthreads()
        for d in range(tid, width, n_threads):
            acc = zero
            for pos in range(n_positions):
                acc += grad_scores[b, h, pos] * keys[b, h, pos, d]
            partial[b, h, d] = acc

    @cuda.jit
    def sum_over_batch(partial, grad_query):
        """``grad_query[h, d] = sum_b partial[b, h, d]`` in index order; one thread each."""
        n_heads, width = partial.shape[1], partial.shape[2]
        idx = cuda.grid(1)
        if idx < n_heads * width:
            h = idx // width
            d = idx - h * width
            total = zero
            for b in range(partial.shape[0]):
                total += partial[b, h, d]
            grad_query[h, d] = total

    return types.SimpleNamespace(
        attention_forward=attention_forward,
        attention_backward_rows=attention_backward_rows,
        attention_backward_columns=attention_backward_columns,
        sum_rows=sum_rows,
        pooling_forward=pooling_forward,
        pooling_backward=pooling_backward,
        sum_over_batch=sum_over_batch,
    )


_KERNELS = {
    np.dtype(np.float32): _build_kernels(numba.float32),
    np.dtype(np.float64): _build_kernels(numba.float64),
}


def _ptx_kernels():
    """``(name, dispatcher, signature)`` of every float32 kernel, for ``compile_ptx``."""
    a1, a2, a3, a4 = ("float32[::1]", "float32[:, ::1]", "float32[:, :, ::1]",
                      "float32[:, :, :, ::1]")
    mask = "b1[:, ::1]"
    common = f"{a4}, {a4}, {a4}, {a1}, {mask}, b1, b1, float32"
    kernels = _KERNELS[np.dtype(np.float32)]
    signatures = {
        "attention_forward": f"{common}, {a4}, {a4}, b1, {a3}",
        "attention_backward_rows": f"{common}, {a4}, b1, {a3}, {a4}, {a4}, {a3}, {a4}",
        "attention_backward_columns": f"{common}, {a4}, b1, {a3}, {a4}, {a3}, {a4}, {a4}",
        "sum_rows": f"{a4}, {a3}",
        "pooling_forward": f"{a4}, {a4}, {a2}, {mask}, float32, {a3}, {a3}",
        "pooling_backward": (f"{a4}, {a4}, {a2}, {mask}, float32, {a3}, {a3}, {a4}, {a4}, "
                             f"{a3}, {a3}"),
        "sum_over_batch": f"{a3}, {a2}",
    }
    return [(name, getattr(kernels, name), sig) for name, sig in signatures.items()]


#: Every kernel of this module as ``(name, dispatcher, float32 signature)``;
#: ``numba.cuda.compile_ptx(dispatcher.py_func, signature, cc=(9, 0))``
#: compiles each without a GPU.
PTX_KERNELS = _ptx_kernels()


# ----------------------------------------------------------------- host side


def _check_pooling_shapes(**arrays):
    """:func:`._cpu_training._check_pooling` on the arrays' shapes.

    The CUDA simulator's device arrays have a shape type without negative
    indexing, so the check sees plain tuples.
    """
    shapes = {name: types.SimpleNamespace(shape=tuple(array.shape))
              for name, array in arrays.items()}
    _check_pooling(**shapes)


def _kernels_for(dtype):
    """The kernel namespace of a float dtype; ValueError for any other."""
    try:
        return _KERNELS[np.dtype(dtype)]
    except KeyError:
        raise ValueError(
            f"the CUDA attention kernels support float32 and float64 arrays; got {dtype}."
        ) from None


def _check_widths(**widths):
    """Raise ValueError if a width exceeds what the shared/local arrays hold."""
    for name, width in widths.items():
        if width > MAX_HEAD_DIM:
            raise ValueError(
                f"the CUDA attention kernels support widths up to MAX_HEAD_DIM="
                f"{MAX_HEAD_DIM}; got {name}={width}. Use more heads (a smaller "
                "per-head width) or device='cpu'.")


_DUMMIES = {}


def _dummy(dtype, ndim):
    """A one-element device array standing in for an unused kernel argument."""
    key = (np.dtype(dtype), ndim)
    if key not in _DUMMIES:
        _DUMMIES[key] = cuda.device_array((1,) * ndim, dtype=dtype)
    return _DUMMIES[key]


def _grid(batch_heads, rows):
    """Blocks for one thread per row: ``(B*H, ceil(rows / THREADS))``."""
    return (batch_heads, max(1, -(-rows // THREADS)))


def _blocks(n, threads):
    """Number of blocks covering ``n`` threads."""
    return max(1, -(-n // threads))


class CUDAAttentionOps:
    """Attention and attention-pooling methods of the CUDA backend (a mixin).

    Same names, arguments and results as the CPU backend's methods; arrays are
    C-contiguous numba CUDA device arrays of one float dtype (float32 or
    float64), masks are bool device arrays (True at real keys), outputs are
    preallocated and filled in place. Scratch (row sums, partial gradients) is
    allocated per call. Kernels are launched on the default stream.
    """

    def dot_attention_forward(self, q, k, v, mask, causal, scale, context, weights,
                              log_sum_exp, skip_queries=False):
        """Dot-family attention forward pass.

        Parameters
        ----------
        q, k, v : device arrays of shape (B, H, Lq, D), (B, H, Lk, D), (B, H, Lk, Dv)
        mask : device array of shape (B, Lk), bool
            True at real keys.
        causal : bool
        scale : float
            Score multiplier.
        context : device array of shape (B, H, Lq, Dv)
            Output.
        weights : device array of shape (B, H, Lq, Lk) or None
            Output; None skips materialising the weights (the backward pass
            then recomputes them from ``log_sum_exp``).
        log_sum_exp : device array of shape (B, H, Lq)
            Output: the softmax row statistics.
        skip_queries : bool, default=False
            Accepted for the CPU backend's contract (padded query rows not
            needed); the CUDA kernels compute every row, one thread block each.

        Raises
        ------
        ValueError
            D or Dv above :data:`MAX_HEAD_DIM`, or a dtype other than float32
            and float64.
        """
        kernels = _kernels_for(q.dtype)
        _check_widths(D=q.shape[3], Dv=v.shape[3])
        store = weights is not None
        if not store:
            weights = _dummy(q.dtype, 4)
        batch, heads, n_queries = q.shape[:3]
        kernels.attention_forward[_grid(batch * heads, n_queries), THREADS](
            q, k, v, _dummy(q.dtype, 1), mask, bool(causal), False, q.dtype.type(scale),
            context, weights, store, log_sum_exp)

    def dot_attention_backward(self, q, k, v, mask, causal, scale, weights, log_sum_exp,
                               grad_context, grad_q, grad_k, grad_v, skip_queries=False):
        """Backward of :meth:`dot_attention_forward`; fills ``grad_q, grad_k, grad_v``.

        ``weights`` may be None when the forward pass did not store them; they
        are then recomputed from ``log_sum_exp``. Shapes as in the forward
        pass; ``grad_context`` is (B, H, Lq, Dv) and the gradients are shaped
        like ``q, k, v``.
        """
        kernels = _kernels_for(q.dtype)
        _check_widths(D=q.shape[3], Dv=v.shape[3])
        use = weights is not None
        if not use:
            weights = _dummy(q.dtype, 4)
        self._attention_backward(kernels, q, k, v, _dummy(q.dtype, 1), mask, causal, False,
                                 scale, weights, use, log_sum_exp, grad_context, grad_q,
                                 grad_k, grad_v, _dummy(q.dtype, 4))

    def additive_attention_forward(self, query_proj, key_proj, score_vector, v, mask, causal,
                                   scale, context, weights, log_sum_exp):
        """Additive (Bahdanau) attention forward pass.

        Parameters
        ----------
        query_proj, key_proj : device arrays of shape (B, H, Lq, A), (B, H, Lk, A)
            ``q W_q`` and ``k W_k``.
        score_vector : device array of shape (A,)
            ``v_a`` of the score ``v_a . tanh(q W_q + k W_k)``.
        v : device array of shape (B, H, Lk, Dv)
        mask, causal, scale, context, log_sum_exp :
            As in :meth:`dot_attention_forward`.
        weights : device array of shape (B, H, Lq, Lk)
            Output (required, as on the CPU: the backward pass reads it).
        """
        kernels = _kernels_for(query_proj.dtype)
        _check_widths(A=query_proj.shape[3], Dv=v.shape[3])
        if weights is None:
            raise ValueError("additive attention needs a weights array (B, H, Lq, Lk).")
        batch, heads, n_queries = query_proj.shape[:3]
        kernels.attention_forward[_grid(batch * heads, n_queries), THREADS](
            query_proj, key_proj, v, score_vector, mask, bool(causal), True,
            query_proj.dtype.type(scale), context, weights, True, log_sum_exp)

    def additive_attention_backward(self, query_proj, key_proj, score_vector, v, mask, causal,
                                    scale, weights, grad_context, grad_query_proj,
                                    grad_key_proj, grad_v, grad_score_vector):
        """Backward of :meth:`additive_attention_forward`.

        ``grad_query_proj``, ``grad_key_proj`` and ``grad_v`` are shaped like
        ``query_proj``, ``key_proj`` and ``v``; ``grad_score_vector`` has shape
        (B, H, A) and receives per-``(b, h)`` contributions that the caller
        sums.
        """
        dtype = query_proj.dtype
        kernels = _kernels_for(dtype)
        _check_widths(A=query_proj.shape[3], Dv=v.shape[3])
        if weights is None:
            raise ValueError("additive attention backward needs the forward weights.")
        batch, heads, n_queries, width = query_proj.shape
        score_partial = cuda.device_array((batch, heads, n_queries, width), dtype=dtype)
        self._attention_backward(kernels, query_proj, key_proj, v, score_vector, mask, causal,
                                 True, scale, weights, True, _dummy(dtype, 3), grad_context,
                                 grad_query_proj, grad_key_proj, grad_v, score_partial)
        n = batch * heads * width
        kernels.sum_rows[_blocks(n, REDUCE_THREADS), REDUCE_THREADS](score_partial,
                                                                     grad_score_vector)

    def _attention_backward(self, kernels, q, k, v, score_vector, mask, causal, additive,
                            scale, weights, use_weights, log_sum_exp, grad_context, grad_q,
                            grad_k, grad_v, score_partial):
        """Launch the row kernel, then the column kernel (which reads its ``delta``)."""
        batch, heads, n_queries = q.shape[:3]
        delta = cuda.device_array((batch, heads, n_queries), dtype=q.dtype)
        args = (q, k, v, score_vector, mask, bool(causal), additive, q.dtype.type(scale),
                weights, use_weights, log_sum_exp, grad_context)
        kernels.attention_backward_rows[_grid(batch * heads, n_queries), THREADS](
            *args, grad_q, delta, score_partial)
        kernels.attention_backward_columns[_grid(batch * heads, k.shape[2]), THREADS](
            *args, delta, grad_k, grad_v)

    def attention_pooling_forward(self, keys, values, query, mask, scale, context, weights):
        """Attention pooling with a learned query.

        Parameters
        ----------
        keys : device array of shape (B, H, L, D)
        values : device array of shape (B, H, L, Dv)
        query : device array of shape (H, D)
        mask : device array of shape (B, L), bool
        scale : float
        context : device array of shape (B, H, Dv)
            Output.
        weights : device array of shape (B, H, L)
            Output; exactly 0 at padded positions, all 0 (and a zero context)
            for a sequence without real positions.
        """
        _check_pooling_shapes(keys=keys, values=values, query=query, mask=mask,
                              context=context, weights=weights)
        kernels = _kernels_for(keys.dtype)
        batch, heads = keys.shape[:2]
        kernels.pooling_forward[batch * heads, POOL_THREADS](
            keys, values, query, mask, keys.dtype.type(scale), context, weights)

    def attention_pooling_backward(self, keys, values, query, mask, scale, weights,
                                   grad_context, grad_keys, grad_values, grad_query):
        """Backward of :meth:`attention_pooling_forward`; fills the three gradients.

        ``grad_keys`` and ``grad_values`` are shaped like ``keys`` and
        ``values`` (0 at padded positions); ``grad_query`` (H, D) is summed
        over the batch in a fixed order.
        """
        _check_pooling_shapes(keys=keys, values=values, query=query, mask=mask,
                              weights=weights, grad_context=grad_context, grad_keys=grad_keys,
                              grad_values=grad_values, grad_query=grad_query)
        kernels = _kernels_for(keys.dtype)
        batch, heads, n_positions, width = keys.shape
        grad_scores = cuda.device_array((batch, heads, n_positions), dtype=keys.dtype)
        partial = cuda.device_array((batch, heads, width), dtype=keys.dtype)
        kernels.pooling_backward[batch * heads, POOL_THREADS](
            keys, values, query, mask, keys.dtype.type(scale), weights, grad_context,
            grad_keys, grad_values, grad_scores, partial)
        kernels.sum_over_batch[_blocks(heads * width, REDUCE_THREADS), REDUCE_THREADS](
            partial, grad_query)
