"""skattention.functional against the NumPy oracle and finite differences."""

import numpy as np
import pytest

import reference
from skattention import functional as F

SCORES = ["dot", "scaled_dot", "general", "additive"]
MASKS = ["none", "trailing", "random", "empty_row"]


def make_score_params(score, width, rng, hidden=3, dtype=np.float64):
    if score == "general":
        return {"W": rng.normal(size=(width, width)).astype(dtype)}
    if score == "additive":
        return {
            "W_q": rng.normal(size=(width, hidden)).astype(dtype),
            "W_k": rng.normal(size=(width, hidden)).astype(dtype),
            "v": rng.normal(size=hidden).astype(dtype),
        }
    return None


def make_mask(kind, batch, n_keys, rng):
    if kind == "none":
        return None
    mask = np.ones((batch, n_keys), dtype=bool)
    if kind == "trailing":
        for b in range(batch):
            mask[b, rng.integers(1, n_keys + 1):] = False
    elif kind == "random":
        mask = rng.random((batch, n_keys)) < 0.6
        mask[:, 0] = True
    elif kind == "empty_row":
        mask[0] = False
        if batch > 1:
            mask[1, n_keys // 2:] = False
    return mask


def make_inputs(rng, batch=3, heads=2, n_queries=5, n_keys=7, width=4, value_width=6,
                dtype=np.float64):
    q = rng.normal(size=(batch, heads, n_queries, width)).astype(dtype)
    k = rng.normal(size=(batch, heads, n_keys, width)).astype(dtype)
    v = rng.normal(size=(batch, heads, n_keys, value_width)).astype(dtype)
    return q, k, v


@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("mask_kind", MASKS)
@pytest.mark.parametrize("causal", [False, True])
def test_forward_and_backward_match_reference_float64(rng, score, mask_kind, causal):
    q, k, v = make_inputs(rng, n_queries=7)
    mask = make_mask(mask_kind, q.shape[0], k.shape[2], rng)
    params = make_score_params(score, q.shape[3], rng)
    context, weights = F.attention(q, k, v, mask, score=score, causal=causal,
                                   score_params=params)
    ref_context, ref_weights = reference.attention(q, k, v, mask, score, causal, params)
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(context, ref_context, rtol=1e-10, atol=1e-12)

    grad_context = rng.normal(size=context.shape)
    grads = F.attention_backward(q, k, v, weights, grad_context, mask, score=score,
                                 causal=causal, score_params=params)
    ref = reference.attention_backward(q, k, v, ref_weights, grad_context, mask, score,
                                       causal, params)
    for got, expected in zip(grads[:3], ref[:3]):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    assert set(grads.score_params) == set(ref[3])
    for name in ref[3]:
        np.testing.assert_allclose(grads.score_params[name], ref[3][name], rtol=1e-10,
                                   atol=1e-12)


@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("causal", [False, True])
def test_float32_matches_reference(rng, score, causal):
    q, k, v = make_inputs(rng, dtype=np.float32)
    mask = make_mask("random", q.shape[0], k.shape[2], rng)
    params = make_score_params(score, q.shape[3], rng, dtype=np.float32)
    context, weights = F.attention(q, k, v, mask, score=score, causal=causal,
                                   score_params=params)
    assert context.dtype == np.float32 and weights.dtype == np.float32
    ref_context, ref_weights = reference.attention(q, k, v, mask, score, causal, params)
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(context, ref_context, rtol=1e-5, atol=1e-5)
    grad_context = rng.normal(size=context.shape).astype(np.float32)
    grads = F.attention_backward(q, k, v, weights, grad_context, mask, score=score,
                                 causal=causal, score_params=params)
    ref = reference.attention_backward(q, k, v, ref_weights, grad_context, mask, score,
                                       causal, params)
    for got, expected in zip(grads[:3], ref[:3]):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    for name in ref[3]:
        assert grads.score_params[name].dtype == np.float32
        np.testing.assert_allclose(grads.score_params[name], ref[3][name], rtol=1e-5,
                                   atol=1e-4)


def _loss(q, k, v, mask, score, causal, params, probe):
    context, _ = F.attention(q, k, v, mask, score=score, causal=causal, score_params=params)
    return float((context * probe).sum())


@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("mask_kind", ["none", "random", "empty_row"])
@pytest.mark.parametrize("causal", [False, True])
def test_gradients_match_finite_differences(rng, score, mask_kind, causal):
    q, k, v = make_inputs(rng, batch=2, heads=2, n_queries=4, n_keys=5, width=3,
                          value_width=2)
    mask = make_mask(mask_kind, q.shape[0], k.shape[2], rng)
    params = make_score_params(score, q.shape[3], rng) or {}
    context, weights = F.attention(q, k, v, mask, score=score, causal=causal,
                                   score_params=params or None)
    probe = rng.normal(size=context.shape)
    grads = F.attention_backward(q, k, v, weights, probe, mask, score=score, causal=causal,
                                 score_params=params or None)
    inputs = {"query": q, "key": k, "value": v, **{f"p_{n}": a for n, a in params.items()}}
    analytic = {"query": grads.query, "key": grads.key, "value": grads.value,
                **{f"p_{n}": g for n, g in grads.score_params.items()}}
    eps = 1e-6
    for name, array in inputs.items():
        for _ in range(3):
            direction = rng.normal(size=array.shape)
            shifted = {}
            for sign in (1, -1):
                moved = dict(inputs)
                moved[name] = array + sign * eps * direction
                p = {n[2:]: a for n, a in moved.items() if n.startswith("p_")} or None
                shifted[sign] = _loss(moved["query"], moved["key"], moved["value"], mask,
                                      score, causal, p, probe)
            numeric = (shifted[1] - shifted[-1]) / (2 * eps)
            exact = float((analytic[name] * direction).sum())
            assert numeric == pytest.approx(exact, rel=1e-6, abs=1e-8), name


def test_padded_keys_get_exactly_zero_weight_and_gradient(rng):
    q, k, v = make_inputs(rng)
    mask = make_mask("random", q.shape[0], k.shape[2], rng)
    context, weights = F.attention(q, k, v, mask)
    padded = ~mask[:, None, None, :]
    assert np.all(weights[np.broadcast_to(padded, weights.shape)] == 0.0)
    grads = F.attention_backward(q, k, v, weights, np.ones_like(context), mask)
    key_padded = np.broadcast_to(~mask[:, None, :, None], grads.key.shape)
    assert np.all(grads.key[key_padded] == 0.0)
    assert np.all(grads.value[np.broadcast_to(~mask[:, None, :, None], grads.value.shape)]
                  == 0.0)


def test_fully_masked_row_gives_zero_weights_and_context_not_nan(rng):
    q, k, v = make_inputs(rng)
    mask = np.ones((q.shape[0], k.shape[2]), dtype=bool)
    mask[1] = False
    context, weights = F.attention(q, k, v, mask, score="additive",
                                   score_params=make_score_params("additive", 4, rng))
    assert np.all(weights[1] == 0.0) and np.all(context[1] == 0.0)
    assert np.isfinite(context).all()
    np.testing.assert_allclose(weights[0].sum(-1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("magnitude", [1e4, -1e4])
def test_extreme_logits_stay_finite(rng, dtype, magnitude):
    q, k, v = make_inputs(rng, dtype=dtype)
    q = (q * magnitude).astype(dtype)
    context, weights = F.attention(q, k, v, score="dot")
    assert np.isfinite(context).all() and np.isfinite(weights).all()
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    grads = F.attention_backward(q, k, v, weights, np.ones_like(context), score="dot")
    assert all(np.isfinite(g).all() for g in grads[:3])


def test_causal_top_left_alignment(rng):
    q, k, v = make_inputs(rng, n_queries=4, n_keys=6)
    _, weights = F.attention(q, k, v, causal=True)
    upper = np.triu(np.ones((4, 6), dtype=bool), k=1)
    assert np.all(weights[..., upper] == 0.0)
    assert np.all(weights[..., ~upper] > 0.0)


def test_sequence_alone_equals_sequence_padded_in_batch(rng):
    q, k, v = make_inputs(rng, batch=1, n_keys=4)
    alone, _ = F.attention(q, k, v)
    pad = 5
    k_big = np.concatenate([k, rng.normal(size=(1, 2, pad, 4))], axis=2)
    v_big = np.concatenate([v, rng.normal(size=(1, 2, pad, 6))], axis=2)
    mask = np.zeros((1, 4 + pad), dtype=bool)
    mask[0, :4] = True
    padded, weights = F.attention(q, k_big, v_big, mask)
    np.testing.assert_allclose(padded, alone, rtol=1e-13, atol=1e-15)
    assert np.all(weights[..., 4:] == 0.0)


def test_integer_input_computes_in_float64_and_mixed_float32_promotes(rng):
    q = rng.integers(-3, 3, size=(1, 1, 2, 3))
    context, weights = F.attention(q, q, q)
    assert context.dtype == np.float64
    q32 = q.astype(np.float32)
    context, _ = F.attention(q32, q32, q.astype(np.float64))
    assert context.dtype == np.float64


def test_non_contiguous_and_read_only_inputs(rng):
    q, k, v = make_inputs(rng, n_keys=10)
    expected = F.attention(q, k, v)
    q_f = np.asfortranarray(q)
    k_ro = k.copy()
    k_ro.setflags(write=False)
    v_strided = np.repeat(v, 2, axis=3)[..., ::2]
    assert not v_strided.flags.c_contiguous
    got = F.attention(q_f, k_ro, v_strided)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(query=np.zeros((2, 3, 4))), ValueError, "query must be a 4-D array"),
        (dict(key=np.zeros((2, 1, 5, 3))), ValueError, "key must have shape"),
        (dict(value=np.zeros((2, 1, 4, 6))), ValueError, "value must have shape"),
        (dict(query=np.full((2, 1, 3, 4), np.nan)), ValueError, "query contains NaN"),
        (dict(value=np.full((2, 1, 5, 6), np.inf)), ValueError, "value contains NaN or inf"),
        (dict(query=np.zeros((2, 1, 3, 4), dtype=object)), TypeError, "real numeric"),
        (dict(key_mask=np.ones((2, 4), dtype=bool)), ValueError, r"key_mask must have shape"),
        (dict(key_mask=np.ones((2, 5))), TypeError, "key_mask must be a boolean"),
        (dict(score="cosine"), ValueError, "score must be one of"),
        (dict(score="general"), ValueError, r"missing \['W'\]"),
        (dict(score="dot", score_params={"W": np.eye(4)}), ValueError, r"unexpected \['W'\]"),
        (dict(score="general", score_params={"W": np.eye(3)}), ValueError, r"\(D, D\)"),
        (dict(score="additive", score_params={"W_q": np.ones((4, 2)), "W_k": np.ones((4, 3)),
                                              "v": np.ones(3)}), ValueError, "W_q"),
        (dict(causal="yes"), TypeError, "causal must be a bool"),
        (dict(query=np.zeros((2, 1, 0, 4))), ValueError, "non-empty"),
    ],
)
def test_bad_input_gets_a_clear_error(kwargs, error, match):
    args = dict(query=np.zeros((2, 1, 3, 4)), key=np.zeros((2, 1, 5, 4)),
                value=np.zeros((2, 1, 5, 6)))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        F.attention(**args)


