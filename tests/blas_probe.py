"""Does this machine's BLAS give a row of a float32 product a result that depends on the batch?

The linear maps are BLAS products over blocks of rows. Some BLAS builds give
each row the same bits whatever the other rows are; others (OpenBLAS's
Haswell kernels on an AMD EPYC, seen here) change the accumulation order with
the row's position in the call and the call's row count. There predictions
for a subset or a permutation of the samples agree with the whole batch's to
about 1e-7 relative (float32 rounding), not bitwise, and scikit-learn's
invariance checks (rtol=1e-7, atol=1e-9) cannot pass.
"""

import functools

import numpy as np

__all__ = ["blas_rows_depend_on_batch", "assert_same_predictions", "BATCH_DEPENDENT_CHECKS"]

_REASON = ("this machine's BLAS rounds a row of a float32 product differently with the "
           "other rows of the call; subsets agree to ~1e-7 relative (see tests/blas_probe.py "
           "and test_predictions_agree_over_subsets_and_orders)")


@functools.lru_cache(maxsize=None)
def blas_rows_depend_on_batch():
    """True when the CPU backend's float32 linear map is not row-by-row reproducible."""
    from skattention._backend import get_backend

    backend = get_backend("cpu", n_threads=1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 8)).astype(np.float32)
    weight = rng.standard_normal((8, 24)).astype(np.float32)
    bias = np.zeros(24, np.float32)
    full = np.empty((40, 24), np.float32)
    backend.linear_forward(x, weight, bias, "identity", full)
    for rows in (np.arange(1, 40, 2), np.arange(39, -1, -1), np.arange(5)):
        part = np.empty((len(rows), 24), np.float32)
        backend.linear_forward(np.ascontiguousarray(x[rows]), weight, bias, "identity", part)
        if not np.array_equal(part, full[rows]):
            return True
    return False


def assert_same_predictions(actual, desired):
    """Bitwise equal where the BLAS allows it, else equal to float32 rounding."""
    if blas_rows_depend_on_batch():
        np.testing.assert_allclose(actual, desired, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(actual, desired)


#: scikit-learn's checks that a subset or a permutation of the samples predicts
#: exactly as the whole batch, as ``expected_failed_checks`` entries where the
#: BLAS cannot promise it; test_estimators.py checks the same to float32
#: rounding on every machine.
BATCH_DEPENDENT_CHECKS = (
    {"check_methods_subset_invariance": _REASON,
     "check_methods_sample_order_invariance": _REASON}
    if blas_rows_depend_on_batch() else {})
