"""Proofs for the per-token layer kernels (``skattention._backend._cpu_layers``).

* parity with the NumPy oracle (``reference_layers``), float64 and float32;
* central finite-difference checks of every backward pass (float64);
* serial == parallel and 1 thread == 2 threads, bitwise;
* hypothesis properties; bad input.
"""

import math

import numba
import numpy as np
import pytest
import reference_layers as ref
from hypothesis import given, settings
from hypothesis import strategies as st

from skattention._backend import _cpu_layers as layers
from skattention._backend import _cpu_linear as lin
from skattention._backend import _cpu_norm as norm
from skattention._backend._cpu import CPUBackend
from skattention._backend._threads import kernel_threads


class Ops(CPUBackend, layers.CPULayerOps):
    """The CPU backend with the layer kernels (whether or not it inherits them yet)."""


SERIAL = Ops(n_threads=1)
PARALLEL = Ops(n_threads=2)
OPS = pytest.mark.parametrize("ops", [SERIAL, PARALLEL], ids=["serial", "parallel"])
DTYPES = pytest.mark.parametrize("dtype", [np.float64, np.float32])
ACTIVATIONS = ["identity", "relu", "gelu"]
RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}
# Several row blocks and several weight-gradient chunks.
N_BIG = 2 * lin.WEIGHT_CHUNK + 37
LN_EPS = 1e-5


def _rand(rng, shape, dtype, scale=1.0, offset=0.0):
    return np.ascontiguousarray(offset + scale * rng.standard_normal(shape), dtype=dtype)


def _nan(shape, dtype):
    """Output buffer that shows any entry a kernel forgets to write."""
    return np.full(shape, np.nan, dtype=dtype)


def assert_close(actual, expected, dtype, scale=None):
    """``|actual - expected| <= rtol (|expected| + scale)`` elementwise.

    ``scale`` is the magnitude of the terms that were summed (for instance
    ``|x| @ |W|``), so that cancellation in a sum is not held against the
    kernel; it defaults to the largest ``|expected|`` (at least 1).
    """
    actual = np.asarray(actual)
    assert actual.dtype == np.dtype(dtype)
    assert actual.shape == np.shape(expected)
    actual = actual.astype(np.float64)
    expected = np.asarray(expected, np.float64)
    assert np.all(np.isfinite(actual))
    if scale is None:
        scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    rtol = RTOL[np.dtype(dtype)]
    err = np.abs(actual - expected)
    bound = rtol * (np.abs(expected) + scale)
    assert np.all(err <= bound), f"max excess {np.max(err - bound)}, max err {err.max()}"


def assert_bitwise(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def directional(loss, theta, direction, eps=1e-6):
    """Central difference of ``loss`` at ``theta`` along ``direction``."""
    return (loss(theta + eps * direction) - loss(theta - eps * direction)) / (2 * eps)


def assert_directional(loss, theta, grad, rng, eps=1e-6):
    direction = rng.standard_normal(theta.shape)
    numeric = directional(loss, theta, direction, eps)
    analytic = float(np.sum(grad * direction))
    assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(analytic)), (numeric, analytic)


# ------------------------------------------------------------------ linear

# 127 and 128 rows: either side of the weight gradient's split into two chunks.
LINEAR_SHAPES = [(1, 1, 1), (1, 5, 3), (7, 1, 4), (13, 6, 1), (127, 4, 3), (128, 4, 3),
                 (300, 17, 9), (1100, 5, 7)]


def _linear_data(shape, dtype, seed=0):
    n, n_in, n_out = shape
    rng = np.random.default_rng([seed, n, n_in, n_out])
    x = _rand(rng, (n, n_in), dtype)
    weight = _rand(rng, (n_in, n_out), dtype, 1 / math.sqrt(n_in))
    bias = _rand(rng, n_out, dtype)
    grad_out = _rand(rng, (n, n_out), dtype)
    return x, weight, bias, grad_out


@OPS
@DTYPES
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", LINEAR_SHAPES)
def test_linear_forward_matches_oracle(ops, dtype, activation, shape):
    x, weight, bias, _ = _linear_data(shape, dtype)
    out, pre = _nan((shape[0], shape[2]), dtype), _nan((shape[0], shape[2]), dtype)
    ops.linear_forward(x, weight, bias, activation, out, pre)
    ref_out, ref_pre = ref.linear_forward(x, weight, bias, activation)
    scale = np.abs(x.astype(np.float64)) @ np.abs(weight) + np.abs(bias)
    assert_close(pre, ref_pre, dtype, scale)
    assert_close(out, ref_out, dtype, scale)


