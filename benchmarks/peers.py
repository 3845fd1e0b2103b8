"""The PyTorch peer of skattention's network, defined once for every benchmark.

:class:`PeerNetwork` is the architecture of
:class:`skattention._nn._network.AttentionNetwork` at the benchmark settings
(``attention_score="scaled_dot"``, ``positional="sinusoidal"``,
``pooling="attention"``), written the way a PyTorch user would write it::

    h = Embed(X) + P                            token table (padding_idx=0) or Linear
    repeat n_layers times (pre-LayerNorm):
        h = h + OutProj(MHA(LN1(h), key mask))  fused qkv Linear, 4 heads, SDPA
        h = h + FC2(GELU(FC1(LN2(h))))          exact (erf) GELU
    h = LN_final(h)                             only when n_layers > 0
    z[b, h] = sum_l softmax_l(q_h . h[b, l, head h] / sqrt(dh)) h[b, l, head h]
    out = z W + b                               (heads concatenated, no pooling projection)

``impl`` picks how the encoder layer is written:

* ``"sdpa"``: hand-written layer, attention through
  ``torch.nn.functional.scaled_dot_product_attention`` with a boolean key mask;
* ``"math"``: the same layer with an explicit masked softmax (reference);
* ``"nn"``: ``torch.nn.TransformerEncoderLayer(norm_first=True)`` stacked in a
  ``torch.nn.TransformerEncoder`` with a final ``LayerNorm`` (uses torch's
  fused "fast path" in inference).

All three compute the same function; :func:`copy_skattention_params` loads a
skattention parameter buffer into any of them, and ``python benchmarks/peers.py
--check`` shows that the outputs agree with skattention's to ~1e-5.

Weights in skattention are ``(In, Out)`` (``y = x W + b``); torch's
``Linear.weight`` is ``(Out, In)``, hence the transposes.
"""

import argparse
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PeerNetwork", "copy_skattention_params", "flat_gradient", "peer_parameter_map",
           "sinusoidal_table", "peer_for_config", "make_optimizer", "random_batch",
           "check_against_skattention"]

LAYER_NORM_EPS = 1e-5


def sinusoidal_table(n_positions, d_model):
    """``P[p, 2i] = sin(p / 10000^(2i/d))``, ``P[p, 2i+1] = cos(...)`` (float32 tensor)."""
    positions = np.arange(n_positions, dtype=np.float64)[:, None]
    rates = np.exp(-math.log(10000.0) * np.arange(0, d_model, 2, dtype=np.float64) / d_model)
    angles = positions * rates[None, :]
    table = np.empty((n_positions, d_model), dtype=np.float64)
    table[:, 0::2] = np.sin(angles)
    table[:, 1::2] = np.cos(angles[:, : d_model // 2])
    return torch.from_numpy(table.astype(np.float32))


class EncoderLayer(nn.Module):
    """Pre-LayerNorm encoder layer with a fused qkv projection (heads contiguous)."""

    def __init__(self, d_model, n_heads, d_ff, use_sdpa=True):
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.use_sdpa = use_sdpa
        self.ln1 = nn.LayerNorm(d_model, eps=LAYER_NORM_EPS)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model, eps=LAYER_NORM_EPS)
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)

    def forward(self, h, attn_mask):
        """``h`` (B, L, d); ``attn_mask`` (B, 1, 1, L) bool, True at real keys."""
        batch, length, d = h.shape
        qkv = self.qkv(self.ln1(h)).view(batch, length, 3, self.n_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)          # each (B, H, L, dh)
        if self.use_sdpa:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        else:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            scores = scores.masked_fill(~attn_mask, float("-inf"))
            context = torch.softmax(scores, dim=-1) @ v
        h = h + self.out(context.transpose(1, 2).reshape(batch, length, d))
        return h + self.fc2(F.gelu(self.fc1(self.ln2(h))))


