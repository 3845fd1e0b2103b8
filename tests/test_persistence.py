"""skattention.persistence: save/load without pickle, bitwise-identical models."""

import copy
import io
import json
import pickle
import warnings
import zipfile

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression

import skattention
from skattention import (
    AttentionClassifier,
    AttentionRegressor,
    TextAttentionClassifier,
    TextAttentionRegressor,
)
from skattention.persistence import FORMAT_VERSION, info, load, save

FAST = dict(d_model=8, n_heads=2, d_ff=16, max_iter=5, batch_size=32,
            learning_rate_init=1e-2, random_state=0, n_jobs=1)

_rng = np.random.RandomState(0)
X_TABLE = pd.DataFrame(_rng.normal(size=(40, 4)), columns=["a", "b", "c", "d"])
Y_STR = np.where(X_TABLE["a"] > 0, "up", "down")
X_SEQ = _rng.normal(size=(40, 6, 2))
Y_MULTI = np.c_[X_SEQ[:, :, 0].sum(axis=1), 10 * X_SEQ[:, 0, 1] + 100]
DOCS = (["good great fine", "great movie", "fine good fun", "fun great good"] * 5
        + ["bad awful boring", "awful movie", "boring bad dull", "dull awful bad"] * 5)
Y_DOCS = np.array([1] * 20 + [0] * 20)
NEW_DOCS = ["good movie", "awful awful", "", "unseen words only", "fun bad great"]


def _fit(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


CASES = {
    # numeric table, str labels, DataFrame (feature names)
    "classifier": lambda: (_fit(AttentionClassifier(**FAST), X_TABLE, Y_STR), X_TABLE),
    # 3D sequences, two outputs on different scales
    "regressor": lambda: (_fit(AttentionRegressor(**FAST), X_SEQ, Y_MULTI), X_SEQ),
    # text, int labels
    "text_classifier": lambda: (_fit(TextAttentionClassifier(max_len=6, **FAST), DOCS, Y_DOCS),
                                NEW_DOCS),
    "text_regressor": lambda: (_fit(TextAttentionRegressor(**FAST), DOCS, Y_DOCS * 2.5),
                               NEW_DOCS),
}


@pytest.fixture(scope="module")
def fitted():
    return {name: make() for name, make in CASES.items()}


def _assert_same_explanation(a, b):
    if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
        return
    assert a.tokens == b.tokens
    assert a.index == b.index
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa, wb)