@DTYPES
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_linear_forward_without_bias_or_pre(dtype, activation):
    x, weight, _, _ = _linear_data((300, 6, 5), dtype)
    out = _nan((300, 5), dtype)
    SERIAL.linear_forward(x, weight, None, activation, out)
    ref_out, _ = ref.linear_forward(x, weight, None, activation)
    assert_close(out, ref_out, dtype, np.abs(x.astype(np.float64)) @ np.abs(weight))


def _assert_linear_grads(x, weight, pre, grad_out, activation, grads, dtype):
    grad_x, grad_weight, grad_bias = grads
    ref_gx, ref_gw, ref_gb = ref.linear_backward(x, weight, pre, grad_out, activation)
    g_abs = np.abs(grad_out * ref.activation_grad(pre, activation))
    assert_close(grad_x, ref_gx, dtype, g_abs @ np.abs(weight.T))
    assert_close(grad_weight, ref_gw, dtype, np.abs(x.T.astype(np.float64)) @ g_abs)
    assert_close(grad_bias, ref_gb, dtype, g_abs.sum(axis=0))


@OPS
@DTYPES
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", LINEAR_SHAPES)
def test_linear_backward_matches_oracle(ops, dtype, activation, shape):
    x, weight, bias, grad_out = _linear_data(shape, dtype)
    out, pre = np.empty_like(grad_out), np.empty_like(grad_out)
    ops.linear_forward(x, weight, bias, activation, out, pre)
    grads = _nan(x.shape, dtype), _nan(weight.shape, dtype), _nan(bias.shape, dtype)
    grad_pre = _nan(grad_out.shape, dtype)
    ops.linear_backward(x, weight, pre, grad_out, activation, *grads, grad_pre=grad_pre)
    _assert_linear_grads(x, weight, pre, grad_out, activation, grads, dtype)
    if activation != "identity":
        assert_close(grad_pre, grad_out * ref.activation_grad(pre, activation), dtype)


@DTYPES
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_linear_backward_in_place_and_optional_outputs(dtype, activation):
    x, weight, bias, grad_out = _linear_data((1100, 4, 6), dtype, seed=1)
    out, pre = np.empty_like(grad_out), np.empty_like(grad_out)
    SERIAL.linear_forward(x, weight, bias, activation, out, pre)
    grad_weight = _nan(weight.shape, dtype)
    # No grad_x, no grad_bias; ReLU's output stands in for its pre-activation;
    # the gradient overwrites grad_out.
    work = grad_out.copy()
    saved = out if activation == "relu" else pre
    SERIAL.linear_backward(x, weight, saved, work, activation, None, grad_weight, None,
                           grad_pre=work)
    _, ref_gw, _ = ref.linear_backward(x, weight, pre, grad_out, activation)
    g_abs = np.abs(grad_out * ref.activation_grad(pre, activation))
    assert_close(grad_weight, ref_gw, dtype, np.abs(x.T.astype(np.float64)) @ g_abs)
    assert_close(work, grad_out * ref.activation_grad(pre, activation), dtype)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_linear_gradients_match_finite_differences(activation):
    rng = np.random.default_rng(3)
    x, weight = rng.standard_normal((5, 4)), rng.standard_normal((4, 3))
    bias = rng.standard_normal(3)
    pre = x @ weight + bias
    # ReLU is not differentiable at 0: the check needs every pre-activation
    # farther from 0 than the perturbation can move it.
    assert np.abs(pre).min() > 1e-3
    r = rng.standard_normal((5, 3))

    def forward(x_, w_, b_):
        out = np.empty((x_.shape[0], w_.shape[1]))
        SERIAL.linear_forward(x_, w_, b_, activation, out)
        return float(np.sum(r * out))

    out, pre_k = np.empty((5, 3)), np.empty((5, 3))
    SERIAL.linear_forward(x, weight, bias, activation, out, pre_k)
    gx, gw, gb = np.empty_like(x), np.empty_like(weight), np.empty_like(bias)
    SERIAL.linear_backward(x, weight, pre_k, r, activation, gx, gw, gb)
    assert_directional(lambda t: forward(t, weight, bias), x, gx, rng)
    assert_directional(lambda t: forward(x, t, bias), weight, gw, rng)
    assert_directional(lambda t: forward(x, weight, t), bias, gb, rng)


# ------------------------------------------------------------- activations

FLAT_SHAPES = [(1,), (1, 1), (3, 5, 7), (100, 171)]  # the last spans two flat blocks


