"""``_blas.gemm``: BLAS products on strided row-major views, against NumPy."""

import numpy as np
import pytest

from skattention._backend._blas import gemm


def _operand(rng, shape, dtype, strided):
    """A (rows, cols) array, or the same values as a view with padded rows."""
    values = rng.normal(size=shape).astype(dtype)
    if not strided:
        return values
    padded = np.full((shape[0], shape[1] + 5), np.nan, dtype=dtype)
    padded[:, 2:2 + shape[1]] = values
    return padded[:, 2:2 + shape[1]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("strided", [False, True])
def test_gemm_matches_numpy(rng, dtype, trans_a, trans_b, strided):
    m, n, k = 7, 9, 5
    a = _operand(rng, (k, m) if trans_a else (m, k), dtype, strided)
    b = _operand(rng, (n, k) if trans_b else (k, n), dtype, strided)
    c0 = rng.normal(size=(m, n)).astype(dtype)
    big = np.full((m + 2, n + 6), -3.0, dtype=dtype)
    c = big[1:1 + m, 4:4 + n]  # a block of a larger matrix
    c[...] = c0
    gemm(a, b, c, trans_a, trans_b, 2.0, 0.5)
    op_a = a.T if trans_a else a
    op_b = b.T if trans_b else b
    expected = 2.0 * op_a.astype(np.float64) @ op_b.astype(np.float64) + 0.5 * c0
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(c, expected, rtol=tol, atol=tol)
    outside = np.ones(big.shape, dtype=bool)
    outside[1:1 + m, 4:4 + n] = False
    assert (big[outside] == -3.0).all()  # nothing written around the block


def test_gemm_beta_zero_overwrites_nan_and_empty_inner_dimension(rng):
    a = rng.normal(size=(3, 4))
    b = rng.normal(size=(4, 2))
    c = np.full((3, 2), np.nan)
    gemm(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-12)
    c[...] = np.nan
    gemm(a[:, :0], b[:0], c)  # K = 0: the product is zero, NaN is not kept
    assert (c == 0).all()
    c[...] = 2.0
    gemm(a[:, :0], b[:0], c, beta=1.5)
    assert (c == 3.0).all()


def test_gemm_one_row_views_and_empty_outputs(rng):
    a = rng.normal(size=(1, 6))[:, ::1]
    b = rng.normal(size=(6, 1))
    c = np.empty((1, 1))
    gemm(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-12)
    gemm(np.empty((0, 3)), np.empty((3, 4)), np.empty((0, 4)))  # nothing to do


def test_gemm_refuses_bad_operands(rng):
    with pytest.raises(ValueError, match="shapes do not match"):
        gemm(np.ones((2, 3)), np.ones((4, 2)), np.empty((2, 2)))
    with pytest.raises(ValueError, match="unit stride"):
        gemm(np.ones((3, 6))[:, ::2], np.ones((3, 2)), np.empty((3, 2)))
