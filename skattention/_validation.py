"""Turn the numeric sequence inputs users have into padded arrays and masks.

Accepted forms (``n`` samples, ``T`` time steps, ``F`` features per step):

* 3D arrays ``(n, T, F)``; unequal lengths as trailing steps that are all
  NaN (aeon's convention); ``channels_first=True`` reads ``(n, F, T)``.
* ragged lists of 2D ``(T_i, F)`` or 1D ``(T_i,)`` arrays; with
  ``channels_first=True`` the 2D arrays are ``(F, T_i)`` (aeon's "np-list"),
  so that ``list(X)`` always means the same as a 3D ``X``.
* 2D arrays and DataFrames ``(n, d)``: a sequence of ``d`` scalar tokens,
  one per column (validated by the estimator with scikit-learn's
  ``validate_data``, so feature names and messages follow scikit-learn).
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["SequenceBatch", "check_sequences", "is_sequence_input"]


@dataclass
class SequenceBatch:
    """Padded numeric sequences.

    Attributes
    ----------
    values : ndarray of shape (n, T, F)
        Steps; padded steps hold 0.
    mask : ndarray of shape (n, T), bool
        True at real steps.
    """

    values: np.ndarray
    mask: np.ndarray


def is_sequence_input(X):
    """Whether ``X`` is 3D or ragged (else it is read as a 2D table).

    Parameters
    ----------
    X : object

    Returns
    -------
    is_sequence : bool
    """
    if hasattr(X, "iloc") or hasattr(X, "columns"):
        return False
    if isinstance(X, np.ndarray):
        return X.ndim == 3
    if isinstance(X, (list, tuple)) and len(X) > 0:
        first = X[0]
        if isinstance(first, np.ndarray) and first.ndim in (1, 2):
            lengths = {np.shape(x) for x in X if isinstance(x, np.ndarray)}
            # A list of equal-length 1D arrays is a 2D table, as in scikit-learn.
            return first.ndim == 2 or len(lengths) > 1
        if isinstance(first, (list, tuple)) and first and isinstance(first[0], (list, tuple)):
            return True
        if isinstance(first, (list, tuple)):
            return len({len(x) if hasattr(x, "__len__") else -1 for x in X}) > 1
    return False


def _check_numeric(array, where):
    """Return a float64 copy of a numeric array, refusing other dtypes."""
    array = np.asarray(array)
    if array.dtype.kind == "c":
        raise ValueError(f"Complex data not supported ({where}).")
    if array.dtype.kind not in "biuf":
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{where} must be numeric, got dtype {array.dtype}: {exc}"
            ) from exc
    return array.astype(np.float64, copy=False)


def _check_float32_range(values):
    """Refuse finite input that float32 cannot hold (it would become inf).

    Parameters
    ----------
    values : ndarray of float32
        Input after the cast.

    Raises
    ------
    ValueError
        If any value overflowed to infinity in the cast.
    """
    if np.isinf(values).any():
        raise ValueError("Input X contains values too large for float32 (|x| > 3.4e38); "
                         "the network computes in float32. Rescale X.")


def check_sequences(X, *, channels_first=False, dtype=np.float32):
    """Validate 3D or ragged sequence input and pad it.

    Parameters
    ----------
    X : ndarray of shape (n, T, F) or list of arrays of shape (T_i, F) or (T_i,)
        Sequences. In 3D arrays, trailing all-NaN steps are padding.
    channels_first : bool, default=False
        Read 3D arrays as ``(n, F, T)`` and the 2D arrays of a list as
        ``(F, T_i)``.
    dtype : numpy dtype, default=np.float32
        dtype of the returned values.

    Returns
    -------
    batch : SequenceBatch

    Raises
    ------
    ValueError
        Empty input, an empty sequence, NaN that is not trailing padding,
        infinity, inconsistent feature counts, or non-numeric data; the
        message names the sample.
    """
    if isinstance(X, np.ndarray):
        # Float input is checked in its own dtype: a float64 working copy of
        # float32 data would double predict's peak memory on large inputs.
        values = X if X.dtype.kind == "f" else _check_numeric(X, "X")
        if values.ndim != 3:
            raise ValueError(f"X must be a 3D array (n_samples, n_timesteps, n_features), "
                             f"got shape {X.shape}.")
        if values.shape[0] == 0:
            raise ValueError("Found array with 0 sample(s) (shape=%r) while a minimum of 1 "
                             "is required." % (values.shape,))
        if channels_first:
            values = np.swapaxes(values, 1, 2)
        if values.shape[1] == 0 or values.shape[2] == 0:
            raise ValueError(f"X has shape {X.shape}: sequences need at least one time step "
                             "and one feature.")
        if np.isinf(values).any():
            raise ValueError("Input X contains infinity.")
        missing = np.isnan(values)
        step_missing = missing.all(axis=2)
        mask = ~step_missing
        # Real steps must be a prefix: a NaN step followed by a real one is
        # missing data, not padding.
        lengths = mask.sum(axis=1)
        prefix = np.arange(values.shape[1])[None, :] < lengths[:, None]
        bad = np.flatnonzero((prefix != mask).any(axis=1) | (missing & mask[:, :, None]).any(
            axis=(1, 2)))
        if bad.size:
            raise ValueError(
                f"Input X contains NaN inside sample {int(bad[0])}: only trailing time steps "
                "that are entirely NaN are read as padding."
            )
        empty = np.flatnonzero(lengths == 0)
        if empty.size:
            raise ValueError(f"Sample {int(empty[0])} of X has no time step (all NaN).")
        values = np.array(values, dtype=dtype, order="C")  # the one copy
        values[step_missing] = 0
        _check_float32_range(values)
        return SequenceBatch(values, mask)

    sequences = list(X)
    if not sequences:
        raise ValueError("Found array with 0 sample(s) while a minimum of 1 is required.")
    arrays = []
    n_features = None
    for i, sequence in enumerate(sequences):
        array = _check_numeric(sequence, f"sample {i} of X")
        if array.ndim == 1:
            array = array[:, None]
        elif array.ndim == 2 and channels_first:
            array = array.T
        if array.ndim != 2:
            raise ValueError(f"Sample {i} of X must be a 1D or 2D array (T_i, n_features), "
                             f"got shape {array.shape}.")
        if array.shape[0] == 0:
            raise ValueError(f"Sample {i} of X is an empty sequence.")
        if n_features is None:
            n_features = array.shape[1]
        elif array.shape[1] != n_features:
            raise ValueError(f"Sample {i} of X has {array.shape[1]} features per step, "
                             f"but sample 0 has {n_features}.")
        if not np.isfinite(array).all():
            raise ValueError(f"Input X contains NaN or infinity in sample {i}.")
        arrays.append(array)
    length = max(a.shape[0] for a in arrays)
    values = np.zeros((len(arrays), length, n_features), dtype=dtype)
    mask = np.zeros((len(arrays), length), dtype=bool)
    for i, array in enumerate(arrays):
        values[i, : array.shape[0]] = array
        mask[i, : array.shape[0]] = True
    _check_float32_range(values)
    return SequenceBatch(values, mask)