@OPS
@DTYPES
@pytest.mark.parametrize("name", ["relu", "gelu"])
@pytest.mark.parametrize("shape", FLAT_SHAPES)
def test_activations_match_oracle(ops, dtype, name, shape):
    rng = np.random.default_rng(len(shape))
    x = _rand(rng, shape, dtype, 3.0)
    grad_out = _rand(rng, shape, dtype)
    out, grad_x = _nan(shape, dtype), _nan(shape, dtype)
    getattr(ops, f"{name}_forward")(x, out)
    getattr(ops, f"{name}_backward")(x, grad_out, grad_x)
    assert_close(out, ref.activation(x, name), dtype)
    assert_close(grad_x, grad_out * ref.activation_grad(x, name), dtype)
    # In place: out is x, grad_x is grad_out.
    getattr(ops, f"{name}_forward")(x, x)
    getattr(ops, f"{name}_backward")(out, grad_out, grad_out)
    assert_bitwise(x, out)


@pytest.mark.parametrize("name", ["relu", "gelu"])
def test_activation_derivatives_match_finite_differences(name):
    x = np.linspace(-6.0, 6.0, 2401)
    x = x[np.abs(x) > 1e-3]  # ReLU: away from its kink
    eps = 1e-6
    up, down, grad = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    getattr(SERIAL, f"{name}_forward")(x + eps, up)
    getattr(SERIAL, f"{name}_forward")(x - eps, down)
    getattr(SERIAL, f"{name}_backward")(x, np.ones_like(x), grad)
    np.testing.assert_allclose((up - down) / (2 * eps), grad, rtol=0, atol=1e-8)


def test_gelu_is_the_exact_erf_form():
    # Reference values of x * Phi(x) (not the tanh approximation).
    x = np.array([-3.0, -1.0, 0.0, 0.5, 2.0])
    out = np.empty_like(x)
    SERIAL.gelu_forward(x, out)
    phi = np.array([0.0013498980316301, 0.15865525393145707, 0.5, 0.6914624612740131,
                    0.9772498680518208])
    np.testing.assert_allclose(out, x * phi, rtol=1e-13, atol=1e-16)


def test_float32_erf_is_accurate_and_float64_erf_is_exact():
    @numba.njit
    def erf_all(x, out):
        for i in range(x.shape[0]):
            out[i] = lin.fast_erf(x[i])

    grid = np.linspace(-7.0, 7.0, 200001)
    exact = np.array([math.erf(v) for v in grid.astype(np.float32).astype(np.float64)])
    out32 = np.empty(grid.size, np.float32)
    erf_all(grid.astype(np.float32), out32)
    assert np.abs(out32 - exact).max() < 5e-7
    out64 = np.empty(grid.size)
    erf_all(grid, out64)
    assert_bitwise(out64, np.array([math.erf(v) for v in grid]))


@pytest.mark.parametrize("activation", ["identity", "gelu"])
def test_linear_with_no_rows(activation):
    x, weight, bias = np.empty((0, 3)), np.ones((3, 2)), np.ones(2)
    out, pre = np.empty((0, 2)), np.empty((0, 2))
    PARALLEL.linear_forward(x, weight, bias, activation, out, pre)
    grads = np.empty((0, 3)), np.full((3, 2), np.nan), np.full(2, np.nan)
    PARALLEL.linear_backward(x, weight, pre, np.empty((0, 2)), activation, *grads)
    assert np.all(grads[1] == 0) and np.all(grads[2] == 0)


# -------------------------------------------------------------- layer norm

LN_SHAPES = [(1, 1), (1, 5), (7, 1), (5, 8), (300, 13), (600, 64)]


def _ln_data(shape, dtype, offset=0.0, seed=0):
    rng = np.random.default_rng([seed, *shape])
    x = _rand(rng, shape, dtype, 2.0, offset)
    residual = _rand(rng, shape, dtype)
    gamma = _rand(rng, shape[1], dtype, 0.5, 1.0)
    beta = _rand(rng, shape[1], dtype)
    grad_out = _rand(rng, shape, dtype)
    return x, residual, gamma, beta, grad_out


def _ln_forward(ops, x, residual, gamma, beta, keep_sum=True):
    n, d = x.shape
    out, mean, rstd = _nan((n, d), x.dtype), _nan(n, x.dtype), _nan(n, x.dtype)
    summed = _nan((n, d), x.dtype) if keep_sum else None
    ops.layer_norm_forward(x, residual, gamma, beta, LN_EPS, out, summed, mean, rstd)
    return out, summed, mean, rstd


