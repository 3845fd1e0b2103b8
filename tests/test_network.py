"""Proofs for the NumPy network (``skattention._nn``).

* the forward pass equals an independent NumPy oracle built from the kernel
  oracles (every score, pooling, input kind and positional encoding) and a
  PyTorch model with copied weights;
* whole-network central finite differences of the backward pass, float64,
  along random and per-block directions, dropout included;
* inference paths (predict, transform, explain) agree with the forward pass;
* padding and batch-composition invariance; determinism; errors;
* a small float32 training run learns a synthetic task.
"""

import math

import numpy as np
import pytest
import reference as ref_attn
import reference_layers as ref_layers

from skattention._backend import get_backend
from skattention._nn import AttentionNetwork, NetworkConfig, ParamLayout
from skattention._nn._layers import sinusoidal_positions

# One kernel thread: on a shared two-core machine, many tiny parallel kernel
# calls stall whenever another process holds a core, and the parallel builds
# would add a minute of compilation. Thread counts do not change results
# (the kernel tests check serial == parallel bitwise).
BACKEND = get_backend("cpu", n_threads=1)
SCORES = ["dot", "scaled_dot", "general", "additive"]
N, L, D, HEADS = 3, 5, 8, 2
N_FEATURES, VOCAB = 4, 7
# Ragged, a full row, and one fully padded sequence.
MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=bool)


def make_config(**overrides):
    kwargs = dict(input_kind="values", n_inputs=N_FEATURES, max_len=L, d_model=D,
                  n_heads=HEADS, n_layers=1, d_ff=8, attention_score="scaled_dot",
                  positional="sinusoidal", pooling="attention", dropout=0.0, n_outputs=2,
                  dtype=np.float64)
    kwargs.update(overrides)
    if kwargs["input_kind"] == "tokens" and "n_inputs" not in overrides:
        kwargs["n_inputs"] = VOCAB
    return NetworkConfig(**kwargs)


def make_case(config, seed=0, mask=MASK):
    """Network, generic parameters (no exact zeros/ones), inputs and mask."""
    net = AttentionNetwork(config, BACKEND)
    rng = np.random.default_rng(seed)
    params = net.init_params(np.random.RandomState(seed))
    params += 0.3 * rng.standard_normal(params.shape)
    n, length = mask.shape
    if config.input_kind == "values":
        X = rng.standard_normal((n, length, config.n_inputs))
    else:
        X = rng.integers(1, config.n_inputs, size=(n, length))
    return net, params, X, mask


# ---------------------------------------------------------------- the oracle


