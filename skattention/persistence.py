"""Save and load fitted estimators in a format that lets no code in.

A model file (``.skat`` by convention) is a NumPy ``.npz`` archive (a zip)
written with :func:`numpy.savez_compressed`:

* ``__skattention__``: a 1D ``uint8`` array holding a UTF-8 JSON header;
* every array of the fitted model (parameters, attention weights, target
  scaling, numeric class labels, optimizer moments, the random state...)
  as its own ``.npy`` member, named ``a<i>_<attribute>``.

The header holds ``magic`` (``"skattention-model"``), ``format_version``
(an int), the ``versions`` of skattention, NumPy, scikit-learn and Python
that wrote the file, the estimator's ``class`` (one of the four
skattention estimators), its ``params`` (``get_params()``), its fitted
``attributes`` and free-form ``metadata`` (the command line stores the
column names it used there).

Values in ``params`` and ``attributes`` are JSON scalars and lists, or
objects tagged with a single ``"$..."`` key: ``$array`` (a reference to an
array member; ``"object": true`` for arrays of str that were object arrays),
``$tuple``, ``$dict`` (a list of key/value pairs, so that int keys stay
ints), ``$config`` (the :class:`~skattention._nn.NetworkConfig` fields),
``$vectorizer`` (a :class:`~skattention.text.TextSequenceVectorizer`'s
parameters and vocabulary), ``$random_state`` (a ``RandomState``'s state),
``$frame``/``$series`` (pandas objects such as ``token_importances_``).

Format 2 added the network's ``length_scaling`` and ``length_reference``
(and the estimators' ``length_scaling`` parameter); a format 1 file loads
with ``"none"``, the unscaled network it holds.

Loading never unpickles: the file must start like a zip, the arrays are
read with ``numpy.load(..., allow_pickle=False)``, the class is looked up
in a fixed allow-list, only the tagged types above are ever built, and the
result is checked for consistency (parameter count against the network
configuration, class count, target scaling, vocabulary...) before it is
returned. Anything else is a :class:`ValueError`.

The optimizer moments and the training random state are saved too, so a
``warm_start`` or ``partial_fit`` after :func:`load` continues exactly as it
would have on the saved estimator.
"""

import io
import json
import os
import platform
import re
import tempfile
import warnings
import zipfile

import numpy as np
import pandas as pd
import sklearn
from sklearn.utils.validation import check_is_fitted

__all__ = ["save", "load", "info", "FORMAT_VERSION"]

#: Version of the file layout this module writes and the newest it reads.
FORMAT_VERSION = 2
_MAGIC = "skattention-model"
_HEADER = "__skattention__"
_ZIP_MAGIC = b"PK\x03\x04"
_NAME = re.compile(r"^_?[A-Za-z][A-Za-z0-9_]*$")
_ARRAY_KINDS = "biufU"  # bool, ints, floats, unicode: never objects


def _estimator_classes():
    from .estimators import (
        AttentionClassifier,
        AttentionRegressor,
        TextAttentionClassifier,
        TextAttentionRegressor,
    )

    return {cls.__name__: cls for cls in (AttentionClassifier, AttentionRegressor,
                                          TextAttentionClassifier, TextAttentionRegressor)}


def _version():
    from . import __version__

    return __version__


class _Corrupt(ValueError):
    """A file that is ours but whose content does not hold together."""


class _NotOurs(ValueError):
    """Not a skattention model file at all."""


class _TooNew(ValueError):
    """A model file of a newer format version."""


# ----------------------------------------------------------------- encoding