class PeerNetwork(nn.Module):
    """skattention's ``AttentionNetwork`` in PyTorch (scaled-dot, sinusoidal, attention pooling).

    Parameters
    ----------
    input_kind : {"tokens", "values"}
    n_inputs : int
        Vocabulary size (tokens, id 0 is padding) or features per step (values).
    max_len : int
        Rows of the sinusoidal table (longer inputs extend it on the fly).
    d_model, n_heads, n_layers, d_ff, n_outputs : int
    impl : {"sdpa", "math", "nn"}
        How the encoder layers are written (see the module docstring).

    ``forward(x, mask=None)``: ``x`` is (B, L) int64 ids or (B, L, F) float32
    values; ``mask`` (B, L) bool, True at real steps (defaults to ``x != 0``
    for tokens). Returns (B, n_outputs) logits.
    """

    def __init__(self, input_kind="tokens", n_inputs=20000, max_len=128, d_model=64, n_heads=4,
                 n_layers=1, d_ff=128, n_outputs=2, impl="sdpa"):
        super().__init__()
        if impl not in ("sdpa", "math", "nn"):
            raise ValueError(f"impl must be 'sdpa', 'math' or 'nn'; got {impl!r}")
        self.input_kind = input_kind
        self.d_model, self.n_heads, self.n_layers = d_model, n_heads, n_layers
        self.head_dim = d_model // n_heads
        self.impl = impl
        if input_kind == "tokens":
            self.embed = nn.Embedding(n_inputs, d_model, padding_idx=0)
        else:
            self.embed = nn.Linear(n_inputs, d_model)
        self.register_buffer("positions", sinusoidal_table(max_len, d_model), persistent=False)
        if impl == "nn":
            layer = nn.TransformerEncoderLayer(
                d_model, n_heads, dim_feedforward=d_ff, dropout=0.0, activation="gelu",
                layer_norm_eps=LAYER_NORM_EPS, batch_first=True, norm_first=True)
            self.encoder = (nn.TransformerEncoder(
                layer, n_layers, norm=nn.LayerNorm(d_model, eps=LAYER_NORM_EPS),
                enable_nested_tensor=False) if n_layers > 0 else None)
        else:
            self.layers = nn.ModuleList(
                EncoderLayer(d_model, n_heads, d_ff, use_sdpa=(impl == "sdpa"))
                for _ in range(n_layers))
            self.final_ln = nn.LayerNorm(d_model, eps=LAYER_NORM_EPS) if n_layers > 0 else None
        self.pool_query = nn.Parameter(torch.randn(n_heads, self.head_dim) * 0.02)
        self.head = nn.Linear(d_model, n_outputs)

    def _positions(self, length):
        if self.positions.shape[0] < length:
            self.positions = sinusoidal_table(length, self.d_model).to(self.positions.device)
        return self.positions[:length]

    def forward(self, x, mask=None):
        pooled, _ = self._pool(x, mask)
        return self.head(pooled)

    def pooling_weights(self, x, mask=None):
        """Attention pooling weights, averaged over heads: (B, L), 0 on padding.

        What skattention's ``attention_weights_`` holds for each training
        sequence; the benchmarks time this pass to give skorch the same work.
        """
        return self._pool(x, mask)[1].mean(dim=1)

    def _pool(self, x, mask):
        if mask is None:
            if self.input_kind != "tokens":
                raise ValueError("values input needs a mask")
            mask = x != 0
        if self.input_kind == "tokens":
            h = self.embed(x.masked_fill(~mask, 0))
        else:
            h = self.embed(x.masked_fill(~mask[..., None], 0.0))
        batch, length, d = h.shape
        h = h + self._positions(length)
        if self.impl == "nn":
            if self.encoder is not None:
                h = self.encoder(h, src_key_padding_mask=~mask)
        else:
            attn_mask = mask[:, None, None, :]
            for layer in self.layers:
                h = layer(h, attn_mask)
            if self.final_ln is not None:
                h = self.final_ln(h)
        # Attention pooling: one learned query per head over the real steps;
        # keys and values are the heads of the final states.
        heads = h.view(batch, length, self.n_heads, self.head_dim)
        scores = torch.einsum("blhe,he->bhl", heads, self.pool_query) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        pooled = torch.einsum("bhl,blhe->bhe", weights, heads).reshape(batch, d)
        return pooled, weights


def make_optimizer(model, learning_rate=1e-3, weight_decay=1e-4):
    """Adam with an L2 term added to the gradient (skattention's ``alpha``).

    The fused CPU implementation is used when this torch build has it (the
    fastest Adam torch offers on the CPU), else the default one.
    """
    try:
        return torch.optim.Adam(model.parameters(), lr=learning_rate,
                                weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(model.parameters(), lr=learning_rate,
                                weight_decay=weight_decay)


def peer_for_config(config, impl="sdpa"):
    """A :class:`PeerNetwork` with the shape of a skattention ``NetworkConfig``."""
    unsupported = {"attention_score": ("scaled_dot",), "positional": ("sinusoidal",),
                   "pooling": ("attention",)}
    for name, allowed in unsupported.items():
        if getattr(config, name) not in allowed:
            raise ValueError(f"the peer implements {name} in {allowed}; got "
                             f"{getattr(config, name)!r}")
    return PeerNetwork(input_kind=config.input_kind, n_inputs=config.n_inputs,
                       max_len=config.max_len, d_model=config.d_model, n_heads=config.n_heads,
                       n_layers=config.n_layers, d_ff=config.d_ff, n_outputs=config.n_outputs,
                       impl=impl)


def _t(array, transpose=False):
    array = np.asarray(array, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.T if transpose else array))


