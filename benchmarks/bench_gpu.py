"""GPU training and inference throughput: skattention on CUDA vs its CPU path and vs PyTorch.

For each sequence length L (default 128, 512 and 2048) and depth, one row
gives training and inference throughput (samples/s) of

* ``cuda``: skattention's network on the CUDA backend
  (``get_backend("cuda")``; parameters and Adam moments on the device);
* ``cpu``: the same network on the CPU backend (``--threads``, default 2;
  fewer repeats, ``--cpu-repeats``, since it is slow; ``--no-cpu`` skips it);
* ``torch``: the PyTorch peer of :mod:`benchmarks.peers` on the same GPU
  (only where ``torch.cuda.is_available()``; ``--no-torch`` skips it);

and the ratios cuda/cpu and cuda/torch. A training step is the one of
``bench_training.py`` (``AttentionNetwork.forward(training=True)``, the
backend's softmax cross-entropy, ``backward``, the finite-gradient check and
an Adam step, as ``_nn._training.run_epoch`` does it); inference is
``AttentionNetwork.predict``. Every step starts from a host batch and ends
on the host, for both libraries: skattention uploads the inputs (as ``fit``
and ``predict`` do) and ``predict`` returns a NumPy array, so the torch steps
copy their inputs to the GPU and the predictions back. Timers stop after a
device synchronisation (``numba.cuda.synchronize()``,
``torch.cuda.synchronize()``). Settings (those of ``bench_training.py``):
tokens (vocabulary 20,000), d_model 64, 4 heads, d_ff 128, 1 layer
(``--layers``), batch 256 for training and inference, 30% of the steps padded
on average, float32 (torch's TF32 matmuls stay off, their default). The
engines run interleaved (the order rotates every repeat); each number is a
median over the repeats (5 on the GPU, 3 for the CPU path) after a warm-up
that is not timed (the first CUDA call compiles the kernels). ``--peer-impl
auto`` picks the faster of the hand-written SDPA peer and
``nn.TransformerEncoderLayer`` per row and mode during the warm-up.

Targets (from the issue): at L = 512, cuda >= 10x the CPU path, and cuda
within 2x of PyTorch on the same GPU (cuda/torch >= 0.5); the script prints
whether each was met.

Run (needs the ``bench`` and ``cuda`` extras and an NVIDIA GPU)::

    python benchmarks/bench_gpu.py                          # L 128/512/2048, 1 layer
    python benchmarks/bench_gpu.py --layers 1 2             # also 2 layers
    python benchmarks/bench_gpu.py --lengths 2048 --merge   # one length, merged into the JSON
    python benchmarks/bench_gpu.py --no-cpu                 # GPU only (quick)
    python benchmarks/bench_gpu.py --quick                  # smoke run, tiny sizes, no JSON
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/bench_gpu.py --quick   # control flow, no GPU

Results go to ``benchmarks/results_gpu.json`` (``--json``), rewritten after
every row so that a run cut short keeps the rows it finished; a markdown
table goes to stdout. The exit status is 1 when a measurement failed (the
traceback is printed and the row records the error).
"""

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from importlib import metadata

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_training  # noqa: E402
import peers  # noqa: E402
from bench_training import ALPHA, LEARNING_RATE, N_CLASSES  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_JSON = os.path.join(HERE, "results_gpu.json")
ENGINES = ("cuda", "cpu", "torch")
MODES = ("train", "infer")
TARGET_LENGTH = 512
TARGET_OVER_CPU = 10.0     # cuda >= 10x the CPU path at L = 512
TARGET_OVER_TORCH = 0.5    # cuda within 2x of torch on the same GPU
TORCH_DEVICE = "cuda"      # the peer's device (a CPU check of the control flow may patch it)

# Launch sizes for Numba's CUDA simulator, which runs one OS thread per CUDA
# thread (the values of tests/test_cuda_estimators.py's ``small_blocks``).
# Never applied on a GPU, where the launch sizes are compiled into the kernels.
_SIMULATOR_BLOCKS = [
    ("_cuda_arrays", "THREADS", 8), ("_cuda_arrays", "COLUMN_ROWS", 3),
    ("_cuda_layers", "TILE", 4), ("_cuda_layers", "TILE_PAD", 5),
    ("_cuda_layers", "NORM_THREADS", 4), ("_cuda_layers", "SPLIT_ROWS", 5),
    ("_cuda_layers", "MAX_SPLITS", 3), ("_cuda_training", "NORM_THREADS", 4),
    ("_cuda_attention", "THREADS", 4), ("_cuda_attention", "TILE", 3),
    ("_cuda_attention", "POOL_THREADS", 4), ("_cuda_attention", "REDUCE_THREADS", 4)]


