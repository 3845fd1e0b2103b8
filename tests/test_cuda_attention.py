"""The numba.cuda attention kernels against the CPU backend, on the same inputs.

Runs wherever ``numba.cuda.is_available()`` (a GPU, or the CUDA simulator:
``NUMBA_ENABLE_CUDASIM=1`` set before numba is imported). The CPU backend is
itself checked against the numpy oracle in ``tests/reference.py``. Block and
tile sizes are shrunk so that the small arrays still span several blocks and
tiles (the simulator runs one OS thread per CUDA thread).
"""

import numpy as np
import pytest

try:
    from numba import cuda
except ImportError:  # pragma: no cover - numba-cuda not installed
    cuda = None

if cuda is None or not cuda.is_available():
    pytest.skip("numba.cuda is not available (no GPU and no simulator)",
                allow_module_level=True)

from skattention._backend import _cuda_attention as cuda_attn  # noqa: E402
from skattention._backend._cpu import CPUBackend  # noqa: E402

CPU = CPUBackend(n_threads=1)
OPS = cuda_attn.CUDAAttentionOps()
TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-9, atol=1e-11)}


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Tiny blocks and tiles, so that every multi-block and multi-tile path runs."""
    monkeypatch.setattr(cuda_attn, "THREADS", 4)
    monkeypatch.setattr(cuda_attn, "TILE", 3)
    monkeypatch.setattr(cuda_attn, "POOL_THREADS", 4)
    monkeypatch.setattr(cuda_attn, "REDUCE_THREADS", 4)


def _mask(batch, n_keys, rng):
    """Rows: all real, interior and trailing padding, all padded (row 2)."""
    mask = np.ones((batch, n_keys), dtype=bool)
    if batch > 1 and n_keys > 1:
        mask[1, rng.permutation(n_keys)[: n_keys // 2]] = False
        mask[1, 0] = True
    if batch > 2:
        mask[2] = False
    return mask


def _nan_device(shape, dtype):
    """An output buffer full of NaN: any element a kernel skips shows up."""
    return cuda.to_device(np.full(shape, np.nan, dtype=dtype))


def _assert_close(got, expected, dtype, name):
    got = got.copy_to_host() if hasattr(got, "copy_to_host") else got
    assert np.all(np.isfinite(got)), f"{name} has non-finite entries"
    np.testing.assert_allclose(got, expected, err_msg=name, **TOL[dtype])


def _random(rng, shape, dtype, magnitude=1.0):
    return (magnitude * rng.standard_normal(shape)).astype(dtype)


def _check_dot(rng, shape, causal, store, dtype, magnitude=1.0, mask=None):
    batch, heads, n_queries, n_keys, width, value_width = shape
    q = _random(rng, (batch, heads, n_queries, width), dtype, magnitude)
    k = _random(rng, (batch, heads, n_keys, width), dtype, magnitude)
    v = _random(rng, (batch, heads, n_keys, value_width), dtype)
    mask = _mask(batch, n_keys, rng) if mask is None else mask
    scale = 0.5
    out_shape = (batch, heads, n_queries)
    context = np.empty(out_shape + (value_width,), dtype)
    weights = np.empty(out_shape + (n_keys,), dtype)
    lse = np.empty(out_shape, dtype)
    CPU.dot_attention_forward(q, k, v, mask, causal, dtype(scale), context, weights, lse)

    dev = [cuda.to_device(a) for a in (q, k, v, mask)]
    d_context = _nan_device(context.shape, dtype)
    d_weights = _nan_device(weights.shape, dtype) if store else None
    d_lse = _nan_device(lse.shape, dtype)
    OPS.dot_attention_forward(*dev, causal, scale, d_context, d_weights, d_lse)
    _assert_close(d_context, context, dtype, "context")
    _assert_close(d_lse, lse, dtype, "log_sum_exp")
    if store:
        _assert_close(d_weights, weights, dtype, "weights")

    grad_context = _random(rng, context.shape, dtype)
    grads = [np.empty_like(q), np.empty_like(k), np.empty_like(v)]
    CPU.dot_attention_backward(q, k, v, mask, causal, dtype(scale), weights, lse,
                               grad_context, *grads)
    d_grads = [_nan_device(g.shape, dtype) for g in grads]
    OPS.dot_attention_backward(*dev, causal, scale, d_weights, d_lse,
                               cuda.to_device(grad_context), *d_grads)
    for name, got, expected in zip(("grad_q", "grad_k", "grad_v"), d_grads, grads):
        _assert_close(got, expected, dtype, name)
    return mask, d_context.copy_to_host(), d_lse.copy_to_host(), d_grads


# (B, H, Lq, Lk, D, Dv); with 4 threads and 3-row tiles, Lq = 6 spans two
# blocks and Lk = 7 three tiles (the last one partial).
MULTI_BLOCK = (3, 1, 6, 7, 4, 3)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("store", [True, False])
def test_dot_attention_matches_cpu_float32(rng, causal, store):
    mask, context, lse, grads = _check_dot(rng, MULTI_BLOCK, causal, store, np.float32)
    # Sequence 2 has no real key: zeros, never NaN.
    assert not mask[2].any()
    assert np.all(context[2] == 0) and np.all(lse[2] == 0)
    for grad in grads:
        assert np.all(grad.copy_to_host()[2] == 0)


@pytest.mark.parametrize("causal", [False, True])
def test_dot_attention_more_keys_than_queries(rng, causal):
    _check_dot(rng, (2, 2, 3, 9, 2, 2), causal, False, np.float32)


@pytest.mark.parametrize("causal", [False, True])
def test_dot_attention_one_position(rng, causal):
    _check_dot(rng, (2, 1, 1, 1, 2, 2), causal, True, np.float32,
               mask=np.array([[True], [False]]))


def test_dot_attention_matches_cpu_float64(rng):
    _check_dot(rng, (3, 2, 5, 4, 3, 2), True, False, np.float64)


@pytest.mark.parametrize("causal", [False, True])
def test_huge_logits_stay_finite(rng, causal):
    # |q . k| * scale reaches ~1e4: a naive exp() would overflow.
    _check_dot(rng, (2, 1, 6, 5, 1, 2), causal, True, np.float32, magnitude=140.0)


def test_results_are_bitwise_reproducible(rng):
    shape = (2, 1, 5, 6, 3, 2)
    first = _check_dot(np.random.default_rng(7), shape, True, False, np.float32)
    second = _check_dot(np.random.default_rng(7), shape, True, False, np.float32)
    for a, b in zip(first[3], second[3]):
        assert np.array_equal(a.copy_to_host(), b.copy_to_host())


def _check_additive(rng, shape, causal, dtype, mask=None):
    batch, heads, n_queries, n_keys, width, value_width = shape
    qp = _random(rng, (batch, heads, n_queries, width), dtype)
    kp = _random(rng, (batch, heads, n_keys, width), dtype)
    score_vector = _random(rng, (width,), dtype)
    v = _random(rng, (batch, heads, n_keys, value_width), dtype)
    mask = _mask(batch, n_keys, rng) if mask is None else mask
    scale = 1.5
    out_shape = (batch, heads, n_queries)
    context = np.empty(out_shape + (value_width,), dtype)
    weights = np.empty(out_shape + (n_keys,), dtype)
    lse = np.empty(out_shape, dtype)
    CPU.additive_attention_forward(qp, kp, score_vector, v, mask, causal, dtype(scale),
                                   context, weights, lse)
    dev = [cuda.to_device(a) for a in (qp, kp, score_vector, v, mask)]
    d_out = [_nan_device(a.shape, dtype) for a in (context, weights, lse)]
    OPS.additive_attention_forward(*dev, causal, scale, *d_out)
    for name, got, expected in zip(("context", "weights", "lse"), d_out,
                                   (context, weights, lse)):
        _assert_close(got, expected, dtype, name)

    grad_context = _random(rng, context.shape, dtype)
    grads = [np.empty_like(qp), np.empty_like(kp), np.empty_like(v),
             np.empty((batch, heads, width), dtype)]
    CPU.additive_attention_backward(qp, kp, score_vector, v, mask, causal, dtype(scale),
                                    weights, grad_context, *grads)
    d_grads = [_nan_device(g.shape, dtype) for g in grads]
    OPS.additive_attention_backward(*dev, causal, scale, d_out[1],
                                    cuda.to_device(grad_context), *d_grads)
    names = ("grad_query_proj", "grad_key_proj", "grad_v", "grad_score_vector")
    for name, got, expected in zip(names, d_grads, grads):
        _assert_close(got, expected, dtype, name)


@pytest.mark.parametrize("causal", [False, True])
def test_additive_attention_matches_cpu_float32(rng, causal):
    _check_additive(rng, (3, 2, 5, 7, 3, 2), causal, np.float32)


def test_additive_attention_one_position_and_float64(rng):
    _check_additive(rng, (2, 1, 1, 1, 3, 2), True, np.float32,
                    mask=np.array([[True], [False]]))
    _check_additive(rng, (3, 1, 5, 4, 2, 2), False, np.float64)


def _check_pooling(rng, shape, scale, dtype, magnitude=1.0, mask=None):
    batch, heads, n_positions, width, value_width = shape
    keys = _random(rng, (batch, heads, n_positions, width), dtype, magnitude)
    values = _random(rng, (batch, heads, n_positions, value_width), dtype)
    query = _random(rng, (heads, width), dtype, magnitude)
    mask = _mask(batch, n_positions, rng) if mask is None else mask
    context = np.empty((batch, heads, value_width), dtype)
    weights = np.empty((batch, heads, n_positions), dtype)
    CPU.attention_pooling_forward(keys, values, query, mask, scale, context, weights)
    dev = [cuda.to_device(a) for a in (keys, values, query, mask)]
    d_context = _nan_device(context.shape, dtype)
    d_weights = _nan_device(weights.shape, dtype)
    OPS.attention_pooling_forward(*dev, scale, d_context, d_weights)
    _assert_close(d_context, context, dtype, "context")
    _assert_close(d_weights, weights, dtype, "weights")

    grad_context = _random(rng, context.shape, dtype)
    grads = [np.empty_like(keys), np.empty_like(values), np.empty_like(query)]
    CPU.attention_pooling_backward(keys, values, query, mask, scale, weights, grad_context,
                                   *grads)
    d_grads = [_nan_device(g.shape, dtype) for g in grads]
    OPS.attention_pooling_backward(*dev, scale, d_weights, cuda.to_device(grad_context),
                                   *d_grads)
    for name, got, expected in zip(("grad_keys", "grad_values", "grad_query"), d_grads,
                                   grads):
        _assert_close(got, expected, dtype, name)
    if batch > 2:
        assert np.all(d_weights.copy_to_host()[2] == 0)
        assert np.all(d_context.copy_to_host()[2] == 0)


@pytest.mark.parametrize("scale", [0.5, -0.7])
def test_attention_pooling_matches_cpu_float32(rng, scale):
    _check_pooling(rng, (3, 2, 9, 4, 3), scale, np.float32)


def test_attention_pooling_edge_cases(rng):
    _check_pooling(rng, (2, 1, 1, 2, 2), 0.5, np.float32, mask=np.array([[True], [False]]))
    _check_pooling(rng, (2, 2, 6, 1, 2), 1.0, np.float32, magnitude=100.0)
    _check_pooling(rng, (3, 1, 5, 3, 2), 0.5, np.float64)


def test_widths_above_max_head_dim_are_rejected():
    width = cuda_attn.MAX_HEAD_DIM + 1
    q = cuda.device_array((1, 1, 2, width), dtype=np.float32)
    v = cuda.device_array((1, 1, 2, 2), dtype=np.float32)
    mask = cuda.to_device(np.ones((1, 2), dtype=bool))
    out = cuda.device_array((1, 1, 2, 2), dtype=np.float32)
    lse = cuda.device_array((1, 1, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="MAX_HEAD_DIM"):
        OPS.dot_attention_forward(q, q, v, mask, False, 1.0, out, None, lse)


def test_additive_attention_requires_weights():
    qp = cuda.device_array((1, 1, 2, 2), dtype=np.float32)
    score_vector = cuda.device_array((2,), dtype=np.float32)
    mask = cuda.to_device(np.ones((1, 2), dtype=bool))
    lse = cuda.device_array((1, 1, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="weights"):
        OPS.additive_attention_forward(qp, qp, score_vector, qp, mask, False, 1.0, qp, None,
                                       lse)
    with pytest.raises(ValueError, match="weights"):
        OPS.additive_attention_backward(qp, qp, score_vector, qp, mask, False, 1.0, None, qp,
                                        qp, qp, qp, lse)


def test_other_dtypes_are_rejected():
    q = cuda.device_array((1, 1, 2, 2), dtype=np.float16)
    mask = cuda.to_device(np.ones((1, 2), dtype=bool))
    with pytest.raises(ValueError, match="float32 and float64"):
        OPS.dot_attention_forward(q, q, q, mask, False, 1.0, q, None, q)


def test_ptx_kernels_list_every_kernel():
    names = [name for name, _, _ in cuda_attn.PTX_KERNELS]
    kernels = vars(cuda_attn._KERNELS[np.dtype(np.float32)])
    assert sorted(names) == sorted(kernels)
    for name, dispatcher, signature in cuda_attn.PTX_KERNELS:
        assert dispatcher is kernels[name]
        assert "float64" not in signature
