"""Document validation and tokenisation shared by the text estimators.

Tokenisation is deliberately simple and fully defined for every Python
``str``:

1. lower-case with :meth:`str.lower` (when ``lowercase=True``);
2. normalise to Unicode NFC, so that a precomposed ``"é"`` and ``"e"`` followed
   by a combining accent give the same token;
3. return every match of the token pattern, left to right (the text of the
   single capturing group when the pattern has one, as in scikit-learn's
   ``CountVectorizer``).

Everything the pattern does not match is a separator. With the default
pattern (``\\w+`` between word boundaries) that includes punctuation, emoji,
control characters, zero-width characters and lone surrogates (which Python
strings may hold, e.g. from ``errors="surrogateescape"`` decoding): they never
raise and never end up inside a token. Like ``CountVectorizer``, ``\\w`` does
not match combining marks, so scripts written with them (e.g. Devanagari
vowel signs) are split at those marks; pass a custom ``token_pattern`` for
such text.
"""

import functools
import math
import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
import unicodedata

import numpy as np
import pandas as pd

__all__ = ["check_documents", "compile_token_pattern", "make_tokenizer"]

#: The default token pattern (scikit-learn's with one-letter words kept).
DEFAULT_TOKEN_PATTERN = r"(?u)\b\w+\b"
#: The same matches, 20 % faster: a maximal run of word characters always
#: starts and ends at a word boundary, so the boundary tests are redundant.
_FAST_DEFAULT = re.compile(r"\w+")


@functools.lru_cache(maxsize=64)
def compile_token_pattern(token_pattern):
    """Compile ``token_pattern`` once, checking it has at most one group.

    Parameters
    ----------
    token_pattern : str

    Returns
    -------
    pattern : re.Pattern

    Raises
    ------
    ValueError
        If the pattern does not compile or has more than one capturing group.
    """
    try:
        pattern = re.compile(token_pattern)
    except re.error as exc:
        raise ValueError(f"token_pattern {token_pattern!r} is not a valid regular "
                         f"expression: {exc}") from exc
    if pattern.groups > 1:
        raise ValueError(f"token_pattern {token_pattern!r} has {pattern.groups} capturing "
                         "groups; use at most one (the group's text is the token), and "
                         "write other groups as non-capturing (?:...).")
    return pattern


def make_tokenizer(lowercase, token_pattern):
    """Return ``tokenize(doc) -> list of str`` (see the module docstring).

    Parameters
    ----------
    lowercase : bool
    token_pattern : str

    Returns
    -------
    tokenize : callable
    """
    pattern = compile_token_pattern(token_pattern)
    findall = (_FAST_DEFAULT if token_pattern == DEFAULT_TOKEN_PATTERN else pattern).findall
    normalize = unicodedata.normalize

    if lowercase:
        def tokenize(doc):
            return findall(normalize("NFC", doc.lower()))
    else:
        def tokenize(doc):
            return findall(normalize("NFC", doc))
    return tokenize


def _is_missing(value):
    if value is None:
        return True
    if isinstance(value, (float, np.floating)) and math.isnan(value):
        return True
    return value is pd.NA or value is pd.NaT


def _describe_position(i, labels):
    if labels is None:
        return f"document {i}"
    label = labels[i]
    label = label.item() if isinstance(label, np.generic) else label
    return f"document {i} (index label {label!r})"


def check_documents(X, *, input_name="X"):
    """Validate raw documents and return them as a list of ``str``.

    Parameters
    ----------
    X : list of str, 1D ndarray of str or object, or pandas Series
        Any iterable of ``str`` other than a ``str``/``bytes`` itself is
        accepted; positions in error messages are 0-based.
    input_name : str, default="X"
        Name used in error messages.

    Returns
    -------
    docs : list of str

    Raises
    ------
    TypeError
        ``X`` is a single ``str``/``bytes`` or not iterable, or an element is
        not a ``str`` (bytes get a hint to decode them first).
    ValueError
        ``X`` is 2D (or 0D), empty, or an element is None/NaN.
    """
    if isinstance(X, (str, bytes, bytearray)):
        hint = ("decode it to str and wrap it in a list: [doc.decode('utf-8')]"
                if not isinstance(X, str) else "wrap one document in a list: [doc]")
        raise TypeError(f"{input_name} must be an iterable of documents (str), got a single "
                        f"{type(X).__name__}; {hint}.")
    if isinstance(X, (Mapping, AbstractSet)):
        raise TypeError(f"{input_name} must be an ordered sequence of documents, got "
                        f"{type(X).__name__} (a dict's keys or a set's order would decide "
                        "which prediction belongs to which document).")
    labels = None
    if isinstance(X, pd.DataFrame):
        raise ValueError(f"{input_name}: expected a 1D sequence of documents, got a DataFrame "
                         f"of shape {X.shape}; select the text column, e.g. X['text'].")
    if isinstance(X, pd.Series):
        labels = X.index
        if isinstance(labels, pd.RangeIndex) and labels.start == 0 and labels.step == 1:
            labels = None
        values = X.to_numpy(dtype=object)
    elif isinstance(X, np.ndarray):
        values = X
    elif hasattr(X, "__array__") and hasattr(X, "shape"):  # other array containers
        values = np.asarray(X)
    else:
        try:
            values = list(X)
        except TypeError:
            raise TypeError(f"{input_name} must be an iterable of documents (str), got "
                            f"{type(X).__name__}.") from None
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(f"{input_name}: expected a 1D sequence of documents, got an array "
                             f"of shape {values.shape}.")
        if values.dtype.kind == "S":
            raise TypeError(f"{input_name} holds bytes (dtype {values.dtype}); decode the "
                            "documents to str first, e.g. np.char.decode(X, 'utf-8').")
        if values.dtype.kind not in "UO":
            raise TypeError(f"{input_name} must hold str documents, got an array of dtype "
                            f"{values.dtype}.")
        values = values.tolist()  # np.str_ -> str
    if len(values) == 0:
        raise ValueError(f"{input_name} contains no documents; at least 1 is required.")
    docs = []
    for i, doc in enumerate(values):
        if type(doc) is not str:
            if isinstance(doc, str):
                doc = str(doc)
            elif _is_missing(doc):
                kind = "None" if doc is None else "NaN (missing)"
                raise ValueError(f"{input_name}: {_describe_position(i, labels)} is {kind}; "
                                 "every document must be a str (fill or drop missing values "
                                 "first, e.g. X.fillna('')).")
            elif isinstance(doc, (bytes, bytearray, np.bytes_)):
                raise TypeError(f"{input_name}: {_describe_position(i, labels)} is bytes; "
                                "decode it to str first, e.g. doc.decode('utf-8').")
            elif isinstance(doc, (list, tuple, np.ndarray)):
                raise ValueError(f"{input_name}: expected a 1D sequence of documents, but "
                                 f"{_describe_position(i, labels)} is a "
                                 f"{type(doc).__name__}, not a str.")
            else:
                raise TypeError(f"{input_name}: {_describe_position(i, labels)} has type "
                                f"{type(doc).__name__}; expected str.")
        docs.append(doc)
    return docs
