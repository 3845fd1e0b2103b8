"""The attention network: forward and backward passes over a flat parameter buffer.

The architecture is the pre-LayerNorm transformer encoder that PyTorch users
write by hand, followed by a pooling layer and a linear head::

    h = Dropout(Embed(X) + Positions)                  (B*L, d)
    repeat n_layers times:
        h = h + Dropout(MHA(LN1(h), mask))
        h = h + Dropout(FFN(LN2(h)))                   FFN = Linear -> GELU -> Linear
    h = LN_final(h)                                    (only when n_layers > 0)
    z = Pool(h, mask)                                  attention (learned query) or mean
    z = z * sqrt(n_real / length_reference)            (only with length_scaling="sqrt")
    out = z W_head + b_head                            (B, n_outputs)

Every residual add is fused into the layer norm that reads its result
(``backend.layer_norm_forward(branch, residual, ...)``), so the residual
stream is written once per sub-layer and its gradient flows back through the
same kernel's ``grad_summed`` input.

Batches with enough padding (:data:`PACK_BELOW`) run *packed*: the token-wise
layers see only the real tokens, the rows of an ``(R, d)`` matrix sequence
after sequence, and a backend with packed kernels (the CPU's) runs
dot-family self-attention and attention pooling on those rows in place. The
additive score, mean pooling and stored layer weights scatter the rows into
the padded ``(B*L, d)`` layout and gather them back.

All parameters live in one flat buffer described by a :class:`ParamLayout`;
the gradient is a flat buffer of the same layout.
"""

import numpy as np

from .._backend._cpu_layers import dropout_mask
from ._config import NetworkConfig, build_layout
from ._layers import (
    attention_pool_backward,
    attention_pool_forward,
    mean_pool_weights,
    packed_pool_backward,
    packed_pool_forward,
    packed_self_attention_backward,
    packed_self_attention_forward,
    score_param_shapes,
    self_attention_backward,
    self_attention_forward,
    sinusoidal_positions,
)

__all__ = ["NetworkConfig", "AttentionNetwork", "LAYER_NORM_EPS", "build_layout"]

#: Layer-norm epsilon (torch's default).
LAYER_NORM_EPS = 1e-5
#: The encoder layers run on the real tokens only (packed rows) when at most
#: this fraction of a batch's steps is real: below it the rows saved in the
#: linear layers and layer norms outweigh the index arrays and, where a
#: kernel reads the padded layout (the additive score, mean pooling, stored
#: layer weights), the copies into and out of it.
PACK_BELOW = 0.9


def _trim_padding(X, mask):
    """``X`` and ``mask`` without the trailing steps that are padding in every sequence.

    Nothing reads a padded step, so a batch runs at the length of its longest
    sequence (the outputs of :meth:`AttentionNetwork.explain` are padded back).
    A batch without any real step is left as it is.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.shape[1] == 0 or np.shape(X)[:2] != mask.shape:
        return X, mask  # _inputs reports what is wrong
    real_columns = np.flatnonzero(mask.any(axis=0))
    if real_columns.size == 0 or real_columns[-1] + 1 == mask.shape[1]:
        return X, mask
    width = int(real_columns[-1]) + 1
    return np.asarray(X)[:, :width], mask[:, :width]


def _pad_steps(weights, length, axes):
    """``weights`` with zeros appended along ``axes`` up to ``length`` steps."""
    widths = [(0, length - weights.shape[axis] if axis in axes else 0)
              for axis in range(weights.ndim)]
    return np.pad(weights, widths) if any(w for _, w in widths) else weights


def _score_views(views, prefix, score, head_dim):
    """Views of one score function's blocks, keyed by suffix."""
    return {suffix: views[prefix + suffix] for suffix, _ in score_param_shapes(score, head_dim)}


