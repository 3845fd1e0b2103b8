"""Where does a query look? The functional API on a tiny, readable example.

Each key is a word embedding; the query is built from two of them. The
printed weights show each scoring function's preference, and what padding
does to it.

Run: ``python examples/attention_weights.py``
"""

import numpy as np

from skattention.functional import attention, attention_backward

words = ["a", "quiet", "river", "flows", "past", "the", "old", "mill"]
rng = np.random.default_rng(1)
width = 12
table = {w: rng.normal(size=width) / np.sqrt(width) for w in words}
keys = np.stack([table[w] for w in words])[None, None]          # (1, 1, 8, 12)
values = keys.copy()
query = (2 * table["river"] + 2 * table["mill"])[None, None, None]  # (1, 1, 1, 12)

print("query = 2 river + 2 mill")
print(" " * 12 + " ".join(f"{w:>6}" for w in words))
params = {"general": {"W": np.eye(width)},
          "additive": {"W_q": np.eye(width), "W_k": np.eye(width), "v": np.ones(width)}}
for score in ("dot", "scaled_dot", "general", "additive"):
    _, weights = attention(query, keys, values, score=score, score_params=params.get(score))
    print(f"{score:>11} " + " ".join(f"{w:6.3f}" for w in weights[0, 0, 0]))

mask = np.ones((1, len(words)), dtype=bool)
mask[0, -3:] = False  # "the old mill" is padding now
context, weights = attention(query, keys, values, mask)
print(f"{'padded':>11} " + " ".join(f"{w:6.3f}" for w in weights[0, 0, 0]))

grads = attention_backward(query, keys, values, weights, np.ones_like(context), mask)
print("gradient norm per key:", np.round(np.linalg.norm(grads.key[0, 0], axis=-1), 3))