# The parallel build runs the same block helper as the serial one: it is
# checked on the two layouts the network uses, to save compile time.
@pytest.mark.parametrize("ops, with_residual, keep_sum", [
    (SERIAL, False, False), (SERIAL, False, True), (SERIAL, True, False), (SERIAL, True, True),
    (PARALLEL, False, False), (PARALLEL, True, True)])
@DTYPES
@pytest.mark.parametrize("shape", LN_SHAPES)
def test_layer_norm_forward_matches_oracle(ops, dtype, with_residual, keep_sum, shape):
    x, residual, gamma, beta, _ = _ln_data(shape, dtype)
    residual = residual if with_residual else None
    out, summed, mean, rstd = _ln_forward(ops, x, residual, gamma, beta, keep_sum)
    # The sum is rounded to the dtype before normalisation, as NumPy rounds it.
    s = x if residual is None else x + residual
    if keep_sum:
        assert_bitwise(summed, s)
    ref_out, _, ref_mean, ref_rstd = ref.layer_norm_forward(s, None, gamma, beta, LN_EPS)
    assert_close(out, ref_out, dtype)
    assert_close(mean, ref_mean, dtype, np.abs(s.astype(np.float64)).mean(axis=1))
    assert_close(rstd, ref_rstd, dtype)


@DTYPES
def test_layer_norm_forward_large_offset_matches_oracle(dtype):
    # Rows 1e4 + unit noise: a one-pass E[x^2] - E[x]^2 would lose the variance.
    x, _, gamma, beta, _ = _ln_data((300, 24), dtype, offset=1e4)
    out, _, mean, rstd = _ln_forward(PARALLEL, x, None, gamma, beta, keep_sum=False)
    ref_out, _, ref_mean, ref_rstd = ref.layer_norm_forward(x, None, gamma, beta, LN_EPS)
    assert_close(out, ref_out, dtype)
    assert_close(mean, ref_mean, dtype)
    assert_close(rstd, ref_rstd, dtype)


@OPS
@DTYPES
@pytest.mark.parametrize("incoming", [None, "separate", "aliased"])
@pytest.mark.parametrize("shape", LN_SHAPES)
def test_layer_norm_backward_matches_oracle(ops, dtype, incoming, shape):
    x, residual, gamma, beta, grad_out = _ln_data(shape, dtype, seed=1)
    _, s, mean, rstd = _ln_forward(ops, x, residual, gamma, beta)
    n, d = shape
    grad_x = _nan(shape, dtype)
    grad_gamma, grad_beta = _nan(d, dtype), _nan(d, dtype)
    extra = np.random.default_rng(9).standard_normal(shape).astype(dtype)
    grad_summed = None
    if incoming == "separate":
        grad_summed = extra
    elif incoming == "aliased":
        grad_x[...] = extra
        grad_summed = grad_x
    ops.layer_norm_backward(grad_out, s, mean, rstd, gamma, grad_x, grad_gamma, grad_beta,
                            grad_summed)
    ref_gs, ref_gg, ref_gb = ref.layer_norm_backward(grad_out, s, mean, rstd, gamma)
    gh = np.abs(grad_out.astype(np.float64) * gamma)
    xh = np.abs((s - mean[:, None].astype(np.float64)) * rstd[:, None])
    scale = rstd[:, None] * (gh + gh.mean(axis=1, keepdims=True)
                             + xh * (gh * xh).mean(axis=1, keepdims=True))
    if incoming is not None:
        ref_gs = ref_gs + extra
        scale = scale + np.abs(extra)
    assert_close(grad_x, ref_gs, dtype, scale)
    assert_close(grad_gamma, ref_gg, dtype, np.sum(np.abs(grad_out * xh), axis=0))
    assert_close(grad_beta, ref_gb, dtype, np.sum(np.abs(grad_out), axis=0).astype(np.float64))