def _assert_same_outputs(a, b, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # truncated documents
        pa, pb = a.predict(X), b.predict(X)
        assert pa.dtype == pb.dtype
        np.testing.assert_array_equal(pa, pb)
        if hasattr(a, "predict_proba"):
            np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
        np.testing.assert_array_equal(a.transform(X), b.transform(X))
        _assert_same_explanation(a.explain(X), b.explain(X))


@pytest.mark.parametrize("name", list(CASES))
def test_round_trip_is_bitwise_identical(fitted, name, tmp_path):
    estimator, X = fitted[name]
    path = tmp_path / "model.skat"
    save(estimator, path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.skat"]  # no .npz, no temp file
    loaded = load(path)
    assert type(loaded) is type(estimator)
    assert loaded.get_params() == estimator.get_params()
    _assert_same_outputs(estimator, loaded, X)
    for attr in ("n_iter_", "t_", "loss_curve_", "device_", "best_loss_", "n_features_in_",
                 "_input_kind", "_config"):
        if hasattr(estimator, attr):
            assert getattr(loaded, attr) == getattr(estimator, attr), attr
    np.testing.assert_array_equal(loaded.attention_weights_, estimator.attention_weights_)
    np.testing.assert_array_equal(loaded.params_, estimator.params_)
    assert loaded.params_.dtype == np.float32 and loaded.params_.flags.writeable
    if hasattr(estimator, "classes_"):
        assert loaded.classes_.dtype == estimator.classes_.dtype
        np.testing.assert_array_equal(loaded.classes_, estimator.classes_)
    if hasattr(estimator, "feature_names_in_"):
        np.testing.assert_array_equal(loaded.feature_names_in_, estimator.feature_names_in_)
        assert loaded.feature_names_in_.dtype == object
    if hasattr(estimator, "n_outputs_"):
        assert loaded._y_single == estimator._y_single
        np.testing.assert_array_equal(loaded._y_mean, estimator._y_mean)
        np.testing.assert_array_equal(loaded._y_scale, estimator._y_scale)
    if hasattr(estimator, "vectorizer_"):
        assert loaded.vectorizer_.vocabulary_ == estimator.vectorizer_.vocabulary_
        assert loaded.vectorizer_.get_params() == estimator.vectorizer_.get_params()
        importances = estimator.token_importances_
        if isinstance(importances, pd.DataFrame):
            pd.testing.assert_frame_equal(loaded.token_importances_, importances)
        else:
            pd.testing.assert_series_equal(loaded.token_importances_, importances)
    # Scores, not only arrays.
    if name == "text_classifier":
        assert loaded.score(DOCS, Y_DOCS) == estimator.score(DOCS, Y_DOCS)


def test_int_labels_numeric_classifier_and_special_params(tmp_path):
    """int labels, a class_weight dict with int keys and a RandomState parameter."""
    X = X_TABLE.to_numpy()
    y = (X[:, 0] > 0).astype(np.int64) + 3
    params = dict(FAST, random_state=np.random.RandomState(7), class_weight={3: 1.0, 4: 2.0})
    clf = _fit(AttentionClassifier(**params), X, y)
    save(clf, tmp_path / "m.skat")
    loaded = load(tmp_path / "m.skat")
    assert loaded.classes_.dtype == clf.classes_.dtype and loaded.classes_.tolist() == [3, 4]
    assert loaded.class_weight == {3: 1.0, 4: 2.0}
    assert isinstance(loaded.random_state, np.random.RandomState)
    assert loaded.random_state.randint(1 << 30) == clf.random_state.randint(1 << 30)
    assert not hasattr(loaded, "feature_names_in_")
    _assert_same_outputs(clf, loaded, X)


def test_parameters_changed_after_fit_do_not_matter(fitted, tmp_path):
    """As in scikit-learn, set_params after fit leaves the fitted model as it was."""
    estimator, X = fitted["text_classifier"]
    changed = copy.deepcopy(estimator).set_params(d_model=16, n_heads=4, max_len=3)
    save(changed, tmp_path / "m.skat")
    loaded = load(tmp_path / "m.skat")
    assert loaded.d_model == 16
    _assert_same_outputs(estimator, loaded, X)


def test_object_labels_and_set_output(tmp_path):
    y = pd.Series(Y_STR, dtype=object)
    clf = _fit(AttentionClassifier(**FAST), X_TABLE, y).set_output(transform="pandas")
    buffer = io.BytesIO()
    save(clf, buffer)
    buffer.seek(0)
    loaded = load(buffer)
    assert loaded.classes_.dtype == clf.classes_.dtype
    pd.testing.assert_frame_equal(loaded.transform(X_TABLE), clf.transform(X_TABLE))


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_warm_start_after_load_continues_exactly(tmp_path, solver):
    clf = _fit(AttentionClassifier(**dict(FAST, solver=solver)), X_TABLE, Y_STR)
    save(clf, tmp_path / "m.skat")
    original = copy.deepcopy(clf)
    loaded = load(tmp_path / "m.skat")
    for model in (original, loaded):
        model.set_params(warm_start=True, max_iter=3)
        _fit(model, X_TABLE, Y_STR)
    np.testing.assert_array_equal(loaded.params_, original.params_)
    assert loaded.loss_curve_ == original.loss_curve_
    assert loaded.n_iter_ == original.n_iter_ == 8


def test_partial_fit_after_load(fitted, tmp_path):
    estimator, _ = fitted["text_regressor"]
    save(estimator, tmp_path / "m.skat")
    a, b = copy.deepcopy(estimator), load(tmp_path / "m.skat")
    a.partial_fit(DOCS, Y_DOCS * 2.5)
    b.partial_fit(DOCS, Y_DOCS * 2.5)
    np.testing.assert_array_equal(a.params_, b.params_)


def test_info_reports_versions_and_metadata(fitted, tmp_path):
    estimator, _ = fitted["text_classifier"]
    save(estimator, tmp_path / "m.skat", metadata={"text_column": "body"})
    header = info(tmp_path / "m.skat")
    assert header["format_version"] == FORMAT_VERSION
    assert header["class"] == "TextAttentionClassifier"
    assert header["versions"]["skattention"] == skattention.__version__
    assert header["versions"]["numpy"] == np.__version__
    assert {"sklearn", "python"} <= set(header["versions"])
    assert header["metadata"] == {"text_column": "body"}
    assert header["params"]["max_len"] == 6


# ------------------------------------------------------------------- devices


def test_cuda_model_loads_on_cpu(fitted, tmp_path, monkeypatch):
    estimator, X = fitted["classifier"]
    gpu = copy.deepcopy(estimator)
    gpu.device_ = "cuda"  # as if fitted on a GPU machine
    save(gpu, tmp_path / "gpu.skat")
    import skattention._backend as backend

    def no_cuda(device):
        if device == "cuda":
            raise RuntimeError("no usable CUDA device was found")
        return "cpu"

    monkeypatch.setattr(backend, "resolve_device", no_cuda)
    with pytest.warns(UserWarning, match="fitted on device 'cuda'.*run on the CPU"):
        loaded = load(tmp_path / "gpu.skat")
    assert loaded.device_ == "cpu"
    assert loaded.fitted_device_ == "cuda"
    assert info(tmp_path / "gpu.skat")["params"]["device"] == estimator.device
    _assert_same_outputs(estimator, loaded, X)


def test_cpu_model_loads_without_warning(fitted, tmp_path):
    estimator, _ = fitted["regressor"]
    save(estimator, tmp_path / "m.skat")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load(tmp_path / "m.skat")
    assert loaded.device_ == "cpu" and not hasattr(loaded, "fitted_device_")


# -------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "absent.skat")


def test_directory_is_refused(tmp_path):
    with pytest.raises(IsADirectoryError, match="not a skattention model file"):
        load(tmp_path)


@pytest.mark.parametrize("content", [b"", b"text,label\nhi,1\n", b"PK\x03\x04garbage",
                                     b"\x93NUMPY not really"])
def test_not_a_model_file(tmp_path, content):
    path = tmp_path / "x.skat"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a skattention model file"):
        load(path)


def test_other_npz_is_not_a_model_file(tmp_path):
    path = tmp_path / "x.skat"
    with open(path, "wb") as f:
        np.savez(f, params=np.zeros(3))
    with pytest.raises(ValueError, match="not a skattention model file"):
        load(path)


class _Marker:
    """Unpickling this creates a marker file: proof that a loader unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickle_renamed_is_refused_without_unpickling(fitted, tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "evil.skat"
    path.write_bytes(pickle.dumps({"model": fitted["classifier"][0], "x": _Marker(marker)}))
    with pytest.raises(ValueError, match="not a skattention model file"):
        load(path)
    with pytest.raises(ValueError, match="not a skattention model file"):
        info(path)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the payload does work when unpickled
    assert marker.exists()


def test_pickled_array_inside_a_model_file_is_refused(fitted, tmp_path):
    marker = tmp_path / "unpickled"
    save(fitted["classifier"][0], tmp_path / "m.skat")
    evil = io.BytesIO()
    np.save(evil, np.array([_Marker(marker)], dtype=object), allow_pickle=True)
    _rewrite(tmp_path / "m.skat", extra={"a0_params_.npy": evil.getvalue()})
    with pytest.raises(ValueError, match="corrupted or tampered"):
        load(tmp_path / "m.skat")
    assert not marker.exists()


def _rewrite(path, edit_header=None, arrays=None, extra=None):
    """Rewrite a model file: edit the JSON header and replace or add members."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    if edit_header is not None:
        raw = np.load(io.BytesIO(members["__skattention__.npy"]))
        header = json.loads(raw.tobytes().decode("utf-8"))
        edit_header(header)
        buffer = io.BytesIO()
        np.save(buffer, np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
        members["__skattention__.npy"] = buffer.getvalue()
    for name, value in (arrays or {}).items():
        buffer = io.BytesIO()
        np.save(buffer, value)
        members[name + ".npy"] = buffer.getvalue()
    members.update(extra or {})
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _array_name(path, attribute):
    with zipfile.ZipFile(path) as archive:
        names = [n[:-4] for n in archive.namelist() if n.endswith(f"_{attribute}.npy")]
    assert len(names) == 1, names
    return names[0]


def _set(key, value, section="attributes"):
    def edit(header):
        header[section][key] = value
    return edit


TAMPERING = {
    "unknown class": (lambda h: h.update({"class": "os.system"}), "unknown estimator class"),
    "sklearn class": (lambda h: h.update({"class": "LogisticRegression"}),
                      "unknown estimator class"),
    "unknown parameter": (_set("evil", 1, "params"), "unknown parameters"),
    "invalid parameter": (_set("max_iter", -3, "params"), "invalid parameters"),
    "method attribute": (_set("predict", "boom"), "unexpected attribute name"),
    "dunder attribute": (_set("__class__", "boom"), "unexpected attribute name"),
    "unknown tag": (_set("loss_curve_", {"$eval": "1+1"}), "unexpected value"),
    "missing array": (_set("params_", {"$array": "nope"}), "array 'nope' is missing"),
    "config mismatch": (
        lambda h: h["attributes"]["_config"]["$config"].update({"d_model": 16}),
        "params_ has 690 entries but the network configuration needs"),
    "bad config": (lambda h: h["attributes"]["_config"]["$config"].update({"n_heads": 3}),
                   "network configuration is invalid"),
    "device": (_set("device_", "tpu"), "not a device"),
    "missing attribute": (lambda h: h["attributes"].pop("classes_"), "classes_"),
    "no params": (lambda h: h.pop("params"), "parameters or attributes are missing"),
    "bad version": (lambda h: h.update({"format_version": "1"}), "format_version"),
    "not ours": (lambda h: h.update({"magic": "something-else"}), "not a skattention model"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampered_header_is_refused(fitted, tmp_path, case):
    edit, message = TAMPERING[case]
    path = tmp_path / "m.skat"
    save(fitted["classifier"][0], path)
    _rewrite(path, edit_header=edit)
    with pytest.raises(ValueError, match=message):
        load(path)


def test_invalid_json_header(fitted, tmp_path):
    path = tmp_path / "m.skat"
    save(fitted["classifier"][0], path)
    buffer = io.BytesIO()
    np.save(buffer, np.frombuffer(b'{"magic": "skattention-model", ', dtype=np.uint8))
    _rewrite(path, extra={"__skattention__.npy": buffer.getvalue()})
    with pytest.raises(ValueError, match="corrupted or tampered"):
        load(path)


def test_deeply_nested_header_is_refused(fitted, tmp_path):
    path = tmp_path / "m.skat"
    save(fitted["classifier"][0], path)
    with zipfile.ZipFile(path) as archive:
        raw = np.load(io.BytesIO(archive.read("__skattention__.npy")))
    header = json.loads(raw.tobytes().decode("utf-8"))
    header["attributes"]["loss_curve_"] = "DEEP"
    text = json.dumps(header).replace('"DEEP"', "[" * 100_000 + "]" * 100_000)
    buffer = io.BytesIO()
    np.save(buffer, np.frombuffer(text.encode(), dtype=np.uint8))
    _rewrite(path, extra={"__skattention__.npy": buffer.getvalue()})
    with pytest.raises(ValueError, match="corrupted or tampered"):
        load(path)


def test_a_model_fitted_without_attention_weights_round_trips(fitted, tmp_path):
    unstored = _fit(TextAttentionClassifier(max_len=6, store_attention_weights=False, **FAST),
                    DOCS, Y_DOCS)
    save(unstored, tmp_path / "unstored.skat")
    loaded = load(tmp_path / "unstored.skat")
    assert not hasattr(loaded, "attention_weights_") and not hasattr(loaded, "token_importances_")
    _assert_same_outputs(unstored, loaded, NEW_DOCS)
    # A model that stores them is refused without them.
    path = tmp_path / "stored.skat"
    save(fitted["classifier"][0], path)
    _rewrite(path, lambda header: header["attributes"].pop("attention_weights_"))
    with pytest.raises(ValueError, match="attention_weights_"):
        load(path)


@pytest.mark.parametrize("attribute, value, message", [
    ("params_", np.zeros(10, dtype=np.float32), "params_ has 10 entries"),
    ("params_", np.zeros((2, 345), dtype=np.float32), "params_ is not a 1D"),
    ("params_", None, "params_ has dtype float64"),
    ("classes_", np.array(["a", "b", "c"]), "classes_ has shape"),
    ("attention_weights_", np.zeros(4), "attention_weights_ is not a 2D"),
])
def test_tampered_arrays_are_refused(fitted, tmp_path, attribute, value, message):
    estimator = fitted["classifier"][0]
    path = tmp_path / "m.skat"
    save(estimator, path)
    if value is None:
        value = estimator.params_.astype(np.float64)
    _rewrite(path, arrays={_array_name(path, attribute): value})
    with pytest.raises(ValueError, match=message):
        load(path)


def test_tampered_regressor_and_vocabulary(fitted, tmp_path):
    path = tmp_path / "r.skat"
    save(fitted["regressor"][0], path)
    _rewrite(path, arrays={_array_name(path, "_y_scale"): np.ones(3)})
    with pytest.raises(ValueError, match="_y_scale has shape"):
        load(path)

    path = tmp_path / "t.skat"
    save(fitted["text_classifier"][0], path)

    def bad_vocabulary(header):
        header["attributes"]["vectorizer_"]["$vectorizer"]["vocabulary"]["good"] = 10 ** 6
    _rewrite(path, edit_header=bad_vocabulary)
    with pytest.raises(ValueError, match="vocabulary is inconsistent"):
        load(path)


def test_newer_format_version_is_refused(fitted, tmp_path):
    path = tmp_path / "m.skat"
    save(fitted["text_regressor"][0], path)
    _rewrite(path, edit_header=lambda h: h.update({"format_version": FORMAT_VERSION + 1}))
    message = (f"written by a newer skattention \\(format {FORMAT_VERSION + 1}\\); "
               f"this version reads format {FORMAT_VERSION}")
    with pytest.raises(ValueError, match=message):
        load(path)
    with pytest.raises(ValueError, match=message):
        info(path)


def test_format_1_files_load_as_the_unscaled_networks_they_hold(tmp_path):
    """Format 1 predates ``length_scaling``: no parameter and no config fields."""
    model = _fit(TextAttentionClassifier(length_scaling="none", max_len=6, **FAST),
                 DOCS, Y_DOCS)
    path = tmp_path / "m.skat"
    save(model, path)

    def as_format_1(header):
        header["format_version"] = 1
        del header["params"]["length_scaling"]
        config = header["attributes"]["_config"]["$config"]
        del config["length_scaling"], config["length_reference"]
    _rewrite(path, edit_header=as_format_1)
    loaded = load(path)
    assert loaded.length_scaling == "none"
    assert loaded._config == model._config
    _assert_same_outputs(model, loaded, NEW_DOCS)


def test_save_refuses_what_it_cannot_write(fitted, tmp_path):
    with pytest.raises(NotFittedError):
        save(AttentionClassifier(), tmp_path / "m.skat")
    with pytest.raises(TypeError, match="skattention's estimators"):
        save(LogisticRegression().fit([[0], [1]], [0, 1]), tmp_path / "m.skat")

    class Sub(AttentionClassifier):
        pass

    with pytest.raises(TypeError, match="skattention's estimators"):
        save(Sub(), tmp_path / "m.skat")
    odd = copy.deepcopy(fitted["classifier"][0])
    odd.extra_ = object()
    with pytest.raises(TypeError, match="cannot save extra_"):
        save(odd, tmp_path / "m.skat")
    invalid = copy.deepcopy(fitted["classifier"][0]).set_params(max_iter=0)
    with pytest.raises(ValueError, match="max_iter"):
        save(invalid, tmp_path / "m.skat")
    with pytest.raises(TypeError, match="JSON"):
        save(fitted["classifier"][0], tmp_path / "m.skat", metadata={"x": object()})
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------ pickle, joblib


@pytest.mark.parametrize("name", list(CASES))
def test_pickle_and_joblib_round_trips(fitted, name, tmp_path):
    estimator, X = fitted[name]
    _assert_same_outputs(estimator, pickle.loads(pickle.dumps(estimator)), X)
    joblib.dump(estimator, tmp_path / "m.joblib")
    _assert_same_outputs(estimator, joblib.load(tmp_path / "m.joblib"), X)
