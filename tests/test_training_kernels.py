"""Training kernels of the CPU backend: pooling, losses, optimizers.

Checked against the plain-NumPy oracle (``reference_training``), against
central finite differences, against hand-computed optimizer steps, and for
bitwise determinism across builds and thread counts.
"""

import math

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import reference_training as ref
from skattention._backend import _cpu_pooling as kp
from skattention._backend import _cpu_training as kt
from skattention._backend._cpu import CPUBackend
from skattention._backend._cpu_training import CPUTrainingOps, NonFiniteLossError
from skattention._backend._threads import kernel_threads


class Backend(CPUBackend, CPUTrainingOps):
    """CPUBackend with the training mixin (a no-op once CPUBackend inherits it)."""


TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-6)}
DTYPES = [np.float64, np.float32]
HYPOTHESIS = settings(max_examples=25, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])
needs_two_threads = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                                       reason="Numba has fewer than 2 threads")


@pytest.fixture(scope="module")
def backend():
    """Backend with the default (parallel when 2 cores) thread budget."""
    return Backend()


def make_mask(rng, batch, n_positions, kind):
    """Masks: "random" (holes anywhere, one row fully padded when B > 1),
    "trailing" (right padding of random lengths >= 1) and "full"."""
    if kind == "full":
        return np.ones((batch, n_positions), dtype=bool)
    if kind == "trailing":
        lengths = rng.integers(1, n_positions + 1, size=batch)
        return np.arange(n_positions)[None, :] < lengths[:, None]
    mask = rng.random((batch, n_positions)) < 0.6
    if batch > 1:
        mask[1] = False
    mask[0, rng.integers(n_positions)] = True
    return mask


def pooling_inputs(rng, shape, dtype, kind="random", magnitude=1.0):
    """Random keys, values, query, mask of ``shape = (B, H, L, D, Dv)``."""
    batch, n_heads, n_positions, width, value_width = shape
    keys = (magnitude * rng.standard_normal((batch, n_heads, n_positions, width))).astype(dtype)
    values = rng.standard_normal((batch, n_heads, n_positions, value_width)).astype(dtype)
    query = rng.standard_normal((n_heads, width)).astype(dtype)
    return keys, values, query, make_mask(rng, batch, n_positions, kind)


def run_pooling(backend, keys, values, query, mask, scale, grad_context=None):
    """Forward (and backward when ``grad_context`` is given) through the backend."""
    batch, n_heads, n_positions, _ = keys.shape
    context = np.full((batch, n_heads, values.shape[3]), np.nan, dtype=keys.dtype)
    weights = np.full((batch, n_heads, n_positions), np.nan, dtype=keys.dtype)
    backend.attention_pooling_forward(keys, values, query, mask, scale, context, weights)
    if grad_context is None:
        return context, weights
    grads = [np.full_like(a, np.nan) for a in (keys, values, query)]
    backend.attention_pooling_backward(keys, values, query, mask, scale, weights,
                                       grad_context, *grads)
    return (context, weights, *grads)


def numeric_grad(f, x, eps=1e-6):
    """Central differences of the scalar ``f()`` with respect to ``x`` (in place)."""
    grad = np.zeros_like(x)
    flat, out = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        plus = f()
        flat[i] = saved - eps
        minus = f()
        flat[i] = saved
        out[i] = (plus - minus) / (2 * eps)
    return grad


POOL_SHAPES = [(1, 1, 1, 1, 1), (3, 2, 5, 4, 4), (2, 3, 7, 5, 3), (4, 1, 9, 2, 6)]

# ------------------------------------------------------------ attention pooling


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", POOL_SHAPES)
@pytest.mark.parametrize("kind", ["random", "trailing", "full"])
def test_pooling_matches_oracle(backend, dtype, shape, kind):
    rng = np.random.default_rng([POOL_SHAPES.index(shape), len(kind)])
    keys, values, query, mask = pooling_inputs(rng, shape, dtype, kind)
    grad_context = rng.standard_normal((shape[0], shape[1], shape[4])).astype(dtype)
    scale = 1 / math.sqrt(shape[3])
    context, weights, gk, gv, gq = run_pooling(backend, keys, values, query, mask, scale,
                                               grad_context)
    ref_context, ref_weights = ref.attention_pooling_forward(keys, values, query, mask, scale)
    ref_gk, ref_gv, ref_gq = ref.attention_pooling_backward(keys, values, query, mask,
                                                            scale, grad_context)
    for got, want in [(context, ref_context), (weights, ref_weights), (gk, ref_gk),
                      (gv, ref_gv), (gq, ref_gq)]:
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, **TOL[dtype])
    # Padded positions and empty sequences are exact zeros, not just small.
    padded = np.broadcast_to(~mask[:, None, :], weights.shape)
    assert np.all(weights[padded] == 0)
    assert np.all(gk[padded] == 0) and np.all(gv[padded] == 0)
    empty = ~mask.any(axis=1)
    assert np.all(context[empty] == 0)


