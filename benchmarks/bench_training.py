"""Training and inference throughput: skattention's network vs its PyTorch peer.

skattention is measured at the network level, the way the estimators drive
it (``skattention/estimators/_base.py`` and ``_nn/_training.run_epoch``):
one training step is ``AttentionNetwork.forward(training=True)``, the
backend's softmax cross-entropy (loss and gradient), ``backward``, the
finite-gradient check and an Adam step of ``_nn._training.Optimizer``;
inference is ``AttentionNetwork.predict``. The peer
(:mod:`benchmarks.peers`, the same architecture; ``peers.py --check`` shows
equal outputs and gradients) does ``zero_grad``, forward, cross-entropy,
``backward`` and a (fused) Adam step; inference runs under
``torch.inference_mode`` in eval mode.

Both run in this process with the same thread count, interleaved (the
order alternates every repeat), and every number is the median of the
repeats after a warm-up. Batches have random lengths with, on average,
30% of the steps padded at the end; both libraries get the same inputs and
mask and start from the same parameters (copied from skattention's
initialisation). ``--peer-impl auto`` (the default) times the hand-written
SDPA peer and the ``nn.TransformerEncoderLayer`` peer during the warm-up
and keeps the faster one per configuration and mode.

Run (needs the ``bench`` extra)::

    python benchmarks/bench_training.py                  # full: L 32/128/512, 1-2 layers
    python benchmarks/bench_training.py --quick          # smoke run
    python benchmarks/bench_training.py --profile        # where a skattention step goes

Results go to ``benchmarks/results_training.json`` (read by
``bench_end_to_end.py --plot``).
"""

import argparse
import cProfile
import datetime
import json
import math
import os
import platform
import pstats
import statistics
import sys
import time
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_JSON = os.path.join(HERE, "results_training.json")
N_CLASSES = 2
LEARNING_RATE = 1e-3
ALPHA = 1e-4   # skattention's default L2 term; torch Adam(weight_decay=ALPHA) adds the same


# --------------------------------------------------------------------- set-up


def make_config(input_kind, n_inputs, length, n_layers):
    from skattention._nn._network import NetworkConfig

    return NetworkConfig(input_kind=input_kind, n_inputs=n_inputs, max_len=length, d_model=64,
                         n_heads=4, n_layers=n_layers, d_ff=128, n_outputs=N_CLASSES,
                         dropout=0.0, dtype=np.float32)


class SkattentionRunner:
    """skattention's network, optimizer and loss on one fixed batch."""

    def __init__(self, config, n_threads, seed=0):
        from skattention._backend import get_backend
        from skattention._nn._network import AttentionNetwork
        from skattention._nn._training import Optimizer

        self.backend = get_backend("cpu", n_threads=n_threads)
        self.network = AttentionNetwork(config, self.backend)
        self.params = self.network.init_params(np.random.RandomState(seed))
        self.initial_params = self.params.copy()
        self.optimizer = Optimizer(self.backend, "adam", self.params.size, np.float32,
                                   LEARNING_RATE, ALPHA)
        self.rng = np.random.RandomState(seed)
        self.phases = defaultdict(list)

    def train_step(self, X, mask, targets, weights):
        """forward + loss gradient + backward + finite check + Adam (as ``run_epoch``)."""
        network, backend = self.network, self.backend
        with backend.reuse_buffers("train"):  # as run_epoch does
            t0 = time.perf_counter()
            output, cache = network.forward(self.params, X, mask, training=True,
                                            random_state=self.rng)
            t1 = time.perf_counter()
            grad_output = backend.empty(output.shape, output.dtype)
            backend.softmax_cross_entropy(output, targets, weights, grad_output)
            grads = network.backward(self.params, cache, grad_output)
            if not backend.all_finite(grads):
                raise FloatingPointError("non-finite gradient")
            t2 = time.perf_counter()
            self.optimizer.step(self.params, grads)
            t3 = time.perf_counter()
        self.phases["forward"].append(t1 - t0)
        self.phases["loss+backward"].append(t2 - t1)
        self.phases["optimizer"].append(t3 - t2)

    def predict(self, X, mask):
        return self.network.predict(self.params, X, mask)