@pytest.mark.parametrize("with_residual", [False, True])
def test_layer_norm_gradients_match_finite_differences(with_residual):
    rng = np.random.default_rng(5)
    x, residual, gamma, beta = (rng.standard_normal((4, 7)), rng.standard_normal((4, 7)),
                                rng.standard_normal(7), rng.standard_normal(7))
    residual = residual if with_residual else None
    r = rng.standard_normal((4, 7))

    def loss(x_, res_, g_, b_):
        out = _ln_forward(SERIAL, x_, res_, g_, b_, keep_sum=False)[0]
        return float(np.sum(r * out))

    _, s, mean, rstd = _ln_forward(SERIAL, x, residual, gamma, beta)
    gx, gg, gb = np.empty_like(x), np.empty_like(gamma), np.empty_like(beta)
    SERIAL.layer_norm_backward(r, s, mean, rstd, gamma, gx, gg, gb)
    assert_directional(lambda t: loss(t, residual, gamma, beta), x, gx, rng)
    if with_residual:
        assert_directional(lambda t: loss(x, t, gamma, beta), residual, gx, rng)
    assert_directional(lambda t: loss(x, residual, t, beta), gamma, gg, rng)
    assert_directional(lambda t: loss(x, residual, gamma, t), beta, gb, rng)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), d=st.integers(2, 40), offset=st.sampled_from([0.0, 1e4, -1e4]),
       log_scale=st.floats(-2.0, 2.0), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_layer_norm_rows_are_standardised(n, d, offset, log_scale, seed, dtype):
    rng = np.random.default_rng(seed)
    x = _rand(rng, (n, d), dtype, 10.0 ** log_scale, offset)
    ones, zeros = np.ones(d, dtype), np.zeros(d, dtype)
    out = _ln_forward(PARALLEL, x, None, ones, zeros, keep_sum=False)[0]
    assert np.all(np.isfinite(out))
    y, s = out.astype(np.float64), x.astype(np.float64)
    var = s.var(axis=1)
    # Centring a row costs about eps * |s| of absolute error, which the
    # normalisation multiplies by rstd: the condition number of the row.
    cond = 1.0 + np.abs(s).max(axis=1) / np.sqrt(var + LN_EPS)
    atol = 100 * np.finfo(np.float64).eps * cond + (1e-6 if dtype == np.float32 else 0.0)
    assert np.all(np.abs(y.mean(axis=1)) <= atol)
    assert np.all(np.abs(y.var(axis=1) - var / (var + LN_EPS)) <= 2 * math.sqrt(d) * atol)


@DTYPES
@pytest.mark.parametrize("value", [1e4, -1e4, 1e4 + 0.25])
def test_layer_norm_constant_rows_are_finite(dtype, value):
    d = 9
    x = np.full((3, d), value, dtype)
    rng = np.random.default_rng(0)
    gamma, beta = _rand(rng, d, dtype), _rand(rng, d, dtype)
    out, _, mean, rstd = _ln_forward(PARALLEL, x, None, gamma, beta, keep_sum=False)
    # Zero variance: every row normalises to exactly 0, leaving beta.
    assert_bitwise(out, np.broadcast_to(beta, x.shape).copy())
    assert np.all(rstd == dtype(1 / math.sqrt(LN_EPS)))
    grads = np.empty_like(x), np.empty(d, dtype), np.empty(d, dtype)
    PARALLEL.layer_norm_backward(_rand(rng, x.shape, dtype), x, mean, rstd, gamma, *grads)
    assert all(np.all(np.isfinite(g)) for g in grads)


# --------------------------------------------------------------- embedding

EMBED_SHAPES = [(1, 1, 1), (5, 3, 1), (40, 7, 37), (300, 50, 16), (600, 3, 5)]  # (N, V, d)


def _embed_data(shape, dtype, seed=0):
    n, n_rows, d = shape
    rng = np.random.default_rng([seed, *shape])
    ids = rng.integers(0, n_rows, n)
    return ids, _rand(rng, (n_rows, d), dtype), _rand(rng, (n, d), dtype)


@OPS
@DTYPES
@pytest.mark.parametrize("shape", EMBED_SHAPES)
def test_embedding_matches_oracle(ops, dtype, shape):
    ids, table, grad_out = _embed_data(shape, dtype)
    out = _nan(grad_out.shape, dtype)
    ops.embedding_forward(ids, table, out)
    assert_bitwise(out, table[ids])
    grad_table = _nan(table.shape, dtype)
    ops.embedding_backward(ids, grad_out, grad_table)
    assert_close(grad_table, ref.embedding_backward(ids, grad_out, shape[1]), dtype,
                 ref.embedding_backward(ids, np.abs(grad_out), shape[1]))
    # accumulate=True adds a second copy.
    ops.embedding_backward(ids, grad_out, grad_table, accumulate=True)
    assert_close(grad_table, 2 * ref.embedding_backward(ids, grad_out, shape[1]), dtype,
                 2 * ref.embedding_backward(ids, np.abs(grad_out), shape[1]))


@OPS
@DTYPES
@pytest.mark.parametrize("shape", EMBED_SHAPES)
def test_embedding_with_positions_matches_oracle(ops, dtype, shape):
    ids, table, _ = _embed_data(shape, dtype)
    rng = np.random.default_rng(len(ids))
    positions = _rand(rng, (9, shape[2]), dtype)
    steps = rng.integers(0, 9, len(ids))
    out = _nan((len(ids), shape[2]), dtype)
    ops.embedding_forward(ids, table, out, positions, steps)
    # One rounding of the same sum: equal to the two-step lookup and add.
    assert_bitwise(out, table[ids] + positions[steps])