class _Encoder:
    def __init__(self):
        self.arrays = {}

    def array(self, value, hint):
        if hasattr(value, "copy_to_host"):  # a device array
            value = value.copy_to_host()
        value = np.asarray(value)
        tag = {}
        if value.dtype == object:
            if not all(isinstance(v, str) for v in value.ravel()):
                raise TypeError(f"cannot save {hint}: an object array that holds more than "
                                "str values.")
            value = value.astype(str) if value.size else value.astype("<U1")
            tag["object"] = True
        if value.dtype.kind not in _ARRAY_KINDS:
            raise TypeError(f"cannot save {hint}: arrays of dtype {value.dtype} are not "
                            "supported.")
        name = f"a{len(self.arrays)}_{re.sub(r'[^A-Za-z0-9_]', '', hint)[:40]}"
        self.arrays[name] = np.ascontiguousarray(value)
        return {"$array": name, **tag}

    def __call__(self, value, hint):
        from ._nn import NetworkConfig
        from .text import TextSequenceVectorizer

        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (np.bool_,)):
            return bool(value)
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            return float(value)
        if isinstance(value, (np.ndarray, np.generic)) or hasattr(value, "copy_to_host"):
            return self.array(value, hint)
        if isinstance(value, list):
            return [self(v, hint) for v in value]
        if isinstance(value, tuple):
            return {"$tuple": [self(v, hint) for v in value]}
        if isinstance(value, dict):
            return {"$dict": [[self(k, hint), self(v, f"{hint}_{k}")]
                              for k, v in value.items()]}
        if isinstance(value, NetworkConfig):
            fields = {name: getattr(value, name) for name in value.__dataclass_fields__}
            fields["dtype"] = np.dtype(fields["dtype"]).name
            return {"$config": {k: self(v, hint) for k, v in fields.items()}}
        if type(value) is TextSequenceVectorizer:
            check_is_fitted(value, "vocabulary_")
            return {"$vectorizer": {
                "params": {k: self(v, hint) for k, v in value.get_params().items()},
                "vocabulary": {str(k): int(v) for k, v in value.vocabulary_.items()},
                "n_vocabulary": int(value.n_vocabulary_)}}
        if type(value) is np.random.RandomState:
            kind, keys, pos, has_gauss, cached = value.get_state()
            return {"$random_state": {"kind": kind, "keys": self.array(keys, hint + "_rng"),
                                      "pos": int(pos), "has_gauss": int(has_gauss),
                                      "cached_gaussian": float(cached)}}
        if isinstance(value, pd.DataFrame):
            return {"$frame": {"values": self.array(value.to_numpy(), hint),
                               "index": self.array(value.index.to_numpy(), hint + "_index"),
                               "index_name": self(value.index.name, hint),
                               "columns": [self(c, hint) for c in value.columns],
                               "columns_name": self(value.columns.name, hint)}}
        if isinstance(value, pd.Series):
            return {"$series": {"values": self.array(value.to_numpy(), hint),
                                "index": self.array(value.index.to_numpy(), hint + "_index"),
                                "index_name": self(value.index.name, hint),
                                "name": self(value.name, hint)}}
        raise TypeError(f"cannot save {hint}: values of type {type(value).__name__} are not "
                        "supported by skattention.persistence.")