class TorchRunner:
    """The peer, its Adam and cross-entropy on one fixed batch."""

    def __init__(self, config, impl, layout, params):
        import torch

        self.torch = torch
        self.impl = impl
        self.model = peers.peer_for_config(config, impl)
        peers.copy_skattention_params(self.model, layout, params)
        self.optimizer = peers.make_optimizer(self.model, LEARNING_RATE, ALPHA)
        self.loss = torch.nn.CrossEntropyLoss()
        self.phases = defaultdict(list)

    def train_step(self, X, mask, targets):
        self.model.train()
        t0 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(self.model(X, mask), targets)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        self.optimizer.step()
        t3 = time.perf_counter()
        self.phases["forward"].append(t1 - t0)
        self.phases["loss+backward"].append(t2 - t1)
        self.phases["optimizer"].append(t3 - t2)

    def predict(self, X, mask):
        self.model.eval()
        with self.torch.inference_mode():
            return self.model(X, mask)


def _timed(function, n_calls):
    start = time.perf_counter()
    for _ in range(n_calls):
        function()
    return (time.perf_counter() - start) / n_calls


def _calls_for(seconds_per_call, target):
    return max(1, int(math.ceil(target / max(seconds_per_call, 1e-6))))


def _pick_peer(config, impls, layout, params, make_call, warmup):
    """Time each candidate peer after a warm-up; return (runner, {impl: seconds})."""
    timings, runners = {}, {}
    for impl in impls:
        runner = TorchRunner(config, impl, layout, params)
        call = make_call(runner)
        for _ in range(warmup):
            call()
        timings[impl] = min(_timed(call, 1) for _ in range(3))
        runners[impl] = runner
    best = min(timings, key=timings.get)
    return runners[best], timings


def bench_config(input_kind, n_inputs, length, n_layers, args):
    """One (input, L, n_layers) row: training and inference throughput of both."""
    import torch

    from skattention._nn._network import build_layout

    config = make_config(input_kind, n_inputs, length, n_layers)
    layout = build_layout(config)
    rng = np.random.default_rng(1000 * length + n_layers)
    X_train, mask_train = peers.random_batch(rng, input_kind, args.train_batch, length,
                                             n_inputs, args.pad)
    y_train = rng.integers(0, N_CLASSES, size=args.train_batch).astype(np.int64)
    w_train = np.ones(args.train_batch, dtype=np.float32)
    X_infer, mask_infer = peers.random_batch(rng, input_kind, args.infer_batch, length,
                                             n_inputs, args.pad)
    tX_train, tmask_train = torch.from_numpy(X_train), torch.from_numpy(mask_train)
    ty_train = torch.from_numpy(y_train)
    tX_infer, tmask_infer = torch.from_numpy(X_infer), torch.from_numpy(mask_infer)

    impls = ("sdpa", "nn") if args.peer_impl == "auto" else (args.peer_impl,)
    sk = SkattentionRunner(config, args.threads)
    sk_train = lambda: sk.train_step(X_train, mask_train, y_train, w_train)  # noqa: E731
    sk_infer = lambda: sk.predict(X_infer, mask_infer)  # noqa: E731
    for _ in range(args.warmup):
        sk_train()
        sk_infer()
    peer_train, train_choices = _pick_peer(
        config, impls, layout, sk.initial_params,
        lambda r: (lambda: r.train_step(tX_train, tmask_train, ty_train)), args.warmup)
    peer_infer, infer_choices = _pick_peer(
        config, impls, layout, sk.initial_params,
        lambda r: (lambda: r.predict(tX_infer, tmask_infer)), args.warmup)
    to_train = lambda: peer_train.train_step(tX_train, tmask_train, ty_train)  # noqa: E731
    to_infer = lambda: peer_infer.predict(tX_infer, tmask_infer)  # noqa: E731

    # Calls per repeat so that one repeat lasts about --min-time seconds.
    calls = {name: _calls_for(_timed(f, 1), args.min_time)
             for name, f in (("sk_train", sk_train), ("sk_infer", sk_infer),
                             ("to_train", to_train), ("to_infer", to_infer))}
    for runner in (sk, peer_train):
        runner.phases.clear()
    times = defaultdict(list)
    for repeat in range(args.repeats):
        order = [("sk", sk_train, sk_infer), ("to", to_train, to_infer)]
        if repeat % 2:
            order.reverse()
        for name, train, infer in order:
            times[name + "_train"].append(_timed(train, calls[name + "_train"]))
            times[name + "_infer"].append(_timed(infer, calls[name + "_infer"]))
    med = {name: statistics.median(values) for name, values in times.items()}

    def split(runner):
        parts = {k: statistics.median(v) for k, v in runner.phases.items()}
        total = sum(parts.values())
        return {k: v / total for k, v in parts.items()}

    row = dict(
        input=input_kind, L=length, n_layers=n_layers,
        train_batch=args.train_batch, infer_batch=args.infer_batch,
        mean_real_fraction=float(mask_train.mean()),
        train_skattention=args.train_batch / med["sk_train"],
        train_torch=args.train_batch / med["to_train"],
        infer_skattention=args.infer_batch / med["sk_infer"],
        infer_torch=args.infer_batch / med["to_infer"],
        train_ms_skattention=1e3 * med["sk_train"], train_ms_torch=1e3 * med["to_train"],
        infer_ms_skattention=1e3 * med["sk_infer"], infer_ms_torch=1e3 * med["to_infer"],
        peer_impl_train=peer_train.impl, peer_impl_infer=peer_infer.impl,
        peer_warmup_train_ms={k: 1e3 * v for k, v in train_choices.items()},
        peer_warmup_infer_ms={k: 1e3 * v for k, v in infer_choices.items()},
        split_skattention=split(sk), split_torch=split(peer_train),
        repeats=args.repeats, calls_per_repeat=calls,
    )
    row["train_ratio"] = row["train_skattention"] / row["train_torch"]
    row["infer_ratio"] = row["infer_skattention"] / row["infer_torch"]
    return row