def test_pooling_gradients_match_finite_differences(backend):
    rng = np.random.default_rng(1)
    shape = (3, 2, 6, 3, 4)
    keys, values, query, mask = pooling_inputs(rng, shape, np.float64)
    projection = rng.standard_normal((shape[0], shape[1], shape[4]))
    scale = 0.7

    def objective():
        context, _ = run_pooling(backend, keys, values, query, mask, scale)
        return float(np.sum(projection * context))

    _, _, gk, gv, gq = run_pooling(backend, keys, values, query, mask, scale, projection)
    for analytic, wrt in [(gk, keys), (gv, values), (gq, query)]:
        np.testing.assert_allclose(analytic, numeric_grad(objective, wrt),
                                   rtol=1e-6, atol=1e-8)
    assert np.abs(gq).max() > 1e-3  # the check above compared real numbers, not zeros


# -------------------------------------------------------------------- losses


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_samples, n_classes", [(1, 1), (1, 2), (7, 3), (13, 5)])
def test_cross_entropy_matches_oracle(backend, dtype, n_samples, n_classes):
    rng = np.random.default_rng(n_samples * 10 + n_classes)
    logits = (3 * rng.standard_normal((n_samples, n_classes))).astype(dtype)
    targets = rng.integers(0, n_classes, size=n_samples)
    weight = rng.uniform(0.2, 3.0, size=n_samples).astype(dtype)
    if n_samples > 2:
        weight[1] = 0
    grad = np.full_like(logits, np.nan)
    loss = backend.softmax_cross_entropy(logits, targets, weight, grad)
    ref_loss, ref_grad = ref.softmax_cross_entropy(logits, targets, weight)
    assert isinstance(loss, float)
    np.testing.assert_allclose(loss, ref_loss, **TOL[dtype])
    np.testing.assert_allclose(grad, ref_grad, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_samples, n_targets", [(1, 1), (7, 3), (13, 2)])
def test_squared_error_matches_oracle(backend, dtype, n_samples, n_targets):
    rng = np.random.default_rng(n_samples * 10 + n_targets)
    pred = rng.standard_normal((n_samples, n_targets)).astype(dtype)
    target = rng.standard_normal((n_samples, n_targets)).astype(dtype)
    weight = rng.uniform(0.2, 3.0, size=n_samples).astype(dtype)
    grad = np.full_like(pred, np.nan)
    loss = backend.squared_error(pred, target, weight, grad)
    ref_loss, ref_grad = ref.squared_error(pred, target, weight)
    np.testing.assert_allclose(loss, ref_loss, **TOL[dtype])
    np.testing.assert_allclose(grad, ref_grad, **TOL[dtype])


def test_squared_error_convention_is_sklearn_for_one_output(backend):
    # MLPRegressor's loss: ((y - pred) ** 2).mean() / 2 with unit weights.
    pred = np.array([[1.0], [2.0], [4.0]])
    target = np.array([[0.0], [2.5], [1.0]])
    loss = backend.squared_error(pred, target, np.ones(3), np.empty_like(pred))
    assert loss == pytest.approx(((target - pred) ** 2).mean() / 2, rel=1e-15)


def test_cross_entropy_extreme_logits_finite_and_exact(backend):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4 - 1, -1e4]])
    targets = np.array([1, 2, 0])
    grad = np.empty_like(logits)
    loss = backend.softmax_cross_entropy(logits, targets, np.ones(3), grad)
    # Row 0: -log softmax = 2e4; row 1: log 3; row 2: log(1 + e^-1).
    assert loss == pytest.approx((2e4 + math.log(3) + math.log1p(math.exp(-1))) / 3,
                                 rel=1e-14)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("loss_name", ["softmax_cross_entropy", "squared_error"])
def test_loss_gradients_match_finite_differences(backend, loss_name):
    rng = np.random.default_rng(2)
    outputs = rng.standard_normal((6, 4))
    weight = rng.uniform(0.1, 4.0, size=6)
    weight[3] = 0.0
    if loss_name == "softmax_cross_entropy":
        targets = rng.integers(0, 4, size=6)
    else:
        targets = rng.standard_normal((6, 4))
    method = getattr(backend, loss_name)
    grad = np.empty_like(outputs)
    method(outputs, targets, weight, grad)
    numeric = numeric_grad(lambda: method(outputs, targets, weight, np.empty_like(outputs)),
                           outputs)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)
    assert np.all(grad[3] == 0)  # a zero-weight sample has no gradient


