"""Peak memory and throughput of ``predict`` on up to a million sequences.

Each measurement runs in a fresh subprocess, which fits a small model on a
few hundred sequences, warms the kernels up on a small batch, builds the
prediction input (float32, generated in chunks so that no float64 copy
inflates the high-water mark), then calls ``predict`` once. Reported:

* ``input MB``: the size of the prediction input (``X.nbytes``; for text,
  the ``str`` objects of the documents);
* ``RSS before MB``: the process's resident set just before ``predict``;
* ``peak growth MB``: ``ru_maxrss`` after ``predict`` minus the resident set
  before it, i.e. what ``predict`` added at its peak (validation copies,
  token ids, masks, outputs and the activations of one batch);
* ``seconds`` and ``sequences/s`` of the ``predict`` call alone.

If prediction is batched, the growth is a fixed multiple of the input size
plus a constant: the ratio ``growth / input`` stays flat as ``n`` grows.

Run::

    python benchmarks/bench_predict_memory.py                 # numeric + text, 100k/300k/1M
    python benchmarks/bench_predict_memory.py --kind numeric --sizes 100000 1000000
    python benchmarks/bench_predict_memory.py --threads 2     # Numba threads (default 1)
"""

import argparse
import json
import os
import subprocess
import sys

_WORDS = [f"w{i}" for i in range(2000)]


def _numeric_case(n, length, n_features, seed):
    """``n`` float32 sequences of shape ``(length, n_features)``, built chunk by chunk."""
    import numpy as np

    rng = np.random.default_rng(seed)
    X = np.empty((n, length, n_features), dtype=np.float32)
    for start in range(0, n, 65536):
        stop = min(n, start + 65536)
        X[start:stop] = rng.standard_normal((stop - start, length, n_features),
                                            dtype=np.float32)
    # The label depends on the sign of the first feature's mean, so the fitted
    # model is not trivial.
    y = (X[:, :, 0].mean(axis=1) > 0).astype(np.int64)
    return X, y


def _text_case(n, seed):
    """``n`` documents of 4-12 words from a 2,000-word vocabulary."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, 13, size=n)
    ids = rng.integers(0, len(_WORDS), size=int(lengths.sum()))
    docs, pos = [], 0
    for k in lengths.tolist():
        docs.append(" ".join(_WORDS[i] for i in ids[pos: pos + k].tolist()))
        pos += k
    y = np.array([int(doc.split(" ", 1)[0][1:]) % 2 for doc in docs])
    return docs, y


def _current_rss_mb():
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(kind, n, length, n_features):
    """Run in the child: fit, warm up, build ``n`` inputs, time one ``predict``."""
    import gc
    import time

    import skattention

    params = dict(d_model=16, n_heads=2, n_layers=1, max_iter=5, random_state=0)
    if kind == "numeric":
        X_fit, y_fit = _numeric_case(400, length, n_features, seed=0)
        model = skattention.AttentionClassifier(**params).fit(X_fit, y_fit)
        model.predict(X_fit[:50])
        X, _ = _numeric_case(n, length, n_features, seed=1)
        input_mb = X.nbytes / 2**20
    else:
        X_fit, y_fit = _text_case(400, seed=0)
        model = skattention.TextAttentionClassifier(max_len=16, **params).fit(X_fit, y_fit)
        model.predict(X_fit[:50])
        X, _ = _text_case(n, seed=1)
        input_mb = sum(sys.getsizeof(doc) for doc in X) / 2**20
    del X_fit, y_fit
    gc.collect()
    rss_before = _current_rss_mb()
    peak_before = _peak_rss_mb()
    start = time.perf_counter()
    y_pred = model.predict(X)
    seconds = time.perf_counter() - start
    peak_after = _peak_rss_mb()
    assert y_pred.shape == (n,)
    return {
        "kind": kind, "n": n, "input_mb": input_mb, "rss_before_mb": rss_before,
        "peak_growth_mb": peak_after - rss_before,
        # When predict never rose above the earlier high-water mark, the growth
        # above is only an upper bound.
        "exceeded_earlier_peak": peak_after > peak_before,
        "seconds": seconds, "per_second": n / seconds,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=["numeric", "text", "both"], default="both")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--length", type=int, default=16, help="time steps (numeric)")
    parser.add_argument("--features", type=int, default=4, help="features per step (numeric)")
    parser.add_argument("--threads", type=int, default=1, help="NUMBA_NUM_THREADS of the child")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        result = measure(args.child[0], int(args.child[1]), args.length, args.features)
        print(json.dumps(result))
        return

    kinds = ["numeric", "text"] if args.kind == "both" else [args.kind]
    env = dict(os.environ, NUMBA_NUM_THREADS=str(args.threads), OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    print(f"threads: {args.threads}; numeric sequences: length {args.length}, "
          f"{args.features} features, float32\n")
    print("| kind | n | input MB | RSS before MB | peak growth MB | growth / input "
          "| seconds | sequences/s |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in kinds:
        for n in args.sizes:
            out = subprocess.run(
                [sys.executable, __file__, "--length", str(args.length), "--features",
                 str(args.features), "--child", kind, str(n)],
                env=env, check=True, capture_output=True, text=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            bound = "" if r["exceeded_earlier_peak"] else " (≤)"
            print(f"| {kind} | {n:,} | {r['input_mb']:.0f} | {r['rss_before_mb']:.0f} "
                  f"| {r['peak_growth_mb']:.0f}{bound} "
                  f"| {r['peak_growth_mb'] / r['input_mb']:.2f} "
                  f"| {r['seconds']:.2f} | {r['per_second']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