def _fmt_split(split):
    return "/".join(f"{100 * split[k]:.0f}" for k in ("forward", "loss+backward", "optimizer"))


def print_table(rows):
    print()
    print("| input | L | layers | train skattention /s | train torch /s | ratio | "
          "infer skattention /s | infer torch /s | ratio | peer (train/infer) | "
          "split fwd/bwd/opt % skattention | torch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['input']} | {r['L']} | {r['n_layers']} | {r['train_skattention']:.0f} | "
              f"{r['train_torch']:.0f} | {r['train_ratio']:.2f}x | "
              f"{r['infer_skattention']:.0f} | {r['infer_torch']:.0f} | "
              f"{r['infer_ratio']:.2f}x | {r['peer_impl_train']}/{r['peer_impl_infer']} | "
              f"{_fmt_split(r['split_skattention'])} | {_fmt_split(r['split_torch'])} |")
    sys.stdout.flush()


# -------------------------------------------------------------------- profile

_GROUPS = {
    "linear_forward": "linear forward", "linear_backward": "linear backward",
    "layer_norm_forward": "layer norm", "layer_norm_backward": "layer norm",
    "dot_attention_forward": "attention forward", "dot_attention_backward": "attention backward",
    "attention_pooling_forward": "pooling", "attention_pooling_backward": "pooling",
    "embedding_forward": "embedding (+positions)", "embedding_backward": "embedding (+positions)",
    "add_rows": "embedding (+positions)",
    "split_heads": "split/merge heads (np.copyto of a transpose)",
    "merge_heads": "split/merge heads (np.copyto of a transpose)",
    "empty": "allocation (np.empty/np.zeros/asarray)",
    "zeros": "allocation (np.empty/np.zeros/asarray)",
    "asarray": "allocation (np.empty/np.zeros/asarray)",
    "adam_step": "adam", "softmax_cross_entropy": "loss",
    "all_finite": "finite check (np.isfinite)", "add_": "pooling",
}


class _Instrument:
    """Wrap a backend instance's public methods with exclusive wall-clock timers.

    Only outermost backend calls are timed (a method calling another backend
    method, e.g. ``linear_forward`` calling ``run``, counts once).
    """

    def __init__(self, backend):
        self.totals = defaultdict(float)
        self.counts = defaultdict(int)
        self.depth = 0
        for name in dir(backend):
            if name.startswith("_"):
                continue
            attr = getattr(backend, name)
            if callable(attr):
                setattr(backend, name, self._wrap(name, attr))

    def _wrap(self, name, method):
        def wrapper(*args, **kwargs):
            if self.depth:
                return method(*args, **kwargs)
            self.depth += 1
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.totals[name] += time.perf_counter() - start
                self.counts[name] += 1
                self.depth -= 1
        return wrapper