def reference_forward(net, params, X, mask):
    """Naive float64 forward pass built from the kernel oracles (no dropout)."""
    config = net.config
    p = net.layout.views(np.asarray(params, np.float64))
    n, length = mask.shape
    d, heads, dh = config.d_model, config.n_heads, config.head_dim
    score = config.attention_score
    if config.input_kind == "values":
        x = np.where(mask[..., None], X, 0.0)
        h = x @ p["embed.weight"] + p["embed.bias"]
    else:
        h = p["embed.table"][np.where(mask, X, 0)]
    if config.positional == "learned":
        h = h + p["pos.table"][:length]
    elif config.positional == "sinusoidal":
        pe = np.zeros((length, d))
        for pos in range(length):
            for i in range(d):
                angle = pos / 10000 ** ((i - i % 2) / d)
                pe[pos, i] = math.sin(angle) if i % 2 == 0 else math.cos(angle)
        h = h + pe

    def norm(x, name):
        out = ref_layers.layer_norm_forward(x.reshape(-1, d), None, p[name + ".gamma"],
                                            p[name + ".beta"], 1e-5)[0]
        return out.reshape(x.shape)

    def heads_of(x):
        return x.reshape(n, length, heads, dh).transpose(0, 2, 1, 3)

    def score_params(prefix):
        return {key[len(prefix):]: value for key, value in p.items() if key.startswith(prefix)}

    layer_weights = []
    for i in range(config.n_layers):
        pre = f"layers.{i}."
        a = norm(h, pre + "ln1")
        qkv = a @ p[pre + "attn.qkv.weight"] + p[pre + "attn.qkv.bias"]
        q, k, v = (heads_of(qkv[..., j * d:(j + 1) * d]) for j in range(3))
        context, weights = ref_attn.attention(q, k, v, mask, score=score,
                                              score_params=score_params(pre + "attn.score."))
        layer_weights.append(weights)
        merged = context.transpose(0, 2, 1, 3).reshape(n, length, d)
        h = h + merged @ p[pre + "attn.out.weight"] + p[pre + "attn.out.bias"]
        a2 = norm(h, pre + "ln2")
        hidden = ref_layers.activation(a2 @ p[pre + "ffn.fc1.weight"] + p[pre + "ffn.fc1.bias"],
                                       "gelu")
        h = h + hidden @ p[pre + "ffn.fc2.weight"] + p[pre + "ffn.fc2.bias"]
    if config.n_layers:
        h = norm(h, "final_ln")
    if config.pooling == "attention":
        query = np.broadcast_to(p["pool.query"][None, :, None, :], (n, heads, 1, dh))
        context, weights = ref_attn.attention(query, heads_of(h), heads_of(h), mask,
                                              score=score,
                                              score_params=score_params("pool.score."))
        pooled, pool_weights = context[:, :, 0].reshape(n, d), weights[:, :, 0]
    else:
        counts = np.maximum(mask.sum(1), 1)
        pooled = (h * mask[..., None]).sum(1) / counts[:, None]
        pool_weights = np.repeat((mask / counts[:, None])[:, None], heads, axis=1)
    if config.length_scaling == "sqrt":
        pooled = pooled * np.sqrt(mask.sum(1) / config.length_reference)[:, None]
    output = pooled @ p["head.weight"] + p["head.bias"]
    return output, pooled, pool_weights, layer_weights


#: The sqrt length scaling, on both poolings, with and without layers.
SCALED_GRID = [
    dict(attention_score=s, pooling=pool, n_layers=nl, input_kind=kind,
         length_scaling="sqrt", length_reference=2.5)
    for s, pool, nl, kind in (("scaled_dot", "attention", 0, "tokens"),
                              ("additive", "attention", 1, "values"),
                              ("general", "mean", 0, "tokens"),
                              ("dot", "mean", 2, "values"))
]

ORACLE_GRID = [
    dict(attention_score=s, pooling=pool, n_layers=nl, input_kind=kind, positional=pos)
    for i, (s, pool, nl, kind) in enumerate(
        (s, pool, nl, kind) for s in SCORES for pool in ("attention", "mean")
        for nl in (0, 2) for kind in ("values", "tokens"))
    for pos in [("sinusoidal", "learned", "none")[i % 3]]
] + SCALED_GRID


