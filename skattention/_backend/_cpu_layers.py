"""The per-token layer kernels of the CPU backend, behind one mixin class.

The kernels live in :mod:`._cpu_linear` (linear maps, activations) and
:mod:`._cpu_norm` (layer norm, embedding, dropout); this module checks
shapes and ids (Numba does not bounds-check) and picks the serial or the
parallel build.
"""

import numpy as np

from . import _cpu_linear as lin
from . import _cpu_norm as norm
from ._cpu_linear import ACTIVATIONS, GELU, IDENTITY, RELU
from ._cpu_norm import dropout_mask

__all__ = ["CPULayerOps", "dropout_mask"]


# -------------------------------------------------------------------- mixin


def _check_shape(name, array, shape):
    """Raise ValueError unless ``array.shape == shape`` (kernels do not bounds-check)."""
    if array is not None and array.shape != tuple(shape):
        raise ValueError(f"{name} has shape {array.shape}; expected {tuple(shape)}.")


def _view(name, array, shape):
    """``array`` reshaped to ``shape`` as a view; ValueError unless C-contiguous.

    (A reshaped copy would leave an output unwritten.)
    """
    if array is None:
        return None
    if not array.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous.")
    return array.reshape(shape)


def _activation_code(activation):
    """Kernel code of an activation name; ValueError for an unknown one."""
    try:
        return ACTIVATIONS[activation]
    except (KeyError, TypeError):
        raise ValueError(
            f"activation must be one of {sorted(ACTIVATIONS)}; got {activation!r}") from None


def _check_ids(ids, n_rows):
    """Flat int64 copy (or view) of ``ids``; ValueError unless all lie in ``[0, n_rows)``."""
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise ValueError(f"ids must be integers; got dtype {ids.dtype}")
    ids = np.ascontiguousarray(ids.reshape(-1), dtype=np.int64)
    if ids.size:
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= n_rows:
            raise ValueError(
                f"ids must lie in [0, {n_rows}) (the embedding table has {n_rows} rows); "
                f"found id {low if low < 0 else high}")
    return ids