def test_embedding_positions_need_valid_steps():
    table, positions = np.zeros((5, 3)), np.zeros((4, 3))
    ids = np.array([0, 1, 4])
    with pytest.raises(ValueError, match="positions need steps"):
        SERIAL.embedding_forward(ids, table, np.empty((3, 3)), positions)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 4\).*found id 4"):
        SERIAL.embedding_forward(ids, table, np.empty((3, 3)), positions, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="steps .* differ in shape"):
        SERIAL.embedding_forward(ids, table, np.empty((3, 3)), positions, np.array([0, 1]))


def test_embedding_accepts_batched_ids_and_empty_input():
    rng = np.random.default_rng(0)
    table = rng.standard_normal((11, 4))
    ids = rng.integers(0, 11, (3, 5)).astype(np.int32)
    out = np.empty((3, 5, 4))
    PARALLEL.embedding_forward(ids, table, out)
    assert_bitwise(out, table[ids])
    grad_table = np.full_like(table, np.nan)
    PARALLEL.embedding_backward(np.empty(0, np.int64), np.empty((0, 4)), grad_table)
    assert_bitwise(grad_table, np.zeros_like(table))


def test_embedding_gradient_matches_finite_differences():
    rng = np.random.default_rng(6)
    ids = np.array([2, 0, 2, 2, 4, 0])  # repeated ids must sum
    table = rng.standard_normal((5, 3))
    r = rng.standard_normal((6, 3))

    def loss(t):
        out = np.empty((6, 3))
        SERIAL.embedding_forward(ids, t, out)
        return float(np.sum(r * out))

    grad = np.empty_like(table)
    SERIAL.embedding_backward(ids, r, grad)
    for _ in range(3):
        assert_directional(loss, table, grad, rng)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 60), n_rows=st.integers(1, 12), d=st.integers(1, 40),
       seed=st.integers(0, 2**32 - 1))
def test_embedding_gradient_sums_are_invariant(n, n_rows, d, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, n_rows, n)
    grad_out = rng.standard_normal((n, d))
    grad_table = np.empty((n_rows, d))
    PARALLEL.embedding_backward(ids, grad_out, grad_table)
    # Every token's gradient lands in exactly one table row.
    np.testing.assert_allclose(grad_table.sum(axis=0), grad_out.sum(axis=0), atol=1e-12 * (n + 1))
    unused = np.setdiff1d(np.arange(n_rows), ids)
    assert np.all(grad_table[unused] == 0)
    # The token order does not matter (beyond rounding).
    perm = rng.permutation(n)
    permuted = np.empty_like(grad_table)
    PARALLEL.embedding_backward(ids[perm], grad_out[perm], permuted)
    np.testing.assert_allclose(permuted, grad_table, rtol=1e-12, atol=1e-12 * (n + 1))


@pytest.mark.parametrize("bad", [-1, 7, 100])
def test_embedding_rejects_out_of_range_ids(bad):
    table = np.zeros((7, 2))
    ids = np.array([0, 3, bad, 1])
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 7\).*" + str(bad)):
        SERIAL.embedding_forward(ids, table, np.empty((4, 2)))
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 7\)"):
        PARALLEL.embedding_backward(ids, np.zeros((4, 2)), np.empty((7, 2)))


def test_embedding_rejects_float_ids():
    with pytest.raises(ValueError, match="ids must be integers"):
        SERIAL.embedding_forward(np.array([0.0, 1.0]), np.zeros((3, 2)), np.empty((2, 2)))


# ----------------------------------------------------------------- dropout


@OPS
@DTYPES
@pytest.mark.parametrize("shape", [(1,), (7, 5), (3, 4, 1500)])
def test_dropout_matches_oracle(ops, dtype, shape):
    rng = np.random.default_rng(1)
    x, grad_out = _rand(rng, shape, dtype), _rand(rng, shape, dtype)
    mask = norm.dropout_mask(np.random.default_rng(2), shape, 0.25, dtype)
    assert mask.dtype == np.dtype(dtype) and mask.shape == shape
    out, grad_x = _nan(shape, dtype), _nan(shape, dtype)
    ops.dropout_forward(x, mask, out)
    ops.dropout_backward(grad_out, mask, grad_x)
    assert_close(out, ref.dropout(x, mask), dtype)
    assert_close(grad_x, ref.dropout(grad_out, mask), dtype)