# ---------------------------------------------------------------- optimizers


def optimizer_inputs(rng, size, dtype):
    params = rng.standard_normal(size).astype(dtype)
    grads = [rng.standard_normal(size).astype(dtype) for _ in range(3)]
    return params, grads


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay, decoupled", [(0.0, False), (0.1, False), (0.1, True)])
def test_adam_three_steps_match_torch_formulas(backend, dtype, weight_decay, decoupled):
    rng = np.random.default_rng(3)
    params, grads = optimizer_inputs(rng, 2 * kt._CHUNK + 9, dtype)
    m, v = np.zeros_like(params), np.zeros_like(params)
    want = params.astype(np.float64)
    want_m, want_v = np.zeros_like(want), np.zeros_like(want)
    hyper = dict(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=weight_decay,
                 decoupled=decoupled)
    for step, grad in enumerate(grads, start=1):
        backend.adam_step(params, grad, m, v, step, hyper["lr"], hyper["beta1"],
                          hyper["beta2"], hyper["eps"], weight_decay, decoupled)
        ref.adam_step(want, grad.astype(np.float64), want_m, want_v, step, **hyper)
        np.testing.assert_allclose(params, want, **TOL[dtype])
        np.testing.assert_allclose(m, want_m, **TOL[dtype])
        np.testing.assert_allclose(v, want_v, **TOL[dtype])


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_first_step_by_hand(backend, decoupled):
    # Step 1 with zero moments: m_hat = g and v_hat = g^2, so the update is
    # lr * g / (|g| + eps); AdamW first shrinks p by (1 - lr * wd).
    p0, g, lr, eps, wd = 2.0, -0.5, 0.1, 1e-8, 0.0 if not decoupled else 0.3
    params, grads = np.array([p0]), np.array([g])
    m, v = np.zeros(1), np.zeros(1)
    backend.adam_step(params, grads, m, v, 1, lr, 0.9, 0.999, eps, wd, decoupled)
    expected = p0 * (1 - lr * wd) - lr * g / (abs(g) + eps)
    assert params[0] == pytest.approx(expected, rel=1e-12)
    assert m[0] == pytest.approx(0.1 * g) and v[0] == pytest.approx(0.001 * g * g)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_sgd_three_steps_match_sklearn_formulas(backend, dtype, nesterov, weight_decay):
    rng = np.random.default_rng(4)
    params, grads = optimizer_inputs(rng, kt._CHUNK + 3, dtype)
    velocity = np.zeros_like(params)
    want, want_velocity = params.astype(np.float64), np.zeros(params.shape)
    for grad in grads:
        backend.sgd_step(params, grad, velocity, 0.1, 0.9, nesterov, weight_decay)
        ref.sgd_step(want, grad.astype(np.float64), want_velocity, 0.1, 0.9, nesterov,
                     weight_decay)
        np.testing.assert_allclose(params, want, **TOL[dtype])
        np.testing.assert_allclose(velocity, want_velocity, **TOL[dtype])


