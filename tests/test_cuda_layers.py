"""The CUDA backend's layer, training and array kernels (all but attention).

Every method is checked against the CPU backend (itself proven against the
NumPy oracles in ``reference_layers`` / ``reference_training``) and the array
operations against plain NumPy, in float32, with sizes that cross tile and
block boundaries, N = 1 and None arguments.

Runs on a GPU when one is usable, else in the CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1`` set before Numba is imported); skipped otherwise.
Under the simulator the block-size constants are shrunk so that small shapes
span several blocks, tiles and chunks (on a GPU the constants are frozen into
the compiled kernels, so they are left alone there).
"""

import importlib.util

import numba
import numpy as np
import pytest

try:
    from numba import cuda

    _USABLE = importlib.util.find_spec("numba_cuda") is not None and cuda.is_available()
except Exception:  # pragma: no cover - a broken install
    _USABLE = False
if not _USABLE:
    pytest.skip("numba-cuda is not installed or no CUDA device is usable (set "
                "NUMBA_ENABLE_CUDASIM=1 before Numba is imported to use the simulator)",
                allow_module_level=True)

from skattention._backend import _cuda as cuda_backend  # noqa: E402
from skattention._backend import _cuda_arrays, _cuda_layers, _cuda_training  # noqa: E402
from skattention._backend._cpu import CPUBackend  # noqa: E402
from skattention._backend._cpu_training import NonFiniteLossError  # noqa: E402
from skattention._backend._cuda import CUDABackend, cuda_unavailable_reason  # noqa: E402

