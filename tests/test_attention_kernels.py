"""Properties of the Numba attention kernels: serial == parallel, invariants."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference
from skattention import functional as F
from skattention._backend import _cpu_additive as additive
from skattention._backend import _cpu_attention as attn
from skattention._backend._cpu import CPUBackend
from skattention._backend._threads import kernel_threads


def _dot_outputs(q, k, v, mask, causal, run, skip_queries=False, grad_context=None):
    scale = q.dtype.type(0.5)
    context = np.empty(q.shape[:3] + (v.shape[3],), q.dtype)
    weights = np.empty(q.shape[:3] + (k.shape[2],), q.dtype)
    lse = np.empty(q.shape[:3], q.dtype)
    run("forward", q, k, v, mask, causal, scale, context, weights, True, lse, skip_queries)
    if grad_context is None:
        grad_context = np.cos(np.arange(context.size, dtype=q.dtype)).reshape(context.shape)
    if skip_queries:
        grad_context = grad_context * mask[:, None, :, None]  # the caller's guarantee
    grads = [np.empty_like(q), np.empty_like(k), np.empty_like(v)]
    run("backward", q, k, v, mask, causal, scale, weights, True, lse, grad_context, *grads,
        skip_queries)
    recomputed = [np.empty_like(q), np.empty_like(k), np.empty_like(v)]
    run("backward", q, k, v, mask, causal, scale, weights[:1, :1, :1, :1].copy(), False, lse,
        grad_context, *recomputed, skip_queries)
    return [context, weights, lse, *grads, *recomputed]


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("causal", [False, True])
def test_skipping_padded_queries_keeps_real_rows_and_zeroes_padded_ones(rng, build, causal):
    """Self-attention over trailing padding: padded query rows are skipped, nothing else moves."""
    length = 70  # two query blocks
    q, k, v = (rng.normal(size=(4, 2, length, 3)) for _ in range(3))
    lengths = np.array([length, 5, 0, 66])
    mask = np.arange(length)[None, :] < lengths[:, None]
    run = _runner("dot", build, 2)
    grad_context = np.cos(np.arange(q.size)).reshape(q.shape) * mask[:, None, :, None]
    full = _dot_outputs(q, k, v, mask, causal, run, grad_context=grad_context)
    skipped = _dot_outputs(q, k, v, mask, causal, run, skip_queries=True,
                           grad_context=grad_context)
    real = np.broadcast_to(mask[:, None, :], q.shape[:3])
    # context, weights, lse, dQ (stored and recomputed): real rows equal, padded rows 0.
    for i in (0, 1, 2, 3, 6):
        np.testing.assert_allclose(skipped[i][real], full[i][real], rtol=1e-12, atol=1e-12)
        assert np.all(skipped[i][~real] == 0)
    # dK, dV: padded queries (dO = 0 there) contributed nothing in the full pass either.
    for i in (4, 5, 7, 8):
        np.testing.assert_allclose(skipped[i], full[i], rtol=1e-12, atol=1e-12)


def _additive_outputs(q, k, v, mask, causal, run):
    score_vector = np.linspace(-1, 1, q.shape[3]).astype(q.dtype)
    one = q.dtype.type(1)
    context = np.empty(q.shape[:3] + (v.shape[3],), q.dtype)
    weights = np.empty(q.shape[:3] + (k.shape[2],), q.dtype)
    lse = np.empty(q.shape[:3], q.dtype)
    run("forward", q, k, score_vector, v, mask, causal, one, context, weights, lse)
    grad_context = np.sin(np.arange(context.size, dtype=q.dtype)).reshape(context.shape)
    grads = [np.empty_like(q), np.empty_like(k), np.empty_like(v),
             np.empty(q.shape[:2] + (q.shape[3],), q.dtype)]
    run("backward", q, k, score_vector, v, mask, causal, one, weights, grad_context, *grads)
    return [context, weights, lse, *grads]


KERNELS = {
    "dot": (_dot_outputs, {
        ("forward", "serial"): attn.dot_attention_forward_serial,
        ("forward", "parallel"): attn.dot_attention_forward_parallel,
        ("backward", "serial"): attn.dot_attention_backward_serial,
        ("backward", "parallel"): attn.dot_attention_backward_parallel,
    }),
    "additive": (_additive_outputs, {
        ("forward", "serial"): additive.additive_attention_forward_serial,
        ("forward", "parallel"): additive.additive_attention_forward_parallel,
        ("backward", "serial"): additive.additive_attention_backward_serial,
        ("backward", "parallel"): additive.additive_attention_backward_parallel,
    }),
}


def _runner(family, build, n_threads):
    table = KERNELS[family][1]

    def run(direction, *args):
        kernel = table[(direction, build)]
        with kernel_threads(n_threads) as used:
            if build == "parallel":
                kernel(*args, used)
            else:
                kernel(*args)

    return run


@pytest.mark.parametrize("family", ["dot", "additive"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n_queries", [6, 70])
def test_serial_equals_parallel_bitwise_for_one_and_two_threads(
        rng, family, dtype, causal, n_queries):
    q = rng.normal(size=(5, 3, n_queries, 4)).astype(dtype)
    k = rng.normal(size=(5, 3, 9, 4)).astype(dtype)
    v = rng.normal(size=(5, 3, 9, 2)).astype(dtype)
    mask = rng.random((5, 9)) < 0.7
    mask[2] = False
    mask[3, 4:] = False
    mask[4] = True
    outputs = KERNELS[family][0]
    serial = outputs(q, k, v, mask, causal, _runner(family, "serial", 1))
    for n_threads in (1, 2):
        parallel = outputs(q, k, v, mask, causal, _runner(family, "parallel", n_threads))
        for a, b in zip(serial, parallel):
            np.testing.assert_array_equal(a, b)


def test_backend_thread_count_does_not_change_results(rng):
    q = rng.normal(size=(4, 2, 8, 4)).astype(np.float32)
    mask = rng.random((4, 8)) < 0.8
    results = []
    for n_threads in (1, 2):
        backend = CPUBackend(n_threads=n_threads)
        context = np.empty_like(q)
        weights = np.empty((4, 2, 8, 8), np.float32)
        lse = np.empty((4, 2, 8), np.float32)
        backend.dot_attention_forward(q, q, q, mask, False, np.float32(0.5), context, weights,
                                      lse)
        results.append((context, weights))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_kernel_threads_restores_numba_threads_after_an_error():
    import numba

    before = numba.get_num_threads()
    with pytest.raises(RuntimeError):
        with kernel_threads(1):
            assert numba.get_num_threads() == 1
            raise RuntimeError("boom")
    assert numba.get_num_threads() == before


@st.composite
def attention_case(draw):
    batch = draw(st.integers(1, 3))
    heads = draw(st.integers(1, 2))
    n_queries = draw(st.integers(1, 5))
    n_keys = draw(st.integers(1, 6))
    width = draw(st.integers(1, 4))
    value_width = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    magnitude = draw(st.sampled_from([1.0, 1e2, 1e4]))
    score = draw(st.sampled_from(["dot", "scaled_dot", "general", "additive"]))
    causal = draw(st.booleans())
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(seed)
    q = (rng.normal(size=(batch, heads, n_queries, width)) * magnitude).astype(dtype)
    k = rng.normal(size=(batch, heads, n_keys, width)).astype(dtype)
    v = rng.normal(size=(batch, heads, n_keys, value_width)).astype(dtype)
    mask = rng.random((batch, n_keys)) < draw(st.sampled_from([0.0, 0.5, 1.0]))
    params = None
    if score == "general":
        params = {"W": rng.normal(size=(width, width)).astype(dtype)}
    elif score == "additive":
        params = {"W_q": rng.normal(size=(width, 2)).astype(dtype),
                  "W_k": rng.normal(size=(width, 2)).astype(dtype),
                  "v": rng.normal(size=2).astype(dtype)}
    return q, k, v, mask, score, causal, params


@given(attention_case())
def test_weights_are_a_distribution_over_visible_keys(case):
    q, k, v, mask, score, causal, params = case
    context, weights = F.attention(q, k, v, mask, score=score, causal=causal,
                                   score_params=params)
    assert np.isfinite(context).all() and np.isfinite(weights).all()
    visible = np.broadcast_to(reference.visible_mask(mask, q.shape[2], causal), weights.shape)
    assert np.all(weights[~visible] == 0.0)
    assert np.all(weights >= 0.0)
    sums = weights.sum(-1)
    has_key = visible.any(-1)
    np.testing.assert_allclose(sums[has_key], 1.0, rtol=1e-5)
    assert np.all(sums[~has_key] == 0.0)
    assert np.all(context[~has_key] == 0.0)
    grads = F.attention_backward(q, k, v, weights, np.ones_like(context), mask, score=score,
                                 causal=causal, score_params=params)
    assert all(np.isfinite(g).all() for g in grads[:3])
    assert all(np.isfinite(g).all() for g in grads.score_params.values())


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n_queries", [5, 70])
def test_training_path_without_stored_weights_matches_the_oracle(rng, causal, n_queries):
    batch, heads, n_keys, width = 3, 2, n_queries, 4
    q = rng.normal(size=(batch, heads, n_queries, width))
    k = rng.normal(size=(batch, heads, n_keys, width))
    v = rng.normal(size=(batch, heads, n_keys, 3))
    mask = rng.random((batch, n_keys)) < 0.7
    mask[0] = True
    mask[1] = False
    backend = CPUBackend(n_threads=2)
    scale = np.float64(1 / np.sqrt(width))
    context = np.empty(q.shape[:3] + (3,))
    lse = np.empty(q.shape[:3])
    backend.dot_attention_forward(q, k, v, mask, causal, scale, context, None, lse)
    ref_context, ref_weights = reference.attention(q, k, v, mask, "scaled_dot", causal)
    np.testing.assert_allclose(context, ref_context, rtol=1e-10, atol=1e-12)
    grad_context = rng.normal(size=context.shape)
    grads = [np.empty_like(q), np.empty_like(k), np.empty_like(v)]
    backend.dot_attention_backward(q, k, v, mask, causal, scale, None, lse, grad_context,
                                   *grads)
    expected = reference.attention_backward(q, k, v, ref_weights, grad_context, mask,
                                            "scaled_dot", causal)
    for got, want in zip(grads, expected[:3]):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("family", ["dot", "additive"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_kernels_read_and_write_strided_head_views(rng, family, n_threads):
    """Heads viewed in place in packed token rows give the contiguous results bitwise."""
    batch, heads, length, width = 3, 2, 70, 4
    backend = CPUBackend(n_threads=n_threads)
    shape = (batch, heads, length, width)
    packed = rng.normal(size=(batch * length, 3 * heads * width)).astype(np.float32)
    q, k, v = (backend.heads_of(packed, shape, j * heads * width) for j in range(3))
    assert not q.flags.c_contiguous
    mask = rng.random((batch, length)) < 0.8
    mask[0, 40:] = False  # trailing padding: keys sliced in place
    mask[1] = False
    run = _runner(family, "parallel" if n_threads > 1 else "serial", n_threads)
    outputs = KERNELS[family][0]
    contiguous = outputs(*(np.ascontiguousarray(x) for x in (q, k, v)), mask, False, run)
    strided = outputs(q, k, v, mask, False, run)
    for got, want in zip(strided, contiguous):
        np.testing.assert_array_equal(got, want)