@pytest.mark.parametrize("nesterov, expected", [(False, [0.95, 0.855]), (True, [0.905, 0.7695])])
def test_sgd_two_steps_by_hand(backend, nesterov, expected):
    params, velocity = np.array([1.0]), np.zeros(1)
    for want in expected:
        backend.sgd_step(params, np.array([0.5]), velocity, 0.1, 0.9, nesterov, 0.0)
        assert params[0] == pytest.approx(want, rel=1e-14)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_matches_sklearn_optimizer(backend, nesterov):
    optimizers = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")
    rng = np.random.default_rng(5)
    params, grads = optimizer_inputs(rng, 11, np.float64)
    theirs = [params.copy()]
    opt = optimizers.SGDOptimizer(theirs, learning_rate_init=0.05, momentum=0.8,
                                  nesterov=nesterov)
    velocity = np.zeros_like(params)
    for grad in grads:
        backend.sgd_step(params, grad, velocity, 0.05, 0.8, nesterov, 0.0)
        opt.update_params(theirs, [grad])
    np.testing.assert_allclose(params, theirs[0], rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch_formula(backend, dtype, max_norm):
    rng = np.random.default_rng(6)
    grads = rng.standard_normal(3 * kt._CHUNK + 17).astype(dtype) * 0.01
    want = grads.astype(np.float64)
    before = grads.copy()
    norm = backend.clip_grad_norm(grads, max_norm)
    want_norm = ref.clip_grad_norm(want, max_norm)
    np.testing.assert_allclose(norm, want_norm, **TOL[dtype])
    np.testing.assert_allclose(grads, want, **TOL[dtype])
    if max_norm < want_norm:
        assert np.linalg.norm(grads.astype(np.float64)) == pytest.approx(max_norm, rel=1e-5)
    else:
        assert np.array_equal(grads, before)  # below the limit: untouched


def test_clip_grad_norm_leaves_non_finite_gradients_alone(backend):
    grads = np.array([1.0, np.inf, 2.0])
    assert backend.clip_grad_norm(grads, 1.0) == np.inf
    assert np.array_equal(grads, [1.0, np.inf, 2.0])


# --------------------------------------------------------------- determinism


def kernel_cases(dtype):
    """(name, serial, parallel, takes_n_threads, make_args) for every kernel."""
    rng = np.random.default_rng(7)
    shape = (5, 3, 11, 4, 3)
    keys, values, query, mask = pooling_inputs(rng, shape, dtype)
    B, H, L, D, Dv = shape
    _, weights = ref.attention_pooling_forward(keys, values, query, mask, 0.5)
    weights = weights.astype(dtype)
    grad_context = rng.standard_normal((B, H, Dv)).astype(dtype)
    logits = (5 * rng.standard_normal((37, 5))).astype(dtype)
    targets = rng.integers(0, 5, size=37)
    sample_weight = rng.uniform(0.1, 2.0, size=37).astype(dtype)
    size = 3 * kt._CHUNK + 17
    params, grads = optimizer_inputs(rng, size, dtype)
    state = rng.uniform(0, 1, size=size).astype(dtype)
    return [
        ("pool_fwd", kp.attention_pooling_forward_serial,
         kp.attention_pooling_forward_parallel, True,
         lambda: (keys, values, query, mask, 0.5, np.empty((B, H, Dv), dtype),
                  np.empty((B, H, L), dtype))),
        ("pool_bwd", kp.attention_pooling_backward_serial,
         kp.attention_pooling_backward_parallel, True,
         lambda: (keys, values, query, mask, 0.5, weights, grad_context,
                  np.empty_like(keys), np.empty_like(values), np.empty_like(query))),
        ("cross_entropy", kt.softmax_cross_entropy_serial, kt.softmax_cross_entropy_parallel,
         False, lambda: (logits, targets, sample_weight, np.empty_like(logits))),
        ("squared_error", kt.squared_error_serial, kt.squared_error_parallel, False,
         lambda: (logits, logits[::-1].copy(), sample_weight, np.empty_like(logits))),
        ("adam", kt.adam_step_serial, kt.adam_step_parallel, False,
         lambda: (params.copy(), grads[0], state.copy(), state.copy(), 3, 1e-3, 0.9, 0.999,
                  1e-8, 0.01, True)),
        ("sgd", kt.sgd_step_serial, kt.sgd_step_parallel, False,
         lambda: (params.copy(), grads[0], state.copy(), 0.1, 0.9, True, 1e-4)),
        ("clip", kt.clip_grad_norm_serial, kt.clip_grad_norm_parallel, False,
         lambda: (grads[1].copy(), 1.0)),
    ]


def run_case(kernel, args, n_threads=None):
    """Call a kernel; return its result and every array argument after the call."""
    extra = () if n_threads is None else (n_threads,)
    result = kernel(*args, *extra)
    return [result] + [a for a in args if isinstance(a, np.ndarray)]


def assert_bitwise_equal(first, second):
    for a, b in zip(first, second, strict=True):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


@needs_two_threads
@pytest.mark.parametrize("dtype", DTYPES)
def test_serial_parallel_and_thread_counts_bitwise_identical(dtype):
    for name, serial, parallel, takes_threads, make_args in kernel_cases(dtype):
        serial_out = run_case(serial, make_args())
        for n_threads in (1, 2):
            with kernel_threads(n_threads) as n:
                out = run_case(parallel, make_args(), n if takes_threads else None)
            assert_bitwise_equal(serial_out, out)


@needs_two_threads
def test_backend_thread_budget_does_not_change_results():
    rng = np.random.default_rng(8)
    keys, values, query, mask = pooling_inputs(rng, (6, 2, 9, 3, 3), np.float64)
    grad_context = rng.standard_normal((6, 2, 3))
    logits = 4 * rng.standard_normal((29, 3))
    targets = rng.integers(0, 3, size=29)
    weight = rng.uniform(0.1, 2, size=29)
    outputs = []
    for n_threads in (1, 2):
        backend = Backend(n_threads=n_threads)
        pooled = run_pooling(backend, keys, values, query, mask, 0.4, grad_context)
        grad = np.empty_like(logits)
        loss = backend.softmax_cross_entropy(logits, targets, weight, grad)
        outputs.append([*pooled, grad, loss])
    assert_bitwise_equal(*outputs)


# ------------------------------------------------------------------ properties


@HYPOTHESIS
@given(batch=st.integers(1, 4), n_heads=st.integers(1, 3), n_positions=st.integers(1, 8),
       width=st.integers(1, 4), seed=st.integers(0, 2**32 - 1),
       magnitude=st.sampled_from([1.0, 1e2, 1e4]))
def test_pooling_weights_property(batch, n_heads, n_positions, width, seed, magnitude):
    rng = np.random.default_rng(seed)
    keys, values, query, mask = pooling_inputs(
        rng, (batch, n_heads, n_positions, width, width), np.float64, magnitude=magnitude)
    mask = rng.random((batch, n_positions)) < 0.5
    context, weights = run_pooling(Backend(), keys, values, query, mask, 1.0)
    assert np.all(np.isfinite(weights)) and np.all(np.isfinite(context))
    assert np.all(weights >= 0)
    padded = np.broadcast_to(~mask[:, None, :], weights.shape)
    assert np.all(weights[padded] == 0)
    sums = weights.sum(axis=2)
    has_real = np.broadcast_to(mask.any(axis=1)[:, None], sums.shape)
    np.testing.assert_allclose(sums[has_real], 1.0, rtol=1e-12)
    assert np.all(sums[~has_real] == 0) and np.all(context[~has_real] == 0)


@HYPOTHESIS
@given(logits=arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 6)),
                     elements=st.floats(-1e4, 1e4)),
       seed=st.integers(0, 2**32 - 1))
