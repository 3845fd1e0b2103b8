"""Mini-batch training: optimizers on the flat parameter buffer and the epoch loop.

No scikit-learn here: the estimators decide what to validate and what a
validation score is, and pass callables in.
"""

import math
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Optimizer", "LearningRateSchedule", "EpochResult", "TrainingHistory", "run_epoch"]


class Optimizer:
    """Adam, AdamW or SGD (Nesterov momentum) on one flat parameter buffer.

    Parameters
    ----------
    backend : CPUBackend
        Provides ``adam_step`` and ``sgd_step``.
    solver : {"adam", "adamw", "sgd"}
    n_params : int
        Size of the flat parameter buffer.
    dtype : numpy dtype
    learning_rate : float
    alpha : float
        L2 penalty. Added to the gradient for "adam" and "sgd" (as in
        scikit-learn's MLP); decoupled weight decay for "adamw" (as in
        ``torch.optim.AdamW``).
    beta_1, beta_2, epsilon : float
        Adam's moment decay rates and denominator guard.
    momentum : float
        SGD momentum (Nesterov).

    Attributes
    ----------
    state : dict of str to ndarray
        Moment buffers, so that ``warm_start`` and ``partial_fit`` continue
        where the previous call stopped.
    n_steps : int
        Updates applied so far.
    """

    def __init__(self, backend, solver, n_params, dtype, learning_rate, alpha,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, momentum=0.9):
        self.backend = backend
        self.solver = solver
        self.learning_rate = float(learning_rate)
        self.alpha = float(alpha)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self.momentum = float(momentum)
        self.n_steps = 0
        if solver in ("adam", "adamw"):
            self.state = {"m": backend.zeros(n_params, dtype),
                          "v": backend.zeros(n_params, dtype)}
        elif solver == "sgd":
            self.state = {"velocity": backend.zeros(n_params, dtype)}
        else:
            raise ValueError(f"solver must be 'adam', 'adamw' or 'sgd', got {solver!r}.")

    def step(self, params, grads):
        """Apply one update in place.

        Parameters
        ----------
        params : ndarray of shape (P,)
        grads : ndarray of shape (P,)
        """
        self.n_steps += 1
        if self.solver == "sgd":
            self.backend.sgd_step(params, grads, self.state["velocity"], self.learning_rate,
                                  self.momentum, True, self.alpha)
        else:
            self.backend.adam_step(params, grads, self.state["m"], self.state["v"],
                                   self.n_steps, self.learning_rate, self.beta_1, self.beta_2,
                                   self.epsilon, self.alpha, self.solver == "adamw")


class LearningRateSchedule:
    """The learning rate of every update of one ``fit`` call.

    Parameters
    ----------
    kind : {"constant", "cosine", "adaptive"}
        "constant": ``learning_rate_init`` throughout. "cosine": annealed
        from ``learning_rate_init`` towards 0 along half a cosine over the
        updates after the warm-up, per update (``torch.optim.lr_scheduler.
        CosineAnnealingLR`` with ``eta_min=0`` stepped every batch).
        "adaptive": ``learning_rate_init``, divided by 5 each time the
        caller reports a plateau (scikit-learn's MLP "adaptive" rule, a
        ``ReduceLROnPlateau`` with factor 0.2).
    learning_rate_init : float
    steps_per_epoch : int
        Updates per epoch (mini-batches).
    max_epochs : int
        Epochs of the fit; the cosine reaches 0 after the last one.
    warmup_epochs : int, default=0
        Epochs over which the rate ramps up linearly from
        ``learning_rate_init / warmup_steps`` to its scheduled value
        (multiplies every kind).
    min_learning_rate : float, default=1e-6
        "adaptive" stops dividing (and :meth:`reduce_on_plateau` returns
        False) once the rate is at or below this.

    Attributes
    ----------
    learning_rate : float
        The base rate before warm-up: ``learning_rate_init`` or its
        plateau-reduced value.
    n_reductions : int
        Plateau reductions so far.
    """

    KINDS = ("constant", "cosine", "adaptive")

    def __init__(self, kind, learning_rate_init, steps_per_epoch, max_epochs, warmup_epochs=0,
                 min_learning_rate=1e-6):
        if kind not in self.KINDS:
            raise ValueError(f"learning_rate must be one of {self.KINDS}, got {kind!r}.")
        if steps_per_epoch < 1 or max_epochs < 1 or warmup_epochs < 0:
            raise ValueError("steps_per_epoch and max_epochs must be >= 1 and warmup_epochs "
                             ">= 0.")
        self.kind = kind
        self.learning_rate_init = float(learning_rate_init)
        self.learning_rate = float(learning_rate_init)
        self.min_learning_rate = float(min_learning_rate)
        self.total_steps = int(steps_per_epoch) * int(max_epochs)
        # Warm-up never takes the whole fit: at least one update runs at the
        # scheduled rate.
        self.warmup_steps = min(int(steps_per_epoch) * int(warmup_epochs), self.total_steps - 1)
        self.n_reductions = 0

    def __call__(self, step):
        """Learning rate of update ``step`` (0 for this fit's first update).

        Parameters
        ----------
        step : int

        Returns
        -------
        learning_rate : float
        """
        rate = self.learning_rate
        if self.kind == "cosine":
            decay_steps = self.total_steps - self.warmup_steps
            progress = min(max(step - self.warmup_steps, 0), decay_steps) / decay_steps
            rate *= 0.5 * (1.0 + math.cos(math.pi * progress))
        if step < self.warmup_steps:
            rate *= (step + 1) / self.warmup_steps
        return rate

    def reduce_on_plateau(self):
        """Respond to a plateau of the monitored score.

        Returns
        -------
        reduced : bool
            True when the rate was divided by 5 and training should go on
            ("adaptive" above ``min_learning_rate``); False when the caller
            should stop.
        """
        if self.kind != "adaptive" or self.learning_rate <= self.min_learning_rate:
            return False
        self.learning_rate /= 5.0
        self.n_reductions += 1
        return True


