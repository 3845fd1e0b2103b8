"""End-to-end ``fit``: skattention's estimators vs skorch on the PyTorch peer.

Four parts (each can be run alone with ``--parts``):

``fit``
    One epoch (``max_iter=1`` / ``max_epochs=1``) on 10,000 token sequences
    of length 128 (vocabulary 20,000, 30% padding on average), batch 64,
    Adam (lr 1e-3, L2 1e-4), both with 2 threads, interleaved, median of
    ``--repeats``. Tokens go through the estimator API as text:
    ``TextAttentionClassifier`` takes raw documents (the only estimator with
    a token embedding; ``AttentionClassifier`` embeds numeric values), so the
    documents are synthetic words ``w1 ... w19997``, which its vectorizer
    maps to exactly 20,000 ids (3 special ids). skorch's
    ``NeuralNetClassifier`` (``train_split=None``, shuffled batches) gets the
    id matrix that the same vectorizer produces; the table also shows
    skattention's fit with ``store_attention_weights=False`` (without the
    ``attention_weights_`` pass over the training set, which skorch does not
    do either), its training alone (the default fit less its tokenisation
    and, for numeric input, that pass, timed apart), and the default fit
    plus that pass against skorch's fit plus the PyTorch model's own pass
    (the same work). The text fit defers the pass to the first read of
    ``attention_weights_``, timed after each fit; the numeric fit ends with
    it. A second row compares ``AttentionClassifier`` on numeric sequences
    (8 features, padded steps NaN) with skorch on ``{"x": values, "mask":
    mask}``.
``cold``
    The first ``fit`` in a fresh process (a subprocess) with an empty
    ``NUMBA_CACHE_DIR`` and again, in ``--cold-warm-runs`` fresh processes,
    with the cache that run filled. Two measures of the compile overhead:
    the first fit minus a second, identical fit in the same process (it also
    holds first-touch page faults and the thread pool's start, and is as
    noisy as the fits), and the seconds the first fit spends inside Numba's
    dispatcher compiling or loading kernels; medians over the warm runs.
``scaling``
    Fit time (one epoch) against n_samples (1k to 100k) and L (32 to 1024),
    with the fitted log-log slope (``--scaling-peer`` adds skorch).
``plot``
    ``benchmarks/throughput_ratio.png``: the training and inference
    throughput ratios against L, read from ``bench_training.py``'s JSON.

Run (needs the ``bench`` extra: torch CPU build, skorch, matplotlib)::

    python benchmarks/bench_end_to_end.py            # everything, full sizes
    python benchmarks/bench_end_to_end.py --quick    # smoke run, small sizes
    python benchmarks/bench_end_to_end.py --parts plot
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

DEFAULT_JSON = os.path.join(HERE, "results_training.json")
DEFAULT_PNG = os.path.join(HERE, "throughput_ratio.png")
N_SPECIAL_IDS = 3          # <pad>, <unk>, <start> of TextSequenceVectorizer
LEARNING_RATE = 1e-3
ALPHA = 1e-4


# ----------------------------------------------------------------------- data


def make_documents(n, length, vocab, pad, seed):
    """Synthetic documents whose vectorised rows have exactly ``length`` ids at most.

    Each document is ``n_words`` words ``w1 ... w{vocab - 3}`` (the start
    token makes ``n_words + 1`` ids); ``n_words + 1`` is uniform on
    ``[L - 2 pad L, L]``, so on average ``pad`` of the ``L`` steps are
    padding, and the first document has the full length. Labels are random
    (two classes): the benchmark times work, not accuracy.
    """
    rng = np.random.default_rng(seed)
    n_words = vocab - N_SPECIAL_IDS
    low = max(1, int(round(length * (1.0 - 2.0 * pad))))
    lengths = rng.integers(low, length + 1, size=n) - 1
    lengths[0] = length - 1
    lengths = np.maximum(lengths, 1)
    words = rng.integers(1, n_words + 1, size=int(lengths.sum()))
    vocabulary = np.array([f"w{i}" for i in range(n_words + 1)], dtype=object)
    tokens = vocabulary[words]
    ends = np.cumsum(lengths)
    docs = [" ".join(tokens[end - k:end]) for k, end in zip(lengths, ends)]
    y = rng.integers(0, 2, size=n)
    return docs, y


def make_values(n, length, n_features, pad, seed):
    """3D float32 sequences; padded (trailing) steps are NaN, as skattention reads them."""
    rng = np.random.default_rng(seed)
    low = max(1, int(round(length * (1.0 - 2.0 * pad))))
    lengths = rng.integers(low, length + 1, size=n)
    lengths[0] = length     # one full-length sequence keeps the padded length at L
    mask = np.arange(length)[None, :] < lengths[:, None]
    X = rng.normal(size=(n, length, n_features)).astype(np.float32)
    nan_X = X.copy()
    nan_X[~mask] = np.nan
    X[~mask] = 0.0
    y = rng.integers(0, 2, size=n)
    return nan_X, X, mask, y


# ----------------------------------------------------------------- estimators


def skattention_text(length, n_layers, batch_size, threads, seed=0, store=True):
    from skattention import TextAttentionClassifier

    return TextAttentionClassifier(
        store_attention_weights=store,
        max_len=length, d_model=64, n_heads=4, n_layers=n_layers, d_ff=128,
        batch_size=batch_size, max_iter=1, learning_rate_init=LEARNING_RATE, alpha=ALPHA,
        shuffle=True, random_state=seed, n_jobs=threads, device="cpu",
        # The peer's architecture, not the text defaults (bigrams, no encoder
        # layer, no positions, length scaling, AdamW).
        ngram_range=(1, 1), positional="sinusoidal", solver="adam", pooling="attention",
        length_scaling="none")


def skattention_values(n_layers, batch_size, threads, seed=0, store=True):
    from skattention import AttentionClassifier

    return AttentionClassifier(
        store_attention_weights=store,
        d_model=64, n_heads=4, n_layers=n_layers, d_ff=128, batch_size=batch_size,
        max_iter=1, learning_rate_init=LEARNING_RATE, alpha=ALPHA, shuffle=True,
        random_state=seed, n_jobs=threads, device="cpu")


def skorch_peer(input_kind, n_inputs, length, n_layers, batch_size, impl, seed=0):
    import peers
    import torch
    from skorch import NeuralNetClassifier

    torch.manual_seed(seed)
    optimizer_kwargs = {"optimizer__weight_decay": ALPHA}
    try:
        torch.optim.Adam([torch.zeros(1, requires_grad=True)], fused=True)
        optimizer_kwargs["optimizer__fused"] = True
    except (RuntimeError, TypeError, ValueError):
        pass
    return NeuralNetClassifier(
        peers.PeerNetwork, module__input_kind=input_kind, module__n_inputs=n_inputs,
        module__max_len=length, module__d_model=64, module__n_heads=4,
        module__n_layers=n_layers, module__d_ff=128, module__n_outputs=2, module__impl=impl,
        criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=LEARNING_RATE,
        batch_size=batch_size, max_epochs=1, train_split=None, iterator_train__shuffle=True,
        verbose=0, device="cpu", **optimizer_kwargs)


def _fit_seconds(make, X, y):
    from sklearn.exceptions import ConvergenceWarning

    model = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(X, y)
        return time.perf_counter() - start, model


def _impls(args):
    return ("sdpa", "nn") if args.peer_impl == "auto" else (args.peer_impl,)


def peer_attention_pass(net, X, mask, batch_tokens=16384, max_batch=1024):
    """The peer's counterpart of the ``attention_weights_`` pass; returns seconds.

    skorch keeps nothing like ``attention_weights_``; a skorch user who wants
    them runs this after ``fit``: the fitted module in eval mode, no autograd,
    pooling weights averaged over heads for every training sequence, as a
    float64 ``(N, L)`` array. Batching is skattention's own rule (sequences
    sorted by length, ``min(1024, 16384 // L)`` per batch, each batch cut to
    its longest sequence), so both passes do the same work.
    """
    import torch

    module = net.module_
    module.eval()
    n, length = mask.shape
    size = max(1, min(max_batch, batch_tokens // max(1, length)))
    ends = np.where(mask.any(axis=1), length - np.argmax(mask[:, ::-1], axis=1), 0)
    order = np.argsort(ends, kind="stable")
    start = time.perf_counter()
    out = np.zeros((n, length))
    with torch.inference_mode():
        for i in range(0, n, size):
            rows = order[i:i + size]
            cut = max(1, int(ends[rows].max()))
            x = torch.from_numpy(np.ascontiguousarray(X[rows, :cut]))
            m = torch.from_numpy(np.ascontiguousarray(mask[rows, :cut]))
            out[rows, :cut] = module.pooling_weights(x, m).double().numpy()
    return time.perf_counter() - start


# ------------------------------------------------------------------- part (a)


def _same_work(med):
    """The fastest skorch fit plus its attention pass: (peer name, seconds)."""
    totals = {k[len("skorch "):]: med[k] + med["peer pass " + k[len("skorch "):]]
              for k in med if k.startswith("skorch")}
    impl = min(totals, key=totals.get)
    return impl, totals[impl]


def part_fit(args):
    from skattention.text import TextSequenceVectorizer

    n, length, layers = args.n_samples, args.length, args.n_layers
    print(f"\n## (a) one-epoch fit: n={n}, L={length}, n_layers={layers}, "
          f"batch={args.batch_size}, threads={args.threads}, repeats={args.repeats}")
    docs, y = make_documents(n, length, args.vocab, args.pad, seed=0)
    start = time.perf_counter()
    vectorizer = TextSequenceVectorizer(max_len=length)
    ids = vectorizer.fit_transform(docs)  # what the estimator's fit does
    tokenize_s = time.perf_counter() - start
    vocab = vectorizer.n_vocabulary_
    print(f"vocabulary {vocab} ids, id matrix {ids.shape}, real steps {np.mean(ids != 0):.0%}, "
          f"tokenisation (vectorizer fit_transform) {tokenize_s:.2f} s")

    make_sk = lambda: skattention_text(length, layers, args.batch_size, args.threads)  # noqa
    make_bare = lambda: skattention_text(length, layers, args.batch_size, args.threads,  # noqa
                                         store=False)
    makers = {impl: (lambda impl=impl: skorch_peer("tokens", vocab, length, layers,
                                                   args.batch_size, impl))
              for impl in _impls(args)}
    # Warm-up: compile / load the kernels and warm torch on a small fit.
    small = min(n, 4 * args.batch_size)
    _fit_seconds(make_sk, docs[:small], y[:small])
    for make in makers.values():
        _fit_seconds(make, ids[:small], y[:small])

    times = {"skattention": [], "attention pass": [], "no store": []}
    times.update({f"skorch ({impl})": [] for impl in makers})
    times.update({f"peer pass ({impl})": [] for impl in makers})
    ids64 = ids.astype(np.int64)
    for repeat in range(args.repeats):
        order = ["sk", "bare"] + list(makers)
        if repeat % 2:
            order.reverse()
        for name in order:
            if name == "sk":
                seconds, model = _fit_seconds(make_sk, docs, y)
                times["skattention"].append(seconds)
                # The text fit defers the attention_weights_ pass (with
                # token_importances_) to the first read: time that read.
                start = time.perf_counter()
                model.attention_weights_
                times["attention pass"].append(time.perf_counter() - start)
            elif name == "bare":
                times["no store"].append(_fit_seconds(make_bare, docs, y)[0])
            else:
                seconds, net = _fit_seconds(makers[name], ids, y)
                times[f"skorch ({name})"].append(seconds)
                times[f"peer pass ({name})"].append(peer_attention_pass(net, ids64, ids != 0))
    med = {k: statistics.median(v) for k, v in times.items()}
    sk_train_only = med["skattention"] - tokenize_s
    best_peer = min((k for k in med if k.startswith("skorch")), key=med.get)
    same_work = _same_work(med)
    rows = [("tokens", "TextAttentionClassifier on strings", med["skattention"], best_peer,
             med[best_peer], med["no store"], sk_train_only, same_work,
             med["skattention"] + med["attention pass"])]
    peers_text = ", ".join(f"{k} {med[k]:.2f} s" for k in med
                           if k.startswith(("skorch", "peer pass")))
    print(f"skattention fit {med['skattention']:.2f} s = tokenisation {tokenize_s:.2f} s + "
          f"training {sk_train_only:.2f} s; first read of attention_weights_ (the deferred "
          f"pass) {med['attention pass']:.2f} s; with store_attention_weights=False "
          f"{med['no store']:.2f} s; {peers_text}")

    if not args.no_values:
        nan_X, X0, mask, yv = make_values(n, length, args.n_features, args.pad, seed=1)
        make_skv = lambda: skattention_values(layers, args.batch_size, args.threads)  # noqa
        make_barev = lambda: skattention_values(layers, args.batch_size, args.threads,  # noqa
                                                store=False)
        makers_v = {impl: (lambda impl=impl: skorch_peer("values", args.n_features, length,
                                                         layers, args.batch_size, impl))
                    for impl in _impls(args)}
        peer_X = {"x": X0, "mask": mask}
        small_X = {"x": X0[:small], "mask": mask[:small]}
        _fit_seconds(make_skv, nan_X[:small], yv[:small])
        for make in makers_v.values():
            _fit_seconds(make, small_X, yv[:small])
        vtimes = {"skattention": [], "attention pass": [], "no store": []}
        vtimes.update({f"skorch ({impl})": [] for impl in makers_v})
        vtimes.update({f"peer pass ({impl})": [] for impl in makers_v})
        for repeat in range(args.repeats):
            order = ["sk", "bare"] + list(makers_v)
            if repeat % 2:
                order.reverse()
            for name in order:
                if name == "sk":
                    seconds, model = _fit_seconds(make_skv, nan_X, yv)
                    vtimes["skattention"].append(seconds)
                    network, params = model._inference_network()
                    start = time.perf_counter()
                    model._pooling_attention(network, params, X0, mask)
                    vtimes["attention pass"].append(time.perf_counter() - start)
                elif name == "bare":
                    vtimes["no store"].append(_fit_seconds(make_barev, nan_X, yv)[0])
                else:
                    seconds, net = _fit_seconds(makers_v[name], peer_X, yv)
                    vtimes[f"skorch ({name})"].append(seconds)
                    vtimes[f"peer pass ({name})"].append(peer_attention_pass(net, X0, mask))
        vmed = {k: statistics.median(v) for k, v in vtimes.items()}
        best = min((k for k in vmed if k.startswith("skorch")), key=vmed.get)
        rows.append((f"values (F={args.n_features})", "AttentionClassifier on 3D (NaN padding)",
                     vmed["skattention"], best, vmed[best], vmed["no store"],
                     vmed["skattention"] - vmed["attention pass"], _same_work(vmed),
                     vmed["skattention"]))
        peers_v = ", ".join(f"{k} {vmed[k]:.2f} s" for k in vmed
                            if k.startswith(("skorch", "peer pass")))
        print(f"values: skattention fit {vmed['skattention']:.2f} s (attention_weights_ pass "
              f"{vmed['attention pass']:.2f} s; with store_attention_weights=False "
              f"{vmed['no store']:.2f} s); {peers_v}")

    print()
    print("| input | skattention estimator | skattention fit s | peer | skorch fit s | "
          "speed-up | fit, store_attention_weights=False s | speed-up | "
          "skattention training only s | speed-up | skattention fit with the "
          "attention_weights_ pass s | skorch fit + peer attention pass s | speed-up, same "
          "work |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (kind, estimator, sk_s, peer, peer_s, bare_s, train_s, (same_peer, same_s),
         with_pass_s) in rows:
        print(f"| {kind} | {estimator} | {sk_s:.2f} | {peer} | {peer_s:.2f} | "
              f"{peer_s / sk_s:.2f}x | {bare_s:.2f} | {peer_s / bare_s:.2f}x | "
              f"{train_s:.2f} | {peer_s / train_s:.2f}x | {with_pass_s:.2f} | "
              f"{same_s:.2f} (skorch {same_peer}) | {same_s / with_pass_s:.2f}x |")
    sys.stdout.flush()


# ------------------------------------------------------------------- part (b)

# The child imports NumPy and this module (no torch), then times ``import skattention``.
# It also totals the seconds each fit spends inside Numba's dispatcher compiling
# or loading a kernel from the cache (``Dispatcher._compile_for_args``, the
# path of every call without a ready specialisation).
_COLD_CHILD = r"""
import json, sys, time, warnings
t0 = time.perf_counter()
sys.path.insert(0, {here!r})
import bench_end_to_end as e2e
t1 = time.perf_counter()
import skattention  # noqa: F401
from sklearn.exceptions import ConvergenceWarning
t_import = time.perf_counter() - t1
assert "torch" not in sys.modules
from numba.core import dispatcher
numba_s = [0.0]
compile_for_args = dispatcher.Dispatcher._compile_for_args
def timed_compile(self, *args, **kwargs):
    start = time.perf_counter()
    try:
        return compile_for_args(self, *args, **kwargs)
    finally:
        numba_s[0] += time.perf_counter() - start