def peer_parameter_map(model):
    """skattention block name -> (torch parameter, transposed?) for a :class:`PeerNetwork`."""
    mapping = {}
    if model.input_kind == "tokens":
        mapping["embed.table"] = (model.embed.weight, False)
    else:
        mapping["embed.weight"] = (model.embed.weight, True)
        mapping["embed.bias"] = (model.embed.bias, False)
    for i in range(model.n_layers):
        p = f"layers.{i}."
        if model.impl == "nn":
            layer = model.encoder.layers[i]
            norms = [(layer.norm1, "ln1"), (layer.norm2, "ln2")]
            linears = [(layer.self_attn.out_proj, "attn.out"), (layer.linear1, "ffn.fc1"),
                       (layer.linear2, "ffn.fc2")]
            mapping[p + "attn.qkv.weight"] = (layer.self_attn.in_proj_weight, True)
            mapping[p + "attn.qkv.bias"] = (layer.self_attn.in_proj_bias, False)
        else:
            layer = model.layers[i]
            norms = [(layer.ln1, "ln1"), (layer.ln2, "ln2")]
            linears = [(layer.qkv, "attn.qkv"), (layer.out, "attn.out"), (layer.fc1, "ffn.fc1"),
                       (layer.fc2, "ffn.fc2")]
        for norm, name in norms:
            mapping[p + name + ".gamma"] = (norm.weight, False)
            mapping[p + name + ".beta"] = (norm.bias, False)
        for linear, name in linears:
            mapping[p + name + ".weight"] = (linear.weight, True)
            mapping[p + name + ".bias"] = (linear.bias, False)
    if model.n_layers > 0:
        final = model.encoder.norm if model.impl == "nn" else model.final_ln
        mapping["final_ln.gamma"] = (final.weight, False)
        mapping["final_ln.beta"] = (final.bias, False)
    mapping["pool.query"] = (model.pool_query, False)
    mapping["head.weight"] = (model.head.weight, True)
    mapping["head.bias"] = (model.head.bias, False)
    return mapping


@torch.no_grad()
def copy_skattention_params(model, layout, params):
    """Load a skattention flat parameter buffer into a :class:`PeerNetwork`.

    Parameters
    ----------
    model : PeerNetwork
    layout : skattention._nn._params.ParamLayout
        From ``skattention._nn._network.build_layout(config)``.
    params : ndarray of shape (layout.size,)
    """
    views = layout.views(np.ascontiguousarray(params, dtype=np.float32))
    mapping = peer_parameter_map(model)
    if sorted(mapping) != sorted(layout.names):
        raise AssertionError(f"blocks differ: {sorted(set(mapping) ^ set(layout.names))}")
    for name, (tensor, transpose) in mapping.items():
        tensor.copy_(_t(views[name], transpose))
    n_torch = sum(p.numel() for p in model.parameters())
    if n_torch != layout.size:
        raise AssertionError(f"parameter counts differ: torch {n_torch}, skattention "
                             f"{layout.size}")


def flat_gradient(model, layout):
    """The peer's ``.grad`` arrays gathered into skattention's flat layout."""
    flat = np.zeros(layout.size, dtype=np.float32)
    views = layout.views(flat)
    for name, (tensor, transpose) in peer_parameter_map(model).items():
        grad = tensor.grad.detach().numpy()
        views[name][...] = grad.T if transpose else grad
    return flat


def random_batch(rng, input_kind, batch, length, n_inputs, pad_fraction=0.3):
    """Inputs and a mask with random lengths; on average ``pad_fraction`` of steps padded.

    Lengths are uniform on ``[L - 2 f L, L]`` (at least 1), so the mean
    padded fraction is ``f`` (capped where ``2 f > 1``).
    """
    low = max(1, int(round(length * (1.0 - 2.0 * pad_fraction))))
    lengths = rng.integers(low, length + 1, size=batch)
    mask = np.arange(length)[None, :] < lengths[:, None]
    if input_kind == "tokens":
        X = rng.integers(1, n_inputs, size=(batch, length)).astype(np.int64)
        X[~mask] = 0
    else:
        X = rng.normal(size=(batch, length, n_inputs)).astype(np.float32)
        X[~mask] = 0
    return X, mask