@dataclass
class EpochResult:
    """What one pass over the training data produced.

    Attributes
    ----------
    loss : float
        Sample-weighted mean training loss over the epoch (before the L2 term).
    seconds : float
    """

    loss: float
    seconds: float


@dataclass
class TrainingHistory:
    """Per-epoch records of a fit.

    Attributes
    ----------
    loss : list of float
    validation_score : list of float
    seconds : list of float
    """

    loss: list = field(default_factory=list)
    validation_score: list = field(default_factory=list)
    seconds: list = field(default_factory=list)


def run_epoch(network, optimizer, params, inputs, mask, targets, sample_weight, loss_fn,
              batch_size, rng, shuffle, max_grad_norm=None, schedule=None, first_step=0):
    """One epoch of mini-batch training, updating ``params`` in place.

    Parameters
    ----------
    network : AttentionNetwork
    optimizer : Optimizer
    params : ndarray of shape (P,)
    inputs : ndarray of shape (n, L, F) or (n, L)
        Values or token ids.
    mask : ndarray of shape (n, L), bool
    targets : ndarray of shape (n,) or (n, n_outputs)
        Class indices (int64) or regression targets.
    sample_weight : ndarray of shape (n,)
    loss_fn : callable
        ``loss_fn(output, targets, sample_weight, grad_output) -> float``
        (a backend loss kernel).
    batch_size : int
    rng : numpy.random.RandomState
        Shuffling and dropout masks.
    shuffle : bool
    max_grad_norm : float or None
        Clip the global gradient norm to this value.
    schedule : LearningRateSchedule or None
        Sets ``optimizer.learning_rate`` before every update; None leaves
        it as it is.
    first_step : int
        Index of this epoch's first update in ``schedule``'s count.

    Returns
    -------
    result : EpochResult

    Raises
    ------
    FloatingPointError
        If a batch loss or the gradient is not finite.
    """
    start = time.perf_counter()
    n_samples = inputs.shape[0]
    order = rng.permutation(n_samples) if shuffle else np.arange(n_samples)
    total_loss = 0.0
    total_weight = 0.0
    for step, begin in enumerate(range(0, n_samples, batch_size), start=first_step):
        batch = order[begin: begin + batch_size]
        if shuffle:
            # Sorted indices give contiguous-ish gathers and do not change the math.
            batch = np.sort(batch)
        batch_weight = sample_weight[batch]
        weight_sum = float(batch_weight.sum())
        if weight_sum <= 0:
            continue
        # Each step reuses the previous step's activation and gradient
        # arrays: nothing of a step is read after it (see reuse_buffers).
        with network.backend.reuse_buffers("train"):
            output, cache = network.forward(params, inputs[batch], mask[batch], training=True,
                                            random_state=rng)
            grad_output = network.backend.empty(output.shape, output.dtype)
            loss = loss_fn(output, targets[batch], batch_weight, grad_output)
            grads = network.backward(params, cache, grad_output)
            if not network.backend.all_finite(grads):
                raise FloatingPointError(
                    "non-finite gradient during training; lower learning_rate_init or set "
                    "max_grad_norm."
                )
            if max_grad_norm is not None:
                optimizer.backend.clip_grad_norm(grads, max_grad_norm)
            if schedule is not None:
                optimizer.learning_rate = schedule(step)
            optimizer.step(params, grads)
        total_loss += loss * weight_sum
        total_weight += weight_sum
    if total_weight == 0:
        raise ValueError("Sample weights must contain at least one non-zero number.")
    mean_loss = total_loss / total_weight
    if not math.isfinite(mean_loss):
        raise FloatingPointError("non-finite loss during training.")
    return EpochResult(mean_loss, time.perf_counter() - start)
