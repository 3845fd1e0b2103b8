"""The CPU backend's array operations: head layouts and buffer recycling."""

import numpy as np
import pytest

from skattention._backend._cpu import CPUBackend
from skattention._nn import AttentionNetwork, NetworkConfig


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("offset", [0, 6])
def test_split_and_merge_heads_match_numpy_transposes(n_threads, offset):
    backend = CPUBackend(n_threads=n_threads)
    rng = np.random.default_rng(0)
    batch, length, heads, width = 3, 5, 2, 3
    x = rng.normal(size=(batch * length, offset + heads * width + 4)).astype(np.float32)
    out = np.full((batch, heads, length, width), np.nan, dtype=np.float32)
    backend.split_heads(x, heads, out, offset=offset)
    block = x[:, offset:offset + heads * width].reshape(batch, length, heads, width)
    np.testing.assert_array_equal(out, block.transpose(0, 2, 1, 3))

    rows = np.full_like(x, -7.0)
    backend.merge_heads(out, rows, offset=offset)
    np.testing.assert_array_equal(rows[:, offset:offset + heads * width],
                                  x[:, offset:offset + heads * width])
    untouched = np.ones(x.shape[1], dtype=bool)
    untouched[offset:offset + heads * width] = False
    assert (rows[:, untouched] == -7.0).all()


@pytest.mark.parametrize("n_threads", [1, 2])
def test_gather_rows_packs_and_unpacks_with_zero_rows(n_threads):
    backend = CPUBackend(n_threads=n_threads)
    rng = np.random.default_rng(1)
    mask = rng.random(1500) < 0.6  # more rows than one block
    x = rng.normal(size=(1500, 5)).astype(np.float32)
    rows = np.flatnonzero(mask)
    packed = np.full((rows.size, 5), np.nan, dtype=np.float32)
    backend.gather_rows(x, rows, packed)
    np.testing.assert_array_equal(packed, x[mask])
    slots = np.full(1500, -1, dtype=np.int64)
    slots[rows] = np.arange(rows.size)
    unpacked = np.full_like(x, np.nan)
    backend.gather_rows(packed, slots, unpacked)
    np.testing.assert_array_equal(unpacked, np.where(mask[:, None], x, 0))
    with pytest.raises(ValueError, match="gather_rows"):
        backend.gather_rows(x, rows, np.zeros((rows.size, 4), np.float32))


def test_split_heads_refuses_a_layout_that_does_not_fit():
    backend = CPUBackend(n_threads=1)
    with pytest.raises(ValueError, match="split_heads"):
        backend.split_heads(np.zeros((10, 4), np.float32), 2, np.zeros((2, 2, 5, 3), np.float32))
    with pytest.raises(ValueError, match="merge_heads"):
        backend.merge_heads(np.zeros((2, 2, 5, 3), np.float32), np.zeros((10, 4), np.float32))


def test_reuse_buffers_hands_back_the_previous_pass_arrays_in_order():
    backend = CPUBackend(n_threads=1)
    with backend.reuse_buffers("a"):
        first = [backend.empty((4, 3), np.float32), backend.zeros(5, np.float64)]
    first[1][:] = 9.0
    with backend.reuse_buffers("a"):
        again = [backend.empty((4, 3), np.float32), backend.zeros(5, np.float64),
                 backend.empty(2, np.float32)]
        with backend.reuse_buffers("b"):  # another key has its own pool
            other = backend.empty((4, 3), np.float32)
    assert np.shares_memory(again[0], first[0]) and np.shares_memory(again[1], first[1])
    assert again[0].shape == (4, 3) and again[0].flags.c_contiguous
    assert not again[1].any()  # zeros() zeroes a recycled array
    assert not np.shares_memory(other, first[0])
    with backend.reuse_buffers("a"):
        smaller = backend.empty((2, 5), np.float32)  # fits in the 12 elements: reused
        wider = backend.empty(6, np.float64)  # more than the 5 elements: new memory
        other_dtype = backend.empty(2, np.float64)  # the float32 slot: new memory
    assert np.shares_memory(smaller, first[0]) and smaller.shape == (2, 5)
    assert not np.shares_memory(wider, first[1]) and wider.shape == (6,)
    assert other_dtype.dtype == np.float64 and not np.shares_memory(other_dtype, again[2])
    with backend.reuse_buffers("a"):
        grown = backend.empty((4, 4), np.float32)  # larger than before: a new array
    assert not np.shares_memory(grown, first[0]) and grown.shape == (4, 4)
    assert not np.shares_memory(backend.empty((4, 3), np.float32), grown)  # outside: fresh


def test_predictions_do_not_share_memory_between_calls():
    config = NetworkConfig(input_kind="values", n_inputs=2, max_len=6, d_model=8, n_heads=2,
                           n_layers=1, d_ff=8, n_outputs=3)
    network = AttentionNetwork(config, CPUBackend(n_threads=1))
    params = network.init_params(0)
    rng = np.random.default_rng(1)
    X1, X2 = rng.normal(size=(2, 4, 6, 2))
    mask = np.ones((4, 6), dtype=bool)
    first = network.predict(params, X1, mask)
    kept = first.copy()
    second = network.predict(params, X2, mask)
    np.testing.assert_array_equal(first, kept)  # not overwritten by the second call
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(network.predict(params, X2, mask), second)
    pooled = network.transform(params, X1, mask)
    network.transform(params, X2, mask)
    np.testing.assert_array_equal(pooled, network.transform(params, X1, mask))


@pytest.mark.parametrize("offset", [0, 6])
def test_head_views_read_and_write_the_token_rows_in_place(offset):
    backend = CPUBackend(n_threads=1)
    rng = np.random.default_rng(1)
    batch, length, heads, width = 3, 5, 2, 3
    shape = (batch, heads, length, width)
    x = rng.normal(size=(batch * length, offset + heads * width + 4)).astype(np.float32)
    copied = np.empty(shape, np.float32)
    backend.split_heads(x, heads, copied, offset=offset)
    view = backend.heads_of(x, shape, offset)
    assert np.shares_memory(view, x)
    np.testing.assert_array_equal(view, copied)

    rows = np.full_like(x, -7.0)
    target = backend.heads_out(rows, shape, offset)
    target[...] = copied
    backend.heads_done(target, rows, offset)
    np.testing.assert_array_equal(rows[:, offset:offset + heads * width],
                                  x[:, offset:offset + heads * width])
    untouched = np.ones(x.shape[1], dtype=bool)
    untouched[offset:offset + heads * width] = False
    assert (rows[:, untouched] == -7.0).all()
    with pytest.raises(ValueError, match="heads_of"):
        backend.heads_of(x, (batch, heads, length + 1, width), offset)
    with pytest.raises(ValueError, match="heads_of"):
        backend.heads_of(x, shape, x.shape[1] - 1)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_finds_any_nan_or_infinity(n_threads, dtype):
    backend = CPUBackend(n_threads=n_threads)
    x = np.random.default_rng(2).normal(size=200_000).astype(dtype) * 1e30
    assert backend.all_finite(x) is True
    assert backend.all_finite(x[:0]) is True
    for position in (0, 65_535, 65_536, 199_999):
        for bad in (np.nan, np.inf, -np.inf):
            y = x.copy()
            y[position] = bad
            assert backend.all_finite(y) is False
    assert backend.all_finite(np.ones((3, 2), dtype)) is True
    assert backend.all_finite(np.array([[1.0, np.inf]], dtype)) is False
