"""Command line entry point: ``skattention`` / ``python -m skattention``."""

import argparse
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

__all__ = ["main"]


def _demo(args):
    """Train an AttentionClassifier on built-in data and show where it looked.

    The data are scikit-learn's bundled handwritten digits (1,797 real 8x8
    images), read as sequences of 8 pixel rows with 8 features each; a
    second part times the attention core itself.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from . import AttentionClassifier
    from . import functional as F

    digits = load_digits()
    X = digits.images / 16.0
    X_train, X_test, y_train, y_test = train_test_split(
        X, digits.target, test_size=0.25, random_state=args.seed, stratify=digits.target)
    print(f"digits: {X_train.shape[0]} training / {X_test.shape[0]} test images, "
          f"each a sequence of {X.shape[1]} rows x {X.shape[2]} pixels")
    clf = AttentionClassifier(d_model=32, n_heads=4, n_layers=1, max_iter=args.epochs,
                              learning_rate_init=3e-3, batch_size=64,
                              random_state=args.seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    print(f"AttentionClassifier: {clf.n_iter_} epochs in {seconds:.1f} s "
          f"(first fit includes compiling or loading the kernels), "
          f"test accuracy {clf.score(X_test, y_test):.3f}")
    weights = clf.explain(X_test)
    print("mean attention per pixel row (top to bottom):",
          " ".join(f"{w:.2f}" for w in weights.mean(axis=0)))
    for digit in (0, 1, 7):
        rows = weights[y_test == digit].mean(axis=0)
        print(f"  digit {digit}: most attended row {int(np.argmax(rows))}, weights "
              + " ".join(f"{w:.2f}" for w in rows))

    rng = np.random.default_rng(args.seed)
    batch, heads, length, head_width = 64, 4, 128, 16
    shape = (batch, heads, length, head_width)
    q, k, v = (rng.normal(size=shape).astype(np.float32) for _ in range(3))
    lengths = rng.integers(length // 2, length + 1, size=batch)
    key_mask = np.arange(length)[None, :] < lengths[:, None]
    timings = []
    for _ in range(6):
        start = time.perf_counter()
        context, attention = F.attention(q, k, v, key_mask)
        grads = F.attention_backward(q, k, v, attention, np.ones_like(context), key_mask)
        timings.append(time.perf_counter() - start)
    print(f"attention forward + backward, B={batch} H={heads} L={length} D={head_width} "
          f"float32: {1e3 * np.median(timings[1:]):.1f} ms")
    assert np.isfinite(grads.query).all()
    return 0


def main(argv=None):
    """Run the command line interface.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments without the program name; None reads ``sys.argv``.

    Returns
    -------
    status : int
        The process exit status.
    """
    parser = argparse.ArgumentParser(
        prog="skattention",
        description="Attention models for scikit-learn, with a Numba core.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train on built-in data and show the attention")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--epochs", type=int, default=40, help="training epochs (default 40)")
    demo.set_defaults(handler=_demo)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, TypeError, RuntimeError, OSError) as exc:
        print(f"skattention: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