class AttentionNetwork:
    """A transformer-encoder sequence model on a compute backend.

    Parameters
    ----------
    config : NetworkConfig
    backend : CPUBackend
        Provides the kernels (see :mod:`skattention._backend`).

    Attributes
    ----------
    config : NetworkConfig
    backend : CPUBackend
    layout : ParamLayout
        Names, shapes and offsets of the flat parameter buffer.

    Notes
    -----
    ``mask`` arguments are ``(N, L)`` booleans, True at real steps. Inputs at
    padded steps are ignored: they are replaced by zeros (values) or id 0
    (tokens) before the embedding, padded keys are never attended and pooling
    reads real steps only, so an output never depends on padding or on the
    other members of its batch. A sequence without real steps pools to zero
    (its output is the head's bias).
    """

    def __init__(self, config, backend):
        if not isinstance(config, NetworkConfig):
            raise TypeError(f"config must be a NetworkConfig; got {type(config).__name__}.")
        self.config = config
        self.backend = backend
        self.layout = build_layout(config)
        self._sinusoid = None

    def __repr__(self):
        return f"AttentionNetwork({self.config!r}, n_params={self.layout.size})"

    # --------------------------------------------------------------- params

    def init_params(self, random_state):
        """A freshly initialised flat parameter buffer.

        Glorot-uniform weight matrices, zero biases and layer-norm shifts,
        unit layer-norm gains, normal(0, 0.02) embeddings, learned positions
        and pooling queries (token id 0's row is zero).

        Parameters
        ----------
        random_state : numpy.random.RandomState, numpy.random.Generator, int or None

        Returns
        -------
        params : ndarray of shape (P,), of ``config.dtype``
        """
        return self.layout.init(random_state, self.config.dtype)

    def _params(self, params):
        params = self.backend.asarray(params, self.config.dtype)
        if params.shape != (self.layout.size,):
            raise ValueError(
                f"params must have shape ({self.layout.size},) for this configuration; "
                f"got {params.shape}.")
        return params

    # --------------------------------------------------------------- inputs

    def _inputs(self, X, mask):
        """Validate and cast ``X`` and ``mask`` once; zero the padded steps.

        Returns
        -------
        inputs : ndarray
            ``(N*L, F)`` values of ``config.dtype`` or ``(N*L,)`` int64 ids,
            host arrays (the caller packs and moves them).
        mask : ndarray of shape (N, L), bool, C-contiguous
        """
        config = self.config
        X = np.asarray(X)
        mask = np.ascontiguousarray(mask, dtype=bool)
        want = 3 if config.input_kind == "values" else 2
        if X.ndim != want:
            shape = "(N, L, F)" if want == 3 else "(N, L)"
            raise ValueError(
                f"X must have shape {shape} for input_kind={config.input_kind!r}; "
                f"got an array of shape {X.shape}.")
        if mask.shape != X.shape[:2]:
            raise ValueError(f"mask must have shape {X.shape[:2]} (N, L); got {mask.shape}.")
        length = X.shape[1]
        if config.positional == "learned" and length > config.max_len:
            raise ValueError(
                f"sequences have {length} steps, more than max_len={config.max_len} "
                f"(the size of the learned position table).")
        if config.input_kind == "values":
            if X.shape[2] != config.n_inputs:
                raise ValueError(
                    f"X has {X.shape[2]} features per step; the network expects "
                    f"n_inputs={config.n_inputs}.")
            values = np.array(X, dtype=config.dtype, order="C")  # the one cast (a copy)
            values[~mask] = 0
            return values.reshape(-1, X.shape[2]), mask
        if X.dtype.kind not in "iu":
            if X.dtype.kind not in "f" or not np.all(np.mod(X[mask], 1) == 0):
                raise ValueError(f"token ids must be integers; got dtype {X.dtype}.")
        ids = np.where(mask, X, 0).astype(np.int64)
        if ids.size:
            low, high = int(ids.min()), int(ids.max())
            if low < 0 or high >= config.n_inputs:
                bad = low if low < 0 else high
                raise ValueError(
                    f"token id {bad} is out of range: ids must lie in [0, {config.n_inputs}) "
                    f"for a vocabulary of n_inputs={config.n_inputs} (0 is padding).")
        return ids.reshape(-1), mask

    def _positions(self, views, length):
        """The ``(L, d)`` position rows added to the embedding, or None."""
        config = self.config
        if config.positional == "learned":
            return views["pos.table"][:length]
        if config.positional == "sinusoidal":
            if self._sinusoid is None or self._sinusoid.shape[0] < length:
                rows = max(length, config.max_len)
                self._sinusoid = self.backend.asarray(
                    sinusoidal_positions(rows, config.d_model), config.dtype)
            return self._sinusoid[:length]
        return None

    def _packing(self, host_mask):
        """Row indices that pack a batch's real tokens, or None to run it dense.

        Returns
        -------
        packing : tuple or None
            ``(rows, slots)``: ``rows`` (R,) the flat positions of the real
            steps, ``slots`` (N*L,) each position's packed row or -1 on
            padding, both int64 host arrays; None when the encoder layers
            run on every step (no layers, no real step, or little padding).
        """
        n_tokens = host_mask.size
        n_real = int(np.count_nonzero(host_mask))
        if self.config.n_layers == 0 or n_real == 0 or n_real > PACK_BELOW * n_tokens:
            return None
        rows = np.flatnonzero(host_mask)
        slots = np.full(n_tokens, -1, dtype=np.int64)
        slots[rows] = np.arange(n_real, dtype=np.int64)
        return rows, slots

    def _unpack(self, x, index, n):
        """``x`` with its rows gathered by ``index`` into ``n`` rows (no index: ``x``)."""
        if index is None:
            return x
        out = self.backend.empty((n, x.shape[1]), x.dtype)
        self.backend.gather_rows(x, index, out)
        return out

    # --------------------------------------------------------------- forward

    def _norm(self, views, name, branch, stream, keep, record):
        """Fused residual add and layer norm: ``LN(branch + stream)``.

        With ``branch`` None the stream itself is normalised. Returns the
        normalised rows and the (new) stream; appends the backward pass's
        inputs to ``record`` when ``keep``.
        """
        n, d = stream.shape
        dtype, backend = stream.dtype, self.backend
        out = backend.empty((n, d), dtype)
        mean = backend.empty(n, dtype)
        rstd = backend.empty(n, dtype)
        gamma, beta = views[name + ".gamma"], views[name + ".beta"]
        if branch is None:
            self.backend.layer_norm_forward(stream, None, gamma, beta, LAYER_NORM_EPS, out, None,
                                            mean, rstd)
        else:
            summed = backend.empty((n, d), dtype)
            self.backend.layer_norm_forward(branch, stream, gamma, beta, LAYER_NORM_EPS, out,
                                            summed, mean, rstd)
            stream = summed
        if keep:
            record.append((name, stream, mean, rstd))
        return out, stream

    def _dropout(self, x, training, random_state, keep, record):
        """Dropout in place when training; the mask goes to ``record``."""
        rate = float(self.config.dropout)
        mask = None
        if training and rate > 0.0:
            mask = self.backend.asarray(
                dropout_mask(random_state, x.shape, rate, dtype=x.dtype), x.dtype)
            self.backend.dropout_forward(x, mask, x)
        if keep:
            record.append(mask)

    def _run(self, params, X, mask, training=False, random_state=None, keep=False,
             store_weights=False, until="output"):
        """The forward pass; see :meth:`forward`.

        Parameters
        ----------
        keep : bool
            Record what :meth:`backward` needs.
        store_weights : bool
            Materialise each self-attention layer's weights.
        until : {"output", "pooled"}
            Stop after pooling (:meth:`transform`).

        Returns
        -------
        result : dict
            ``output``, ``pooled``, ``pool_weights`` (B, H, L),
            ``layer_weights`` (list), and ``cache`` when ``keep``.
        """
        config, backend = self.config, self.backend
        params = self._params(params)
        views = self.layout.views(params)
        X, mask = _trim_padding(X, mask)
        inputs, host_mask = self._inputs(X, mask)
        mask = backend.asarray(host_mask, np.bool_)
        batch, length = host_mask.shape
        n_tokens = batch * length
        d, heads, dtype = config.d_model, config.n_heads, config.dtype
        head_shape = (batch, heads, length, config.head_dim)
        score = config.attention_score
        norms, drops, layers = [], [], []
        # Packed: the token-wise work (embedding, linear maps, layer norms,
        # dropout) runs on the real rows only; attention and pooling read the
        # padded layout.
        packing = self._packing(host_mask)
        if packing is None:
            rows = slots = None
        else:
            host_rows = packing[0]
            host_steps = host_rows % length  # each packed row's position in its sequence
            inputs = inputs[host_rows]
            rows, slots, steps = (backend.asarray(a, np.int64)
                                  for a in (*packing, host_steps))
        n_rows = n_tokens if rows is None else rows.shape[0]
        inputs = backend.asarray(inputs, dtype if config.input_kind == "values" else np.int64)
        # Dot-family attention and pooling read the packed rows in place (no
        # scatter to the padded layout and back); stored weights need the padded kernels.
        offsets = None
        if rows is not None and not store_weights and score != "additive" \
                and getattr(backend, "packed_attention_forward", None) is not None \
                and getattr(backend, "packed_pooling_forward", None) is not None:
            offsets = np.zeros(batch + 1, dtype=np.int64)
            np.cumsum(np.count_nonzero(host_mask, axis=1), out=offsets[1:])

        # Embedding and positions, of the real steps only when packed.
        stream = backend.empty((n_rows, d), dtype)
        positions = self._positions(views, length)
        if config.input_kind == "values":
            backend.linear_forward(inputs, views["embed.weight"], views["embed.bias"],
                                   "identity", stream)
        elif positions is not None and rows is not None:
            # Packed tokens take their position rows in the lookup's pass.
            backend.embedding_forward(inputs, views["embed.table"], stream, positions,
                                      host_steps)
            positions = None
        else:
            backend.embedding_forward(inputs, views["embed.table"], stream)
        if positions is not None and rows is None:
            backend.add_rows(stream.reshape(batch, length, d), positions)
        elif positions is not None:
            position_rows = backend.empty((n_rows, d), dtype)
            backend.gather_rows(positions, steps, position_rows)
            backend.add_(stream, position_rows)
        self._dropout(stream, training, random_state, keep, drops)

        # Encoder layers; ``branch`` is the sub-layer output not yet added to
        # the stream (the next layer norm adds it).
        branch = None
        layer_weights = []
        for i in range(config.n_layers):
            prefix = f"layers.{i}."
            saved = {}
            normed, stream = self._norm(views, prefix + "ln1", branch, stream, keep, norms)
            qkv = backend.empty((n_rows, 3 * d), dtype)
            backend.linear_forward(normed, views[prefix + "attn.qkv.weight"],
                                   views[prefix + "attn.qkv.bias"], "identity", qkv)
            score_params = _score_views(views, prefix + "attn.score.", score, config.head_dim)
            if offsets is not None:
                merged, attn_saved = packed_self_attention_forward(
                    backend, score, qkv, offsets, heads, score_params, keep)
            else:
                qkv = self._unpack(qkv, slots, n_tokens)
                q, k, v = (backend.heads_of(qkv, head_shape, j * d) for j in range(3))
                merged = backend.empty((n_tokens, d), dtype)
                context, weights, attn_saved = self_attention_forward(
                    backend, score, q, k, v, mask, score_params, store_weights, keep,
                    backend.heads_out(merged, head_shape))
                backend.heads_done(context, merged)
                merged = self._unpack(merged, rows, n_rows)
                if store_weights:
                    layer_weights.append(weights)
            attn_out = backend.empty((n_rows, d), dtype)
            backend.linear_forward(merged, views[prefix + "attn.out.weight"],
                                   views[prefix + "attn.out.bias"], "identity", attn_out)
            self._dropout(attn_out, training, random_state, keep, drops)

            normed2, stream = self._norm(views, prefix + "ln2", attn_out, stream, keep, norms)
            hidden = backend.empty((n_rows, config.d_ff), dtype)
            pre = backend.empty((n_rows, config.d_ff), dtype) if keep else None
            backend.linear_forward(normed2, views[prefix + "ffn.fc1.weight"],
                                   views[prefix + "ffn.fc1.bias"], "gelu", hidden, pre)
            ffn_out = backend.empty((n_rows, d), dtype)
            backend.linear_forward(hidden, views[prefix + "ffn.fc2.weight"],
                                   views[prefix + "ffn.fc2.bias"], "identity", ffn_out)
            self._dropout(ffn_out, training, random_state, keep, drops)
            branch = ffn_out
            if keep:
                saved.update(normed=normed, attn=attn_saved, merged=merged, normed2=normed2,
                             hidden=hidden, pre=pre)
                layers.append(saved)
        packed_pooling = offsets is not None and config.pooling == "attention"
        if config.n_layers > 0:
            states, stream = self._norm(views, "final_ln", branch, stream, keep, norms)
            if not packed_pooling:
                states = self._unpack(states, slots, n_tokens)
        else:
            states = stream

        # Pooling over the real steps.
        if packed_pooling:
            context, pool_weights, pool_saved = packed_pool_forward(
                backend, score, states, offsets, steps, views["pool.query"], length,
                _score_views(views, "pool.score.", score, config.head_dim), keep)
            pooled = context.reshape(batch, d)
        elif config.pooling == "attention":
            # A contiguous copy: the pooling kernels' per-position loops only
            # vectorise on C-contiguous heads (a strided view cost more than it saved).
            head_states = backend.empty(head_shape, dtype)
            backend.split_heads(states, heads, head_states)
            context, pool_weights, pool_saved = attention_pool_forward(
                backend, score, head_states, views["pool.query"], mask,
                _score_views(views, "pool.score.", score, config.head_dim), keep)
            pooled = context.reshape(batch, d)
        else:
            host_weights = mean_pool_weights(host_mask, dtype)
            mean_weights = backend.asarray(host_weights, dtype)
            pooled = backend.empty((batch, d), dtype)
            backend.mean_pool_forward(states.reshape(batch, length, d), mean_weights, pooled)
            pool_weights = np.broadcast_to(host_weights[:, None, :], (batch, heads, length))
            pool_saved = mean_weights
        # The weights stay a distribution; only the head's input grows with
        # the sequence (``length_scaling``).
        length_scale = config.length_scale(host_mask)
        if length_scale is not None:
            length_scale = backend.asarray(length_scale, dtype)
            backend.scale_rows_(pooled, length_scale)
        result = dict(pooled=pooled, pool_weights=pool_weights, layer_weights=layer_weights)
        if until == "pooled":
            return result

        output = backend.empty((batch, config.n_outputs), dtype)
        backend.linear_forward(pooled, views["head.weight"], views["head.bias"], "identity",
                               output)
        result["output"] = output
        if keep:
            result["cache"] = dict(
                inputs=inputs, mask=mask, norms=norms, drops=drops, packing=packing,
                layers=layers, pool=pool_saved, pooled=pooled, shape=(batch, length),
                length_scale=length_scale)
        return result

    def forward(self, params, X, mask, training=False, random_state=None):
        """Forward pass that records what :meth:`backward` needs.

        Parameters
        ----------
        params : ndarray of shape (P,)
        X : ndarray of shape (N, L, F) (values) or (N, L) (token ids)
        mask : ndarray of shape (N, L), bool
            True at real steps.
        training : bool, default=False
            Apply dropout (when ``config.dropout > 0``).
        random_state : numpy.random.RandomState or numpy.random.Generator, optional
            Source of the dropout masks (drawn only when training with
            dropout): the same state gives the same masks.

        Returns
        -------
        output : ndarray of shape (N, n_outputs)
        cache : dict
            Opaque; pass it to :meth:`backward`.
        """
        result = self._run(params, X, mask, training, random_state, keep=True)
        return result["output"], result["cache"]

    # -------------------------------------------------------------- backward

    def _norm_backward(self, views, grads, record, grad_out, grad_stream):
        """Backward of :meth:`_norm`; returns the gradient at its stream input.

        ``grad_stream`` (the gradient reaching the normalised stream through
        the residual path, or None) is added in the same kernel and may be
        overwritten.
        """
        name, stream, mean, rstd = record
        gamma = views[name + ".gamma"]
        grad_x = grad_stream
        if grad_x is None:
            grad_x = self.backend.empty(grad_out.shape, grad_out.dtype)
        self.backend.layer_norm_backward(grad_out, stream, mean, rstd, gamma, grad_x,
                                         grads[name + ".gamma"], grads[name + ".beta"],
                                         grad_stream)
        return grad_x

    def _dropout_backward(self, grad, mask):
        """Gradient through a dropout; a new array unless no mask was drawn."""
        if mask is None:
            return grad
        out = self.backend.empty(grad.shape, grad.dtype)
        self.backend.dropout_backward(grad, mask, out)
        return out

    def backward(self, params, cache, grad_output):
        """Gradient of ``sum(output * grad_output)`` with respect to the parameters.

        Parameters
        ----------
        params : ndarray of shape (P,)
            The parameters of the forward pass.
        cache : dict
            From :meth:`forward`.
        grad_output : ndarray of shape (N, n_outputs)

        Returns
        -------
        grad : ndarray of shape (P,), of ``config.dtype``
            Same layout as ``params``.
        """
        config, backend = self.config, self.backend
        dtype = config.dtype
        params = self._params(params)
        views = self.layout.views(params)
        grad = self._zeroed_gradient(dtype)
        grads = self.layout.views(grad)
        batch, length = cache["shape"]
        mask = cache["mask"]
        n_tokens, d, heads = batch * length, config.d_model, config.n_heads
        rows, slots = cache["packing"] if cache["packing"] is not None else (None, None)
        n_rows = n_tokens if rows is None else rows.shape[0]
        head_shape = (batch, heads, length, config.head_dim)
        score = config.attention_score
        grad_output = backend.asarray(grad_output, dtype)
        if grad_output.shape != (batch, config.n_outputs):
            raise ValueError(
                f"grad_output must have shape {(batch, config.n_outputs)}; "
                f"got {grad_output.shape}.")

        # Head and pooling.
        grad_pooled = backend.empty((batch, d), dtype)
        backend.linear_backward(cache["pooled"], views["head.weight"], None, grad_output,
                                "identity", grad_pooled, grads["head.weight"],
                                grads["head.bias"])
        if cache["length_scale"] is not None:
            backend.scale_rows_(grad_pooled, cache["length_scale"])
        packed_pooling = isinstance(cache["pool"], dict) and cache["pool"].get("packed", False)
        if packed_pooling:
            grad_states = packed_pool_backward(
                backend, score, cache["pool"], views["pool.query"],
                _score_views(views, "pool.score.", score, config.head_dim),
                grad_pooled.reshape(batch, heads, config.head_dim), grads["pool.query"],
                _score_views(grads, "pool.score.", score, config.head_dim))
        elif config.pooling == "attention":
            grad_states = backend.empty((n_tokens, d), dtype)
            grad_heads = attention_pool_backward(
                backend, score, cache["pool"], views["pool.query"], mask,
                _score_views(views, "pool.score.", score, config.head_dim),
                grad_pooled.reshape(batch, heads, config.head_dim), grads["pool.query"],
                _score_views(grads, "pool.score.", score, config.head_dim))
            backend.merge_heads(grad_heads, grad_states)
        else:
            grad_states = backend.empty((n_tokens, d), dtype)
            backend.mean_pool_backward(cache["pool"], grad_pooled,
                                       grad_states.reshape(batch, length, d))

        # Encoder layers, last first. ``grad_stream`` is the gradient at the
        # residual stream after the sub-layer being undone.
        norms, drops = list(cache["norms"]), list(cache["drops"])
        if config.n_layers > 0:
            if not packed_pooling:
                grad_states = self._unpack(grad_states, rows, n_rows)
            grad_stream = self._norm_backward(views, grads, norms.pop(), grad_states, None)
        else:
            grad_stream = grad_states
        for i in reversed(range(config.n_layers)):
            prefix = f"layers.{i}."
            saved = cache["layers"][i]
            # Feed-forward sub-layer.
            grad_ffn = self._dropout_backward(grad_stream, drops.pop())
            grad_hidden = backend.empty((n_rows, config.d_ff), dtype)
            backend.linear_backward(saved["hidden"], views[prefix + "ffn.fc2.weight"], None,
                                    grad_ffn, "identity", grad_hidden,
                                    grads[prefix + "ffn.fc2.weight"],
                                    grads[prefix + "ffn.fc2.bias"])
            grad_normed2 = backend.empty((n_rows, d), dtype)
            backend.linear_backward(saved["normed2"], views[prefix + "ffn.fc1.weight"],
                                    saved["pre"], grad_hidden, "gelu", grad_normed2,
                                    grads[prefix + "ffn.fc1.weight"],
                                    grads[prefix + "ffn.fc1.bias"], grad_hidden)
            grad_stream = self._norm_backward(views, grads, norms.pop(), grad_normed2, grad_stream)
            # Attention sub-layer.
            grad_attn = self._dropout_backward(grad_stream, drops.pop())
            grad_merged = backend.empty((n_rows, d), dtype)
            backend.linear_backward(saved["merged"], views[prefix + "attn.out.weight"], None,
                                    grad_attn, "identity", grad_merged,
                                    grads[prefix + "attn.out.weight"],
                                    grads[prefix + "attn.out.bias"])
            score_params = _score_views(views, prefix + "attn.score.", score, config.head_dim)
            grad_score_params = _score_views(grads, prefix + "attn.score.", score,
                                             config.head_dim)
            if saved["attn"].get("packed", False):
                grad_qkv = packed_self_attention_backward(
                    backend, score, saved["attn"], heads, score_params, grad_merged,
                    grad_score_params)
            else:
                # Zero rows on padding: padded queries must pass no gradient on.
                grad_merged = self._unpack(grad_merged, slots, n_tokens)
                grad_qkv = backend.empty((n_tokens, 3 * d), dtype)
                parts = self_attention_backward(
                    backend, score, saved["attn"], mask, score_params,
                    backend.heads_of(grad_merged, head_shape), grad_score_params,
                    tuple(backend.heads_out(grad_qkv, head_shape, j * d) for j in range(3)))
                for j, part in enumerate(parts):
                    backend.heads_done(part, grad_qkv, j * d)
                grad_qkv = self._unpack(grad_qkv, rows, n_rows)
            grad_normed = backend.empty((n_rows, d), dtype)
            backend.linear_backward(saved["normed"], views[prefix + "attn.qkv.weight"], None,
                                    grad_qkv, "identity", grad_normed,
                                    grads[prefix + "attn.qkv.weight"],
                                    grads[prefix + "attn.qkv.bias"])
            grad_stream = self._norm_backward(views, grads, norms.pop(), grad_normed, grad_stream)

        # Embedding dropout, positions and the embedding itself.
        grad_embed = self._dropout_backward(grad_stream, drops.pop())
        if config.positional == "learned":
            padded = self._unpack(grad_embed, slots, n_tokens)
            backend.sum_axis0(padded.reshape(batch, length * d),
                              grads["pos.table"][:length].reshape(length * d))
        if config.input_kind == "values":
            backend.linear_backward(cache["inputs"], views["embed.weight"], None, grad_embed,
                                    "identity", None, grads["embed.weight"], grads["embed.bias"])
        else:
            backend.embedding_backward(cache["inputs"], grad_embed, grads["embed.table"])
        return grad

    def _zeroed_gradient(self, dtype):
        """The flat gradient buffer, zero except where the backward pass overwrites it.

        The embedding table's block is left as it is: the embedding backward
        kernel zeroes it before it scatter-adds, and filling it here as well
        (20,000 x 64 entries) cost 7 % of a training step at L = 32.
        """
        backend = self.backend
        grad = backend.empty(self.layout.size, dtype)
        if self.config.input_kind == "values":
            backend.fill_zero(grad)
            return grad
        table = self.layout.slice("embed.table")
        for part in (grad[:table.start], grad[table.stop:]):
            if part.shape[0]:
                backend.fill_zero(part)
        return grad

    # ------------------------------------------------------------- inference

    def predict(self, params, X, mask):
        """Network output without backward bookkeeping (no dropout).

        Parameters
        ----------
        params : ndarray of shape (P,)
        X : ndarray of shape (N, L, F) or (N, L)
        mask : ndarray of shape (N, L), bool

        Returns
        -------
        output : ndarray of shape (N, n_outputs)
        """
        with self.backend.reuse_buffers("predict"):
            return np.array(self._host(self._run(params, X, mask)["output"]))

    def transform(self, params, X, mask):
        """The pooled representation that the head reads (after any length scaling).

        Parameters
        ----------
        params : ndarray of shape (P,)
        X : ndarray of shape (N, L, F) or (N, L)
        mask : ndarray of shape (N, L), bool

        Returns
        -------
        pooled : ndarray of shape (N, d_model)
        """
        with self.backend.reuse_buffers("predict"):
            return np.array(self._host(self._run(params, X, mask, until="pooled")["pooled"]))

    def explain(self, params, X, mask, all_layers=False):
        """Attention weights of a forward pass (no dropout).

        Parameters
        ----------
        params : ndarray of shape (P,)
        X : ndarray of shape (N, L, F) or (N, L)
        mask : ndarray of shape (N, L), bool
        all_layers : bool, default=False
            Also return every self-attention layer's weights.

        Returns
        -------
        pooling : ndarray of shape (N, H, L)
            Pooling attention; for ``pooling="mean"`` the uniform weights
            ``1 / n_real``. Rows sum to 1 over real steps and are exactly 0 on
            padding (all 0 for a sequence without real steps).
        layers : list of ndarray of shape (N, H, L, L)
            Only with ``all_layers=True`` (then a tuple ``(pooling, layers)``
            is returned): each layer's self-attention weights, rows over keys;
            the rows of padded queries are 0.
        """
        mask = np.ascontiguousarray(mask, dtype=bool)
        length = mask.shape[1] if mask.ndim == 2 else 0
        with self.backend.reuse_buffers("predict"):
            result = self._run(params, X, mask, store_weights=all_layers, until="pooled")
            pooling = _pad_steps(np.array(self._host(result["pool_weights"])), length, (2,))
            if not all_layers:
                return pooling
            # Padded queries attend to nothing: their rows are meaningless (and
            # differ between the packed and the dense pass), so they read 0.
            query_mask = mask[:, None, :, None]
            return pooling, [_pad_steps(np.array(self._host(weights)), length, (2, 3)) * query_mask
                             for weights in result["layer_weights"]]

    def _host(self, array):
        """A NumPy array of a backend array (host arrays pass through)."""
        return array if isinstance(array, np.ndarray) else self.backend.to_host(array)