class _Decoder:
    def __init__(self, arrays):
        self.arrays = arrays
        self.used = set()

    def array(self, ref):
        if not isinstance(ref, dict) or not isinstance(ref.get("$array"), str):
            raise _Corrupt("an array reference is malformed")
        name = ref["$array"]
        if name not in self.arrays:
            raise _Corrupt(f"the array {name!r} is missing")
        self.used.add(name)
        value = self.arrays[name]
        if ref.get("object"):
            value = value.astype(object)
        return value

    def __call__(self, value):
        from ._nn import NetworkConfig
        from .text import TextSequenceVectorizer

        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict) or len(value) not in (1, 2):
            raise _Corrupt(f"unexpected value {str(value)[:80]}")
        tag = next(iter(value))
        body = value[tag]
        if tag == "$array":
            return self.array(value)
        if len(value) != 1:
            raise _Corrupt(f"unexpected value {str(value)[:80]}")
        if tag == "$tuple" and isinstance(body, list):
            return tuple(self(v) for v in body)
        if tag == "$dict" and isinstance(body, list):
            pairs = [self(p) for p in body]
            if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
                raise _Corrupt("a dict entry is malformed")
            try:
                return {k: v for k, v in pairs}
            except TypeError:
                raise _Corrupt("a dict key is not hashable") from None
        if tag == "$config" and isinstance(body, dict):
            # Files written before ``length_scaling`` existed lack its two
            # fields; their defaults ("none", 1.0) are the network they saved.
            fields = {k: self(v) for k, v in body.items()}
            missing = set(NetworkConfig.__dataclass_fields__) - set(fields)
            if set(fields) - set(NetworkConfig.__dataclass_fields__) \
                    or missing - {"length_scaling", "length_reference"}:
                raise _Corrupt("the network configuration has unexpected fields")
            if fields["dtype"] not in ("float32", "float64"):
                raise _Corrupt(f"the network dtype {fields['dtype']!r} is not supported")
            try:
                return NetworkConfig(**fields)
            except (TypeError, ValueError) as exc:
                raise _Corrupt(f"the network configuration is invalid ({exc})") from None
        if tag == "$vectorizer" and isinstance(body, dict):
            params = body.get("params")
            vocabulary = body.get("vocabulary")
            n_vocabulary = body.get("n_vocabulary")
            if not isinstance(params, dict) or not isinstance(vocabulary, dict):
                raise _Corrupt("the vectorizer is malformed")
            params = {k: self(v) for k, v in params.items()}
            vectorizer = TextSequenceVectorizer()
            if not set(params) <= set(vectorizer.get_params()):
                raise _Corrupt("the vectorizer has unknown parameters")
            try:
                vectorizer.set_params(**params)
                vectorizer._validate_params()
            except (TypeError, ValueError) as exc:
                raise _Corrupt(f"the vectorizer parameters are invalid ({exc})") from None
            ids = list(vocabulary.values())
            if (not isinstance(n_vocabulary, int) or isinstance(n_vocabulary, bool)
                    or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
                    or len(set(ids)) != len(ids)
                    or any(i < 3 or i >= n_vocabulary for i in ids)):
                raise _Corrupt("the vocabulary is inconsistent")
            vectorizer.vocabulary_ = dict(vocabulary)
            vectorizer.n_vocabulary_ = n_vocabulary
            return vectorizer
        if tag == "$random_state" and isinstance(body, dict):
            try:
                rng = np.random.RandomState()
                rng.set_state((body["kind"], self.array(body["keys"]), body["pos"],
                               body["has_gauss"], body["cached_gaussian"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise _Corrupt(f"a random state is invalid ({exc})") from None
            return rng
        if tag in ("$frame", "$series") and isinstance(body, dict):
            try:
                values = self.array(body["values"])
                index = pd.Index(self.array(body["index"]), name=self(body["index_name"]))
                if tag == "$series":
                    return pd.Series(values, index=index, name=self(body["name"]))
                columns = pd.Index(self(body["columns"]), name=self(body["columns_name"]))
                return pd.DataFrame(values, index=index, columns=columns)
            except (KeyError, TypeError, ValueError) as exc:
                if isinstance(exc, _Corrupt):
                    raise
                raise _Corrupt(f"a table is malformed ({exc})") from None
        raise _Corrupt(f"unexpected value {str(value)[:80]}")


# ------------------------------------------------------------------- saving


def save(estimator, path, *, metadata=None):
    """Save a fitted skattention estimator to one file that loads without pickle.

    Parameters
    ----------
    estimator : AttentionClassifier, AttentionRegressor, TextAttentionClassifier \
or TextAttentionRegressor
        A fitted estimator (exactly one of these classes, not a subclass).
    path : str, path-like or binary file object
        Where to write; ``.skat`` is the conventional extension (nothing is
        appended). A path is written atomically (to a temporary file that
        then replaces it).
    metadata : dict, default=None
        JSON-serialisable information to keep with the model; read it back
        with :func:`info`.

    Raises
    ------
    TypeError
        If ``estimator`` is not one of skattention's estimators, or holds a
        value this format cannot represent.
    sklearn.exceptions.NotFittedError
        If ``estimator`` is not fitted.
    ValueError
        If a parameter holds an invalid value (set after fitting).

    Notes
    -----
    Saved: ``get_params()``, the network configuration and parameters, every
    fitted attribute (classes, feature names, target scaling, the text
    vectorizer and its vocabulary, ``loss_curve_``, ``attention_weights_``,
    ``token_importances_``, ``device_``...), the optimizer moments and the
    random state, so that ``warm_start``/``partial_fit`` after loading go on
    exactly as on the original. The file is independent of Python's pickle
    and of the estimator classes' internals beyond their attribute names.
    """
    classes = _estimator_classes()
    name = type(estimator).__name__
    if classes.get(name) is not type(estimator):
        raise TypeError(f"save() writes skattention's estimators ({', '.join(classes)}); "
                        f"got {type(estimator).__module__}.{type(estimator).__qualname__}.")
    check_is_fitted(estimator)
    estimator._validate_params()  # never write a file that load() would refuse
    if "_deferred_attention" in vars(estimator):
        # The file holds a text model's attention_weights_, not the training
        # ids it keeps until they are first read.
        estimator._run_deferred_attention()
    params = estimator.get_params(deep=False)
    encode = _Encoder()
    header = {
        "magic": _MAGIC,
        "format_version": FORMAT_VERSION,
        "versions": {"skattention": _version(), "numpy": np.__version__,
                     "sklearn": sklearn.__version__, "python": platform.python_version()},
        "class": name,
        "params": {k: encode(v, k) for k, v in params.items()},
        "attributes": {k: encode(v, k) for k, v in vars(estimator).items()
                       if k not in params and not k.startswith("__")},
        "metadata": metadata if metadata is not None else {},
    }
    try:
        text = json.dumps(header, allow_nan=True, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must be JSON-serialisable ({exc}).") from None
    arrays = dict(encode.arrays)
    arrays[_HEADER] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    if hasattr(path, "write"):
        np.savez_compressed(path, **arrays)
        return
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".skattention-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ------------------------------------------------------------------ loading


def _describe(path):
    return repr(os.fspath(path)) if not hasattr(path, "read") else "the file"


def _read(path):
    """Header dict and arrays of a model file, after the format checks."""
    where = _describe(path)
    if hasattr(path, "read"):
        data = path.read()
    else:
        if os.path.isdir(path):
            raise IsADirectoryError(f"{where} is a directory, not a skattention model file.")
        with open(path, "rb") as f:  # FileNotFoundError names the path
            data = f.read()
    not_ours = _NotOurs(f"{where} is not a skattention model file (save one with "
                        "skattention.persistence.save).")
    if not data.startswith(_ZIP_MAGIC):
        raise not_ours  # nothing else (a pickle, a CSV...) is ever parsed
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.namelist()
    except (zipfile.BadZipFile, ValueError, OSError):
        raise not_ours from None
    if _HEADER + ".npy" not in members:
        raise not_ours
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            raw = npz[_HEADER]
            if raw.dtype != np.uint8 or raw.ndim != 1:
                raise _Corrupt("its header is not a byte string")
            header = json.loads(raw.tobytes().decode("utf-8"))
            if not isinstance(header, dict) or header.get("magic") != _MAGIC:
                raise not_ours
            version = header.get("format_version")
            if not isinstance(version, int) or isinstance(version, bool) or version < 1:
                raise _Corrupt("its format_version is missing or invalid")
            if version > FORMAT_VERSION:
                raise _TooNew(
                    f"{where} was written by a newer skattention (format {version}); this "
                    f"version reads format {FORMAT_VERSION}. Upgrade skattention to load it.")
            arrays = {}
            for key in npz.files:
                if key == _HEADER:
                    continue
                value = npz[key]
                if value.dtype.kind not in _ARRAY_KINDS:
                    raise _Corrupt(f"array {key!r} has unsupported dtype {value.dtype}")
                arrays[key] = value
    except (_NotOurs, _TooNew):
        raise
    except _Corrupt as exc:
        raise ValueError(f"{where} is a corrupted or tampered skattention model file: "
                         f"{exc}.") from None
    except (ValueError, zipfile.BadZipFile, OSError, EOFError, KeyError,
            RecursionError) as exc:
        raise ValueError(f"{where} is a corrupted or tampered skattention model file: "
                         f"{exc}") from None
    return header, arrays


def info(path):
    """The header of a model file: class, versions, parameters and metadata.

    Parameters
    ----------
    path : str, path-like or binary file object

    Returns
    -------
    info : dict
        ``format_version``, ``class``, ``versions`` (of skattention, numpy,
        sklearn and Python that wrote it), ``params`` (JSON form) and
        ``metadata`` (as given to :func:`save`).
    """
    header, _ = _read(path)
    keys = ("format_version", "class", "versions", "params", "metadata")
    return {key: header.get(key) for key in keys}


def load(path):
    """Load an estimator written by :func:`save`.

    Parameters
    ----------
    path : str, path-like or binary file object

    Returns
    -------
    estimator : AttentionClassifier, AttentionRegressor, TextAttentionClassifier \
or TextAttentionRegressor
        Fitted, predicting exactly (bitwise) as the saved one.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If the file is not a skattention model file (a pickle renamed to
        ``.skat`` is refused without being unpickled), was written by a
        newer format version, or was corrupted or tampered with.

    Notes
    -----
    A model fitted on ``device_="cuda"`` loads anywhere: when CUDA cannot be
    used here, ``device_`` is set to ``"cpu"`` (with a ``UserWarning``) and
    the device it was fitted on is kept in ``fitted_device_``. The
    ``device`` parameter is left as it was saved, so refitting from scratch
    on such a machine needs ``set_params(device="cpu")``.
    """
    return _load(path)[0]


def _load(path):
    """``load`` that also returns the file's header (for the command line)."""
    header, arrays = _read(path)
    try:
        estimator = _build(header, arrays)
    except _Corrupt as exc:
        raise ValueError(f"{_describe(path)} is a corrupted or tampered skattention model "
                         f"file: {exc}.") from None
    except RecursionError:
        raise ValueError(f"{_describe(path)} is a corrupted or tampered skattention model "
                         "file: its header is nested too deeply.") from None
    _place_on_device(estimator)
    return estimator, header


def _build(header, arrays):
    classes = _estimator_classes()
    name = header.get("class")
    if not isinstance(name, str) or name not in classes:
        raise _Corrupt(f"unknown estimator class {str(name)[:80]!r} (expected one of "
                       f"{', '.join(classes)})")
    cls = classes[name]
    decode = _Decoder(arrays)
    params, attributes = header.get("params"), header.get("attributes")
    if not isinstance(params, dict) or not isinstance(attributes, dict):
        raise _Corrupt("its parameters or attributes are missing")
    params = {k: decode(v) for k, v in params.items()}
    if header.get("format_version") == 1:
        # Format 1 predates ``length_scaling``: its networks were unscaled.
        params.setdefault("length_scaling", "none")
    valid = set(cls().get_params())
    if set(params) - valid:
        raise _Corrupt(f"unknown parameters {sorted(set(params) - valid)} for {name}")
    estimator = cls(**params)
    try:
        estimator._validate_params()
    except (TypeError, ValueError) as exc:
        raise _Corrupt(f"invalid parameters ({exc})") from None
    for key, value in attributes.items():
        if (not _NAME.match(key) or key in valid or hasattr(cls, key)
                or key.startswith("__")):
            raise _Corrupt(f"unexpected attribute name {key[:80]!r}")
        setattr(estimator, key, decode(value))
    unused = set(arrays) - decode.used
    if unused:
        raise _Corrupt(f"unexpected arrays {sorted(unused)[:5]}")
    _check_consistency(estimator)
    return estimator


def _require(estimator, *names):
    missing = [n for n in names if not hasattr(estimator, n)]
    if missing:
        raise _Corrupt(f"fitted attributes {missing} are missing")


def _check_array(value, what, ndim, kinds, shape=None):
    if not isinstance(value, np.ndarray) or value.ndim != ndim or value.dtype.kind not in kinds:
        raise _Corrupt(f"{what} is not a {ndim}D array of the expected type")
    if shape is not None and value.shape != shape:
        raise _Corrupt(f"{what} has shape {value.shape}, expected {shape}")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_consistency(est):
    """Everything predict/transform/explain read must agree with the network."""
    from ._nn import NetworkConfig
    from ._nn._network import build_layout
    from .estimators import AttentionClassifier, AttentionRegressor
    from .estimators._text import _TextInputMixin
    from .text import TextSequenceVectorizer

    _require(est, "params_", "_config", "device_", "_input_kind", "n_iter_")
    config = est._config
    if not isinstance(config, NetworkConfig):
        raise _Corrupt("_config is not a network configuration")
    layout_size = build_layout(config).size
    _check_array(est.params_, "params_", 1, "f")
    if est.params_.dtype != config.dtype:
        raise _Corrupt(f"params_ has dtype {est.params_.dtype}, the network {config.dtype}")
    if est.params_.shape[0] != layout_size:
        raise _Corrupt(f"params_ has {est.params_.shape[0]} entries but the network "
                       f"configuration needs {layout_size}")
    if not np.isfinite(est.params_).all():
        raise _Corrupt("params_ holds non-finite values")
    if est.device_ not in ("cpu", "cuda"):
        raise _Corrupt(f"device_={est.device_!r} is not a device")
    if getattr(est, "store_attention_weights", True) or hasattr(est, "attention_weights_"):
        _require(est, "attention_weights_")
        _check_array(est.attention_weights_, "attention_weights_", 2, "f")
    if not _is_int(est.n_iter_) or est.n_iter_ < 0:
        raise _Corrupt("n_iter_ is not a non-negative int")

    if isinstance(est, _TextInputMixin):
        if est._input_kind != "text" or config.input_kind != "tokens":
            raise _Corrupt("a text estimator must read tokens")
        _require(est, "vectorizer_")
        if type(est.vectorizer_) is not TextSequenceVectorizer:
            raise _Corrupt("vectorizer_ is not a TextSequenceVectorizer")
        if est.vectorizer_.n_vocabulary_ != config.n_inputs:
            raise _Corrupt(f"the vocabulary has {est.vectorizer_.n_vocabulary_} ids but the "
                           f"embedding {config.n_inputs} rows")
    else:
        _require(est, "n_features_in_")
        if config.input_kind != "values" or not _is_int(est.n_features_in_):
            raise _Corrupt("a numeric estimator must read values")
        if est._input_kind == "table":
            if config.n_inputs != 1 or config.max_len != est.n_features_in_:
                raise _Corrupt(f"n_features_in_={est.n_features_in_} does not match the "
                               "network's columns")
        elif est._input_kind == "sequence":
            if config.n_inputs != est.n_features_in_:
                raise _Corrupt(f"n_features_in_={est.n_features_in_} does not match the "
                               f"network's {config.n_inputs} inputs")
        else:
            raise _Corrupt(f"unknown input kind {est._input_kind!r}")
        if hasattr(est, "feature_names_in_"):
            _check_array(est.feature_names_in_, "feature_names_in_", 1, "OU",
                         (est.n_features_in_,))

    if isinstance(est, AttentionClassifier):
        _require(est, "classes_")
        _check_array(est.classes_, "classes_", 1, "biufUO", (config.n_outputs,))
    elif isinstance(est, AttentionRegressor):
        _require(est, "_y_mean", "_y_scale", "_y_single", "n_outputs_")
        if est.n_outputs_ != config.n_outputs:
            raise _Corrupt(f"n_outputs_={est.n_outputs_} does not match the network's "
                           f"{config.n_outputs} outputs")
        for name in ("_y_mean", "_y_scale"):
            _check_array(getattr(est, name), name, 1, "f", (config.n_outputs,))
        if not isinstance(est._y_single, bool) or (est._y_single and config.n_outputs != 1):
            raise _Corrupt("_y_single is inconsistent")

    state = getattr(est, "_optimizer_state", None)
    if state is not None:
        if (not isinstance(state, tuple) or len(state) != 3 or not isinstance(state[1], dict)
                or not all(isinstance(v, np.ndarray) and v.shape == (layout_size,)
                           for v in state[1].values())):
            raise _Corrupt("the optimizer state does not match params_")


def _place_on_device(estimator):
    """Run on the CPU when the device the model was fitted on is unusable here."""
    from ._backend import resolve_device

    device = estimator.device_
    if device == "cpu":
        return
    try:
        resolve_device(device)
    except (RuntimeError, ValueError) as exc:
        warnings.warn(f"This model was fitted on device {device!r}, which cannot be used "
                      f"here ({exc}); it will run on the CPU.", UserWarning, stacklevel=4)
        estimator.fitted_device_ = device
        estimator.device_ = "cpu"