def test_dropout_gradient_matches_finite_differences():
    rng = np.random.default_rng(7)
    x, r = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    mask = norm.dropout_mask(3, x.shape, 0.4)

    def loss(t):
        out = np.empty_like(t)
        SERIAL.dropout_forward(t, mask, out)
        return float(np.sum(r * out))

    grad = np.empty_like(x)
    SERIAL.dropout_backward(r, mask, grad)
    assert_directional(loss, x, grad, rng)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_mask_values_and_rate(rate, dtype):
    mask = norm.dropout_mask(np.random.default_rng(0), (200, 500), rate, dtype)
    scale = dtype(1 / (1 - rate))
    assert set(np.unique(mask)) <= {dtype(0), scale}
    assert abs(np.mean(mask == 0) - rate) < 0.01
    # Unbiased: the mean of the mask is 1 up to sampling noise.
    assert abs(float(mask.mean(dtype=np.float64)) - 1.0) < 0.05


@pytest.mark.parametrize("make_state", [lambda: 42, lambda: np.random.RandomState(42),
                                        lambda: np.random.default_rng(42)])
def test_dropout_mask_is_reproducible(make_state):
    a = norm.dropout_mask(make_state(), (4, 33), 0.3, np.float32)
    b = norm.dropout_mask(make_state(), (4, 33), 0.3, np.float32)
    assert_bitwise(a, b)
    state = make_state()
    if not isinstance(state, int):
        first = norm.dropout_mask(state, (4, 33), 0.3, np.float32)
        second = norm.dropout_mask(state, (4, 33), 0.3, np.float32)
        assert not np.array_equal(first, second)  # the state advances


def test_dropout_rate_zero_is_identity_without_drawing():
    generator = np.random.default_rng(0)
    before = generator.bit_generator.state
    assert norm.dropout_mask(generator, (3, 4), 0.0) is None
    assert generator.bit_generator.state == before
    x = np.arange(12.0).reshape(3, 4)
    out = np.empty_like(x)
    SERIAL.dropout_forward(x, None, out)
    assert_bitwise(out, x)
    assert np.all(norm.dropout_mask(0, (3, 4), 1.0) == 0)


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_dropout_mask_rejects_bad_rate(rate):
    with pytest.raises(ValueError, match="dropout rate"):
        norm.dropout_mask(0, (2, 2), rate)


def test_wrong_shapes_are_rejected():
    x, w = np.ones((4, 3)), np.ones((3, 5))
    with pytest.raises(ValueError, match=r"out has shape \(4, 4\); expected \(4, 5\)"):
        SERIAL.linear_forward(x, w, None, "relu", np.empty((4, 4)))
    with pytest.raises(ValueError, match="grad_weight has shape"):
        SERIAL.linear_backward(x, w, None, np.ones((4, 5)), "identity", None, np.empty((5, 3)),
                               None)
    with pytest.raises(ValueError, match="mean has shape"):
        SERIAL.layer_norm_forward(x, None, np.ones(3), np.ones(3), 1e-5, np.empty((4, 3)),
                                  None, np.empty(3), np.empty(4))
    with pytest.raises(ValueError, match="grad_out has shape"):
        SERIAL.embedding_backward(np.zeros(4, np.int64), np.ones((4, 3)), np.empty((7, 2)))
    # A reshaped copy of a strided output would silently stay unwritten.
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        SERIAL.relu_forward(np.ones((4, 3)), np.empty((3, 4)).T)


def test_unknown_activation_and_missing_pre_are_rejected():
    x, w, b = np.ones((2, 3)), np.ones((3, 4)), np.ones(4)
    with pytest.raises(ValueError, match="activation must be one of"):
        SERIAL.linear_forward(x, w, b, "tanh", np.empty((2, 4)))
    with pytest.raises(ValueError, match="needs pre"):
        SERIAL.linear_backward(x, w, None, np.ones((2, 4)), "gelu", None, np.empty((3, 4)),
                               None)


# ------------------------------------------------------------- determinism


def _three_ways(serial, parallel, make_args, outputs):
    """Run the serial build and the parallel build on 1 and 2 threads.

    ``make_args`` builds fresh arguments (NaN-filled outputs); ``outputs``
    are the positions of the outputs among them. Returns one list of output
    arrays per run.
    """
    runs = []
    for kernel, n_threads in [(serial, 1), (parallel, 1), (parallel, 2)]:
        args = make_args()
        with kernel_threads(n_threads) as used:
            assert used == n_threads
            kernel(*args)
        runs.append([args[k] for k in outputs])
    return runs


def _assert_all_bitwise(runs):
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert_bitwise(a, b)


needs_two_threads = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                                       reason="Numba has a single thread")


