"""One flat parameter buffer, described by an ordered layout of named blocks.

Optimizers, gradient clipping, finite-difference checks and persistence all
work on a single 1-D array; the network reads and writes it through
reshaped views (never copies) that :meth:`ParamLayout.views` returns.
"""

import math

import numpy as np

__all__ = ["ParamLayout", "INITIALIZERS"]

#: Initialisers a block may declare.
#:
#: * ``"glorot"``: uniform on ``[-b, b]``, ``b = sqrt(6 / (fan_in + fan_out))``
#:   (torch's ``xavier_uniform_``); a weight ``(In, Out)`` has
#:   ``fan_in = In``, ``fan_out = Out``; a vector ``(n,)`` counts as ``(n, 1)``.
#: * ``"zeros"``: biases and layer-norm shifts.
#: * ``"ones"``: layer-norm gains.
#: * ``"normal"``: normal with standard deviation 0.02 (embeddings, learned
#:   positions, pooling queries).
#: * ``"embedding"``: ``"normal"`` with row 0 (the padding id) set to zero, as
#:   ``torch.nn.Embedding(padding_idx=0)``.
INITIALIZERS = ("glorot", "zeros", "ones", "normal", "embedding")

_NORMAL_STD = 0.02


def _fans(shape):
    """Fan-in and fan-out of a block for Glorot initialisation."""
    if len(shape) == 1:
        return shape[0], 1
    return shape[-2], shape[-1]


class ParamLayout:
    """Ordered names, shapes and offsets of the blocks of one flat buffer.

    Parameters
    ----------
    blocks : iterable of (str, tuple of int, str), optional
        ``(name, shape, initializer)`` triples, in buffer order;
        ``initializer`` is one of :data:`INITIALIZERS`. More blocks can be
        appended with :meth:`add`.

    Attributes
    ----------
    names : list of str
        Block names in buffer order.
    shapes : dict of str to tuple of int
    offsets : dict of str to int
        Start of each block in the flat buffer.
    initializers : dict of str to str
    size : int
        Total number of entries, ``P``.

    Examples
    --------
    >>> import numpy as np
    >>> layout = ParamLayout([("w", (2, 3), "glorot"), ("b", (3,), "zeros")])
    >>> layout.size
    9
    >>> flat = layout.init(np.random.RandomState(0), np.float64)
    >>> views = layout.views(flat)
    >>> views["w"].shape, bool(np.shares_memory(views["w"], flat))
    ((2, 3), True)
    """

    def __init__(self, blocks=()):
        self.names = []
        self.shapes = {}
        self.offsets = {}
        self.initializers = {}
        self.size = 0
        for name, shape, initializer in blocks:
            self.add(name, shape, initializer)

    def add(self, name, shape, initializer):
        """Append a block at the end of the buffer.

        Parameters
        ----------
        name : str
            Unique block name.
        shape : tuple of int
        initializer : str
            One of :data:`INITIALIZERS`.

        Raises
        ------
        ValueError
            For a duplicate name, a negative dimension or an unknown
            initializer.
        """
        if name in self.shapes:
            raise ValueError(f"duplicate parameter block {name!r}.")
        shape = tuple(int(n) for n in shape)
        if any(n < 0 for n in shape):
            raise ValueError(f"parameter block {name!r} has a negative dimension: {shape}.")
        if initializer not in INITIALIZERS:
            raise ValueError(
                f"initializer of {name!r} must be one of {INITIALIZERS}; got {initializer!r}.")
        self.names.append(name)
        self.shapes[name] = shape
        self.offsets[name] = self.size
        self.initializers[name] = initializer
        self.size += math.prod(shape)

    def __contains__(self, name):
        return name in self.shapes

    def __len__(self):
        return len(self.names)

    def __repr__(self):
        return f"ParamLayout({len(self.names)} blocks, size={self.size})"

    def slice(self, name):
        """The range of block ``name`` in the flat buffer.

        Returns
        -------
        range : slice
        """
        start = self.offsets[name]
        return slice(start, start + math.prod(self.shapes[name]))

    def views(self, flat):
        """Reshaped views of every block of ``flat`` (no copies).

        Works equally for a parameter buffer and for a gradient buffer:
        writing into a view writes into ``flat``.

        Parameters
        ----------
        flat : ndarray of shape (P,)
            C-contiguous.

        Returns
        -------
        views : dict of str to ndarray
            C-contiguous views, in layout order.

        Raises
        ------
        ValueError
            If ``flat`` is not a contiguous 1-D array of ``size`` entries.
        """
        if flat.ndim != 1 or flat.shape[0] != self.size:
            raise ValueError(
                f"the flat parameter buffer must have shape ({self.size},); got {flat.shape}.")
        if not flat.flags["C_CONTIGUOUS"]:  # the item form also works for device arrays
            raise ValueError("the flat parameter buffer must be C-contiguous.")
        return {name: flat[self.slice(name)].reshape(self.shapes[name]) for name in self.names}

    def init(self, random_state, dtype=np.float32):
        """A freshly initialised flat buffer.

        Blocks are drawn in layout order, so the same ``random_state`` gives
        the same buffer.

        Parameters
        ----------
        random_state : numpy.random.RandomState, numpy.random.Generator, int or None
            Source of the draws; an int or None seeds a new ``RandomState``.
        dtype : float dtype, default=np.float32

        Returns
        -------
        flat : ndarray of shape (P,)
        """
        rng = random_state
        if not isinstance(rng, (np.random.RandomState, np.random.Generator)):
            rng = np.random.RandomState(rng)
        flat = np.empty(self.size, dtype=dtype)
        for name, view in self.views(flat).items():
            kind = self.initializers[name]
            shape = self.shapes[name]
            if kind == "zeros":
                view[...] = 0
            elif kind == "ones":
                view[...] = 1
            elif kind == "glorot":
                fan_in, fan_out = _fans(shape)
                bound = math.sqrt(6.0 / max(fan_in + fan_out, 1))
                view[...] = rng.uniform(-bound, bound, size=shape)
            else:  # "normal", "embedding"
                view[...] = rng.normal(0.0, _NORMAL_STD, size=shape)
                if kind == "embedding" and shape[0] > 0:
                    view[0] = 0
        return flat