def profile(args):
    """Where a skattention training step spends its time (L, layers, batch from args)."""
    import torch

    from skattention._nn._network import build_layout

    length, n_layers, batch = args.profile_length, args.profile_layers, args.train_batch
    input_kind, n_inputs = "tokens", args.vocab
    config = make_config(input_kind, n_inputs, length, n_layers)
    rng = np.random.default_rng(7)
    X, mask = peers.random_batch(rng, input_kind, batch, length, n_inputs, args.pad)
    y = rng.integers(0, N_CLASSES, size=batch).astype(np.int64)
    w = np.ones(batch, dtype=np.float32)
    sk = SkattentionRunner(config, args.threads)
    step = lambda: sk.train_step(X, mask, y, w)  # noqa: E731
    runners = {impl: TorchRunner(config, impl, build_layout(config), sk.initial_params)
               for impl in ("sdpa", "nn")}
    tX, tmask, ty = torch.from_numpy(X), torch.from_numpy(mask), torch.from_numpy(y)
    for _ in range(args.warmup + 2):
        step()
        for runner in runners.values():
            runner.train_step(tX, tmask, ty)
    n = args.profile_steps
    # Single steps, interleaved, medians over n * repeats steps of each.
    plain, torch_ms = [], defaultdict(list)
    for runner in [sk, *runners.values()]:
        runner.phases.clear()
    for _ in range(n * args.repeats):
        plain.append(_timed(step, 1))
        for impl, runner in runners.items():
            torch_ms[impl].append(_timed(lambda: runner.train_step(tX, tmask, ty), 1))
    step_ms = 1e3 * statistics.median(plain)
    print(f"\nProfile: tokens (V={n_inputs}), L={length}, n_layers={n_layers}, batch={batch}, "
          f"threads={args.threads}, {mask.mean():.0%} real steps")
    print(f"skattention step (no instrumentation), median of {len(plain)} single steps: "
          f"{step_ms:.2f} ms")
    for impl, values in torch_ms.items():
        phases = ", ".join(f"{k} {1e3 * statistics.median(v):.2f}"
                           for k, v in runners[impl].phases.items())
        print(f"torch peer ({impl}) step: {1e3 * statistics.median(values):.2f} ms "
              f"(phases ms: {phases})")
    split = {k: 1e3 * statistics.median(v) for k, v in sk.phases.items()}
    print("skattention phases (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in split.items()))

    # 1. Exclusive wall-clock per backend method (cheap wrappers, outermost calls
    # only), per step; medians over the steps resist bursts of other load.
    inst = _Instrument(sk.backend)
    per_step = defaultdict(list)
    walls = []
    calls = defaultdict(int)
    for _ in range(n * args.repeats):
        inst.totals.clear()
        inst.counts.clear()
        start = time.perf_counter()
        step()
        walls.append(time.perf_counter() - start)
        groups = defaultdict(float)
        for name, total in inst.totals.items():
            groups[_GROUPS.get(name, name)] += total
            calls[_GROUPS.get(name, name)] = 0
        for name, count in inst.counts.items():
            calls[_GROUPS.get(name, name)] += count
        groups["python glue in the network (rest)"] = walls[-1] - sum(inst.totals.values())
        for group, value in groups.items():
            per_step[group].append(value)
    wall = statistics.median(walls)
    medians = {group: statistics.median(values) for group, values in per_step.items()}
    print(f"\nInstrumented step: median {1e3 * wall:.2f} ms over {len(walls)} steps; "
          f"per-group medians (they need not add up to the median step)")
    print("| group | ms | % of step | calls/step |")
    print("|---|---|---|---|")
    for group, value in sorted(medians.items(), key=lambda kv: -kv[1]):
        print(f"| {group} | {1e3 * value:.2f} | {100 * value / wall:.1f} | "
              f"{calls.get(group, '')} |")
    print("| (torch total step, " + ", ".join(
        f"{impl} {1e3 * statistics.median(v):.2f} ms" for impl, v in torch_ms.items())
        + ") | | | |")

    # 2. cProfile of the same step (un-instrumented backend), grouped by function.
    sk2 = SkattentionRunner(config, args.threads)
    step2 = lambda: sk2.train_step(X, mask, y, w)  # noqa: E731
    for _ in range(2):
        step2()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        step2()
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt / n
    print(f"\ncProfile: {1e3 * total:.2f} ms per step under the profiler; backend methods "
          "(cumulative) and the top NumPy / Python callers (own time), per step")
    backend_rows, other_rows = [], []
    for (filename, _, func), (_, ncalls, tottime, cumtime, _) in stats.stats.items():
        short = os.path.basename(filename)
        if "_backend" in filename and short.startswith("_cpu") and not func.startswith("_"):
            backend_rows.append((cumtime / n, f"{short}:{func}", ncalls // n))
        else:
            label = func if filename == "~" else f"{short}:{func}"
            other_rows.append((tottime / n, label, ncalls // n))
    print("| backend method (cumulative) | ms | % | calls/step |")
    print("|---|---|---|---|")
    for value, label, count in sorted(backend_rows, reverse=True):
        if label.endswith((":run", ":run_scratch")):
            continue
        print(f"| {label} | {1e3 * value:.3f} | {100 * value / total:.1f} | {count} |")
    print("| top own-time entries (NumPy builtins, Numba dispatch, Python) | ms | % | "
          "calls/step |")
    print("|---|---|---|---|")
    for value, label, count in sorted(other_rows, reverse=True)[:args.profile_top]:
        print(f"| {label} | {1e3 * value:.3f} | {100 * value / total:.1f} | {count} |")

    if args.torch_profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        runner = runners["sdpa"]
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(n):
                runner.train_step(tX, tmask, ty)
        print("\ntorch peer (sdpa) operator profile, totals over "
              f"{n} steps:")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


# ----------------------------------------------------------------------- main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--min-time", type=float, default=0.2,
                        help="seconds per timed repeat (several steps when they are short)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--inputs", nargs="+", default=["tokens", "values"],
                        choices=["tokens", "values"])
    parser.add_argument("--vocab", type=int, default=20000)
    parser.add_argument("--n-features", type=int, default=8)
    parser.add_argument("--train-batch", type=int, default=64)
    parser.add_argument("--infer-batch", type=int, default=256)
    parser.add_argument("--pad", type=float, default=0.3, help="mean padded fraction")
    parser.add_argument("--peer-impl", default="auto", choices=["auto", "sdpa", "nn", "math"])
    parser.add_argument("--json", default=DEFAULT_JSON, help="where the results go ('' = none)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tokens, L 32/128, 1 layer, 5 repeats, short repeats")
    parser.add_argument("--profile", action="store_true",
                        help="profile skattention's training step instead of the benchmark")
    parser.add_argument("--profile-length", type=int, default=128)
    parser.add_argument("--profile-layers", type=int, default=1)
    parser.add_argument("--profile-steps", type=int, default=20)
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument("--torch-profile", action="store_true",
                        help="with --profile: also print torch.profiler's operator table")
    args = parser.parse_args(argv)
    if args.quick:
        args.lengths, args.layers, args.inputs = [32, 128], [1], ["tokens"]
        args.repeats, args.warmup, args.min_time = 5, 1, 0.05
        args.profile_steps = 5

    import numba
    import torch

    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    print(f"threads={args.threads} torch={torch.__version__} numba={numba.__version__} "
          f"numpy={np.__version__} train batch={args.train_batch} "
          f"infer batch={args.infer_batch} padding={args.pad:.0%} repeats={args.repeats}")
    if args.profile:
        profile(args)
        return 0

    rows = []
    for input_kind in args.inputs:
        n_inputs = args.vocab if input_kind == "tokens" else args.n_features
        for n_layers in args.layers:
            for length in args.lengths:
                row = bench_config(input_kind, n_inputs, length, n_layers, args)
                rows.append(row)
                print(f"done {input_kind} L={length} layers={n_layers}: train "
                      f"{row['train_ratio']:.2f}x infer {row['infer_ratio']:.2f}x", flush=True)
    print_table(rows)
    if args.json:
        meta = dict(date=datetime.datetime.now().isoformat(timespec="seconds"),
                    machine=platform.platform(), processor=platform.processor(),
                    cpu_count=os.cpu_count(), threads=args.threads,
                    torch=torch.__version__, numba=numba.__version__, numpy=np.__version__,
                    quick=args.quick, argv=sys.argv[1:] if argv is None else list(argv))
        with open(args.json, "w") as handle:
            json.dump({"meta": meta, "rows": rows}, handle, indent=1)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
