"""Command line entry point: ``skattention`` / ``python -m skattention``."""

import argparse
import sys
import time

import numpy as np

__all__ = ["main"]


def _demo(args):
    """Show the attention core at work on a small, fully specified example.

    A query looks for the keys that share its direction; a second batch item
    has padding. Prints the weights of every score function, then times a
    forward + backward pass of a realistic batch.
    """
    from . import functional as F

    words = ["the", "cat", "sat", "on", "the", "mat"]
    rng = np.random.default_rng(args.seed)
    width = 8
    embeddings = {word: rng.normal(size=width) for word in set(words)}
    keys = np.stack([embeddings[w] for w in words])[None, None]
    query = (embeddings["cat"] + 0.5 * embeddings["mat"])[None, None, None, :]
    values = keys.copy()
    mask = np.ones((1, len(words)), dtype=bool)
    score_params = {
        "general": {"W": np.eye(width)},
        "additive": {"W_q": np.eye(width), "W_k": np.eye(width), "v": np.ones(width)},
    }
    print("query = cat + 0.5 * mat; keys:", " ".join(words))
    for score in ("dot", "scaled_dot", "general", "additive"):
        _, weights = F.attention(query, keys, values, mask, score=score,
                                 score_params=score_params.get(score))
        cells = " ".join(f"{w:5.3f}" for w in weights[0, 0, 0])
        print(f"  {score:>10}: {cells}")

    mask[0, 4:] = False
    _, weights = F.attention(query, keys, values, mask)
    print("with 'the mat' padded:", " ".join(f"{w:5.3f}" for w in weights[0, 0, 0]))

    batch, heads, length, head_width = 64, 4, 128, 16
    shape = (batch, heads, length, head_width)
    q, k, v = (rng.normal(size=shape).astype(np.float32) for _ in range(3))
    lengths = rng.integers(length // 2, length + 1, size=batch)
    key_mask = np.arange(length)[None, :] < lengths[:, None]
    start = time.perf_counter()
    context, weights = F.attention(q, k, v, key_mask)
    grads = F.attention_backward(q, k, v, weights, np.ones_like(context), key_mask)
    first = time.perf_counter() - start
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        context, weights = F.attention(q, k, v, key_mask)
        grads = F.attention_backward(q, k, v, weights, np.ones_like(context), key_mask)
        timings.append(time.perf_counter() - start)
    print(f"forward + backward, B={batch} H={heads} L={length} D={head_width} float32: "
          f"first call {first:.2f} s (includes compilation or cache load), "
          f"then {1e3 * np.median(timings):.1f} ms")
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
    demo = commands.add_parser("demo", help="run the attention core on built-in data")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.set_defaults(handler=_demo)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, TypeError, RuntimeError, OSError) as exc:
        print(f"skattention: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
