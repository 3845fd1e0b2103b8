"""Attention forward + backward: skattention's Numba kernels vs PyTorch SDPA.

Both run in this process with the same thread count, interleaved, and each
configuration reports the median of several repeats after a warm-up. Half
the sequences of every batch are padded to random lengths; PyTorch gets the
same boolean key mask. Throughput is also given as a fraction of this run's
float32 ``numpy.matmul`` rate at 1024^3, the machine's practical GEMM limit.

Run (needs the ``bench`` extra, i.e. the CPU build of torch)::

    python benchmarks/bench_attention.py --threads 2 --repeats 7

FLOPs counted: 4 L^2 D (forward) + 8 L^2 D (backward) per (batch, head),
for the full unpadded L, for both libraries.
"""

import argparse
import statistics
import time

import numpy as np


def _median_time(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_gflops(repeats):
    """float32 numpy.matmul rate at 1024^3 in GFLOP/s (median)."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(1024, 1024)).astype(np.float32)
    b = rng.normal(size=(1024, 1024)).astype(np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)
    return 2 * 1024**3 / _median_time(lambda: np.matmul(a, b, out=out), repeats) / 1e9


def make_case(batch, heads, length, width, seed):
    """Random q, k, v (float32) and a key mask with half the rows padded."""
    rng = np.random.default_rng(seed)
    shape = (batch, heads, length, width)
    q, k, v = (rng.normal(size=shape).astype(np.float32) for _ in range(3))
    lengths = np.full(batch, length)
    padded = rng.permutation(batch)[: batch // 2]
    lengths[padded] = rng.integers(1, length + 1, size=padded.size)
    mask = np.arange(length)[None, :] < lengths[:, None]
    grad = rng.normal(size=shape).astype(np.float32)
    return q, k, v, mask, grad


def skattention_step(q, k, v, mask, grad, n_threads, store_weights):
    """A closure running forward + backward through the CPU backend.

    ``store_weights=False`` is the training path (row log-sum-exp saved,
    probabilities recomputed in backward); True also materialises the
    ``(B, H, L, L)`` weights, as :func:`skattention.functional.attention` does.
    """
    from skattention._backend import get_backend

    backend = get_backend("cpu", n_threads=n_threads)
    scale = np.float32(1.0 / np.sqrt(q.shape[-1]))
    context = np.empty_like(q)
    weights = np.empty(q.shape[:3] + (k.shape[2],), np.float32) if store_weights else None
    lse = np.empty(q.shape[:3], np.float32)
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)

    def step():
        backend.dot_attention_forward(q, k, v, mask, False, scale, context, weights, lse)
        backend.dot_attention_backward(q, k, v, mask, False, scale, weights, lse, grad,
                                       dq, dk, dv)

    return step


def torch_step(q, k, v, mask, grad):
    """A closure running forward + backward of torch's scaled_dot_product_attention."""
    import torch
    import torch.nn.functional as F

    tq, tk, tv = (torch.from_numpy(a.copy()).requires_grad_() for a in (q, k, v))
    tmask = torch.from_numpy(mask)[:, None, None, :]
    tgrad = torch.from_numpy(grad)

    def step():
        for tensor in (tq, tk, tv):
            tensor.grad = None
        out = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=tmask)
        out.backward(tgrad)

    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds; the median over rounds is reported")
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--width", type=int, default=16)
    args = parser.parse_args(argv)

    import numba
    import torch

    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    gemm = matmul_gflops(args.repeats)
    print(f"threads={args.threads} torch={torch.__version__} numba={numba.__version__} "
          f"numpy float32 matmul 1024^3: {gemm:.0f} GFLOP/s")
    print("| L | skattention ms | torch SDPA ms | speed-up | skattention GFLOP/s | "
          "% of matmul | with weights stored ms | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for length in args.lengths:
        case = make_case(args.batch, args.heads, length, args.width, seed=length)
        steps = {
            "ours": skattention_step(*case, n_threads=args.threads, store_weights=False),
            "ours_weights": skattention_step(*case, n_threads=args.threads,
                                             store_weights=True),
            "torch": torch_step(*case),
        }
        for step in steps.values():
            step()
            step()
        times = {name: [] for name in steps}
        for _ in range(args.rounds):
            for name, step in steps.items():
                times[name].append(_median_time(step, args.repeats))
        t_ours, t_weights, t_torch = (statistics.median(times[name])
                                      for name in ("ours", "ours_weights", "torch"))
        flops = 12 * length * length * args.width * args.batch * args.heads
        rate = flops / t_ours / 1e9
        print(f"| {length} | {1e3 * t_ours:.2f} | {1e3 * t_torch:.2f} | "
              f"{t_torch / t_ours:.2f}x | {rate:.0f} | {100 * rate / gemm:.0f}% | "
              f"{1e3 * t_weights:.2f} | {t_torch / t_weights:.2f}x |")


if __name__ == "__main__":
    main()
