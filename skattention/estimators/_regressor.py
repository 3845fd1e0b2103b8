"""AttentionRegressor: attention over numeric sequences or table columns."""

import numpy as np
from sklearn.base import RegressorMixin, _fit_context
from sklearn.utils.validation import check_is_fitted, check_array

from ._base import BaseAttentionEstimator

__all__ = ["AttentionRegressor"]


class AttentionRegressor(RegressorMixin, BaseAttentionEstimator):
    """Transformer-encoder regressor with attention pooling, for numeric sequences.

    The same model as :class:`AttentionClassifier` with a linear output per
    target, trained on half the squared error. Targets are standardised
    internally (mean 0, variance 1 per output) and predictions mapped back,
    so the learning rate does not depend on the scale of ``y``.

    Parameters
    ----------
    d_model, n_heads, n_layers, d_ff, attention_score, positional, pooling, length_scaling, \
dropout, solver, learning_rate_init, learning_rate, warmup_iter, batch_size, max_iter, tol, \
n_iter_no_change, early_stopping, validation_fraction, alpha, shuffle, random_state, \
verbose, warm_start, max_grad_norm, n_jobs, device, channels_first, store_attention_weights :
        As in :class:`AttentionClassifier`; early stopping scores R².

    Attributes
    ----------
    n_features_in_, feature_names_in_, params_, n_iter_, loss_curve_, validation_scores_, \
best_loss_, best_validation_score_, device_, attention_weights_ :
        As in :class:`AttentionClassifier` (``loss_curve_`` is in standardised units).
    n_outputs_ : int

    Examples
    --------
    >>> from sklearn.datasets import make_regression
    >>> from skattention import AttentionRegressor
    >>> X, y = make_regression(n_samples=60, n_features=4, random_state=0)
    >>> reg = AttentionRegressor(d_model=8, n_heads=2, max_iter=30, random_state=0)
    >>> reg.fit(X, y).predict(X[:3]).shape
    (3,)
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags

    def _encode_targets(self, y, reset):
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target "
                             "y is None.")
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        if y.ndim == 1:
            y2 = y[:, None]
        elif y.ndim == 2:
            y2 = y
        else:
            raise ValueError(f"y must be 1D or 2D, got shape {y.shape}.")
        if reset:
            self._y_single = y.ndim == 1
            self.n_outputs_ = y2.shape[1]
        elif y2.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y2.shape[1]} outputs, but {type(self).__name__} was "
                             f"fitted with {self.n_outputs_}.")
        return y2, self.n_outputs_

    def _scale_targets(self, targets, sample_weight, reset):
        if reset:
            # Weighted, so that a zero weight is the same as leaving a sample out.
            self._y_mean = np.average(targets, axis=0, weights=sample_weight)
            deviation = targets - self._y_mean
            # Factor out the largest deviation before squaring, so that targets
            # near 1e200 or 1e-300 neither overflow nor underflow.
            largest = np.abs(deviation).max(axis=0)
            safe = np.where(largest > 0, largest, 1.0)
            spread = safe * np.sqrt(np.average((deviation / safe) ** 2, axis=0,
                                               weights=sample_weight))
            self._y_scale = np.where(spread > 0, spread, 1.0)
        scaled = ((targets - self._y_mean) / self._y_scale).astype(np.float32)
        return np.ascontiguousarray(scaled)

    def _loss_function(self, backend):
        return backend.squared_error

    def _validation_score(self, output, targets):
        residual = ((output - targets) ** 2).sum(axis=0)
        total = ((targets - targets.mean(axis=0)) ** 2).sum(axis=0)
        total = np.where(total > 0, total, 1.0)
        return float(np.mean(1.0 - residual / total))

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_columns) or (n_samples, n_timesteps, \
n_features), or list of arrays of shape (n_timesteps_i, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : AttentionRegressor
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``(X, y)``, starting from the current parameters.

        Parameters
        ----------
        X : array-like
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : AttentionRegressor
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predicted targets.

        Parameters
        ----------
        X : array-like

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        check_is_fitted(self)
        output = self._forward_output(X).astype(np.float64) * self._y_scale + self._y_mean
        return output[:, 0] if self._y_single else output