# --------------------------------------------------------------------- set-up


def simulator_on():
    import numba

    return bool(numba.config.ENABLE_CUDASIM)


def shrink_blocks_for_simulator():
    """Small launch sizes under the CUDA simulator (a no-op on a GPU)."""
    if not simulator_on():
        return
    import importlib

    for module_name, name, value in _SIMULATOR_BLOCKS:
        module = importlib.import_module(f"skattention._backend.{module_name}")
        setattr(module, name, value)


def make_config(length, n_layers, args):
    """bench_training's configuration (tokens), with the widths of ``args``."""
    config = bench_training.make_config("tokens", args.vocab, length, n_layers)
    return dataclasses.replace(config, d_model=args.d_model, n_heads=args.heads,
                               d_ff=args.d_ff)


class CUDARunner(bench_training.SkattentionRunner):
    """bench_training's runner on the CUDA backend (same ``train_step`` and ``predict``).

    Parameters move to the device once (``backend.asarray``) and the Adam
    moments are allocated there, as ``BaseAttention._fit`` does.
    """

    def __init__(self, config, seed=0):  # replaces the CPU set-up, keeps the methods
        from collections import defaultdict

        from skattention._backend import get_backend
        from skattention._nn._network import AttentionNetwork
        from skattention._nn._training import Optimizer

        self.backend = get_backend("cuda")
        self.network = AttentionNetwork(config, self.backend)
        self.initial_params = self.network.init_params(np.random.RandomState(seed))
        self.params = self.backend.asarray(self.initial_params, np.float32)
        self.optimizer = Optimizer(self.backend, "adam", self.params.size, np.float32,
                                   LEARNING_RATE, ALPHA)
        self.rng = np.random.RandomState(seed)
        self.phases = defaultdict(list)  # unsynchronised phase times: not reported


class TorchCUDARunner(bench_training.TorchRunner):
    """bench_training's peer runner with the model and a (fused) Adam on ``device``."""

    def __init__(self, config, impl, layout, params, device):
        super().__init__(config, impl, layout, params)
        self.model.to(device)
        # Adam again, now on the device's parameters (fused where torch has it).
        self.optimizer = peers.make_optimizer(self.model, LEARNING_RATE, ALPHA)


def _timed(function, n_calls, sync):
    """Seconds per call of ``n_calls`` calls, between two device synchronisations."""
    sync()
    start = time.perf_counter()
    for _ in range(n_calls):
        function()
    sync()
    return (time.perf_counter() - start) / n_calls


def _warm(function, n_calls, sync):
    """Run the warm-up calls; the seconds of the last one (the first compiles)."""
    seconds = None
    for _ in range(max(1, n_calls)):
        seconds = _timed(function, 1, sync)
    return seconds


def _no_sync():
    return None


def _pick_peer(config, impls, layout, params, make_call, warmup, device, sync):
    """Warm up each candidate peer on the GPU; return (runner, call, {impl: seconds})."""
    import torch

    timings, candidates = {}, {}
    for impl in impls:
        runner = TorchCUDARunner(config, impl, layout, params, device)
        call = make_call(runner)
        _warm(call, warmup, sync)
        timings[impl] = min(_timed(call, 1, sync) for _ in range(3))
        candidates[impl] = (runner, call)
    best = min(timings, key=timings.get)
    runner, call = candidates.pop(best)
    candidates.clear()
    torch.cuda.empty_cache()  # the losing peer's memory back for the other engines
    return runner, call, timings


# ---------------------------------------------------------------- one row