class CPULayerOps:
    """Per-token layer kernels of the CPU backend (mixin of ``CPUBackend``).

    Arrays are C-contiguous float32 or float64 of one dtype; outputs are
    preallocated and overwritten; shapes are documented on the ``*_serial``
    kernels, and checked here. The host class provides ``run``. Results do
    not depend on the thread count.
    """

    def linear_forward(self, x, weight, bias, activation, out, pre=None):
        """``out = act(x W + bias)``; see :func:`._cpu_linear.linear_forward_serial`.

        ``activation`` is "identity", "relu" or "gelu" (exact erf form);
        ``bias`` and ``pre`` (the pre-activation, which the GELU backward
        pass needs) may be None.
        """
        code = _activation_code(activation)
        shape = (x.shape[0], weight.shape[1])
        _check_shape("x", x, (x.shape[0], weight.shape[0]))
        _check_shape("bias", bias, shape[1:])
        _check_shape("out", out, shape)
        _check_shape("pre", pre, shape)
        self.run(lin.linear_forward_serial, lin.linear_forward_parallel, x, weight, bias, code, out,
                 pre)

    def linear_backward(self, x, weight, pre, grad_out, activation, grad_x, grad_weight,
                        grad_bias, grad_pre=None):
        """Backward pass of :meth:`linear_forward`; see :func:`._cpu_linear.linear_backward_serial`.

        ``pre`` is the forward pre-activation (ReLU: its output works too;
        ignored for the identity). ``grad_x`` and ``grad_bias`` may be None.
        ``grad_pre`` (N, Out) receives the gradient at the pre-activation; it
        may be ``grad_out`` (overwritten) and is allocated when None.
        """
        code = _activation_code(activation)
        shape = grad_out.shape
        _check_shape("grad_out", grad_out, (x.shape[0], weight.shape[1]))
        _check_shape("grad_x", grad_x, x.shape)
        _check_shape("grad_weight", grad_weight, weight.shape)
        _check_shape("grad_bias", grad_bias, shape[1:])
        if code == IDENTITY:
            g, pre = grad_out, None
        else:
            if pre is None:
                raise ValueError(f"linear_backward with activation {activation!r} needs pre")
            _check_shape("pre", pre, shape)
            _check_shape("grad_pre", grad_pre, shape)
            g = np.empty_like(grad_out) if grad_pre is None else grad_pre
        self.run(lin.linear_backward_serial, lin.linear_backward_parallel, x, weight, pre, grad_out,
                 code, g, grad_x, grad_weight, grad_bias)

    def _elementwise(self, code, x, grad_out, out):
        for name, array in (("grad_out", grad_out), ("out", out)):
            _check_shape(name, array, x.shape)
        self.run(lin.activation_serial, lin.activation_parallel, _view("x", x, -1),
                 _view("grad_out", grad_out, -1), code, _view("out", out, -1))

    def relu_forward(self, x, out):
        """``out = max(x, 0)``, any shape; ``out`` may be ``x``."""
        self._elementwise(RELU, x, None, out)

    def relu_backward(self, x, grad_out, grad_x):
        """``grad_x = grad_out * (x > 0)``; ``x`` is the ReLU input (or output)."""
        self._elementwise(RELU, x, grad_out, grad_x)

    def gelu_forward(self, x, out):
        """``out = 0.5 x (1 + erf(x / sqrt 2))``, any shape; ``out`` may be ``x``."""
        self._elementwise(GELU, x, None, out)

    def gelu_backward(self, x, grad_out, grad_x):
        """``grad_x = grad_out * gelu'(x)``; ``x`` is the GELU input."""
        self._elementwise(GELU, x, grad_out, grad_x)

    def layer_norm_forward(self, x, residual, gamma, beta, eps, out, summed, mean, rstd):
        """Layer norm of ``s = x + residual``; see :func:`._cpu_norm.layer_norm_forward_serial`.

        ``residual`` and ``summed`` (receives ``s``) may be None; torch's
        default ``eps`` is 1e-5.
        """
        n, d = x.shape
        for name, array, shape in (("residual", residual, x.shape), ("gamma", gamma, (d,)),
                                   ("beta", beta, (d,)), ("out", out, x.shape),
                                   ("summed", summed, x.shape), ("mean", mean, (n,)),
                                   ("rstd", rstd, (n,))):
            _check_shape(name, array, shape)
        self.run(norm.layer_norm_forward_serial, norm.layer_norm_forward_parallel, x, residual,
                 gamma, beta, float(eps), out, summed, mean, rstd)

    def layer_norm_backward(self, grad_out, s, mean, rstd, gamma, grad_x, grad_gamma,
                            grad_beta, grad_summed=None):
        """Backward pass of :meth:`layer_norm_forward`.

        See :func:`._cpu_norm.layer_norm_backward_serial`.

        ``grad_summed``, the gradient reaching ``s`` through the residual
        stream, is added into ``grad_x`` in the same pass (it may be ``grad_x``).
        """
        n, d = s.shape
        for name, array, shape in (("grad_out", grad_out, s.shape), ("mean", mean, (n,)),
                                   ("rstd", rstd, (n,)), ("gamma", gamma, (d,)),
                                   ("grad_x", grad_x, s.shape), ("grad_gamma", grad_gamma, (d,)),
                                   ("grad_beta", grad_beta, (d,)),
                                   ("grad_summed", grad_summed, s.shape)):
            _check_shape(name, array, shape)
        self.run(norm.layer_norm_backward_serial, norm.layer_norm_backward_parallel, grad_out, s,
                 mean, rstd, gamma, grad_x, grad_gamma, grad_beta, grad_summed)

    def embedding_forward(self, ids, table, out, positions=None, steps=None):
        """``out[...] = table[ids]``, plus ``positions[steps]`` when given.

        Parameters
        ----------
        ids : integer ndarray of any shape
            Raises ValueError for ids outside ``[0, V)``.
        table : ndarray of shape (V, d)
        out : ndarray of shape ``ids.shape + (d,)``
            Output.
        positions : ndarray of shape (L, d), optional
            Position rows added to the embeddings in the same pass.
        steps : integer ndarray of shape ``ids.shape``, optional
            Each token's row of ``positions`` (required with ``positions``).
        """
        _check_shape("out", out, np.shape(ids) + table.shape[1:])
        ids = _check_ids(ids, table.shape[0])
        if positions is not None:
            _check_shape("positions", positions, (positions.shape[0], table.shape[1]))
            if steps is None:
                raise ValueError("embedding_forward: positions need steps")
            steps = _check_ids(steps, positions.shape[0])
            if steps.shape != ids.shape:
                raise ValueError(f"embedding_forward: steps {steps.shape} and ids "
                                 f"{ids.shape} differ in shape")
        else:
            steps = None
        self.run(norm.embedding_forward_serial, norm.embedding_forward_parallel, ids, table,
                 positions, steps, _view("out", out, (ids.shape[0], table.shape[1])))

    def embedding_backward(self, ids, grad_out, grad_table, accumulate=False):
        """Scatter-add ``grad_out`` rows into rows ``ids`` of ``grad_table``.

        See :func:`._cpu_norm.embedding_backward_serial`; ``grad_table`` is overwritten
        unless ``accumulate``. Raises ValueError for ids outside ``[0, V)``.
        """
        _check_shape("grad_out", grad_out, np.shape(ids) + grad_table.shape[1:])
        ids = _check_ids(ids, grad_table.shape[0])
        self.run(norm.embedding_backward_serial, norm.embedding_backward_parallel, ids,
                 _view("grad_out", grad_out, (ids.shape[0], grad_table.shape[1])), grad_table,
                 bool(accumulate))

    def dropout_forward(self, x, mask, out):
        """``out = x * mask``, any shape (``mask`` from :func:`._cpu_norm.dropout_mask`).

        A None mask (rate 0) copies ``x``; ``out`` may be ``x``.
        """
        if mask is None:
            if out is not x:
                np.copyto(out, x)
            return
        for name, array in (("mask", mask), ("out", out)):
            _check_shape(name, array, x.shape)
        self.run(norm.dropout_serial, norm.dropout_parallel, _view("x", x, -1),
                 _view("mask", mask, -1),
                 _view("out", out, -1))

    def dropout_backward(self, grad_out, mask, grad_x):
        """``grad_x = grad_out * mask``, the backward pass of :meth:`dropout_forward`."""
        self.dropout_forward(grad_out, mask, grad_x)
