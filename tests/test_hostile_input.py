"""Hostile input, table-driven.

Every public method of AttentionClassifier and AttentionRegressor (fit,
partial_fit, predict, predict_proba, predict_log_proba, score, transform,
explain), on 2D tables and on 3D sequences, and fit/predict/explain of
TextAttentionClassifier, is walked through bad or extreme inputs. Each case
expects either a correct, finite result or an error whose message names the
problem. The validation layer (``check_sequences`` and the text vectorizer's
``check_documents``) is fuzzed with hypothesis: it must return a valid batch
or raise ValueError/TypeError, never anything else.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning

from skattention import AttentionClassifier, AttentionRegressor, TextAttentionClassifier
from skattention._validation import SequenceBatch, check_sequences
from skattention.text import START_ID, TextSequenceVectorizer
from skattention.text._tokenize import check_documents

TINY = dict(d_model=8, n_heads=2, d_ff=16, batch_size=32, max_iter=3, random_state=0,
            n_jobs=1, learning_rate_init=1e-2)
N = 24
_rng = np.random.default_rng(0)
X_FORMS = {"table": _rng.normal(size=(N, 3)), "seq": _rng.normal(size=(N, 5, 2))}
Y_CLASS = np.arange(N) % 2
Y_REG = np.linspace(-1.0, 2.0, N)

# kind -> (estimator class, input form)
KINDS = {
    "clf-table": (AttentionClassifier, "table"),
    "clf-seq": (AttentionClassifier, "seq"),
    "reg-table": (AttentionRegressor, "table"),
    "reg-seq": (AttentionRegressor, "seq"),
}
PREDICT_METHODS = {
    AttentionClassifier: ["predict", "predict_proba", "predict_log_proba", "transform",
                          "explain", "score"],
    AttentionRegressor: ["predict", "transform", "explain", "score"],
}
FIT_METHODS = ["fit", "partial_fit"]


def quietly(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return function(*args, **kwargs)


def target(cls):
    return Y_CLASS if cls is AttentionClassifier else Y_REG


_FITTED = {}


def fitted(kind):
    """One fitted estimator per kind, shared by the module (never modified)."""
    if kind not in _FITTED:
        cls, form = KINDS[kind]
        _FITTED[kind] = quietly(cls(**TINY).fit, X_FORMS[form], target(cls))
    return _FITTED[kind]


def call(kind, method, X, y=None, sample_weight=None):
    """Call ``method``; fit-side methods get a fresh estimator and return it."""
    cls, _ = KINDS[kind]
    if method in FIT_METHODS:
        estimator = cls(**TINY)
        kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
        if method == "partial_fit" and cls is AttentionClassifier:
            kwargs["classes"] = [0, 1]
        return quietly(getattr(estimator, method), X, y, **kwargs)
    estimator = fitted(kind)
    if method == "score":
        return estimator.score(X, y, sample_weight=sample_weight)
    return getattr(estimator, method)(X)


def check_finite_result(kind, method, result, X):
    """The result of a successful call is well formed and finite."""
    cls, _ = KINDS[kind]
    if method in FIT_METHODS:
        estimator = result
        assert np.isfinite(estimator.params_).all()
        result = estimator.predict(X)
        method = "predict"
    else:
        estimator = fitted(kind)
    if method == "score":
        assert np.isfinite(result)
        return
    result = np.asarray(result)
    if method == "predict" and cls is AttentionClassifier:
        assert set(result.tolist()) <= set(estimator.classes_.tolist())
        return
    assert result.dtype.kind == "f" and np.isfinite(result).all()
    if method == "predict_proba":
        np.testing.assert_allclose(result.sum(axis=1), 1.0)
    if method == "explain":
        np.testing.assert_allclose(result.sum(axis=1), 1.0, atol=1e-5)


# ------------------------------------------------------------------ bad X

def _nan(X):
    X = X.copy()
    X[(3, 1, 0)[:X.ndim]] = np.nan  # in 3D: one feature of one step, not padding
    return X


def _inf(X):
    X = X.copy()
    X[(3, 1, 0)[:X.ndim]] = -np.inf
    return X


def _four_d(X):
    return X.reshape(N, -1)[:, :, None, None]


# name -> (make X from the form's X, expected outcome per form for
# predict-side methods, expected outcome per form for fit-side methods).
# An outcome is "ok" or (exception class, message pattern), optionally with marks.
X_CASES = {
    "nan": (_nan,
            {"table": (ValueError, "Input X contains NaN"),
             "seq": (ValueError, "NaN inside sample 3")},
            None),
    "inf": (_inf,
            {"table": (ValueError, "Input X contains infinity"),
             "seq": (ValueError, "Input X contains infinity")},
            None),
    "empty": (lambda X: X[:0],
              {"table": (ValueError, r"0 sample\(s\)"), "seq": (ValueError, r"0 sample\(s\)")},
              None),
    "empty-list": (lambda X: [],
                   {"table": (ValueError, "Expected 2D array, got 1D"),
                    "seq": (ValueError, r"0 sample\(s\)")},
                   {"table": (ValueError, "Expected 2D array, got 1D"),
                    "seq": (ValueError, "Expected 2D array, got 1D")}),
    "1d": (lambda X: X.ravel()[:N],
           {"table": (ValueError, "Expected 2D array, got 1D"),
            "seq": (ValueError, r"1D|ndim=1|dim 1")},
           {"table": (ValueError, "Expected 2D array, got 1D"),
            "seq": (ValueError, "Expected 2D array, got 1D")}),
    "4d": (_four_d,
           {"table": (ValueError, "dim 4"),
            "seq": (ValueError, r"4D|ndim=4|dim 4")},
           {"table": (ValueError, "dim 4"), "seq": (ValueError, "dim 4")}),
    "none": (lambda X: None,
             {"table": (ValueError, "got scalar array"),
              "seq": (ValueError, "None")},
             {"table": (ValueError, "got scalar array"), "seq": (ValueError, "got scalar array")}),
    "object-str": (lambda X: np.full(X.shape, "a", dtype=object),
                   {"table": (ValueError, "could not convert string to float"),
                    "seq": (ValueError, "must be numeric.*could not convert string")},
                   None),
    "object-num": (lambda X: X.astype(object), {"table": "ok", "seq": "ok"}, None),
    "complex": (lambda X: X + 1j,
                {"table": (ValueError, "Complex data not supported"),
                 "seq": (ValueError, "Complex data not supported")},
                None),
    "huge-1e8": (lambda X: X * 1e8, {"table": "ok", "seq": "ok"}, None),
    "tiny-1e-8": (lambda X: X * 1e-8, {"table": "ok", "seq": "ok"}, None),
}


def _outcome_param(expected):
    """Split ``(outcome, mark)`` into the outcome and a list of marks."""
    if (isinstance(expected, tuple) and len(expected) == 2
            and isinstance(expected[1], pytest.MarkDecorator)):
        return expected[0], [expected[1]]
    return expected, []


def _x_params():
    for case, (make, predict_side, fit_side) in X_CASES.items():
        for kind, (cls, form) in KINDS.items():
            for method in FIT_METHODS:
                outcome, marks = _outcome_param((fit_side or predict_side)[form])
                yield pytest.param(kind, method, case, outcome, marks=marks,
                                   id=f"{kind}-{method}-{case}")
            for method in PREDICT_METHODS[cls]:
                outcome, marks = _outcome_param(predict_side[form])
                yield pytest.param(kind, method, case, outcome, marks=marks,
                                   id=f"{kind}-{method}-{case}")


def _y_for(kind, X):
    cls, _ = KINDS[kind]
    n = N if X is None or not hasattr(X, "__len__") else len(X)
    y = target(cls)[:n]
    if len(y) < n:  # 1D X longer than N
        y = np.resize(y, n)
    return y


@pytest.mark.parametrize("kind, method, case, outcome", list(_x_params()))
def test_bad_X(kind, method, case, outcome):
    _, form = KINDS[kind]
    X = X_CASES[case][0](X_FORMS[form])
    y = _y_for(kind, X)
    if case in ("huge-1e8", "tiny-1e-8") and method in FIT_METHODS and kind.startswith("reg"):
        y = y * (1e8 if case == "huge-1e8" else 1e-8)
    if outcome == "ok":
        check_finite_result(kind, method, call(kind, method, X, y), X)
    else:
        error, pattern = outcome
        with pytest.raises(error, match=pattern):
            call(kind, method, X, y)


@pytest.mark.parametrize("kind", list(KINDS))
def test_wrong_number_of_features_is_named(kind):
    _, form = KINDS[kind]
    X = X_FORMS[form][:, :2] if form == "table" else X_FORMS[form][:, :, :1]
    expected = 2 if form == "table" else 1
    for method in PREDICT_METHODS[KINDS[kind][0]]:
        with pytest.raises(ValueError, match=f"X has {expected} features, but .* is "
                                             f"expecting {X_FORMS[form].shape[-1]}"):
            call(kind, method, X, target(KINDS[kind][0]))


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_single_sample(kind):
    cls, form = KINDS[kind]
    X, y = X_FORMS[form][:1], target(cls)[:1]
    for method in PREDICT_METHODS[cls]:
        if method == "score" and cls is AttentionRegressor:
            # R² of one sample is undefined: scikit-learn warns and returns NaN.
            with pytest.warns(UndefinedMetricWarning):
                assert np.isnan(call(kind, method, X, y))
            continue
        check_finite_result(kind, method, call(kind, method, X, y), X)
    # partial_fit gets every class up front, so one sample is enough.
    check_finite_result(kind, "partial_fit", call(kind, "partial_fit", X, y), X)
    if cls is AttentionClassifier:
        with pytest.raises(ValueError, match="number of classes has to be greater than one"):
            call(kind, "fit", X, y)
    else:
        check_finite_result(kind, "fit", call(kind, "fit", X, y), X)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_single_class(kind):
    cls, form = KINDS[kind]
    X = X_FORMS[form]
    y = np.zeros(N, dtype=int) if cls is AttentionClassifier else np.full(N, 3.5)
    if cls is AttentionClassifier:
        with pytest.raises(ValueError, match="number of classes has to be greater than one"):
            call(kind, "fit", X, y)
        # With every class declared, one class in a batch is fine.
        estimator = call(kind, "partial_fit", X, y)
        check_finite_result(kind, "partial_fit", estimator, X)
        with pytest.raises(ValueError, match="classes not seen at the first fit"):
            estimator.partial_fit(X, y + 5)
    else:
        # A constant target (zero spread) still trains and predicts finitely.
        for method in FIT_METHODS:
            check_finite_result(kind, method, call(kind, method, X, y), X)


# -------------------------------------------------------- bad y and weights

def _nan_at(values, i=2, value=np.nan):
    values = np.array(values, dtype=float)
    values[i] = value
    return values


# name -> (y, sample_weight, methods, expected); y=None means "the right y".
Y_CASES = {
    "y-nan": (lambda y: _nan_at(y), None, ["fit", "partial_fit", "score"],
              (ValueError, "contains NaN")),
    "y-inf": (lambda y: _nan_at(y, value=np.inf), None, ["fit", "partial_fit", "score"],
              (ValueError, "contains infinity")),
    "y-none": (lambda y: None, None, ["fit", "partial_fit"],
               (ValueError, "requires y to be passed, but the target y is None")),
    "y-none-score": (lambda y: None, None, ["score"], (ValueError, "y_true.*None")),
    "y-short": (lambda y: y[:-1], None, ["fit", "partial_fit", "score"],
                (ValueError, "inconsistent numbers of samples")),
    "y-long": (lambda y: np.r_[y, y[:3]], None, ["fit", "partial_fit", "score"],
               (ValueError, "inconsistent numbers of samples")),
    "y-3d": (lambda y: y.reshape(N, 1, 1), None, ["fit", "partial_fit"],
             (ValueError, "dim 3|should be a 1d array|1D or 2D")),
    "sw-nan": (None, lambda: _nan_at(np.ones(N)), ["fit", "partial_fit", "score"],
               (ValueError, "sample_weight contains NaN")),
    "sw-inf": (None, lambda: _nan_at(np.ones(N), value=np.inf), ["fit", "partial_fit", "score"],
               (ValueError, "sample_weight contains infinity")),
    "sw-negative": (None, lambda: _nan_at(np.ones(N), value=-1.0), ["fit", "partial_fit"],
                    (ValueError, "Negative values in data passed to `sample_weight`")),
    "sw-all-zero": (None, lambda: np.zeros(N), ["fit", "partial_fit"],
                    (ValueError, "at least one non-zero")),
    "sw-short": (None, lambda: np.ones(5), ["fit", "partial_fit"],
                 (ValueError, r"sample_weight.shape == \(5,\), expected \(24,\)")),
    "sw-short-score": (None, lambda: np.ones(5), ["score"],
                       (ValueError, "inconsistent numbers of samples")),
    "sw-2d": (None, lambda: np.ones((N, 1)), ["fit", "partial_fit"],
              (ValueError, "Sample weights must be 1D")),
    "sw-str": (None, lambda: np.array(["a"] * N), ["fit", "partial_fit"],
               (ValueError, "could not convert string to float")),
    "sw-scalar": (None, lambda: 2.0, ["fit", "partial_fit"], "ok"),
    "sw-huge-1e8": (None, lambda: np.full(N, 1e8), ["fit", "partial_fit", "score"], "ok"),
    "sw-tiny-1e-8": (None, lambda: np.full(N, 1e-8), ["fit", "partial_fit", "score"], "ok"),
    "sw-mixed-1e-8-1e8": (None, lambda: np.r_[np.full(N // 2, 1e-8), np.full(N // 2, 1e8)],
                          ["fit", "partial_fit"], "ok"),
    "sw-one-nonzero": (None, lambda: np.r_[1.0, np.zeros(N - 1)], ["fit", "partial_fit"], "ok"),
    "sw-huge-1e300": (None, lambda: np.full(N, 1e300), ["fit"],
                      "ok"),
    "sw-tiny-1e-300": (None, lambda: np.full(N, 1e-300), ["fit"],
                       "ok"),
}


def _y_params():
    for case, (_, _, methods, expected) in Y_CASES.items():
        outcome, marks = _outcome_param(expected)
        for kind in KINDS:
            for method in methods:
                yield pytest.param(kind, method, case, outcome, marks=marks,
                                   id=f"{kind}-{method}-{case}")


@pytest.mark.parametrize("kind, method, case, outcome", list(_y_params()))
def test_bad_y_and_sample_weight(kind, method, case, outcome):
    cls, form = KINDS[kind]
    X = X_FORMS[form]
    make_y, make_weight, _, _ = Y_CASES[case]
    y = make_y(target(cls)) if make_y is not None else target(cls)
    sample_weight = make_weight() if make_weight is not None else None
    if outcome == "ok":
        check_finite_result(kind, method, call(kind, method, X, y, sample_weight), X)
    else:
        error, pattern = outcome
        with pytest.raises(error, match=pattern):
            call(kind, method, X, y, sample_weight)


@pytest.mark.parametrize("y, pattern", [
    (np.c_[Y_CLASS, Y_CLASS], "y should be a 1d array"),
    (np.linspace(0, 1, N), "Unknown label type: continuous"),
    (Y_CLASS.astype(object), "Unknown label type"),
])
def test_classifier_targets_that_are_not_labels(y, pattern):
    for method in FIT_METHODS:
        with pytest.raises(ValueError, match=pattern):
            call("clf-seq", method, X_FORMS["seq"], y)


def test_classifier_partial_fit_needs_classes_first():
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        AttentionClassifier(**TINY).partial_fit(X_FORMS["seq"], Y_CLASS)


@pytest.mark.parametrize("method", ["predict", "transform", "explain", "score"])
def test_unfitted_estimators_say_so(method):
    from sklearn.exceptions import NotFittedError

    for cls in (AttentionClassifier, AttentionRegressor):
        args = (X_FORMS["seq"], Y_CLASS) if method == "score" else (X_FORMS["seq"],)
        with pytest.raises(NotFittedError, match="not fitted yet"):
            getattr(cls(**TINY), method)(*args)


# --------------------------------------------------------- magnitudes


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_extreme_but_float32_representable_inputs_predict_finitely(kind, scale):
    _, form = KINDS[kind]
    X = X_FORMS[form] * scale
    for method in ("predict", "transform", "explain"):
        check_finite_result(kind, method, call(kind, method, X), X)


@pytest.mark.parametrize("kind", [
    kind for kind in KINDS])
def test_inputs_beyond_float32_are_refused_by_name(kind):
    _, form = KINDS[kind]
    X = X_FORMS[form] * 1e39
    for method in ("predict", "fit"):
        with pytest.raises(ValueError, match="too large"):
            call(kind, method, X, target(KINDS[kind][0]))


@pytest.mark.parametrize("scale", [1e8, 1e-8, 1e100, 1e-100,
                                   1e200,
                                   1e-300])
def test_regression_targets_of_any_magnitude_give_finite_predictions(scale):
    for kind in ("reg-table", "reg-seq"):
        _, form = KINDS[kind]
        estimator = call(kind, "fit", X_FORMS[form], Y_REG * scale)
        prediction = estimator.predict(X_FORMS[form])
        assert np.isfinite(prediction).all()
        # Standardised targets: the predictions live on the targets' scale.
        assert np.abs(prediction).max() < 10 * np.abs(Y_REG * scale).max()


# ----------------------------------------------------------- sequence lengths

def test_sequences_of_length_one():
    X = X_FORMS["seq"][:, :1]
    for kind in ("clf-seq", "reg-seq"):
        for method in FIT_METHODS:
            estimator = call(kind, method, X, target(KINDS[kind][0]))
            assert np.isfinite(estimator.predict(X).astype(float)).all()
            np.testing.assert_allclose(estimator.explain(X), 1.0, rtol=1e-6)
            assert np.isfinite(estimator.transform(X)).all()
    # A length-1 sample in a ragged batch for a model fitted on length 5.
    clf = fitted("clf-seq")
    batch = [X_FORMS["seq"][0, :1], X_FORMS["seq"][1]]
    proba = clf.predict_proba(batch)
    assert np.isfinite(proba).all()
    weights = clf.explain(batch)
    np.testing.assert_allclose(weights[0, 0], 1.0, rtol=1e-6)
    assert np.all(weights[0, 1:] == 0.0)
    # The padded sample predicts as it does alone.
    np.testing.assert_allclose(proba[0], clf.predict_proba(X_FORMS["seq"][:1, :1])[0],
                               rtol=1e-6)


@pytest.mark.parametrize("cls", [AttentionClassifier, AttentionRegressor])
def test_length_10000_predicts_with_sinusoidal_positions(cls):
    rng = np.random.default_rng(1)
    model = quietly(cls(**{**TINY, "n_layers": 0}).fit, X_FORMS["seq"], target(cls))
    long = rng.normal(size=(1, 10_000, 2))
    output = model.predict_proba(long) if cls is AttentionClassifier else model.predict(long)
    assert np.isfinite(output).all()
    weights = model.explain(long)
    assert weights.shape == (1, 10_000)
    np.testing.assert_allclose(weights.sum(), 1.0, atol=1e-4)
    assert np.isfinite(model.transform(long)).all()
    # A ragged batch mixing the long sequence with a short one.
    batch = [long[0], X_FORMS["seq"][0]]
    assert np.isfinite(model.explain(batch)).all()


def test_length_10000_with_one_self_attention_layer():
    model = quietly(AttentionRegressor(**{**TINY, "n_layers": 1}).fit, X_FORMS["seq"], Y_REG)
    long = np.random.default_rng(2).normal(size=(1, 10_000, 2))
    assert np.isfinite(model.predict(long)).all()


def test_longer_than_learned_positions_is_refused_by_name():
    model = quietly(AttentionRegressor(**{**TINY, "positional": "learned"}).fit,
                    X_FORMS["seq"], Y_REG)
    with pytest.raises(ValueError, match="length 10, longer than the 5 steps"):
        model.predict(np.zeros((1, 10, 2)))


@pytest.mark.parametrize("X, pattern", [
    ([np.zeros((0, 2)), np.zeros((3, 2))], "Sample 0 of X is an empty sequence"),
    ([np.zeros((3, 2)), np.full((2, 2), np.nan)], "NaN or infinity in sample 1"),
    ([np.zeros((3, 2)), np.zeros((3, 1))], "Sample 1 of X has 1 features per step"),
    ([np.zeros((3, 2)), np.array([["a", "b"]])], "sample 1 of X must be numeric"),
    (np.where(np.arange(N)[:, None, None] == 2, np.nan, X_FORMS["seq"]),
     "Sample 2 of X has no time step"),
    (np.where((np.arange(N)[:, None, None] == 2) & (np.arange(5)[None, :, None] == 0),
              np.nan, X_FORMS["seq"]), "NaN inside sample 2"),
    (X_FORMS["seq"][:, :0], "at least one time step"),
], ids=["empty-seq", "nan-ragged", "features-ragged", "str-ragged", "all-nan-sample",
        "leading-nan", "zero-steps"])
def test_bad_sequences_are_named(X, pattern):
    for kind in ("clf-seq", "reg-seq"):
        for method in ("predict", "fit"):
            with pytest.raises(ValueError, match=pattern):
                call(kind, method, X, target(KINDS[kind][0])[:len(X)])


def test_trailing_nan_padding_is_read_as_shorter_sequences():
    X = X_FORMS["seq"].copy()
    X[2, 3:] = np.nan
    clf = fitted("clf-seq")
    np.testing.assert_allclose(clf.predict_proba(X)[2],
                               clf.predict_proba([X_FORMS["seq"][2, :3]])[0], rtol=1e-6)
    assert np.all(clf.explain(X)[2, 3:] == 0.0)


# -------------------------------------------------------------------- text

DOCS = ["good movie", "bad film", "great fun", "awful plot"] * 5
Y_TEXT = np.array([1, 0, 1, 0] * 5)
TEXT_TINY = {**TINY, "max_len": 16}

HOSTILE_TEXT = {
    "unicode": "naïve café Ελληνικά 中文 עברית good",
    "emoji": "😀🎉 good 👍🏽 movie 🇫🇷",
    "control": "good\x00movie\x07\x1b[31m bad\r\n\t",
    "surrogates": "good \ud800 movie \udfff",
    "empty": "",
    "whitespace": "   \n\t ",
    "zero-width": "go\u200bod mo\u200dvie \ufeff",
    "combining": "cafe\u0301 café",
    "bidi-override": "\u202egood",
    "nul-only": "\x00" * 10,
}

_TEXT_MODEL = {}


def text_model():
    if not _TEXT_MODEL:
        _TEXT_MODEL["clf"] = quietly(TextAttentionClassifier(**TEXT_TINY).fit, DOCS, Y_TEXT)
    return _TEXT_MODEL["clf"]


def check_text_result(method, result, n_docs):
    if method == "explain":
        assert len(result) == n_docs
        for i in range(n_docs):
            pairs = result[i]
            assert pairs[0][0] == "<start>"
            weights = np.array([w for _, w in pairs])
            assert np.isfinite(weights).all()
            np.testing.assert_allclose(weights.sum(), 1.0, atol=1e-5)
    elif method == "predict_proba":
        assert np.isfinite(result).all()
        np.testing.assert_allclose(result.sum(axis=1), 1.0)
    else:
        assert set(result.tolist()) <= {0, 1}


@pytest.mark.parametrize("case", list(HOSTILE_TEXT))
@pytest.mark.parametrize("method", ["predict", "predict_proba", "explain", "fit"])
def test_hostile_text_gives_finite_results(case, method):
    doc = HOSTILE_TEXT[case]
    if method == "fit":
        model = quietly(TextAttentionClassifier(**TEXT_TINY).fit,
                        [doc, doc] + DOCS[:2], [0, 1, 0, 1])
        check_text_result("predict_proba", model.predict_proba([doc]), 1)
        check_text_result("explain", model.explain([doc, ""]), 2)
        return
    check_text_result(method, getattr(text_model(), method)([doc, DOCS[0]]), 2)


def test_text_tokens_never_hold_separators():
    tokens = text_model().vectorizer_.transform_with_tokens(list(HOSTILE_TEXT.values()))[1]
    for row in tokens:
        for token in row[1:]:
            # An n-gram's words are joined by exactly one space; no word is
            # empty or holds a separator.
            for word in token.split(" "):
                assert word and not any(c in word for c in "\x00\x07\x1b\r\n\t \u200b\ud800")


@pytest.mark.parametrize("method", ["predict", "predict_proba", "explain", "fit"])
def test_very_long_documents_are_truncated_with_a_warning(method):
    long_doc = "good " * 50_000
    with pytest.warns(UserWarning, match="truncated to the longest prefix .* fit in 15 positions"):
        if method == "fit":
            model = quietly(TextAttentionClassifier(**TEXT_TINY).fit,
                            [long_doc] + DOCS[:3], [0, 1, 0, 1])
            result, method = model.explain([long_doc]), "explain"
        else:
            result = getattr(text_model(), method)([long_doc])
    check_text_result(method, result, 1)
    if method == "explain":
        assert len(result[0]) == TEXT_TINY["max_len"]


# name -> (X, expected error (class, pattern) for fit, predict and explain)
BAD_TEXT = {
    "none": (None, (TypeError, "iterable of documents.*got NoneType")),
    "single-str": ("good movie", (TypeError, r"got a single str; wrap one document")),
    "single-bytes": (b"good", (TypeError, "got a single bytes; decode it")),
    "int": (5, (TypeError, "iterable of documents.*got int")),
    "bytes-doc": ([b"good", "a"], (TypeError, "document 0 is bytes")),
    "none-doc": (["a", None], (ValueError, "document 1 is None")),
    "nan-doc": (["a", np.nan], (ValueError, r"document 1 is NaN \(missing\)")),
    "pd-na-doc": (pd.Series(["a", pd.NA], index=["p", "q"]),
                  (ValueError, r"document 1 \(index label 'q'\) is NaN")),
    "int-doc": (["a", 3], (TypeError, "document 1 has type int; expected str")),
    "nested": ([["a", "b"], ["c"]], (ValueError, "document 0 is a list, not a str")),
    "2d-array": (np.array([["a", "b"], ["c", "d"]]),
                 (ValueError, r"1D sequence of documents, got an array of shape \(2, 2\)")),
    "dataframe": (pd.DataFrame({"t": ["a", "b"]}),
                  (ValueError, "got a DataFrame of shape.*select the text column")),
    "empty": ([], (ValueError, "contains no documents")),
    "bytes-array": (np.array([b"a", b"b"]), (TypeError, "holds bytes")),
    "float-array": (np.array([1.0, 2.0]), (TypeError, "must hold str documents")),
    "dict": ({"good movie": 1, "bad film": 0},
             (TypeError, "ordered sequence|dict")),
    "set": ({"good movie", "bad film"},
            (TypeError, "ordered sequence|set")),
}


def _bad_text_params():
    for case, (X, expected) in BAD_TEXT.items():
        outcome, marks = _outcome_param(expected)
        for method in ("fit", "predict", "explain"):
            yield pytest.param(case, method, outcome, marks=marks, id=f"{method}-{case}")


@pytest.mark.parametrize("case, method, outcome", list(_bad_text_params()))
def test_bad_text_containers_are_named(case, method, outcome):
    X = BAD_TEXT[case][0]
    error, pattern = outcome
    with pytest.raises(error, match=pattern):
        if method == "fit":
            n = len(X) if hasattr(X, "__len__") and not isinstance(X, (str, bytes)) else 2
            quietly(TextAttentionClassifier(**TEXT_TINY).fit, X, np.arange(n) % 2)
        else:
            getattr(text_model(), method)(X)


@pytest.mark.parametrize("method", [
    "predict",
    "explain",
    "fit",
])
def test_a_generator_of_documents_is_read_once(method):
    docs = (d for d in ["good movie", "bad film", "great fun", "awful plot"])
    if method == "fit":
        model = quietly(TextAttentionClassifier(**TEXT_TINY).fit, docs, [1, 0, 1, 0])
        assert len(model.attention_weights_) == 4
    else:
        result = getattr(text_model(), method)(docs)
        assert len(result) == 4


@pytest.mark.parametrize("y, sample_weight, pattern", [
    (Y_TEXT[:-1], None, "inconsistent numbers of samples"),
    (np.zeros(len(DOCS), int), None, "number of classes has to be greater than one"),
    (np.where(Y_TEXT == 1, np.nan, 0.0), None, "contains NaN"),
    (Y_TEXT, np.where(Y_TEXT == 1, np.nan, 1.0), "sample_weight contains NaN"),
    (Y_TEXT, np.where(Y_TEXT == 1, -1.0, 1.0), "Negative values"),
    (Y_TEXT, np.zeros(len(DOCS)), "at least one non-zero"),
    (None, None, "requires y to be passed"),
], ids=["y-short", "one-class", "y-nan", "sw-nan", "sw-negative", "sw-zero", "y-none"])
def test_text_fit_bad_targets_and_weights(y, sample_weight, pattern):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN labels cast by numpy
        with pytest.raises(ValueError, match=pattern):
            TextAttentionClassifier(**TEXT_TINY).fit(DOCS, y, sample_weight=sample_weight)


def test_text_fit_on_documents_without_any_token():
    with pytest.warns(UserWarning, match="vocabulary is empty"):
        model = quietly(TextAttentionClassifier(**TEXT_TINY).fit, ["", "!!", "", "?"],
                        [0, 1, 0, 1])
    check_text_result("predict_proba", model.predict_proba(["", "anything"]), 2)


# ----------------------------------------------------------- fuzzing: sequences

FLOAT_DTYPES = [np.float64, np.float32, np.float16]
OTHER_DTYPES = [np.int64, np.int8, np.uint8, np.bool_, np.complex128, "U3", "M8[s]",
                "m8[s]", object]


def check_batch(batch, n, width, lengths, n_features, real_values):
    """A returned batch is padded, masked and finite as documented."""
    assert isinstance(batch, SequenceBatch)
    values, mask = batch.values, batch.mask
    assert values.shape == (n, width, n_features)
    assert values.dtype == np.float32 and values.flags.c_contiguous
    assert mask.shape == values.shape[:2] and mask.dtype == np.bool_
    assert np.isfinite(values).all()
    np.testing.assert_array_equal(mask.sum(axis=1), lengths)
    # Real steps are a prefix of each row, and padding holds zeros.
    np.testing.assert_array_equal(mask, np.arange(values.shape[1]) < np.asarray(lengths)[:, None])
    assert np.all(values[~mask] == 0)
    for i, real in enumerate(real_values):
        np.testing.assert_array_equal(values[i, : lengths[i]], real.astype(np.float32))


@st.composite
def sequence_arrays(draw):
    """3D arrays of many dtypes, with trailing NaN padding and stray NaN/inf."""
    n = draw(st.integers(0, 4))
    T = draw(st.integers(0, 5))
    F = draw(st.integers(0, 3))
    dtype = draw(st.sampled_from(FLOAT_DTYPES + OTHER_DTYPES))
    shape = (n, T, F)
    if dtype in FLOAT_DTYPES:
        width = {np.float64: 64, np.float32: 32, np.float16: 16}[dtype]
        # Bounds exactly representable at each width (hypothesis insists).
        bound = float({64: np.float64(1e30), 32: np.float32(3e38),
                       16: np.float16(6e4)}[width])
        X = draw(hnp.arrays(dtype, shape, elements=st.floats(
            -bound, bound, width=width, allow_nan=False, allow_infinity=False)))
        if n and T:
            lengths = draw(st.lists(st.integers(0, T), min_size=n, max_size=n))
            for i, length in enumerate(lengths):
                X[i, length:] = np.nan
            if draw(st.booleans()):  # a stray non-finite value somewhere
                index = tuple(draw(st.integers(0, s - 1)) for s in shape) if F else None
                if index is not None:
                    X[index] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    elif dtype is object:
        fill = draw(st.sampled_from([None, 1.5, "a", "2.5", (1, 2), {}]))
        X = np.empty(shape, dtype=object)
        for index in np.ndindex(shape):
            X[index] = fill
    else:
        X = draw(hnp.arrays(np.dtype(dtype), shape))
    return X


@given(X=sequence_arrays(), channels_first=st.booleans())
def test_fuzz_check_sequences_on_3d_arrays(X, channels_first):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            batch = check_sequences(X, channels_first=channels_first)
    except (ValueError, TypeError):
        return
    Xs = np.swapaxes(X, 1, 2) if channels_first else X
    as_float = Xs.astype(np.float64)
    real_steps = ~np.isnan(as_float).all(axis=2)
    lengths = real_steps.sum(axis=1)
    # A 3D array keeps its width; all-NaN trailing steps are padding.
    check_batch(batch, Xs.shape[0], Xs.shape[1], lengths, Xs.shape[2],
                [as_float[i, :length] for i, length in enumerate(lengths)])
    assert np.isfinite(as_float[real_steps]).all()


# Finite values stay within float32 (beyond it: refused by name, tested below).
some_floats = st.one_of(st.floats(-1e30, 1e30), st.sampled_from([np.nan, np.inf, -np.inf]))
junk = st.one_of(st.none(), st.text(max_size=3), st.integers(), some_floats,
                 st.lists(some_floats, max_size=3),
                 st.lists(st.lists(some_floats, max_size=3), max_size=3),
                 st.dictionaries(st.text(max_size=1), st.integers(), max_size=1))


@st.composite
def ragged_lists(draw):
    """Lists of 1D/2D arrays (some with NaN/inf, some empty) mixed with junk."""
    F = draw(st.integers(1, 3))
    items = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["2d", "2d", "1d", "other-F", "other-ndim", "junk"]))
        T = draw(st.integers(0, 5))
        elements = st.floats(-1e30, 1e30, allow_nan=False)
        if draw(st.integers(0, 9)) == 0:  # NaN and inf too
            elements = some_floats
        if kind == "2d":
            items.append(draw(hnp.arrays(np.float64, (T, F), elements=elements)))
        elif kind == "1d":
            items.append(draw(hnp.arrays(np.float64, (T,), elements=elements)))
        elif kind == "other-F":
            items.append(np.zeros((T, F + 1)))
        elif kind == "other-ndim":
            items.append(np.zeros(draw(st.sampled_from([(), (1, 2, 2)]))))
        else:
            items.append(draw(junk))
    container = draw(st.sampled_from([list, tuple]))
    return container(items)


@given(X=ragged_lists(), channels_first=st.booleans())
def test_fuzz_check_sequences_on_ragged_lists(X, channels_first):
    try:
        batch = check_sequences(X, channels_first=channels_first)
    except (ValueError, TypeError):
        return
    arrays = []
    for item in X:
        array = np.asarray(item, dtype=np.float64)
        array = array[:, None] if array.ndim == 1 else (array.T if channels_first else array)
        arrays.append(array)
    lengths = [a.shape[0] for a in arrays]
    check_batch(batch, len(arrays), max(lengths), lengths, arrays[0].shape[1], arrays)


@pytest.mark.parametrize("shape", [(), (4,), (4, 3), (2, 3, 2, 2), (2, 3, 2, 2, 1)],
                         ids=["0d", "1d", "2d", "4d", "5d"])
def test_check_sequences_names_a_wrong_ndim(shape):
    with pytest.raises(ValueError, match="3D"):
        check_sequences(np.ones(shape))


def test_check_sequences_refuses_values_beyond_float32():
    with pytest.raises(ValueError, match="too large"):
        check_sequences(np.full((1, 2, 1), 1e39))


# --------------------------------------------------------------- fuzzing: text

text_elements = st.one_of(st.text(), st.none(), st.floats(), st.integers(),
                          st.binary(max_size=3), st.lists(st.text(max_size=2), max_size=2),
                          st.just(pd.NA))


@st.composite
def document_containers(draw):
    items = draw(st.lists(text_elements, max_size=4))
    kind = draw(st.sampled_from(["list", "tuple", "object-array", "auto-array", "series",
                                 "scalar", "2d"]))
    if kind == "tuple":
        return tuple(items)
    if kind == "object-array":
        array = np.empty(len(items), dtype=object)
        for i, item in enumerate(items):
            array[i] = item
        return array
    if kind == "auto-array":
        try:
            return np.array(items)
        except ValueError:
            return np.array(items, dtype=object) if not items else items
    if kind == "series":
        return pd.Series(items, dtype=object)
    if kind == "scalar":
        return draw(text_elements)
    if kind == "2d":
        return np.array([[draw(st.text(max_size=3))] * 2] * 2)
    return items


@given(X=document_containers(), max_len=st.integers(1, 6), lowercase=st.booleans())
def test_fuzz_text_input_checking(X, max_len, lowercase):
    try:
        docs = check_documents(X)
    except (ValueError, TypeError):
        return
    assert docs and all(type(doc) is str for doc in docs)
    vectorizer = TextSequenceVectorizer(max_len=max_len, lowercase=lowercase)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # empty vocabulary, truncation
        ids = vectorizer.fit_transform(X)
        again, tokens = vectorizer.transform_with_tokens(X)
    np.testing.assert_array_equal(ids, again)
    assert ids.shape[0] == len(docs) and 1 <= ids.shape[1] <= max_len
    assert (ids[:, 0] == START_ID).all()
    assert ((ids >= 0) & (ids < vectorizer.n_vocabulary_)).all()
    np.testing.assert_array_equal((ids != 0).sum(axis=1), [len(t) for t in tokens])


@given(docs=st.lists(st.text(), min_size=1, max_size=4))
def test_fuzz_any_unicode_text_encodes(docs):
    vectorizer = TextSequenceVectorizer(max_len=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ids = vectorizer.fit_transform(docs)
    assert ids.shape[0] == len(docs) and (ids[:, 0] == START_ID).all()
    assert vectorizer.inverse_transform(ids)[0][0] == "<start>"