def bench_row(length, n_layers, args):
    """One (L, n_layers) row: training and inference throughput of each engine."""
    from numba import cuda

    from skattention._nn._network import build_layout

    config = make_config(length, n_layers, args)
    layout = build_layout(config)
    rng = np.random.default_rng(1000 * length + n_layers)
    X_train, mask_train = peers.random_batch(rng, "tokens", args.train_batch, length,
                                             args.vocab, args.pad)
    y_train = rng.integers(0, N_CLASSES, size=args.train_batch).astype(np.int64)
    w_train = np.ones(args.train_batch, dtype=np.float32)
    X_infer, mask_infer = peers.random_batch(rng, "tokens", args.infer_batch, length,
                                             args.vocab, args.pad)

    calls, syncs, repeats, errors, peer = {}, {}, {}, {}, {}

    def prepare(engine, mode, make):
        """Build one engine's call and warm it up; a failure is recorded, not raised."""
        try:
            call, sync, warmup = make()
            seconds = _warm(call, warmup, sync)
        except Exception as exc:  # out of memory, a CUDA error: keep the other columns
            traceback.print_exc()
            errors[f"{engine}_{mode}"] = f"{type(exc).__name__}: {exc}"
            print(f"  {engine} {mode} failed at L={length}: {errors[f'{engine}_{mode}']}",
                  flush=True)
            return
        calls[engine, mode] = (call, bench_training._calls_for(seconds, args.min_time))
        syncs[engine, mode] = sync
        repeats[engine, mode] = args.cpu_repeats if engine == "cpu" else args.repeats

    # skattention on the GPU (first: its warm-up compiles the kernels).
    sk_cuda = None
    try:
        sk_cuda = CUDARunner(config)
    except Exception as exc:
        traceback.print_exc()
        errors["cuda"] = f"{type(exc).__name__}: {exc}"
    if sk_cuda is not None:
        prepare("cuda", "train", lambda: (
            lambda: sk_cuda.train_step(X_train, mask_train, y_train, w_train),
            cuda.synchronize, args.warmup))
        prepare("cuda", "infer", lambda: (
            lambda: sk_cuda.predict(X_infer, mask_infer), cuda.synchronize, args.warmup))

    # skattention's CPU path, from the same initial parameters.
    if not args.no_cpu:
        sk_cpu = bench_training.SkattentionRunner(config, args.threads)
        prepare("cpu", "train", lambda: (
            lambda: sk_cpu.train_step(X_train, mask_train, y_train, w_train),
            _no_sync, args.cpu_warmup))
        prepare("cpu", "infer", lambda: (
            lambda: sk_cpu.predict(X_infer, mask_infer), _no_sync, args.cpu_warmup))

    # The PyTorch peer on the same GPU: host batch in, host predictions out.
    if args.torch_on:
        import torch

        device = torch.device(TORCH_DEVICE)
        impls = ("sdpa", "nn") if args.peer_impl == "auto" else (args.peer_impl,)
        params = (sk_cuda.initial_params if sk_cuda is not None else
                  _initial_params(config))
        tX_train, tmask_train = torch.from_numpy(X_train), torch.from_numpy(mask_train)
        ty_train = torch.from_numpy(y_train)
        tX_infer, tmask_infer = torch.from_numpy(X_infer), torch.from_numpy(mask_infer)

        def torch_train(runner):
            return lambda: runner.train_step(tX_train.to(device), tmask_train.to(device),
                                             ty_train.to(device))

        def torch_infer(runner):
            return lambda: runner.predict(tX_infer.to(device), tmask_infer.to(device)).cpu()

        for mode, make_call in (("train", torch_train), ("infer", torch_infer)):
            def make(make_call=make_call, mode=mode):
                runner, call, timings = _pick_peer(
                    config, impls, layout, params, make_call, args.warmup, device,
                    torch.cuda.synchronize)
                peer[mode] = dict(impl=runner.impl,
                                  warmup_ms={k: 1e3 * v for k, v in timings.items()})
                return call, torch.cuda.synchronize, 1  # warmed up by _pick_peer
            prepare("torch", mode, make)

    # Interleaved repeats: the order of the (engine, mode) pairs rotates.
    active = list(calls)
    times = {key: [] for key in active}
    for repeat in range(max(repeats.values(), default=0)):
        shift = repeat % max(1, len(active))
        for key in active[shift:] + active[:shift]:
            if repeat < repeats[key]:
                call, n_calls = calls[key]
                times[key].append(_timed(call, n_calls, syncs[key]))

    row = dict(L=length, n_layers=n_layers, train_batch=args.train_batch,
               infer_batch=args.infer_batch, mean_real_fraction=float(mask_train.mean()),
               d_model=config.d_model, n_heads=config.n_heads, d_ff=config.d_ff,
               vocab=args.vocab, n_params=int(layout.size))
    for engine in ENGINES:
        for mode in MODES:
            key = (engine, mode)
            batch = args.train_batch if mode == "train" else args.infer_batch
            if key in times and times[key]:
                median = statistics.median(times[key])
                row[f"{mode}_{engine}"] = batch / median
                row[f"{mode}_ms_{engine}"] = 1e3 * median
                row[f"{mode}_repeats_{engine}"] = len(times[key])
                row[f"{mode}_calls_per_repeat_{engine}"] = calls[key][1]
            else:
                row[f"{mode}_{engine}"] = None
    for mode in MODES:
        for other in ("cpu", "torch"):
            mine, theirs = row[f"{mode}_cuda"], row[f"{mode}_{other}"]
            row[f"{mode}_cuda_over_{other}"] = (mine / theirs if mine and theirs else None)
    row["peer"] = peer
    row["errors"] = errors
    return row


