"""Mini-batch training: optimizers on the flat parameter buffer and the epoch loop.

No scikit-learn here: the estimators decide what to validate and what a
validation score is, and pass callables in.
"""

import math
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Optimizer", "EpochResult", "TrainingHistory", "run_epoch"]


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
              batch_size, rng, shuffle, max_grad_norm=None):
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
    for begin in range(0, n_samples, batch_size):
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
            optimizer.step(params, grads)
        total_loss += loss * weight_sum
        total_weight += weight_sum
    if total_weight == 0:
        raise ValueError("Sample weights must contain at least one non-zero number.")
    mean_loss = total_loss / total_weight
    if not math.isfinite(mean_loss):
        raise FloatingPointError("non-finite loss during training.")
    return EpochResult(mean_loss, time.perf_counter() - start)