dispatcher.Dispatcher._compile_for_args = timed_compile
kind, n, length, layers, batch, threads = {params!r}
if kind == "tokens":
    X, y = e2e.make_documents(n, length, 20000, 0.3, seed=0)
    make = lambda: e2e.skattention_text(length, layers, batch, threads)
else:
    X, _, _, y = e2e.make_values(n, length, 8, 0.3, seed=0)
    make = lambda: e2e.skattention_values(layers, batch, threads)
fits, numba_fit_s = [], []
for _ in range(2):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        numba_s[0] = 0.0
        start = time.perf_counter()
        make().fit(X, y)
        fits.append(time.perf_counter() - start)
        numba_fit_s.append(numba_s[0])
print("RESULT " + json.dumps(dict(import_s=t_import, first=fits[0], second=fits[1],
                                  numba_first=numba_fit_s[0], numba_second=numba_fit_s[1],
                                  process_s=time.perf_counter() - t0)))
"""


def _cold_child(kind, n, length, layers, batch, threads, cache_dir):
    code = _COLD_CHILD.format(here=HERE, params=(kind, n, length, layers, batch, threads))
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"cold-start child failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    result["wall_s"] = wall
    return result


def part_cold(args):
    print(f"\n## (b) cold start: first fit in a fresh process (n={args.cold_n}, "
          f"L={args.cold_length}, n_layers={args.n_layers}, batch={args.batch_size}); "
          f"the warm cache in {args.cold_warm_runs} fresh processes")
    print("| input | NUMBA_CACHE_DIR | process wall s | import s | first fit s | "
          "second fit s | first - second s | in Numba compile/load s |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in args.cold_inputs:
        cache_dir = tempfile.mkdtemp(prefix="skattention_nbc_")
        overheads, loads = [], []
        try:
            for label in ["empty"] + ["warm"] * args.cold_warm_runs:
                r = _cold_child(kind, args.cold_n, args.cold_length, args.n_layers,
                                args.batch_size, args.threads, cache_dir)
                if label == "warm":
                    overheads.append(r["first"] - r["second"])
                    loads.append(r["numba_first"])
                print(f"| {kind} | {label} | {r['wall_s']:.1f} | {r['import_s']:.2f} | "
                      f"{r['first']:.2f} | {r['second']:.2f} | "
                      f"{r['first'] - r['second']:.2f} | {r['numba_first']:.2f} |", flush=True)
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
        if overheads:
            print(f"{kind}, warm cache: median first - second fit "
                  f"{statistics.median(overheads):.2f} s "
                  f"(range {min(overheads):.2f}-{max(overheads):.2f}); median time in Numba's "
                  f"compile/load {statistics.median(loads):.2f} s "
                  f"(range {min(loads):.2f}-{max(loads):.2f})", flush=True)


# ------------------------------------------------------------------- part (c)


def _slope(xs, ys):
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def part_scaling(args):
    from skattention.text import TextSequenceVectorizer

    print(f"\n## (c) scaling of a one-epoch TextAttentionClassifier fit (n_layers="
          f"{args.n_layers}, batch={args.batch_size}, threads={args.threads})")
    peer_impl = _impls(args)[0]
    series = [("n_samples", args.scaling_n, lambda v: (v, args.scaling_n_length)),
              ("L", args.scaling_lengths, lambda v: (args.scaling_l_n, v))]
    warm_docs, warm_y = make_documents(2 * args.batch_size, 32, args.vocab, args.pad, seed=5)
    _fit_seconds(lambda: skattention_text(32, args.n_layers, args.batch_size, args.threads),
                 warm_docs, warm_y)
    for name, values, shape in series:
        fixed = (f"L={args.scaling_n_length}" if name == "n_samples"
                 else f"n={args.scaling_l_n}")
        header = f"| {name} ({fixed}) | skattention fit s | samples/s |"
        rule = "|---|---|---|"
        if args.scaling_peer:
            header += f" skorch ({peer_impl}) fit s | speed-up |"
            rule += "---|---|"
        print("\n" + header + "\n" + rule)
        sk_times, peer_times = [], []
        for value in values:
            n, length = shape(value)
            docs, y = make_documents(n, length, args.vocab, args.pad, seed=2)
            seconds = min(_fit_seconds(lambda: skattention_text(
                length, args.n_layers, args.batch_size, args.threads), docs, y)[0]
                for _ in range(args.scaling_repeats))
            sk_times.append(seconds)
            line = f"| {value} | {seconds:.2f} | {n / seconds:.0f} |"
            if args.scaling_peer:
                vectorizer = TextSequenceVectorizer(max_len=length).fit(docs)
                ids = vectorizer.transform(docs)
                make = lambda: skorch_peer("tokens", vectorizer.n_vocabulary_,  # noqa: E731
                                           length, args.n_layers, args.batch_size, peer_impl)
                _fit_seconds(make, ids[:args.batch_size], y[:args.batch_size])
                peer_s = min(_fit_seconds(make, ids, y)[0] for _ in range(args.scaling_repeats))
                peer_times.append(peer_s)
                line += f" {peer_s:.2f} | {peer_s / seconds:.2f}x |"
            print(line, flush=True)
        summary = (f"log-log slope of fit time against {name}: skattention "
                   f"{_slope(values, sk_times):.2f}")
        if args.scaling_peer:
            summary += f", skorch {_slope(values, peer_times):.2f}"
        print(summary)


# ------------------------------------------------------------------- part (d)


def part_plot(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not os.path.exists(args.json):
        print(f"\n## (d) plot skipped: {args.json} not found (run bench_training.py first)")
        return
    with open(args.json) as handle:
        results = json.load(handle)
    rows = results["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, mode, title in ((axes[0], "train", "training (batch 64)"),
                            (axes[1], "infer", "inference (batch 256)")):
        for key in sorted({(r["input"], r["n_layers"]) for r in rows}):
            points = sorted((r["L"], r[f"{mode}_ratio"]) for r in rows
                            if (r["input"], r["n_layers"]) == key)
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", label=f"{key[0]}, {key[1]} layer(s)")
        ax.axhline(1.0, color="grey", lw=1)
        ax.axhline(1.5, color="grey", lw=1, ls="--")
        if mode == "train":
            ax.axhline(1.2, color="grey", lw=1, ls=":")
        ax.set_xscale("log", base=2)
        lengths = sorted({r["L"] for r in rows})
        ax.set_xticks(lengths)
        ax.set_xticklabels([str(v) for v in lengths])
        ax.minorticks_off()
        ax.set_xlabel("sequence length L")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("skattention / PyTorch samples per second")
    axes[0].legend(fontsize=8)
    meta = results.get("meta", {})
    fig.suptitle(f"skattention vs PyTorch peer, {meta.get('threads', '?')} threads "
                 f"(torch {meta.get('torch', '?')}, numba {meta.get('numba', '?')}"
                 f"{', quick run' if meta.get('quick') else ''})", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.png, dpi=120)
    plt.close(fig)
    print(f"\n## (d) wrote {args.png} from {args.json}")


# ----------------------------------------------------------------------- main

PARTS = ("fit", "cold", "scaling", "plot")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-samples", type=int, default=10000)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--n-layers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=20000)
    parser.add_argument("--n-features", type=int, default=8)
    parser.add_argument("--pad", type=float, default=0.3)
    parser.add_argument("--peer-impl", default="auto", choices=["auto", "sdpa", "nn", "math"],
                        help="auto: time skorch with both the SDPA and the nn.Transformer "
                             "peer and compare with the faster")
    parser.add_argument("--no-values", action="store_true",
                        help="skip the numeric-values row of part (a)")
    parser.add_argument("--cold-n", type=int, default=2000)
    parser.add_argument("--cold-length", type=int, default=128)
    parser.add_argument("--cold-warm-runs", type=int, default=5,
                        help="fresh processes timed with the warm cache")
    parser.add_argument("--cold-inputs", nargs="+", default=["tokens", "values"],
                        choices=["tokens", "values"])
    parser.add_argument("--scaling-n", type=int, nargs="+",
                        default=[1000, 3000, 10000, 30000, 100000])
    parser.add_argument("--scaling-n-length", type=int, default=128)
    parser.add_argument("--scaling-lengths", type=int, nargs="+",
                        default=[32, 64, 128, 256, 512, 1024])
    parser.add_argument("--scaling-l-n", type=int, default=2000)
    parser.add_argument("--scaling-repeats", type=int, default=1)
    parser.add_argument("--scaling-peer", action="store_true",
                        help="also time skorch in the scaling series")
    parser.add_argument("--json", default=DEFAULT_JSON)
    parser.add_argument("--png", default=DEFAULT_PNG)
    parser.add_argument("--quick", action="store_true", help="smoke run with small sizes")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_samples, args.repeats = 1000, 1
        args.cold_n, args.cold_inputs, args.cold_warm_runs = 300, ["tokens"], 1
        args.scaling_n = [300, 600, 1200]
        args.scaling_lengths, args.scaling_l_n = [32, 64, 128], 300

    import numba
    import torch

    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    import skorch

    print(f"threads={args.threads} torch={torch.__version__} skorch={skorch.__version__} "
          f"numba={numba.__version__} numpy={np.__version__}")
    for part in args.parts:
        {"fit": part_fit, "cold": part_cold, "scaling": part_scaling, "plot": part_plot}[part](
            args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