def _initial_params(config, seed=0):
    """skattention's initial parameters (host), when the CUDA runner could not start."""
    from skattention._backend import get_backend
    from skattention._nn._network import AttentionNetwork

    network = AttentionNetwork(config, get_backend("cpu", n_threads=1))
    return network.init_params(np.random.RandomState(seed))


# ---------------------------------------------------------------- reporting


def _num(value):
    if value is None:
        return "n/a"
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _ratio(value):
    if value is None:
        return "n/a"
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.2g}x"


def print_table(rows):
    print()
    header = ["L", "layers"]
    for mode in MODES:
        header += [f"{mode} cuda /s", f"{mode} cpu /s", f"{mode} torch /s",
                   "cuda/cpu", "cuda/torch"]
    header.append("peer (train/infer)")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        cells = [str(r["L"]), str(r["n_layers"])]
        for mode in MODES:
            cells += [_num(r[f"{mode}_cuda"]), _num(r[f"{mode}_cpu"]), _num(r[f"{mode}_torch"]),
                      _ratio(r[f"{mode}_cuda_over_cpu"]), _ratio(r[f"{mode}_cuda_over_torch"])]
        cells.append("/".join(r["peer"].get(m, {}).get("impl", "-") for m in MODES))
        print("| " + " | ".join(cells) + " |")
    sys.stdout.flush()


def target_lines(rows):
    """Whether the issue's targets were met, one line per measured comparison."""
    lines = []
    for r in rows:
        for mode in MODES:
            where = f"{mode:5s} L={r['L']} layers={r['n_layers']}"
            over_cpu = r[f"{mode}_cuda_over_cpu"]
            if r["L"] == TARGET_LENGTH and over_cpu is not None:
                met = "met" if over_cpu >= TARGET_OVER_CPU else "NOT met"
                lines.append(f"{where}: cuda/cpu {over_cpu:.2f}x "
                             f"(target >= {TARGET_OVER_CPU:g}x): {met}")
            over_torch = r[f"{mode}_cuda_over_torch"]
            if over_torch is not None:
                met = "met" if over_torch >= TARGET_OVER_TORCH else "NOT met"
                lines.append(f"{where}: cuda/torch {over_torch:.2f}x "
                             f"(target >= {TARGET_OVER_TORCH:g}x, within 2x): {met}")
    return lines


def _version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(args):
    """GPU, versions and settings for the JSON and the header line."""
    import numba
    import torch
    from numba import cuda

    import skattention

    meta = dict(date=datetime.datetime.now().isoformat(timespec="seconds"),
                simulator=simulator_on())
    try:
        device = cuda.get_current_device()
        name = getattr(device, "name", "CUDA simulator")
        meta["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        meta["compute_capability"] = list(getattr(device, "compute_capability", ()))
    except Exception as exc:
        meta["gpu"] = f"unknown ({type(exc).__name__}: {exc})"
    try:
        meta["cuda_driver"] = list(cuda.cudadrv.driver.driver.get_version())
    except Exception:
        meta["cuda_driver"] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        commit = ""
    meta.update(
        skattention=skattention.__version__, git_commit=commit or None,
        numba=numba.__version__, numba_cuda=_version("numba-cuda"), numpy=np.__version__,
        torch=torch.__version__, torch_cuda=torch.version.cuda,
        torch_gpu=torch.cuda.get_device_name(0) if args.torch_on else None,
        torch_tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32),
        machine=platform.platform(), processor=platform.processor(),
        cpu_count=os.cpu_count(), cpu_threads=args.threads, quick=args.quick,
        settings={k: v for k, v in vars(args).items() if k not in ("json",)})
    return meta


