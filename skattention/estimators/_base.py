"""The base class every attention estimator shares: parameters, input
handling, the fit loop driver, transform and explain."""

import numbers
import warnings
from abc import abstractmethod

import numpy as np
from joblib import effective_n_jobs
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from .._backend import cuda_unavailable_reason, get_backend, resolve_device
from .._nn import AttentionNetwork, NetworkConfig
from .._nn._training import LearningRateSchedule, Optimizer, run_epoch
from .._validation import _check_float32_range, check_sequences, is_sequence_input

__all__ = ["BaseAttentionEstimator"]

#: Inference runs over batches of at most this many sequences ...
_PREDICT_BATCH = 1024
#: ... and of at most this many positions (sequences x steps) on the CPU, so
#: that the activations of one batch (a few arrays of ``tokens x d_model``)
#: stay the same size whatever the sequence length: 1,024 sequences of 512
#: steps would need a 400 MB query/key/value array at ``d_model=64``. On two
#: cores, 16,384 positions ran the attention_weights_ pass 8-12 % and
#: ``predict`` up to 30 % faster than 65,536 (10,000 sequences of 128 steps).
_PREDICT_TOKENS = 16384
#: A GPU wants fewer, larger launches.
_PREDICT_TOKENS_CUDA = 65536


def _batches(values, mask, device="cpu"):
    """Row indices of the samples, one array per inference batch, grouped by length.

    Samples are sorted by the position of their last real step, so that the
    sequences of a batch have similar lengths: the network cuts a batch's
    trailing padding and runs its layers on the real tokens only.

    Parameters
    ----------
    values : ndarray of shape (N, L, ...) or (N, L)
    mask : ndarray of shape (N, L), bool
    device : {"cpu", "cuda"}, default="cpu"
        Where the batches run (it sets the positions per batch).

    Returns
    -------
    batches : list of ndarray of int
        Together a permutation of ``range(N)``; see :func:`_restore`.
    """
    length = values.shape[1] if values.ndim > 1 else 1
    tokens = _PREDICT_TOKENS_CUDA if device == "cuda" else _PREDICT_TOKENS
    size = max(1, min(_PREDICT_BATCH, tokens // max(1, length)))
    if mask.shape[1]:
        ends = np.where(mask.any(axis=1), mask.shape[1] - np.argmax(mask[:, ::-1], axis=1), 0)
        order = np.argsort(ends, kind="stable")
    else:
        order = np.arange(values.shape[0])
    return [order[i:i + size] for i in range(0, values.shape[0], size)]


def _restore(parts, batches):
    """Per-batch results (stacked along axis 0) back in the samples' order."""
    stacked = np.concatenate(parts, axis=0)
    out = np.empty_like(stacked)
    out[np.concatenate(batches)] = stacked
    return out


def _length_scaling(length_scaling, mask):
    """The network's ``length_scaling`` settings for training sequences ``mask`` (N, L).

    The reference length is the mean number of real steps, so the training
    sequences' pooled vectors keep about their unscaled size on average and
    sequences of one common length are not scaled at all (1 when unscaled).
    """
    if length_scaling == "none" or not mask.shape[0]:
        return dict(length_scaling=length_scaling, length_reference=1.0)
    mean_real = np.count_nonzero(mask) / mask.shape[0]
    return dict(length_scaling=length_scaling, length_reference=max(float(mean_real), 1.0))


class BaseAttentionEstimator(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Shared machinery of the attention estimators (not for direct use).

    Subclasses define how targets are encoded, the loss and the validation
    score; everything else (inputs, the network, training, transform and
    explain) lives here. ``transform`` is defined on this class so that
    scikit-learn's ``set_output`` wraps it.
    """

    _parameter_constraints = {
        "d_model": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_heads": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_layers": [Interval(numbers.Integral, 0, None, closed="left")],
        "d_ff": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "attention_score": [StrOptions({"dot", "scaled_dot", "general", "additive"})],
        "positional": [StrOptions({"sinusoidal", "learned", "none"})],
        "pooling": [StrOptions({"attention", "mean"})],
        "length_scaling": [StrOptions({"none", "sqrt"})],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "solver": [StrOptions({"adam", "adamw", "sgd"})],
        "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
        "learning_rate": [StrOptions(set(LearningRateSchedule.KINDS))],
        "warmup_iter": [Interval(numbers.Integral, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "max_grad_norm": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "n_jobs": [numbers.Integral, None],
        "device": [StrOptions({"auto", "cpu", "cuda"})],
        "channels_first": ["boolean"],
        "store_attention_weights": ["boolean"],
    }

    def __init__(self, *, d_model=64, n_heads=4, n_layers=1, d_ff=None,
                 attention_score="scaled_dot", positional="sinusoidal", pooling="attention",
                 length_scaling="none", dropout=0.0, solver="adam", learning_rate_init=1e-3,
                 learning_rate="constant",
                 warmup_iter=0, batch_size="auto", max_iter=200, tol=1e-4, n_iter_no_change=10,
                 early_stopping=False, validation_fraction=0.1, alpha=1e-4, shuffle=True,
                 random_state=None, verbose=False, warm_start=False, max_grad_norm=None,
                 n_jobs=None, device="auto", channels_first=False, store_attention_weights=True):
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.d_ff = d_ff
        self.attention_score = attention_score
        self.positional = positional
        self.pooling = pooling
        self.length_scaling = length_scaling
        self.dropout = dropout
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.learning_rate = learning_rate
        self.warmup_iter = warmup_iter
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.alpha = alpha
        self.shuffle = shuffle
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.max_grad_norm = max_grad_norm
        self.n_jobs = n_jobs
        self.device = device
        self.channels_first = channels_first
        self.store_attention_weights = store_attention_weights

    # ------------------------------------------------------------ subclass hooks

    @abstractmethod
    def _encode_targets(self, y, reset):
        """Return (targets for the loss, n_outputs)."""

    @abstractmethod
    def _loss_function(self, backend):
        """The backend loss kernel ``f(output, targets, sample_weight, grad) -> loss``."""

    @abstractmethod
    def _validation_score(self, output, targets):
        """Score of network outputs on encoded targets (higher is better)."""

    def _stratify(self, targets):
        """Labels to stratify the early-stopping split on (None: no stratification)."""
        return None

    def _extra_sample_weight(self, y, sample_weight):
        """Hook for class weights."""
        return sample_weight

    def _scale_targets(self, targets, sample_weight, reset):
        """Hook for target standardisation, once the sample weights are known."""
        return targets

    # ------------------------------------------------------------------- tags

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.input_tags.two_d_array = True
        return tags

    # ------------------------------------------------------------------ inputs

    def _prepare_X(self, X, reset):
        """Validate ``X`` and return ``(values (n, L, F) float32, mask (n, L))``."""
        # Models fitted on sequences name these before the 2D/3D kind check
        # (2D models keep scikit-learn's own messages).
        on_sequences = not reset and getattr(self, "_input_kind", None) == "sequence"
        if on_sequences and X is None:
            raise ValueError(f"X is None; {type(self).__name__} expects 2D (n_samples, "
                             "n_columns) or 3D (n_samples, n_timesteps, n_features) input.")
        ndim = np.ndim(X) if isinstance(X, np.ndarray) else None
        if on_sequences and ndim is not None and ndim not in (2, 3):
            raise ValueError(f"X has ndim={ndim} (shape {X.shape}); {type(self).__name__} "
                             "expects 2D (n_samples, n_columns) or 3D (n_samples, "
                             "n_timesteps, n_features) input.")
        sequence = is_sequence_input(X)
        if not reset and not sequence and self._reads_as_scalar_sequences(X):
            sequence = True
        if not reset:
            fitted_kind = getattr(self, "_input_kind", None)
            kind = "sequence" if sequence else "table"
            if fitted_kind is not None and kind != fitted_kind:
                if fitted_kind == "table":
                    raise ValueError(
                        f"{type(self).__name__} was fitted on 2D input (n_samples, "
                        f"n_columns); got 3D or ragged sequences. Pass 2D data with "
                        f"{self.n_features_in_} columns."
                    )
                raise ValueError(
                    f"{type(self).__name__} was fitted on 3D/ragged sequences with "
                    f"{self.n_features_in_} features per step; got 2D input. Pass "
                    "(n_samples, n_timesteps, n_features) arrays or a list of "
                    "(n_timesteps, n_features) arrays."
                )
        if not sequence:
            X = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])
            values = np.ascontiguousarray(X[:, :, None], dtype=np.float32)
            _check_float32_range(values)
            mask = np.ones(X.shape, dtype=bool)
            if reset:
                self._input_kind = "table"
            return values, mask
        batch = check_sequences(X, channels_first=self.channels_first)
        n_features = batch.values.shape[2]
        if reset:
            self.n_features_in_ = n_features
            self._input_kind = "sequence"
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif n_features != self.n_features_in_:
            raise ValueError(
                f"X has {n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        if not reset:
            self._check_length(batch.values.shape[1])
        return batch.values, batch.mask

    def _check_length(self, length):
        """Refuse sequences longer than the learned position table."""
        config = getattr(self, "_config", None)
        if config is not None and config.positional == "learned" and length > config.max_len:
            raise ValueError(
                f"X has sequences of length {length}, longer than the {config.max_len} "
                "steps the learned positions were fitted on (positional='learned'); use "
                "'sinusoidal' or 'none' for longer inputs."
            )

    def _reads_as_scalar_sequences(self, X):
        """Whether a list that looks like a table is a batch of 1D sequences.

        A list of equal-length 1D arrays is a table by scikit-learn's
        convention, so at fit time it is one. A model fitted on sequences of
        one feature per step reads it (a single sequence ``[x]`` included)
        as sequences instead, so that predicting on a subset of a ragged list
        of 1D arrays works whatever lengths the subset happens to have.
        """
        if getattr(self, "_input_kind", None) != "sequence":
            return False
        if not isinstance(X, (list, tuple)):
            return False
        if len(X) == 0:  # let check_sequences name the problem
            return True
        return self.n_features_in_ == 1 and all(np.ndim(x) == 1 for x in X)

    # ----------------------------------------------------------------- network

    def _n_threads(self):
        """Kernel threads: all of Numba's by default, ``n_jobs`` when given."""
        if self.n_jobs is None:
            return None
        return max(1, effective_n_jobs(self.n_jobs))

    def _run_device(self):
        """Where the fitted model runs: ``device_``, or the CPU when CUDA is gone."""
        device = self.device_
        if device == "cuda" and cuda_unavailable_reason() is not None:
            # A model fitted on a GPU predicts anywhere: its parameters are
            # host arrays, and the CPU kernels compute the same network.
            device = "cpu"
        return device

    def _backend(self):
        return get_backend(self._run_device(), n_threads=self._n_threads())

    def _batches(self, values, mask):
        """Inference batches sized for the device the model runs on (:func:`_batches`)."""
        return _batches(values, mask, self._run_device())

    def _network_config(self, values, mask, n_outputs):
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}."
            )
        table = self._input_kind == "table"
        return NetworkConfig(
            input_kind="values",
            n_inputs=values.shape[2],
            max_len=values.shape[1],
            d_model=self.d_model,
            n_heads=self.n_heads,
            n_layers=self.n_layers,
            d_ff=self.d_ff if self.d_ff is not None else 2 * self.d_model,
            attention_score=self.attention_score,
            # Columns of a table are distinct tokens: each gets its own
            # learned embedding, whatever the sequence setting says.
            positional="learned" if table else self.positional,
            pooling=self.pooling,
            **_length_scaling(self.length_scaling, mask),
            dropout=self.dropout,
            n_outputs=n_outputs,
            dtype=np.float32,
        )

    def _network(self, backend):
        return AttentionNetwork(self._config, backend)

    def _inference_network(self):
        """The fitted network and its parameters, moved to the backend once."""
        backend = self._backend()
        return self._network(backend), backend.asarray(self._writeable_params(), np.float32)

    def _writeable_params(self):
        # Read-only params (e.g. memory-mapped by joblib) would make Numba
        # compile another specialisation of every kernel.
        return np.require(self.params_, dtype=np.float32, requirements=["C", "W"])

    # --------------------------------------------------------------------- fit

    def _fit(self, X, y, sample_weight, incremental, classes=None):
        first = not (self.warm_start or incremental) or not hasattr(self, "params_")
        if first:
            self.device_ = resolve_device(self.device)
        values, mask = self._prepare_X(X, reset=first)
        if first and classes is not None:
            self._partial_fit_classes = classes
        try:
            targets, n_outputs = self._encode_targets(y, reset=first)
        finally:
            # Only the first call's classes count; never let them outlive it.
            self.__dict__.pop("_partial_fit_classes", None)
        if targets.shape[0] != values.shape[0]:
            raise ValueError(
                f"Found input variables with inconsistent numbers of samples: "
                f"[{values.shape[0]}, {targets.shape[0]}]"
            )
        sample_weight = _check_sample_weight(sample_weight, values[:, :1],
                                             dtype=np.float64, ensure_non_negative=True)
        sample_weight = self._extra_sample_weight(y, sample_weight)
        if not np.any(sample_weight > 0):
            raise ValueError("Sample weights must contain at least one non-zero number.")
        # Only relative weights matter (the loss divides by their sum); scaling
        # by the largest keeps weights of 1e300 or 1e-300 inside float32.
        sample_weight = sample_weight / sample_weight.max()
        targets = self._scale_targets(targets, sample_weight, reset=first)

        backend = self._backend()
        if first:
            self._config = self._network_config(values, mask, n_outputs)
            rng = check_random_state(self.random_state)
            network = self._network(backend)
            self.params_ = network.init_params(rng)
            self._rng = rng
            self._optimizer_state = None
            self.n_iter_ = 0
            self.t_ = 0
            self.loss_curve_ = []
            self.validation_scores_ = [] if self.early_stopping else None
            self.best_loss_ = np.inf if not self.early_stopping else None
            self.best_validation_score_ = -np.inf if self.early_stopping else None
            self._no_improvement_count = 0
        else:
            self._check_length(values.shape[1])
            network = self._network(backend)
        # Parameters and optimizer moments live on the backend for the whole
        # fit (the same arrays on the CPU); host copies are made only for the
        # best-epoch snapshot and at the end.
        params = backend.asarray(self._writeable_params(), np.float32)
        optimizer = Optimizer(backend, self.solver, params.size, np.float32,
                              self.learning_rate_init, self.alpha)
        if self._optimizer_state is not None and self._optimizer_state[0] == self.solver:
            optimizer.state = {name: backend.asarray(moment, np.float32)
                               for name, moment in self._optimizer_state[1].items()}
            optimizer.n_steps = self._optimizer_state[2]

        train = (values, mask, targets, sample_weight)
        validation = None
        if self.early_stopping and not incremental:
            train, validation = self._split_validation(values, mask, targets, sample_weight)
        # warm_start may switch early_stopping between fits, and partial_fit
        # never holds data out: start whichever record this fit keeps.
        if validation is not None and self.validation_scores_ is None:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
        if validation is None and self.best_loss_ is None:
            self.best_loss_ = np.inf
        n_train = train[0].shape[0]
        batch_size = min(200, n_train) if self.batch_size == "auto" else min(
            self.batch_size, n_train)
        loss_fn = self._loss_function(backend)
        max_epochs = 1 if incremental else self.max_iter
        steps_per_epoch = -(-n_train // batch_size)
        # Every fit call runs the whole schedule (warm_start restarts it, as
        # it restarts the epoch budget); partial_fit steps at the initial rate.
        schedule = LearningRateSchedule(
            "constant" if incremental else self.learning_rate, self.learning_rate_init,
            steps_per_epoch, max_epochs, 0 if incremental else self.warmup_iter)
        best_params = np.array(backend.to_host(params)) if validation is not None else None
        stopped_early = False
        epoch = 0
        progress = _EpochProgress(self.verbose, max_epochs)
        try:
            for epoch in range(1, max_epochs + 1):
                try:
                    result = run_epoch(network, optimizer, params, *train, loss_fn, batch_size,
                                       self._rng, self.shuffle, self.max_grad_norm, schedule,
                                       (epoch - 1) * steps_per_epoch)
                except FloatingPointError as exc:
                    raise FloatingPointError(
                        f"Training diverged in epoch {self.n_iter_ + 1}: {exc} Lower "
                        f"learning_rate_init (now {self.learning_rate_init}) or set "
                        "max_grad_norm."
                    ) from exc
                self.n_iter_ += 1
                self.t_ += n_train
                self.loss_curve_.append(result.loss)
                if validation is not None:
                    output = self._predict_output(network, params, validation[0],
                                                  validation[1])
                    score = self._validation_score(output, validation[2])
                    self.validation_scores_.append(score)
                    improved = score > self.best_validation_score_ + self.tol
                    if score > self.best_validation_score_:
                        self.best_validation_score_ = score
                        best_params[:] = backend.to_host(params)
                else:
                    improved = result.loss < self.best_loss_ - self.tol
                    self.best_loss_ = min(self.best_loss_, result.loss)
                self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
                progress.update(self.n_iter_, result,
                                self.validation_scores_[-1] if validation is not None else None)
                if not incremental and self._no_improvement_count >= self.n_iter_no_change:
                    # learning_rate="adaptive" divides the rate instead of
                    # stopping, until it reaches 1e-6 (scikit-learn's MLP rule).
                    if not schedule.reduce_on_plateau():
                        stopped_early = True
                        break
                    self._no_improvement_count = 0
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by the user; keeping the parameters reached.",
                          UserWarning)
            stopped_early = True
        finally:
            progress.close()
            if best_params is not None:
                params = backend.asarray(best_params, np.float32)
            self.params_ = backend.to_host(params)
            self._optimizer_state = (
                self.solver, {name: backend.to_host(moment)
                              for name, moment in optimizer.state.items()},
                optimizer.n_steps)
        if not incremental and not stopped_early and epoch == self.max_iter:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                "optimization hasn't converged yet.",
                ConvergenceWarning,
            )
        if not np.isfinite(self.params_).all():
            raise FloatingPointError("Training produced non-finite parameters; lower "
                                     "learning_rate_init or set max_grad_norm.")
        self._clear_attention_weights()
        if self.store_attention_weights:
            self._store_attention_weights(network, params, values, mask)
        return self

    def _clear_attention_weights(self):
        # Never leave the weights of an earlier fit next to new parameters.
        self.__dict__.pop("attention_weights_", None)

    def _store_attention_weights(self, network, params, values, mask):
        """Set ``attention_weights_``: one inference pass over the training data."""
        self.attention_weights_ = self._pooling_attention(network, params, values, mask)

    def _split_validation(self, values, mask, targets, sample_weight):
        from sklearn.model_selection import train_test_split

        n = values.shape[0]
        index = np.arange(n)
        stratify = self._stratify(targets)
        try:
            train_idx, valid_idx = train_test_split(
                index, test_size=self.validation_fraction, random_state=self._rng.randint(
                    np.iinfo(np.int32).max), stratify=stratify)
        except ValueError:
            train_idx, valid_idx = train_test_split(
                index, test_size=self.validation_fraction, random_state=0)
        if valid_idx.size == 0 or train_idx.size == 0:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} leaves an empty training or "
                f"validation set for {n} samples."
            )
        take = lambda idx: (values[idx], mask[idx], targets[idx], sample_weight[idx])  # noqa: E731
        return take(train_idx), take(valid_idx)

    # ---------------------------------------------------------------- outputs

    def _predict_output(self, network, params, values, mask):
        batches = self._batches(values, mask)
        return _restore([network.predict(params, values[rows], mask[rows]) for rows in batches],
                        batches)

    def _forward_output(self, X):
        """Network outputs for new data, batched; sets nothing on ``self``."""
        check_is_fitted(self)
        values, mask = self._prepare_X(X, reset=False)
        network, params = self._inference_network()
        return self._predict_output(network, params, values, mask)

    def _pooling_attention(self, network, params, values, mask):
        chunks = []
        batches = self._batches(values, mask)
        for rows in batches:
            result = network.explain(params, values[rows], mask[rows])
            pooling = result[0] if isinstance(result, tuple) else result
            chunks.append(pooling.mean(axis=1))
        return _restore(chunks, batches).astype(np.float64)

    def transform(self, X):
        """Context vectors: the attention-pooled representation of each sequence.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_columns) or (n_samples, n_timesteps, \
n_features), or list of arrays
            Input, in the form used for ``fit``.

        Returns
        -------
        context : ndarray of shape (n_samples, d_model)
            The vector the output layer reads, float64.
        """
        check_is_fitted(self)
        values, mask = self._prepare_X(X, reset=False)
        network, params = self._inference_network()
        batches = self._batches(values, mask)
        chunks = [network.transform(params, values[rows], mask[rows]) for rows in batches]
        return _restore(chunks, batches).astype(np.float64)

    @property
    def _n_features_out(self):
        return self.d_model

    def explain(self, X, all_layers=False):
        """Where the model looked: the pooling attention over input positions.

        Parameters
        ----------
        X : array-like
            Input, in the form used for ``fit``.
        all_layers : bool, default=False
            Also return every self-attention layer's weights for every head.

        Returns
        -------
        weights : ndarray of shape (n_samples, n_timesteps)
            Pooling attention averaged over heads; each row sums to 1 over
            the real steps and is 0 on padding. With ``all_layers=True``, a
            dict with ``"pooling"`` ``(n_samples, n_heads, n_timesteps)`` and
            ``"layers"``, a list of ``(n_samples, n_heads, n_timesteps,
            n_timesteps)`` arrays (query, key), one per layer: rows of real
            queries sum to 1 over the real keys, and every weight from or to
            a padded step is 0.
        """
        check_is_fitted(self)
        values, mask = self._prepare_X(X, reset=False)
        network, params = self._inference_network()
        if not all_layers:
            return self._pooling_attention(network, params, values, mask)
        batches = self._batches(values, mask)
        parts = [network.explain(params, values[rows], mask[rows], all_layers=True)
                 for rows in batches]
        pooling = _restore([part[0] for part in parts], batches)
        layers = [_restore([part[1][j] for part in parts], batches)
                  for j in range(len(parts[0][1]))]
        # The network already reports every weight from or to a padded step as 0.
        return {"pooling": np.asarray(pooling, dtype=np.float64),
                "layers": [np.asarray(w, dtype=np.float64) for w in layers]}


class _EpochProgress:
    """Epoch progress for ``verbose``: a tqdm bar when tqdm is installed, else lines.

    Parameters
    ----------
    verbose : bool or int
        Nothing is shown when false.
    total : int
        Epochs planned.
    """

    def __init__(self, verbose, total):
        self.bar = None
        self.verbose = bool(verbose)
        if not self.verbose:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, unit="epoch", leave=True)

    def update(self, iteration, result, validation_score):
        """Report one finished epoch (its ``EpochResult`` and validation score or None)."""
        if not self.verbose:
            return
        if self.bar is not None:
            postfix = {"loss": f"{result.loss:.5f}"}
            if validation_score is not None:
                postfix["validation"] = f"{validation_score:.4f}"
            self.bar.set_postfix(postfix)
            self.bar.update(1)
            return
        extra = (f", validation score = {validation_score:.6f}"
                 if validation_score is not None else "")
        print(f"Iteration {iteration}, loss = {result.loss:.8f}{extra} "
              f"({result.seconds:.2f} s)")

    def close(self):
        """Close the bar, if one was opened."""
        if self.bar is not None:
            self.bar.close()