@pytest.mark.parametrize("overrides", ORACLE_GRID, ids=lambda o: "-".join(map(str, o.values())))
def test_forward_matches_numpy_oracle(overrides):
    net, params, X, mask = make_case(make_config(**overrides))
    output, pooled, pool_weights, layer_weights = reference_forward(net, params, X, mask)
    np.testing.assert_allclose(net.predict(params, X, mask), output, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(net.transform(params, X, mask), pooled, rtol=1e-10, atol=1e-12)
    pooling, layers = net.explain(params, X, mask, all_layers=True)
    np.testing.assert_allclose(pooling, pool_weights, rtol=1e-10, atol=1e-12)
    assert len(layers) == len(layer_weights)
    for got, want in zip(layers, layer_weights):
        np.testing.assert_allclose(got, want * mask[:, None, :, None], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("pooling", ["attention", "mean"])
@pytest.mark.parametrize("input_kind", ["values", "tokens"])
def test_forward_matches_pytorch(pooling, input_kind):
    torch = pytest.importorskip("torch")
    config = make_config(n_layers=2, pooling=pooling, input_kind=input_kind,
                         positional="learned", d_ff=12)
    net, params, X, mask = make_case(config, seed=3)
    p = {k: torch.tensor(v) for k, v in net.layout.views(params).items()}
    d = config.d_model
    layers = []
    for i in range(config.n_layers):
        layer = torch.nn.TransformerEncoderLayer(d, config.n_heads, config.d_ff, dropout=0.0,
                                                 activation="gelu", batch_first=True,
                                                 norm_first=True, dtype=torch.float64)
        pre = f"layers.{i}."
        with torch.no_grad():
            layer.self_attn.in_proj_weight.copy_(p[pre + "attn.qkv.weight"].T)
            layer.self_attn.in_proj_bias.copy_(p[pre + "attn.qkv.bias"])
            layer.self_attn.out_proj.weight.copy_(p[pre + "attn.out.weight"].T)
            layer.self_attn.out_proj.bias.copy_(p[pre + "attn.out.bias"])
            layer.linear1.weight.copy_(p[pre + "ffn.fc1.weight"].T)
            layer.linear1.bias.copy_(p[pre + "ffn.fc1.bias"])
            layer.linear2.weight.copy_(p[pre + "ffn.fc2.weight"].T)
            layer.linear2.bias.copy_(p[pre + "ffn.fc2.bias"])
            for ours, theirs in (("ln1", layer.norm1), ("ln2", layer.norm2)):
                theirs.weight.copy_(p[pre + ours + ".gamma"])
                theirs.bias.copy_(p[pre + ours + ".beta"])
        layers.append(layer.train())  # the training path: no fused fast path
    real = mask.any(axis=1)  # torch gives NaN for a fully padded sequence
    Xr, mr = X[real], torch.tensor(mask[real])
    if input_kind == "values":
        h = torch.tensor(Xr) @ p["embed.weight"] + p["embed.bias"]
    else:
        h = torch.nn.functional.embedding(torch.tensor(Xr), p["embed.table"])
    h = h + p["pos.table"][: X.shape[1]]
    for layer in layers:
        h = layer(h, src_key_padding_mask=~mr)
    h = torch.nn.functional.layer_norm(h, (d,), p["final_ln.gamma"], p["final_ln.beta"], 1e-5)
    if pooling == "attention":
        hh = h.reshape(h.shape[0], h.shape[1], config.n_heads, -1).transpose(1, 2)
        scores = torch.einsum("bhld,hd->bhl", hh, p["pool.query"]) / math.sqrt(config.head_dim)
        weights = scores.masked_fill(~mr[:, None, :], -math.inf).softmax(-1)
        pooled = torch.einsum("bhl,bhld->bhd", weights, hh).reshape(-1, d)
    else:
        pooled = (h * mr[..., None]).sum(1) / mr.sum(1, keepdim=True)
    expected = (pooled @ p["head.weight"] + p["head.bias"]).detach().numpy()
    np.testing.assert_allclose(net.predict(params, X, mask)[real], expected, rtol=1e-9,
                               atol=1e-11)


# ------------------------------------------------------------ gradient check


def _directions(layout, rng, n_random=2):
    """Unit directions: a few over the whole buffer, then one per block."""
    for _ in range(n_random):
        u = rng.standard_normal(layout.size)
        yield "random", u / np.linalg.norm(u)
    for name in layout.names:
        u = np.zeros(layout.size)
        block = layout.slice(name)
        u[block] = rng.standard_normal(block.stop - block.start)
        yield name, u / np.linalg.norm(u)


def check_gradient(net, params, X, mask, training, seed=7, eps=1e-5):
    probe = np.random.default_rng(seed).standard_normal((mask.shape[0], net.config.n_outputs))

    def loss(p):
        out, _ = net.forward(p, X, mask, training=training,
                             random_state=np.random.RandomState(seed))
        return float(np.sum(out * probe))

    _, cache = net.forward(params, X, mask, training=training,
                           random_state=np.random.RandomState(seed))
    grad = net.backward(params, cache, probe)
    assert grad.shape == params.shape and grad.dtype == np.float64
    rng = np.random.default_rng(seed + 1)
    for name, u in _directions(net.layout, rng):
        numeric = (loss(params + eps * u) - loss(params - eps * u)) / (2 * eps)
        analytic = float(grad @ u)
        assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(analytic)), (
            f"{name}: finite difference {numeric!r} vs backward {analytic!r}")


GRAD_GRID = [
    dict(attention_score=s, pooling=pool, n_layers=nl, input_kind=kind, positional=pos)
    for i, (s, pool, nl, kind) in enumerate(
        (s, pool, nl, kind) for s in SCORES for pool in ("attention", "mean")
        for nl in (0, 1, 2) for kind in ("values", "tokens"))
    for pos in [("learned", "sinusoidal", "none")[i % 3]]
] + SCALED_GRID


@pytest.mark.parametrize("overrides", GRAD_GRID, ids=lambda o: "-".join(map(str, o.values())))
def test_gradient_matches_finite_differences_with_dropout(overrides):
    net, params, X, mask = make_case(make_config(dropout=0.25, **overrides))
    check_gradient(net, params, X, mask, training=True)


@pytest.mark.parametrize("score", SCORES)
def test_gradient_without_dropout_eval_mode(score):
    net, params, X, mask = make_case(make_config(attention_score=score, n_layers=2,
                                                 positional="learned", dropout=0.5))
    check_gradient(net, params, X, mask, training=False)


def test_dropout_masks_follow_the_random_state():
    net, params, X, mask = make_case(make_config(dropout=0.5, n_layers=1))
    out_a, _ = net.forward(params, X, mask, training=True, random_state=np.random.RandomState(1))
    out_b, _ = net.forward(params, X, mask, training=True, random_state=np.random.RandomState(1))
    out_c, _ = net.forward(params, X, mask, training=True, random_state=np.random.RandomState(2))
    out_g, _ = net.forward(params, X, mask, training=True, random_state=np.random.default_rng(1))
    out_g2, _ = net.forward(params, X, mask, training=True,
                            random_state=np.random.default_rng(1))
    assert np.array_equal(out_a, out_b) and np.array_equal(out_g, out_g2)
    assert not np.allclose(out_a[:2], out_c[:2])
    # Without training, dropout is off whatever the state.
    out_eval, _ = net.forward(params, X, mask, training=False,
                              random_state=np.random.RandomState(1))
    assert np.array_equal(out_eval, net.predict(params, X, mask))


# ------------------------------------------------------------------ inference


@pytest.mark.parametrize("pooling", ["attention", "mean"])
@pytest.mark.parametrize("score", ["scaled_dot", "additive"])
def test_predict_transform_explain_agree_with_forward(pooling, score):
    net, params, X, mask = make_case(make_config(pooling=pooling, attention_score=score,
                                                 n_layers=2, dropout=0.3))
    output, cache = net.forward(params, X, mask, training=False)
    assert np.array_equal(net.predict(params, X, mask), output)
    pooled = net.transform(params, X, mask)
    assert pooled.shape == (N, D)
    views = net.layout.views(params)
    np.testing.assert_allclose(pooled @ views["head.weight"] + views["head.bias"], output,
                               rtol=1e-12, atol=1e-12)
    pooling_weights = net.explain(params, X, mask)
    again, layers = net.explain(params, X, mask, all_layers=True)
    assert np.array_equal(pooling_weights, again)
    assert pooling_weights.shape == (N, HEADS, L)
    real = mask.any(axis=1)
    np.testing.assert_allclose(pooling_weights.sum(-1)[real], 1.0, rtol=1e-12)
    assert np.all(pooling_weights[~np.broadcast_to(mask[:, None], pooling_weights.shape)] == 0)
    assert np.all(pooling_weights[~real] == 0)
    assert len(layers) == 2
    for w in layers:
        assert w.shape == (N, HEADS, L, L)
        queries = np.broadcast_to(mask[:, None, :], w.shape[:3])
        np.testing.assert_allclose(w.sum(-1)[queries], 1.0, rtol=1e-12)
        assert np.all(w[~np.broadcast_to(mask[:, None, None, :], w.shape)] == 0)
        assert np.all(w[~queries] == 0)


@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("pooling", ["attention", "mean"])
def test_fully_padded_sequence_is_finite_and_pools_to_zero(score, pooling):
    net, params, X, mask = make_case(make_config(attention_score=score, pooling=pooling,
                                                 n_layers=1))
    out = net.predict(params, X, mask)
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(net.transform(params, X, mask)[2], 0.0)
    np.testing.assert_array_equal(out[2], net.layout.views(params)["head.bias"])


# ------------------------------------------------------- padding invariance


@pytest.mark.parametrize("overrides", [
    dict(attention_score="scaled_dot", input_kind="values", positional="learned"),
    dict(attention_score="general", input_kind="tokens", pooling="mean"),
    dict(attention_score="additive", input_kind="values", positional="sinusoidal"),
    dict(attention_score="dot", input_kind="tokens", positional="none"),
    dict(attention_score="scaled_dot", input_kind="tokens", length_scaling="sqrt",
         length_reference=4.0),
])
def test_padding_and_batch_invariance(overrides):
    config = make_config(n_layers=2, max_len=9, **overrides)
    rng = np.random.default_rng(5)
    lengths = np.array([4, 9, 0, 2, 6])
    mask = np.arange(9)[None, :] < lengths[:, None]
    net, params, X, _ = make_case(config, mask=mask)
    # Garbage on padding must not matter.
    if config.input_kind == "values":
        X[~mask] = rng.choice([1e30, -7.0, np.nan], size=(int((~mask).sum()), config.n_inputs))
    else:
        X[~mask] = rng.integers(0, config.n_inputs + 5, size=int((~mask).sum()))
    batch_out = net.predict(params, X, mask)
    batch_pooled = net.transform(params, X, mask)
    assert np.all(np.isfinite(batch_out))
    for i in (0, 3, 4):
        alone = net.predict(params, X[i:i + 1, :lengths[i]], mask[i:i + 1, :lengths[i]])
        np.testing.assert_allclose(alone[0], batch_out[i], rtol=0, atol=1e-12)
        pooled = net.transform(params, X[i:i + 1, :lengths[i]], mask[i:i + 1, :lengths[i]])
        np.testing.assert_allclose(pooled[0], batch_pooled[i], rtol=0, atol=1e-12)
    order = np.array([4, 2, 0, 3, 1])
    permuted = net.predict(params, X[order], mask[order])
    np.testing.assert_allclose(permuted, batch_out[order], rtol=0, atol=1e-12)


@pytest.mark.parametrize("overrides", [
    dict(attention_score="scaled_dot", input_kind="tokens", positional="learned"),
    dict(attention_score="additive", input_kind="values", pooling="mean"),
    dict(attention_score="general", input_kind="values", positional="none", n_layers=2),
    dict(attention_score="dot", input_kind="tokens", length_scaling="sqrt",
         length_reference=2.0),
])
def test_packed_rows_match_the_dense_pass(monkeypatch, overrides):
    """The encoder on the real rows only gives the dense pass's output and gradient."""
    import skattention._nn._network as network

    config = make_config(dropout=0.0, **{"n_layers": 1, **overrides})
    net, params, X, mask = make_case(config)
    probe = np.random.default_rng(3).standard_normal((N, config.n_outputs))
    results = {}
    gathers, packed_calls = [], []
    real_gather = BACKEND.gather_rows
    real_packed = BACKEND.packed_attention_forward
    monkeypatch.setattr(BACKEND, "gather_rows",
                        lambda *args: gathers.append(1) or real_gather(*args), raising=False)
    monkeypatch.setattr(BACKEND, "packed_attention_forward",
                        lambda *args: packed_calls.append(1) or real_packed(*args),
                        raising=False)
    for pack_below in (0.0, 1.0):
        monkeypatch.setattr(network, "PACK_BELOW", pack_below)
        del gathers[:], packed_calls[:]
        output, cache = net.forward(params, X, mask)
        grad = net.backward(params, cache, probe)
        pooling, layers = net.explain(params, X, mask, all_layers=True)
        results[pack_below] = (output, grad, net.transform(params, X, mask), pooling,
                               net.predict(params, X, mask), layers)
        # Dense: no copies; packed: two per layer each way, and the ends.
        assert (len(gathers) > 0) == (pack_below == 1.0)
        # A dot-family score attends over the packed rows in place (forward,
        # transform, predict); stored weights (explain's layers) need the padded kernel.
        dot_family = config.attention_score != "additive"
        assert len(packed_calls) == (3 * config.n_layers if pack_below and dot_family else 0)
    dense, packed = results[0.0], results[1.0]
    for a, b in zip(dense[:5], packed[:5]):
        np.testing.assert_allclose(b, a, rtol=1e-11, atol=1e-13)
    for a, b in zip(dense[5], packed[5]):
        np.testing.assert_allclose(b, a, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("overrides", [
    dict(input_kind="tokens", positional="learned", max_len=L + 3),
    dict(input_kind="tokens", n_layers=0, pooling="mean"),
    dict(input_kind="values", attention_score="additive"),
])
def test_recycled_buffers_full_of_garbage_give_the_fresh_gradient(overrides):
    """Every entry of the gradient is written or zeroed: nothing leaks from a previous step.

    The backward pass leaves the embedding table's block to the embedding
    kernel, which zeroes it; recycled memory filled with NaN would show any
    entry that nobody writes (here the learned positions past the batch's
    length).
    """
    config = make_config(**overrides)
    net, params, X, mask = make_case(config)
    probe = np.random.default_rng(5).standard_normal((N, config.n_outputs))
    fresh = net.backward(params, net.forward(params, X, mask)[1], probe)
    backend = get_backend("cpu", n_threads=1)
    net = AttentionNetwork(config, backend)
    for step in range(2):
        with backend.reuse_buffers("train"):
            grad = net.backward(params, net.forward(params, X, mask)[1], probe)
            np.testing.assert_array_equal(grad, fresh)
        for memory in backend._pools["train"]:
            memory.fill(np.nan)


def test_packing_is_chosen_by_the_share_of_padding():
    net, _, _, _ = make_case(make_config(n_layers=1))
    full = np.ones((2, 10), dtype=bool)
    assert net._packing(full) is None
    assert net._packing(np.zeros((2, 10), dtype=bool)) is None
    mostly = full.copy()
    mostly[0, 9] = False  # 95 % real: not worth the copies
    assert net._packing(mostly) is None
    ragged = np.arange(10)[None, :] < np.array([[3], [7]])
    rows, slots = net._packing(ragged)
    np.testing.assert_array_equal(rows, np.flatnonzero(ragged))
    np.testing.assert_array_equal(slots[rows], np.arange(10))
    assert np.all(slots[~ragged.ravel()] == -1)
    layerless, _, _, _ = make_case(make_config(n_layers=0))
    assert layerless._packing(ragged) is None


# ---------------------------------------------------------------- parameters


def test_param_layout_views_and_initialisation():
    layout = ParamLayout([("w", (300, 200), "glorot"), ("b", (200,), "zeros"),
                          ("g", (5,), "ones"), ("e", (50, 40), "embedding"),
                          ("q", (4, 100), "normal")])
    assert layout.size == 300 * 200 + 200 + 5 + 50 * 40 + 400
    flat = layout.init(np.random.RandomState(0), np.float32)
    assert flat.dtype == np.float32 and flat.shape == (layout.size,)
    views = layout.views(flat)
    assert list(views) == ["w", "b", "g", "e", "q"]
    for view in views.values():
        assert np.shares_memory(view, flat) and view.flags.c_contiguous
    bound = math.sqrt(6 / 500)
    assert np.abs(views["w"]).max() <= bound and np.abs(views["w"]).max() > 0.99 * bound
    assert abs(views["w"].std() - bound / math.sqrt(3)) < 0.01 * bound
    assert np.all(views["b"] == 0) and np.all(views["g"] == 1)
    assert np.all(views["e"][0] == 0)
    assert abs(views["e"][1:].std() - 0.02) < 0.002 and abs(views["q"].std() - 0.02) < 0.003
    views["b"][3] = 7.0
    assert flat[layout.slice("b")][3] == 7.0
    with pytest.raises(ValueError, match="duplicate"):
        layout.add("w", (1,), "zeros")
    with pytest.raises(ValueError, match="shape"):
        layout.views(flat[:-1])


def test_init_params_is_deterministic():
    config = make_config(n_layers=2, attention_score="additive", dtype=np.float32,
                         positional="learned", dropout=0.2)
    net = AttentionNetwork(config, BACKEND)
    a = net.init_params(np.random.RandomState(42))
    b = net.init_params(np.random.RandomState(42))
    c = net.init_params(np.random.RandomState(43))
    g1, g2 = net.init_params(np.random.default_rng(42)), net.init_params(np.random.default_rng(42))
    assert a.dtype == np.float32 and a.shape == (net.layout.size,)
    assert np.array_equal(a, b) and np.array_equal(g1, g2) and not np.array_equal(a, c)
    X = np.random.default_rng(0).standard_normal((N, L, N_FEATURES)).astype(np.float32)
    outs = [net.forward(a, X, MASK, training=True, random_state=np.random.RandomState(9))[0]
            for _ in range(2)]
    assert outs[0].dtype == np.float32 and np.array_equal(outs[0], outs[1])


def test_layout_names_and_sizes():
    config = make_config(n_layers=1, attention_score="general", positional="learned")
    layout = AttentionNetwork(config, BACKEND).layout
    dh = D // HEADS
    assert layout.shapes["layers.0.attn.qkv.weight"] == (D, 3 * D)
    assert layout.shapes["layers.0.attn.score.W"] == (dh, dh)
    assert layout.shapes["pool.score.W"] == (dh, dh)
    assert layout.shapes["pos.table"] == (L, D)
    assert "final_ln.gamma" in layout
    no_layers = AttentionNetwork(make_config(n_layers=0, pooling="mean"), BACKEND).layout
    assert "final_ln.gamma" not in no_layers and "pool.query" not in no_layers


def test_sinusoidal_positions_odd_width():
    table = sinusoidal_positions(4, 5)
    assert table.shape == (4, 5)
    np.testing.assert_allclose(table[0], [0, 1, 0, 1, 0])
    np.testing.assert_allclose(table[3, 4], math.sin(3 / 10000 ** (4 / 5)))


# --------------------------------------------------------------------- errors


def test_errors_have_clear_messages():
    with pytest.raises(ValueError, match="n_heads=3 must divide d_model=8"):
        make_config(n_heads=3)
    with pytest.raises(ValueError, match="attention_score"):
        make_config(attention_score="cosine")
    with pytest.raises(ValueError, match="dropout"):
        make_config(dropout=1.0)
    with pytest.raises(ValueError, match="length_scaling must be one of"):
        make_config(length_scaling="log")
    for reference in (0.0, -2.0, float("nan"), float("inf"), True, "3"):
        with pytest.raises(ValueError, match="length_reference must be a finite number > 0"):
            make_config(length_reference=reference)
    net, params, X, mask = make_case(make_config(input_kind="tokens"))
    bad = X.copy()
    bad[1, 2] = VOCAB
    with pytest.raises(ValueError, match=r"token id 7 is out of range.*\[0, 7\)"):
        net.predict(params, bad, mask)
    bad[1, 2] = -1
    with pytest.raises(ValueError, match="token id -1"):
        net.forward(params, bad, mask)
    net, params, X, mask = make_case(make_config(positional="learned"))
    long_X = np.zeros((1, L + 1, N_FEATURES))
    with pytest.raises(ValueError, match="max_len=5"):
        net.predict(params, long_X, np.ones((1, L + 1), bool))
    # Sinusoidal positions extend to any length.
    sin_net = AttentionNetwork(make_config(positional="sinusoidal"), BACKEND)
    out = sin_net.predict(sin_net.init_params(np.random.RandomState(0)), long_X,
                          np.ones((1, L + 1), bool))
    assert np.all(np.isfinite(out))
    with pytest.raises(ValueError, match="features per step"):
        net.predict(params, X[..., :2], mask)
    with pytest.raises(ValueError, match="mask must have shape"):
        net.predict(params, X, mask[:, :3])
    with pytest.raises(ValueError, match="params must have shape"):
        net.predict(params[:-1], X, mask)


# ------------------------------------------------------------------- training


def _marker_task(rng, n, max_len=10):
    """Label 1 iff the value 3.0 occurs among the real steps (noise in [-1, 1])."""
    lengths = rng.integers(3, max_len + 1, size=n)
    mask = np.arange(max_len)[None, :] < lengths[:, None]
    X = rng.uniform(-1, 1, size=(n, max_len, 1))
    y = rng.integers(0, 2, size=n)
    for i in np.flatnonzero(y):
        X[i, rng.integers(0, lengths[i]), 0] = 3.0
    return X.astype(np.float32), mask, y


def test_small_training_run_learns_marker_task():
    rng = np.random.default_rng(0)
    X, mask, y = _marker_task(rng, 256)
    X_test, mask_test, y_test = _marker_task(rng, 200)
    config = NetworkConfig(input_kind="values", n_inputs=1, max_len=10, d_model=16, n_heads=2,
                           n_layers=1, d_ff=32, attention_score="scaled_dot",
                           positional="sinusoidal", pooling="attention", dropout=0.1,
                           n_outputs=2, dtype=np.float32)
    net = AttentionNetwork(config, BACKEND)
    params = net.init_params(np.random.RandomState(0))
    m, v = np.zeros_like(params), np.zeros_like(params)
    state = np.random.RandomState(1)
    weights = np.ones(64, dtype=np.float32)
    for step in range(1, 201):
        batch = state.choice(len(y), 64, replace=False)
        out, cache = net.forward(params, X[batch], mask[batch], training=True,
                                 random_state=state)
        grad_out = np.empty_like(out)
        BACKEND.softmax_cross_entropy(out, y[batch], weights, grad_out)
        grads = net.backward(params, cache, grad_out)
        assert grads.dtype == np.float32
        BACKEND.adam_step(params, grads, m, v, step, 3e-3, 0.9, 0.999, 1e-8, 0.0, False)
    accuracy = np.mean(net.predict(params, X_test, mask_test).argmax(1) == y_test)
    assert accuracy >= 0.9, accuracy


def test_trailing_padding_is_trimmed_without_changing_any_output(monkeypatch):
    """A batch runs at its longest sequence's length; results keep the given length."""
    import skattention._nn._network as network

    config = make_config(n_layers=2, max_len=9, positional="learned")
    lengths = np.array([4, 6, 0, 2])
    mask = np.arange(9)[None, :] < lengths[:, None]
    net, params, X, _ = make_case(config, mask=mask)
    seen = []
    real_inputs = net._inputs
    monkeypatch.setattr(net, "_inputs", lambda X, m: seen.append(m.shape) or real_inputs(X, m))
    output, cache = net.forward(params, X, mask)
    grad = net.backward(params, cache, np.ones((4, config.n_outputs)))
    pooling, layers = net.explain(params, X, mask, all_layers=True)
    assert seen[0] == (4, 6)  # trimmed to the longest sequence
    assert pooling.shape == (4, HEADS, 9) and layers[0].shape == (4, HEADS, 9, 9)
    monkeypatch.setattr(network, "_trim_padding", lambda X, m: (X, m))
    output_full, cache_full = net.forward(params, X, mask)
    np.testing.assert_allclose(output, output_full, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, net.backward(params, cache_full, np.ones((4, 2))),
                               rtol=1e-11, atol=1e-12)
    pooling_full, layers_full = net.explain(params, X, mask, all_layers=True)
    np.testing.assert_allclose(pooling, pooling_full, rtol=1e-12, atol=1e-12)
    for a, b in zip(layers, layers_full):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