def write_json(path, meta, rows, merge):
    if not path:
        return
    if merge and os.path.exists(path):
        with open(path) as handle:
            old = json.load(handle).get("rows", [])
        keys = {(r["L"], r["n_layers"]) for r in rows}
        rows = [r for r in old if (r["L"], r["n_layers"]) not in keys] + list(rows)
        rows.sort(key=lambda r: (r["n_layers"], r["L"]))
    with open(path, "w") as handle:
        json.dump({"meta": meta, "rows": rows}, handle, indent=1)


# ----------------------------------------------------------------------- main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--layers", type=int, nargs="+", default=[1])
    parser.add_argument("--train-batch", type=int, default=256)
    parser.add_argument("--infer-batch", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=20000)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--d-ff", type=int, default=128)
    parser.add_argument("--pad", type=float, default=0.3, help="mean padded fraction")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats on the GPU")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed calls per GPU engine and mode (the first compiles)")
    parser.add_argument("--min-time", type=float, default=0.2,
                        help="seconds per timed repeat (several steps when they are short)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the CPU path")
    parser.add_argument("--cpu-repeats", type=int, default=3)
    parser.add_argument("--cpu-warmup", type=int, default=1)
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU path")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
    parser.add_argument("--peer-impl", default="auto", choices=["auto", "sdpa", "nn", "math"])
    parser.add_argument("--json", default=None,
                        help=f"where the results go ('' = none; default {DEFAULT_JSON}, "
                             "none with --quick)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the JSON's rows of other (L, layers) instead of replacing it")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: batch 4, L 8, d_model 8, 2 heads, vocab 50, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.lengths, args.layers = [8], [1]
        args.train_batch = args.infer_batch = 4
        args.vocab, args.d_model, args.heads, args.d_ff = 50, 8, 2, 8
        args.repeats = args.cpu_repeats = args.warmup = args.cpu_warmup = 1
        args.min_time = 0.0
    if args.json is None:
        args.json = "" if args.quick else DEFAULT_JSON

    import numba
    import torch

    from skattention._backend import cuda_unavailable_reason

    reason = cuda_unavailable_reason()
    if reason is not None:
        print(f"the CUDA backend cannot run here: {reason}")
        return 1
    shrink_blocks_for_simulator()
    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    args.torch_on = not args.no_torch and torch.cuda.is_available()
    if not args.no_torch and not args.torch_on:
        print(f"torch.cuda.is_available() is False (torch {torch.__version__}): "
              "the torch column is skipped")

    meta = environment(args)
    print(f"GPU: {meta['gpu']} (compute capability {meta.get('compute_capability')}, "
          f"driver {meta['cuda_driver']}){' [CUDA SIMULATOR]' if meta['simulator'] else ''}")
    print(f"date {meta['date']}  skattention {meta['skattention']} ({meta['git_commit']})  "
          f"numba {meta['numba']}  numba-cuda {meta['numba_cuda']}  torch {meta['torch']} "
          f"(CUDA {meta['torch_cuda']})  numpy {meta['numpy']}")
    print(f"train batch {args.train_batch}, infer batch {args.infer_batch}, tokens (V="
          f"{args.vocab}), d_model {args.d_model}, {args.heads} heads, d_ff {args.d_ff}, "
          f"padding {args.pad:.0%}; GPU repeats {args.repeats}, CPU path "
          f"{'skipped' if args.no_cpu else f'{args.threads} threads, {args.cpu_repeats} repeats'}",
          flush=True)

    rows = []
    for n_layers in args.layers:
        for length in args.lengths:
            start = time.perf_counter()
            row = bench_row(length, n_layers, args)
            rows.append(row)
            write_json(args.json, meta, rows, args.merge)
            print(f"done L={length} layers={n_layers} in {time.perf_counter() - start:.0f} s: "
                  f"train cuda/cpu {_ratio(row['train_cuda_over_cpu'])} cuda/torch "
                  f"{_ratio(row['train_cuda_over_torch'])}; infer cuda/cpu "
                  f"{_ratio(row['infer_cuda_over_cpu'])} cuda/torch "
                  f"{_ratio(row['infer_cuda_over_torch'])}", flush=True)
    print_table(rows)
    print()
    for line in target_lines(rows) or ["(no target comparison measured)"]:
        print(line)
    if args.json:
        print(f"\nwrote {args.json}")
    failed = [f"L={r['L']} layers={r['n_layers']} {k}: {v}" for r in rows
              for k, v in r["errors"].items()]
    for line in failed:
        print(f"FAILED {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
