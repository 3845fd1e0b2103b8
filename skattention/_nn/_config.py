"""The network's configuration and the layout of its flat parameter buffer."""

from dataclasses import dataclass

import numpy as np

from ._layers import SCORES, score_param_shapes
from ._params import ParamLayout

__all__ = ["NetworkConfig", "build_layout"]

_INPUT_KINDS = ("values", "tokens")
_POSITIONALS = ("sinusoidal", "learned", "none")
_POOLINGS = ("attention", "mean")
_LENGTH_SCALINGS = ("none", "sqrt")


def _check_choice(name, value, options):
    if value not in options:
        raise ValueError(f"{name} must be one of {options}; got {value!r}.")


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")


@dataclass(frozen=True)
class NetworkConfig:
    """Hyperparameters that fix the architecture and the parameter layout.

    Parameters
    ----------
    input_kind : {"values", "tokens"}, default="values"
        ``"values"``: ``X`` of shape (N, L, F), embedded by a linear map.
        ``"tokens"``: ``X`` of shape (N, L) of int ids in ``[0, V)``,
        embedded by a table; id 0 is padding.
    n_inputs : int, default=1
        Features per step ``F`` (values) or vocabulary size ``V`` (tokens).
    max_len : int, default=1
        Longest sequence; sizes the learned position table (longer inputs
        are refused with ``positional="learned"``).
    d_model : int, default=32
    n_heads : int, default=4
        Must divide ``d_model``.
    n_layers : int, default=1
        Encoder layers; 0 pools the embedded inputs directly.
    d_ff : int, default=64
        Hidden width of the feed-forward block.
    attention_score : {"dot", "scaled_dot", "general", "additive"}, default="scaled_dot"
        Score of self-attention and of attention pooling. "general" adds a
        ``(dh, dh)`` matrix per layer shared by the heads; "additive" a
        ``(dh, A)`` pair and a ``(A,)`` vector with ``A = dh``.
    positional : {"sinusoidal", "learned", "none"}, default="sinusoidal"
    pooling : {"attention", "mean"}, default="attention"
    dropout : float, default=0.0
        Rate in ``[0, 1)`` after the embedding and after each sub-layer.
    length_scaling : {"none", "sqrt"}, default="none"
        ``"sqrt"`` multiplies each pooled vector by
        ``sqrt(n_real / length_reference)``, ``n_real`` being the number of
        real steps of its sequence: the weights stay a distribution, but a
        longer sequence gives the head a longer vector, so evidence spread
        over many steps adds up (as the sum over ``sqrt(n)`` of an L2
        normalised bag of words does) instead of being averaged away.
    length_reference : float, default=1.0
        The ``n_real`` whose scale is 1 (the estimators use the mean over
        their training sequences, so sequences of one common length are
        left unscaled). Must be positive.
    n_outputs : int, default=1
    dtype : {numpy.float32, numpy.float64}, default=numpy.float32
        Computation and parameter dtype (stored as a ``numpy.dtype``).

    Raises
    ------
    ValueError
        For any inconsistent or out-of-range value, including ``n_heads``
        not dividing ``d_model``.
    """

    input_kind: str = "values"
    n_inputs: int = 1
    max_len: int = 1
    d_model: int = 32
    n_heads: int = 4
    n_layers: int = 1
    d_ff: int = 64
    attention_score: str = "scaled_dot"
    positional: str = "sinusoidal"
    pooling: str = "attention"
    dropout: float = 0.0
    length_scaling: str = "none"
    length_reference: float = 1.0
    n_outputs: int = 1
    dtype: object = np.float32

    def __post_init__(self):
        _check_choice("input_kind", self.input_kind, _INPUT_KINDS)
        _check_choice("attention_score", self.attention_score, SCORES)
        _check_choice("positional", self.positional, _POSITIONALS)
        _check_choice("pooling", self.pooling, _POOLINGS)
        _check_choice("length_scaling", self.length_scaling, _LENGTH_SCALINGS)
        for name in ("n_inputs", "max_len", "d_model", "n_heads", "d_ff", "n_outputs"):
            _check_int(name, getattr(self, name), 1)
        _check_int("n_layers", self.n_layers, 0)
        if self.d_model % self.n_heads:
            raise ValueError(
                f"n_heads={self.n_heads} must divide d_model={self.d_model} "
                f"(each head gets d_model / n_heads features).")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must lie in [0, 1); got {self.dropout!r}.")
        reference = self.length_reference
        if isinstance(reference, bool) or not isinstance(reference, (int, float, np.number)) \
                or not np.isfinite(reference) or reference <= 0:
            raise ValueError(
                f"length_reference must be a finite number > 0; got {reference!r}.")
        object.__setattr__(self, "length_reference", float(reference))
        dtype = np.dtype(self.dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64; got {dtype}.")
        object.__setattr__(self, "dtype", dtype)

    def length_scale(self, mask):
        """Per-sequence factor of the pooled vectors.

        Parameters
        ----------
        mask : ndarray of shape (N, L), bool
            True at real steps.

        Returns
        -------
        scale : ndarray of shape (N,) of ``dtype``, or None
            None when ``length_scaling="none"``.
        """
        if self.length_scaling == "none":
            return None
        n_real = np.count_nonzero(mask, axis=1)
        return np.sqrt(n_real / self.length_reference).astype(self.dtype)

    @property
    def head_dim(self):
        """Width of one head, ``d_model // n_heads``."""
        return self.d_model // self.n_heads


def build_layout(config):
    """The parameter layout of a configuration.

    Block names: ``embed.weight``/``embed.bias`` (values) or ``embed.table``
    (tokens); ``pos.table`` (learned positions); per layer ``i``,
    ``layers.i.{ln1,ln2}.{gamma,beta}``, ``layers.i.attn.qkv.{weight,bias}``
    (fused ``(d, 3d)``, columns ordered q, k, v and heads within each),
    ``layers.i.attn.score.*``, ``layers.i.attn.out.{weight,bias}``,
    ``layers.i.ffn.{fc1,fc2}.{weight,bias}``; ``final_ln.{gamma,beta}``;
    ``pool.query`` and ``pool.score.*`` (attention pooling);
    ``head.{weight,bias}``. Weights are ``(In, Out)``: ``y = x W + b``.

    Parameters
    ----------
    config : NetworkConfig

    Returns
    -------
    layout : ParamLayout
    """
    d, dh, heads = config.d_model, config.head_dim, config.n_heads
    layout = ParamLayout()
    if config.input_kind == "values":
        layout.add("embed.weight", (config.n_inputs, d), "glorot")
        layout.add("embed.bias", (d,), "zeros")
    else:
        layout.add("embed.table", (config.n_inputs, d), "embedding")
    if config.positional == "learned":
        layout.add("pos.table", (config.max_len, d), "normal")
    score_blocks = score_param_shapes(config.attention_score, dh)
    for i in range(config.n_layers):
        prefix = f"layers.{i}."
        layout.add(prefix + "ln1.gamma", (d,), "ones")
        layout.add(prefix + "ln1.beta", (d,), "zeros")
        layout.add(prefix + "attn.qkv.weight", (d, 3 * d), "glorot")
        layout.add(prefix + "attn.qkv.bias", (3 * d,), "zeros")
        for suffix, shape in score_blocks:
            layout.add(prefix + "attn.score." + suffix, shape, "glorot")
        layout.add(prefix + "attn.out.weight", (d, d), "glorot")
        layout.add(prefix + "attn.out.bias", (d,), "zeros")
        layout.add(prefix + "ln2.gamma", (d,), "ones")
        layout.add(prefix + "ln2.beta", (d,), "zeros")
        layout.add(prefix + "ffn.fc1.weight", (d, config.d_ff), "glorot")
        layout.add(prefix + "ffn.fc1.bias", (config.d_ff,), "zeros")
        layout.add(prefix + "ffn.fc2.weight", (config.d_ff, d), "glorot")
        layout.add(prefix + "ffn.fc2.bias", (d,), "zeros")
    if config.n_layers > 0:
        layout.add("final_ln.gamma", (d,), "ones")
        layout.add("final_ln.beta", (d,), "zeros")
    if config.pooling == "attention":
        layout.add("pool.query", (heads, dh), "normal")
        for suffix, shape in score_blocks:
            layout.add("pool.score." + suffix, shape, "glorot")
    layout.add("head.weight", (d, config.n_outputs), "glorot")
    layout.add("head.bias", (config.n_outputs,), "zeros")
    return layout