def test_cross_entropy_property(logits, seed):
    rng = np.random.default_rng(seed)
    n_samples, n_classes = logits.shape
    targets = rng.integers(0, n_classes, size=n_samples)
    weight = rng.uniform(0.0, 3.0, size=n_samples)
    weight[0] += 0.5
    grad = np.empty_like(logits)
    loss = Backend().softmax_cross_entropy(logits, targets, weight, grad)
    assert math.isfinite(loss) and loss >= 0
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-12)


# ---------------------------------------------------------------- bad inputs


def test_all_zero_sample_weight_is_refused(backend):
    logits = np.zeros((3, 2))
    with pytest.raises(ValueError, match="positive sum"):
        backend.softmax_cross_entropy(logits, np.array([0, 1, 0]), np.zeros(3),
                                      np.empty_like(logits))
    with pytest.raises(ValueError, match="positive sum"):
        backend.squared_error(logits, logits, np.zeros(3), np.empty_like(logits))


def test_non_finite_loss_is_refused(backend):
    logits = np.array([[0.0, np.nan], [1.0, 2.0]])
    with pytest.raises(NonFiniteLossError, match="non-finite loss") as info:
        backend.softmax_cross_entropy(logits, np.array([0, 1]), np.ones(2),
                                      np.empty_like(logits))
    assert isinstance(info.value, FloatingPointError) and isinstance(info.value, ValueError)
    pred = np.array([[1e200], [0.0]])  # the square overflows to inf
    with pytest.raises(ValueError, match="non-finite loss"):
        backend.squared_error(pred, np.zeros_like(pred), np.ones(2), np.empty_like(pred))


@pytest.mark.parametrize("bad", [3, -1])
def test_target_class_out_of_range_is_refused(backend, bad):
    logits = np.zeros((2, 3))
    with pytest.raises(ValueError, match=f"target class {bad} is out of range"):
        backend.softmax_cross_entropy(logits, np.array([0, bad]), np.ones(2),
                                      np.empty_like(logits))


def test_malformed_arguments_are_refused(backend):
    logits = np.zeros((2, 3))
    with pytest.raises(ValueError, match="integer class indices"):
        backend.softmax_cross_entropy(logits, np.array([0.0, 1.0]), np.ones(2),
                                      np.empty_like(logits))
    with pytest.raises(ValueError, match="sample_weight has shape"):
        backend.squared_error(logits, logits, np.ones(3), np.empty_like(logits))
    with pytest.raises(ValueError, match="step"):
        backend.adam_step(np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2), 0,
                          0.1, 0.9, 0.999, 1e-8, 0.0, False)
    keys = np.zeros((2, 1, 3, 4))
    with pytest.raises(ValueError, match="query has shape"):
        backend.attention_pooling_forward(keys, keys, np.zeros((1, 5)),
                                          np.ones((2, 3), bool), 1.0, np.empty((2, 1, 4)),
                                          np.empty((2, 1, 3)))