@needs_two_threads
@DTYPES
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_linear_is_bitwise_deterministic(dtype, activation):
    x, weight, bias, grad_out = _linear_data((N_BIG, 9, 11), dtype, seed=4)
    code = lin.ACTIVATIONS[activation]
    runs = _three_ways(lin.linear_forward_serial, lin.linear_forward_parallel,
                       lambda: (x, weight, bias, code, _nan(grad_out.shape, dtype),
                                _nan(grad_out.shape, dtype)), [4, 5])
    _assert_all_bitwise(runs)
    pre = runs[0][1]
    g = grad_out if activation == "identity" else None
    runs = _three_ways(
        lin.linear_backward_serial, lin.linear_backward_parallel,
        lambda: (x, weight, None if g is not None else pre, grad_out, code,
                 g if g is not None else _nan(grad_out.shape, dtype), _nan(x.shape, dtype),
                 _nan(weight.shape, dtype), _nan(bias.shape, dtype)),
        [5, 6, 7, 8])
    _assert_all_bitwise(runs)


@needs_two_threads
@DTYPES
def test_layer_norm_is_bitwise_deterministic(dtype):
    x, residual, gamma, beta, grad_out = _ln_data((N_BIG, 24), dtype, seed=2)
    n, d = x.shape
    runs = _three_ways(norm.layer_norm_forward_serial, norm.layer_norm_forward_parallel,
                       lambda: (x, residual, gamma, beta, LN_EPS, _nan((n, d), dtype),
                                _nan((n, d), dtype), _nan(n, dtype), _nan(n, dtype)),
                       [5, 6, 7, 8])
    _assert_all_bitwise(runs)
    _, s, mean, rstd = runs[0]
    incoming = _rand(np.random.default_rng(0), (n, d), dtype)
    runs = _three_ways(norm.layer_norm_backward_serial, norm.layer_norm_backward_parallel,
                       lambda: (grad_out, s, mean, rstd, gamma, _nan((n, d), dtype),
                                _nan(d, dtype), _nan(d, dtype), incoming), [5, 6, 7])
    _assert_all_bitwise(runs)


@needs_two_threads
@DTYPES
def test_embedding_and_elementwise_are_bitwise_deterministic(dtype):
    ids, table, grad_out = _embed_data((N_BIG, 30, 50), dtype, seed=3)
    runs = _three_ways(norm.embedding_forward_serial, norm.embedding_forward_parallel,
                       lambda: (ids, table, None, None, _nan(grad_out.shape, dtype)), [4])
    _assert_all_bitwise(runs)
    positions = table[:7]
    steps = np.arange(ids.size, dtype=np.int64) % 7
    runs = _three_ways(norm.embedding_forward_serial, norm.embedding_forward_parallel,
                       lambda: (ids, table, positions, steps, _nan(grad_out.shape, dtype)), [4])
    _assert_all_bitwise(runs)
    runs = _three_ways(norm.embedding_backward_serial, norm.embedding_backward_parallel,
                       lambda: (ids, grad_out, _nan(table.shape, dtype), False), [2])
    _assert_all_bitwise(runs)
    flat, other = grad_out.reshape(-1), table.reshape(-1)[:1].repeat(grad_out.size)
    gelu = lin.ACTIVATIONS["gelu"]
    for serial, parallel, make_args, outputs in [
        (lin.activation_serial, lin.activation_parallel,
         lambda: (flat, None, gelu, _nan(flat.shape, dtype)), [3]),
        (lin.activation_serial, lin.activation_parallel,
         lambda: (flat, other, gelu, _nan(flat.shape, dtype)), [3]),
        (norm.dropout_serial, norm.dropout_parallel,
         lambda: (flat, other, _nan(flat.shape, dtype)), [2]),
    ]:
        _assert_all_bitwise(_three_ways(serial, parallel, make_args, outputs))


@needs_two_threads
@DTYPES
def test_backend_results_do_not_depend_on_thread_count(dtype):
    # Through the mixin: Ops(1) runs the serial builds, Ops(2) the parallel ones.
    x, weight, bias, grad_out = _linear_data((N_BIG, 8, 12), dtype, seed=5)
    results = []
    for ops in (SERIAL, PARALLEL):
        out, pre = np.empty_like(grad_out), np.empty_like(grad_out)
        ops.linear_forward(x, weight, bias, "gelu", out, pre)
        grads = np.empty_like(x), np.empty_like(weight), np.empty_like(bias)
        ops.linear_backward(x, weight, pre, grad_out, "gelu", *grads)
        results.append([out, pre, *grads])
    _assert_all_bitwise(results)