def test_backward_checks_weights_and_grad_shapes(rng):
    q, k, v = make_inputs(rng)
    context, weights = F.attention(q, k, v)
    with pytest.raises(ValueError, match="weights must have shape"):
        F.attention_backward(q, k, v, weights[:, :, :2], context)
    with pytest.raises(ValueError, match="grad_context must have shape"):
        F.attention_backward(q, k, v, weights, context[..., :2])


@pytest.mark.parametrize("mask_kind", ["none", "trailing", "random"])
@pytest.mark.parametrize("causal", [False, True])
def test_query_blocks_larger_than_one_block_match_reference(rng, mask_kind, causal):
    from skattention._backend._cpu_attention import QUERY_BLOCK

    n_queries = 2 * QUERY_BLOCK + 3
    q, k, v = make_inputs(rng, batch=2, heads=1, n_queries=n_queries, n_keys=n_queries)
    mask = make_mask(mask_kind, 2, n_queries, rng)
    context, weights = F.attention(q, k, v, mask, causal=causal)
    ref_context, ref_weights = reference.attention(q, k, v, mask, "scaled_dot", causal)
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(context, ref_context, rtol=1e-10, atol=1e-12)
    grad_context = rng.normal(size=context.shape)
    grads = F.attention_backward(q, k, v, weights, grad_context, mask, causal=causal)
    ref = reference.attention_backward(q, k, v, ref_weights, grad_context, mask,
                                       "scaled_dot", causal)
    for got, expected in zip(grads[:3], ref[:3]):
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-11)