def check_against_skattention(input_kind="tokens", n_layers=2, batch=8, length=24,
                              n_inputs=None, seed=0, impls=("sdpa", "math", "nn"),
                              verbose=True):
    """Copy skattention's initial parameters into the peer and compare the outputs.

    Returns the largest absolute difference over ``impls`` of the logits (eval
    and training mode) and of the parameter gradient of ``sum(output * g)``
    for a random ``g`` (relative to the largest gradient entry when above 1).
    """
    from skattention._backend import get_backend
    from skattention._nn._network import AttentionNetwork, NetworkConfig, build_layout

    if n_inputs is None:
        n_inputs = 20000 if input_kind == "tokens" else 8
    config = NetworkConfig(input_kind=input_kind, n_inputs=n_inputs, max_len=length,
                           d_model=64, n_heads=4, n_layers=n_layers, d_ff=128, n_outputs=3,
                           dtype=np.float32)
    network = AttentionNetwork(config, get_backend("cpu", n_threads=1))
    params = network.init_params(np.random.RandomState(seed))
    # Non-trivial layer-norm gains and biases, so that every block is exercised.
    rng = np.random.default_rng(seed)
    params = (params + rng.normal(0.0, 0.05, size=params.shape)).astype(np.float32)
    layout = build_layout(config)
    X, mask = random_batch(rng, input_kind, batch, length, n_inputs)
    reference = network.predict(params, X, mask)
    explained = network.explain(params, X, mask).mean(axis=1)
    train_out, cache = network.forward(params, X, mask, training=True)
    grad_output = rng.normal(size=train_out.shape).astype(np.float32)
    grads = network.backward(params, cache, grad_output)
    worst = 0.0
    for impl in impls:
        model = peer_for_config(config, impl)
        copy_skattention_params(model, layout, params)
        tX = torch.from_numpy(X)
        tmask = torch.from_numpy(mask)
        model.eval()
        with torch.inference_mode():
            out = model(tX, tmask).numpy()
            pooling = model.pooling_weights(tX, tmask).numpy()
        diff = float(np.max(np.abs(out - reference)))
        # The pooling weights the end-to-end benchmark's peer pass returns.
        pool_diff = float(np.max(np.abs(pooling - explained)))
        worst = max(worst, diff, pool_diff)
        if verbose:
            print(f"{input_kind:6s} n_layers={n_layers} impl={impl:4s} eval   "
                  f"max|torch - skattention| = {diff:.2e} (logit scale "
                  f"{np.abs(reference).max():.2f}), pooling weights {pool_diff:.2e}")
        # Training-mode forward and the parameter gradient of sum(output * g).
        model.train()
        model.zero_grad()
        out = model(tX, tmask)
        diff = float(np.max(np.abs(out.detach().numpy() - train_out)))
        (out * torch.from_numpy(grad_output)).sum().backward()
        grad_diff = float(np.max(np.abs(flat_gradient(model, layout) - grads)))
        worst = max(worst, diff, grad_diff / max(1.0, float(np.abs(grads).max())))
        if verbose:
            print(f"{input_kind:6s} n_layers={n_layers} impl={impl:4s} train  "
                  f"max|torch - skattention| = {diff:.2e}, gradient {grad_diff:.2e} "
                  f"(gradient scale {np.abs(grads).max():.2f})")
    return worst


def main(argv=None):
    parser = argparse.ArgumentParser(description="Check the torch peer against skattention.")
    parser.add_argument("--check", action="store_true",
                        help="copy skattention's parameters into the peer and compare outputs")
    parser.add_argument("--tol", type=float, default=1e-5)
    args = parser.parse_args(argv)
    if not args.check:
        parser.print_help()
        return 0
    worst = 0.0
    for input_kind in ("tokens", "values"):
        for n_layers in (0, 1, 2):
            worst = max(worst, check_against_skattention(input_kind, n_layers))
    ok = worst <= args.tol
    print(f"largest difference {worst:.2e}: {'OK' if ok else 'FAILED'} (tolerance {args.tol:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