SIM = bool(numba.config.ENABLE_CUDASIM)
TOL = dict(rtol=2e-5, atol=2e-6)
ACTIVATIONS = ["identity", "relu", "gelu"]
CPU = CPUBackend(n_threads=1)


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Tiny blocks under the simulator (one OS thread per CUDA thread there)."""
    if SIM:
        for module, name, value in (
                (_cuda_arrays, "THREADS", 8), (_cuda_arrays, "COLUMN_ROWS", 3),
                (_cuda_layers, "TILE", 4), (_cuda_layers, "TILE_PAD", 5),
                (_cuda_layers, "NORM_THREADS", 4), (_cuda_layers, "SPLIT_ROWS", 5),
                (_cuda_layers, "MAX_SPLITS", 3), (_cuda_training, "NORM_THREADS", 4),
                (_cuda_training, "NORM_CHUNK", 10)):
            monkeypatch.setattr(module, name, value)


@pytest.fixture(scope="module")
def gpu():
    return CUDABackend()


def rand(rng, *shape, scale=1.0):
    return np.ascontiguousarray(scale * rng.standard_normal(shape), dtype=np.float32)


def dev(array):
    return None if array is None else cuda.to_device(array)


def nan_like(shape):
    """Output buffers full of NaN show any entry a kernel forgets to write."""
    return np.full(shape, np.nan, dtype=np.float32)


def host(array):
    return array.copy_to_host()


def close(actual, expected, **tol):
    np.testing.assert_allclose(actual, expected, **(tol or TOL))


# ------------------------------------------------------------------- linear


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("n, n_in, n_out", [(1, 5, 7), (9, 6, 5), (4, 0, 3)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_forward(gpu, rng, activation, n, n_in, n_out, with_bias):
    x, weight = rand(rng, n, n_in), rand(rng, n_in, n_out)
    bias = rand(rng, n_out) if with_bias else None
    out, pre = np.empty((n, n_out), np.float32), np.empty((n, n_out), np.float32)
    CPU.linear_forward(x, weight, bias, activation, out, pre)
    d_out, d_pre = dev(nan_like(out.shape)), dev(nan_like(out.shape))
    gpu.linear_forward(dev(x), dev(weight), dev(bias), activation, d_out, d_pre)
    close(host(d_out), out)
    close(host(d_pre), pre)
    d_out = dev(nan_like(out.shape))
    gpu.linear_forward(dev(x), dev(weight), dev(bias), activation, d_out)
    close(host(d_out), out)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("n", [1, 11])
@pytest.mark.parametrize("optional", ["all", "none", "grad_pre_is_grad_out"])
def test_linear_backward(gpu, rng, activation, n, optional):
    n_in, n_out = 6, 5
    x, weight, bias = rand(rng, n, n_in), rand(rng, n_in, n_out), rand(rng, n_out)
    pre = np.empty((n, n_out), np.float32)
    CPU.linear_forward(x, weight, bias, activation, np.empty_like(pre), pre)
    grad_out = rand(rng, n, n_out)
    want = [np.empty((n, n_in), np.float32), np.empty((n_in, n_out), np.float32),
            np.empty(n_out, np.float32), np.empty((n, n_out), np.float32)]
    CPU.linear_backward(x, weight, pre, grad_out.copy(), activation, *want)
    identity = activation == "identity"
    d_grad_out = dev(grad_out)
    if optional == "none":
        got = [None, dev(nan_like(want[1].shape)), None, None]
    elif optional == "all":
        got = [dev(nan_like(a.shape)) for a in want]
    else:
        got = [dev(nan_like(a.shape)) for a in want[:3]] + [d_grad_out]
    gpu.linear_backward(dev(x), dev(weight), None if identity else dev(pre), d_grad_out,
                        activation, *got)
    for actual, expected in zip(got, want):
        if actual is not None and not (identity and actual is got[3]):
            close(host(actual), expected)


def test_linear_backward_repeats_bitwise(gpu, rng):
    n, n_in, n_out = 13, 5, 6
    x, weight, pre, grad_out = (dev(rand(rng, n, n_in)), dev(rand(rng, n_in, n_out)),
                                dev(rand(rng, n, n_out)), dev(rand(rng, n, n_out)))
    runs = []
    for _ in range(2):
        outs = [gpu.empty(s, np.float32) for s in ((n, n_in), (n_in, n_out), (n_out,))]
        gpu.linear_backward(x, weight, pre, grad_out, "gelu", *outs)
        runs.append([host(a) for a in outs])
    for first, second in zip(*runs):
        np.testing.assert_array_equal(first, second)


def test_linear_errors(gpu, rng):
    x, weight = dev(rand(rng, 3, 4)), dev(rand(rng, 4, 2))
    with pytest.raises(ValueError, match="out has shape"):
        gpu.linear_forward(x, weight, None, "relu", gpu.empty((3, 3), np.float32))
    with pytest.raises(ValueError, match="activation must be one of"):
        gpu.linear_forward(x, weight, None, "tanh", gpu.empty((3, 2), np.float32))
    with pytest.raises(ValueError, match="float32"):
        gpu.linear_forward(gpu.asarray(rand(rng, 3, 4), np.float64), weight, None, "relu",
                           gpu.empty((3, 2), np.float32))
    with pytest.raises(ValueError, match="needs pre"):
        gpu.linear_backward(x, weight, None, dev(rand(rng, 3, 2)), "gelu", None,
                            gpu.empty((4, 2), np.float32), None)


# --------------------------------------------------------------- activations


@pytest.mark.parametrize("name", ["relu", "gelu"])
def test_activations(gpu, rng, name):
    x, grad_out = rand(rng, 3, 1, 7, scale=2.0), rand(rng, 3, 1, 7)
    forward, backward = (getattr(CPU, f"{name}_forward"), getattr(CPU, f"{name}_backward"))
    out, grad_x = np.empty_like(x), np.empty_like(x)
    forward(x, out)
    backward(x, grad_out, grad_x)
    d_out, d_grad = dev(nan_like(x.shape)), dev(nan_like(x.shape))
    getattr(gpu, f"{name}_forward")(dev(x), d_out)
    getattr(gpu, f"{name}_backward")(dev(x), dev(grad_out), d_grad)
    close(host(d_out), out)
    close(host(d_grad), grad_x)
    d_x = dev(x)  # in place
    getattr(gpu, f"{name}_forward")(d_x, d_x)
    close(host(d_x), out)


# ---------------------------------------------------------------- layer norm


@pytest.mark.parametrize("n, d", [(1, 7), (5, 9), (3, 1)])
@pytest.mark.parametrize("with_residual", [True, False])
@pytest.mark.parametrize("with_summed", [True, False])
def test_layer_norm_forward(gpu, rng, n, d, with_residual, with_summed):
    x, gamma, beta = rand(rng, n, d, scale=3.0) + 5, rand(rng, d), rand(rng, d)
    residual = rand(rng, n, d) if with_residual else None
    out, summed = np.empty((n, d), np.float32), np.empty((n, d), np.float32)
    mean, rstd = np.empty(n, np.float32), np.empty(n, np.float32)
    CPU.layer_norm_forward(x, residual, gamma, beta, 1e-5, out, summed, mean, rstd)
    got = [dev(nan_like(s)) for s in ((n, d), (n, d), (n,), (n,))]
    if not with_summed:
        got[1] = None
    gpu.layer_norm_forward(dev(x), dev(residual), dev(gamma), dev(beta), 1e-5, *got)
    for actual, expected in zip(got, (out, summed, mean, rstd)):
        if actual is not None:
            close(host(actual), expected, rtol=1e-5, atol=1e-5)
    d_x = dev(x)  # out may be x
    gpu.layer_norm_forward(d_x, dev(residual), dev(gamma), dev(beta), 1e-5, d_x, None,
                           *got[2:])
    close(host(d_x), out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [1, 7])
@pytest.mark.parametrize("grad_summed", ["none", "separate", "is_grad_x"])
def test_layer_norm_backward(gpu, rng, n, grad_summed):
    d = 6
    s, gamma, grad_out = rand(rng, n, d, scale=2.0), rand(rng, d), rand(rng, n, d)
    mean, rstd = np.empty(n, np.float32), np.empty(n, np.float32)
    CPU.layer_norm_forward(s, None, gamma, rand(rng, d), 1e-5, np.empty_like(s), None, mean,
                           rstd)
    extra = None if grad_summed == "none" else rand(rng, n, d)
    want = [np.empty_like(s), np.empty(d, np.float32), np.empty(d, np.float32)]
    CPU.layer_norm_backward(grad_out, s, mean, rstd, gamma, *want, extra)
    got = [dev(nan_like(s.shape)), dev(nan_like(d)), dev(nan_like(d))]
    d_extra = dev(extra)
    if grad_summed == "is_grad_x":
        got[0] = d_extra
    gpu.layer_norm_backward(dev(grad_out), dev(s), dev(mean), dev(rstd), dev(gamma), *got,
                            d_extra)
    for actual, expected in zip(got, want):
        close(host(actual), expected, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------ embedding, dropout


@pytest.mark.parametrize("on_device", [True, False])
@pytest.mark.parametrize("accumulate", [True, False])
def test_embedding(gpu, rng, on_device, accumulate):
    vocab, d = 6, 5
    ids = np.array([[1, 4, 1], [0, 1, 5]], dtype=np.int64)
    table, grad_out = rand(rng, vocab, d), rand(rng, 2, 3, d)
    gids = dev(ids) if on_device else ids
    out = dev(nan_like((2, 3, d)))
    gpu.embedding_forward(gids, dev(table), out)
    np.testing.assert_array_equal(host(out), table[ids])
    start = rand(rng, vocab, d)
    want = start.copy()
    CPU.embedding_backward(ids, grad_out, want, accumulate)
    got = dev(start)
    gpu.embedding_backward(gids, dev(grad_out), got, accumulate)
    # Same summation order as the CPU: bitwise equal.
    np.testing.assert_array_equal(host(got), want)


def test_embedding_with_positions(gpu, rng):
    ids = np.array([[1, 4, 1], [0, 1, 5]], dtype=np.int64)
    table, positions = rand(rng, 6, 5), rand(rng, 3, 5)
    steps = np.array([[0, 1, 2], [2, 0, 1]], dtype=np.int64)
    out = dev(nan_like((2, 3, 5)))
    gpu.embedding_forward(ids, dev(table), out, dev(positions), steps)
    np.testing.assert_array_equal(host(out), table[ids] + positions[steps])


def test_embedding_errors(gpu, rng):
    table = dev(rand(rng, 4, 3))
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 4\)"):
        gpu.embedding_forward(dev(np.array([0, 4])), table, gpu.empty((2, 3), np.float32))
    with pytest.raises(ValueError, match="found id -1"):
        gpu.embedding_backward(np.array([-1, 2]), dev(rand(rng, 2, 3)), table)
    with pytest.raises(ValueError, match="must be integers"):
        gpu.embedding_forward(np.array([0.5]), table, gpu.empty((1, 3), np.float32))


def test_dropout(gpu, rng):
    x = rand(rng, 3, 7)
    mask = np.where(rng.random(x.shape) < 0.5, 0.0, 2.0).astype(np.float32)
    out = dev(nan_like(x.shape))
    gpu.dropout_forward(dev(x), mask, out)  # a host mask is uploaded
    np.testing.assert_array_equal(host(out), x * mask)
    gpu.dropout_backward(dev(x), dev(mask), out)
    np.testing.assert_array_equal(host(out), x * mask)
    gpu.dropout_forward(dev(x), None, out)  # rate 0: a copy
    np.testing.assert_array_equal(host(out), x)
    d_x = dev(x)
    gpu.dropout_forward(d_x, None, d_x)
    np.testing.assert_array_equal(host(d_x), x)


# -------------------------------------------------------------------- losses


@pytest.mark.parametrize("n", [1, 13])
def test_softmax_cross_entropy(gpu, rng, n):
    logits = rand(rng, n, 4, scale=3.0)
    targets = rng.integers(0, 4, size=n).astype(np.int32)
    weight = rng.random(n) + 0.1
    grad = np.empty_like(logits)
    want = CPU.softmax_cross_entropy(logits, targets, weight, grad)
    d_grad = dev(nan_like(logits.shape))
    loss = gpu.softmax_cross_entropy(dev(logits), targets, weight, d_grad)
    assert isinstance(loss, float)
    assert loss == pytest.approx(want, rel=1e-6)
    close(host(d_grad), grad)
    loss = gpu.softmax_cross_entropy(dev(logits), dev(targets), dev(weight.astype(np.float32)),
                                     d_grad)
    assert loss == pytest.approx(want, rel=1e-6)


def test_loss_errors(gpu, rng):
    logits, grad = dev(rand(rng, 3, 2)), gpu.empty((3, 2), np.float32)
    with pytest.raises(ValueError, match="out of range"):
        gpu.softmax_cross_entropy(logits, np.array([0, 2, 1]), np.ones(3), grad)
    with pytest.raises(ValueError, match="positive sum"):
        gpu.softmax_cross_entropy(logits, np.array([0, 1, 1]), np.zeros(3), grad)
    with pytest.raises(ValueError, match="integer class"):
        gpu.softmax_cross_entropy(logits, np.array([0.0, 1.0, 1.0]), np.ones(3), grad)
    bad = rand(rng, 3, 2)
    bad[1, 0] = np.nan
    with pytest.raises(NonFiniteLossError):
        gpu.softmax_cross_entropy(dev(bad), np.array([0, 1, 1]), np.ones(3), grad)
    with pytest.raises(NonFiniteLossError):
        gpu.squared_error(dev(bad), rand(rng, 3, 2), np.ones(3), grad)
    with pytest.raises(ValueError, match="target has shape"):
        gpu.squared_error(logits, rand(rng, 3, 3), np.ones(3), grad)


@pytest.mark.parametrize("target_dtype", [np.float32, np.float64])
def test_squared_error(gpu, rng, target_dtype):
    pred, target = rand(rng, 11, 3), rng.standard_normal((11, 3)).astype(target_dtype)
    weight = rng.random(11) + 0.1
    grad = np.empty_like(pred)
    want = CPU.squared_error(pred, target, weight, grad)
    d_grad = dev(nan_like(pred.shape))
    loss = gpu.squared_error(dev(pred), target, weight, d_grad)
    assert loss == pytest.approx(want, rel=1e-6)
    close(host(d_grad), grad)


# ---------------------------------------------------------------- optimizers


@pytest.mark.parametrize("decoupled", [True, False])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_step(gpu, rng, decoupled, weight_decay):
    size = 23
    params, grads = rand(rng, size), rand(rng, size)
    m, v = rand(rng, size, scale=0.1), np.abs(rand(rng, size, scale=0.1))
    want = [a.copy() for a in (params, m, v)]
    CPU.adam_step(want[0], grads, want[1], want[2], 3, 1e-2, 0.9, 0.999, 1e-8, weight_decay,
                  decoupled)
    got = [dev(a) for a in (params, m, v)]
    gpu.adam_step(got[0], dev(grads), got[1], got[2], 3, 1e-2, 0.9, 0.999, 1e-8, weight_decay,
                  decoupled)
    for actual, expected in zip(got, want):
        close(host(actual), expected, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="1-based"):
        gpu.adam_step(*got[:1], dev(grads), *got[1:], 0, 1e-2, 0.9, 0.999, 1e-8, 0.0, False)


@pytest.mark.parametrize("nesterov", [True, False])
def test_sgd_step(gpu, rng, nesterov):
    params, grads, velocity = rand(rng, 19), rand(rng, 19), rand(rng, 19, scale=0.1)
    want = [params.copy(), velocity.copy()]
    CPU.sgd_step(want[0], grads, want[1], 0.05, 0.9, nesterov, 1e-3)
    got = [dev(params), dev(velocity)]
    gpu.sgd_step(got[0], dev(grads), got[1], 0.05, 0.9, nesterov, 1e-3)
    for actual, expected in zip(got, want):
        close(host(actual), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
@pytest.mark.parametrize("size", [1, 37])
def test_clip_grad_norm(gpu, rng, max_norm, size):
    grads = rand(rng, size)
    want = grads.copy()
    want_norm = CPU.clip_grad_norm(want, max_norm)
    got = dev(grads)
    norm = gpu.clip_grad_norm(got, max_norm)
    assert isinstance(norm, float)
    assert norm == pytest.approx(want_norm, rel=1e-6)
    close(host(got), want, rtol=1e-6, atol=1e-7)


def test_clip_grad_norm_nonfinite(gpu, rng):
    grads = rand(rng, 12)
    grads[3] = np.inf
    got = dev(grads)
    assert gpu.clip_grad_norm(got, 1.0) == np.inf
    np.testing.assert_array_equal(host(got), grads)
    assert gpu.clip_grad_norm(gpu.empty(0, np.float32), 1.0) == 0.0
    with pytest.raises(ValueError, match="flat buffer"):
        gpu.clip_grad_norm(gpu.empty((2, 2), np.float32), 1.0)


# -------------------------------------------------------------- array ops


def test_memory(gpu, rng):
    zeros = gpu.zeros((3, 5), np.float32)
    np.testing.assert_array_equal(host(zeros), np.zeros((3, 5), np.float32))
    assert gpu.empty((2, 0), np.float32).shape == (2, 0)
    x = rand(rng, 4, 3)
    d_x = gpu.asarray(x, np.float32)
    assert gpu.asarray(d_x, np.float32) is d_x
    np.testing.assert_array_equal(gpu.to_host(d_x), x)
    cast = gpu.asarray(d_x, np.float64)
    assert cast.dtype == np.float64
    np.testing.assert_array_equal(host(cast), x.astype(np.float64))
    np.testing.assert_array_equal(host(gpu.asarray([[1, 2]], np.int64)), [[1, 2]])
    assert isinstance(gpu.to_host(x), np.ndarray)
    gpu.fill_zero(d_x)
    np.testing.assert_array_equal(host(d_x), np.zeros_like(x))
    mask = gpu.zeros((2, 3), np.bool_)
    assert not host(mask).any()


@pytest.mark.parametrize("offset", [0, 3])
def test_split_merge_heads(gpu, rng, offset):
    batch, length, heads, width = 2, 3, 2, 5
    columns = offset + heads * width + 1
    x = rand(rng, batch * length, columns)
    out = dev(nan_like((batch, heads, length, width)))
    gpu.split_heads(dev(x), heads, out, offset=offset)
    block = x[:, offset:offset + heads * width].reshape(batch, length, heads, width)
    np.testing.assert_array_equal(host(out), block.transpose(0, 2, 1, 3))
    rows = dev(nan_like(x.shape))
    gpu.merge_heads(out, rows, offset=offset)
    merged = host(rows)
    np.testing.assert_array_equal(merged[:, offset:offset + heads * width],
                                  x[:, offset:offset + heads * width])
    assert np.isnan(merged[:, offset + heads * width:]).all()  # other columns untouched
    with pytest.raises(ValueError, match="heads"):
        gpu.split_heads(dev(x), 3, out, offset=offset)
    with pytest.raises(ValueError, match="do not fit"):
        gpu.split_heads(dev(x), heads, out, offset=columns)


def test_head_views_are_copies_moved_back_by_heads_done(gpu, rng):
    batch, length, heads, width, offset = 2, 3, 2, 5, 4
    shape = (batch, heads, length, width)
    x = rand(rng, batch * length, offset + heads * width)
    block = x[:, offset:].reshape(batch, length, heads, width).transpose(0, 2, 1, 3)
    np.testing.assert_array_equal(host(gpu.heads_of(dev(x), shape, offset)), block)
    rows = dev(nan_like(x.shape))
    target = gpu.heads_out(rows, shape, offset)
    gpu.copy_(target, dev(np.ascontiguousarray(block)))
    gpu.heads_done(target, rows, offset)
    np.testing.assert_array_equal(host(rows)[:, offset:], x[:, offset:])
    assert np.isnan(host(rows)[:, :offset]).all()
    with pytest.raises(ValueError, match="differ"):
        gpu.copy_(target, dev(x))


def test_elementwise_array_ops(gpu, rng):
    x, rows, y = rand(rng, 2, 3, 5), rand(rng, 3, 5), rand(rng, 2, 3, 5)
    d_x = dev(x)
    gpu.add_rows(d_x, dev(rows))
    np.testing.assert_array_equal(host(d_x), x + rows)
    gpu.add_(d_x, dev(y))
    np.testing.assert_array_equal(host(d_x), x + rows + y)
    tiled = dev(nan_like((4, 5)))
    gpu.tile_rows(dev(rows[0]), tiled)
    np.testing.assert_array_equal(host(tiled), np.tile(rows[0], (4, 1)))
    matrix, scale = rand(rng, 4, 5), rand(rng, 4)
    d_matrix = dev(matrix)
    gpu.scale_rows_(d_matrix, scale)
    np.testing.assert_array_equal(host(d_matrix), matrix * scale[:, None])
    with pytest.raises(ValueError, match="scale has shape"):
        gpu.scale_rows_(d_matrix, scale[:3])


@pytest.mark.parametrize("n", [1, 8])
def test_sum_axis0(gpu, rng, n):
    x = rand(rng, n, 11)
    out = dev(nan_like(11))
    gpu.sum_axis0(dev(x), out)
    close(host(out), x.astype(np.float64).sum(axis=0), rtol=1e-6, atol=1e-6)


def test_mean_pool(gpu, rng):
    states, grad = rand(rng, 3, 4, 6), rand(rng, 3, 6)
    weights = np.array([[0.5, 0.5, 0, 0], [0.25] * 4, [1, 0, 0, 0]], dtype=np.float32)
    out = dev(nan_like((3, 6)))
    gpu.mean_pool_forward(dev(states), weights, out)
    close(host(out), np.einsum("bl,bld->bd", weights, states), rtol=1e-6, atol=1e-6)
    back = dev(nan_like(states.shape))
    gpu.mean_pool_backward(dev(weights), dev(grad), back)
    np.testing.assert_array_equal(host(back), weights[:, :, None] * grad[:, None, :])


def test_all_finite(gpu, rng):
    x = rand(rng, 3, 7)
    assert gpu.all_finite(dev(x)) is True
    assert gpu.all_finite(gpu.empty(0, np.float32)) is True
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[2, 6] = bad
        assert gpu.all_finite(dev(y)) is False


@pytest.mark.parametrize("on_device", [True, False])
def test_take_rows(gpu, rng, on_device):
    x = rand(rng, 5, 2, 3)
    index = np.array([4, 0, 4, 2])
    out = dev(nan_like((4, 2, 3)))
    gpu.take_rows(dev(x), dev(index) if on_device else index, out)
    np.testing.assert_array_equal(host(out), x[index])
    with pytest.raises(IndexError):
        gpu.take_rows(dev(x), np.array([5]), dev(nan_like((1, 2, 3))))


def test_gather_rows(gpu, rng):
    x = rand(rng, 6, 3)
    index = np.array([5, -1, 0, 0, -1])
    out = dev(nan_like((5, 3)))
    gpu.gather_rows(dev(x), dev(index), out)
    np.testing.assert_array_equal(host(out), np.where(index[:, None] >= 0, x[index], 0))
    with pytest.raises(ValueError, match="gather_rows"):
        gpu.gather_rows(dev(x), dev(index), dev(nan_like((5, 2))))


# ------------------------------------------------------------- availability


def test_cuda_unavailable_reason(monkeypatch):
    assert cuda_unavailable_reason() is None
    assert CUDABackend().name == "cuda"
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    monkeypatch.setattr(cuda, "cuda_error", lambda: "\nCUDA driver library cannot be found.\n")
    reason = cuda_unavailable_reason()
    assert reason.startswith("no usable CUDA driver or GPU was found: CUDA driver library")
    assert "\n" not in reason
    with pytest.raises(RuntimeError, match="CUDA backend cannot be used"):
        CUDABackend()
    monkeypatch.setattr(cuda_backend.importlib.util, "find_spec", lambda name: None)
    assert 'pip install "skattention[cuda]"' in cuda_unavailable_reason()
