"""AttentionClassifier / AttentionRegressor behaviour that scikit-learn's own
checks (tests/test_sklearn_compat.py) do not cover: the sequence input forms,
padding, explain/transform, the training options and the input errors."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning

from skattention import AttentionClassifier, AttentionRegressor

from blas_probe import assert_same_predictions

# Tiny models: every fit below takes a fraction of a second once compiled.
TINY = dict(d_model=8, n_heads=2, d_ff=16, batch_size=32, n_jobs=1, random_state=0,
            learning_rate_init=1e-2)
N_HEADS = TINY["n_heads"]


def tiny(cls=AttentionClassifier, **params):
    return cls(**{**TINY, "max_iter": 5, **params})


def quiet_fit(estimator, X, y, **fit_params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y, **fit_params)


def sequences(n=40, T=6, F=2, seed=0):
    """(n, T, F) values; the class is the sign of the sum of feature 0."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, T, F))
    return X, (X[:, :, 0].sum(axis=1) > 0).astype(int)


def nan_padded(X, seed=0, min_len=2):
    """``X`` with a random number of trailing all-NaN steps; returns lengths too."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_len, X.shape[1] + 1, size=X.shape[0])
    lengths[0] = X.shape[1]  # one full-length sample keeps the padded width
    X = X.copy()
    for i, length in enumerate(lengths):
        X[i, length:] = np.nan
    return X, lengths


def ragged(X, lengths):
    return [X[i, :length] for i, length in enumerate(lengths)]


def check_explain_rows(weights, mask):
    """Rows sum to 1 over the real steps and are exactly 0 on padding."""
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-5)
    expanded = np.broadcast_to(mask.reshape(mask.shape[0], *(1,) * (weights.ndim - 2),
                                            mask.shape[1]), weights.shape)
    assert np.all(weights[~expanded] == 0.0)
    assert np.all(weights >= 0.0)


# ------------------------------------------------------------------ input forms

X3, Y3 = sequences()
X3_PAD, LENGTHS = nan_padded(X3)
MASK = np.arange(X3.shape[1])[None, :] < LENGTHS[:, None]


def _forms():
    rng = np.random.default_rng(1)
    table = rng.normal(size=(40, 5))
    frame = pd.DataFrame(table, columns=[f"c{i}" for i in range(5)])
    y_table = (table[:, 0] > 0).astype(int)
    return {
        # form: (X, y, n_features_in_, n_timesteps, mask or None)
        "3d": (X3, Y3, 2, 6, None),
        "nan_padded_3d": (X3_PAD, Y3, 2, 6, MASK),
        "ragged_2d": (ragged(X3, LENGTHS), Y3, 2, 6, MASK),
        "ragged_1d": (ragged(X3[:, :, 0], LENGTHS), Y3, 1, 6, MASK),
        "channels_first": (np.swapaxes(X3_PAD, 1, 2), Y3, 2, 6, MASK),
        "2d": (table, y_table, 5, 5, None),
        "dataframe": (frame, y_table, 5, 5, None),
    }


FORMS = _forms()


@pytest.mark.parametrize("form", list(FORMS))
def test_every_input_form_fits_predicts_explains_and_transforms(form):
    X, y, n_features, n_steps, mask = FORMS[form]
    clf = quiet_fit(tiny(channels_first=form == "channels_first"), X, y)
    n = len(y)
    assert clf.n_features_in_ == n_features
    assert clf.device_ == "cpu"
    assert clf.predict(X).shape == (n,)
    assert clf.predict_proba(X).shape == (n, 2)
    assert clf.transform(X).shape == (n, TINY["d_model"])
    weights = clf.explain(X)
    assert weights.shape == (n, n_steps)
    check_explain_rows(weights, np.ones((n, n_steps), bool) if mask is None else mask)
    np.testing.assert_allclose(clf.attention_weights_, weights, rtol=1e-6, atol=1e-7)
    if form == "dataframe":
        np.testing.assert_array_equal(clf.feature_names_in_, X.columns)
    else:
        assert not hasattr(clf, "feature_names_in_")


def test_all_sequence_forms_of_the_same_data_agree():
    """NaN-padded 3D, ragged lists and channels_first read the same sequences."""
    clf = quiet_fit(tiny(), X3_PAD, Y3)
    expected = clf.predict_proba(X3_PAD)
    np.testing.assert_allclose(clf.predict_proba(ragged(X3, LENGTHS)), expected, rtol=1e-6)
    first = quiet_fit(tiny(channels_first=True), np.swapaxes(X3_PAD, 1, 2), Y3)
    np.testing.assert_array_equal(first.params_, clf.params_)
    # A ragged list with channels_first is a list of (n_features, T_i) arrays (aeon).
    np.testing.assert_allclose(first.predict_proba([x.T for x in ragged(X3, LENGTHS)]),
                               expected, rtol=1e-6)
    # 1D sequences: a subset that happens to be of equal length is still sequences.
    one_d = ragged(X3[:, :, 0], LENGTHS)
    clf1 = quiet_fit(tiny(), one_d, Y3)
    full = clf1.predict_proba(one_d)
    np.testing.assert_allclose(clf1.predict_proba([one_d[3]]), full[3:4], rtol=1e-5)
    np.testing.assert_allclose(clf1.predict_proba([one_d[0], one_d[0]]), full[[0, 0]],
                               rtol=1e-5)
    assert clf1.explain([one_d[3]]).shape == (1, LENGTHS[3])


def test_dataframe_feature_names_explain_and_transform_are_consistent():
    X, y, *_ = FORMS["dataframe"]
    clf = quiet_fit(tiny(), X, y)
    np.testing.assert_allclose(clf.explain(X), clf.attention_weights_, rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "X does not have valid feature names"
        np.testing.assert_array_equal(clf.transform(X.to_numpy()), clf.transform(X))
        np.testing.assert_array_equal(clf.explain(X.to_numpy()), clf.explain(X))
    # Columns are matched by name, as in scikit-learn.
    shuffled = X[X.columns[::-1]]
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(shuffled)


# -------------------------------------------------------------------- padding


@pytest.mark.parametrize("params", [dict(n_layers=2), dict(n_layers=1, pooling="mean",
                                                           attention_score="additive")])
@pytest.mark.parametrize("form", ["nan_padded_3d", "ragged_2d"])
def test_a_sequence_predicts_the_same_alone_as_padded_in_a_batch(form, params):
    X = FORMS[form][0]
    clf = quiet_fit(tiny(**params), X, Y3)
    batch_proba, batch_explain = clf.predict_proba(X), clf.explain(X)
    batch_context = clf.transform(X)
    for i in np.flatnonzero(LENGTHS < X3.shape[1])[:4]:
        alone = X3[i: i + 1, : LENGTHS[i]] if form == "nan_padded_3d" else [X3[i, : LENGTHS[i]]]
        np.testing.assert_allclose(clf.predict_proba(alone), batch_proba[i: i + 1],
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(clf.transform(alone), batch_context[i: i + 1],
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(clf.explain(alone)[0], batch_explain[i, : LENGTHS[i]],
                                   rtol=1e-5, atol=1e-7)
    # Extra trailing padding changes nothing either.
    wider = np.concatenate([X3_PAD, np.full((len(Y3), 3, 2), np.nan)], axis=1)
    np.testing.assert_allclose(clf.predict_proba(wider), batch_proba, rtol=1e-5, atol=1e-6)
    assert np.all(clf.explain(wider)[:, X3.shape[1]:] == 0.0)


@pytest.mark.parametrize("n_layers", [0, 2])
def test_explain_all_layers_shapes_and_padding(n_layers):
    clf = quiet_fit(tiny(n_layers=n_layers), X3_PAD, Y3)
    result = clf.explain(X3_PAD, all_layers=True)
    n, T = X3.shape[:2]
    assert result["pooling"].shape == (n, N_HEADS, T)
    check_explain_rows(result["pooling"], MASK)
    np.testing.assert_allclose(result["pooling"].mean(axis=1), clf.explain(X3_PAD), rtol=1e-6)
    assert len(result["layers"]) == n_layers
    for weights in result["layers"]:
        assert weights.shape == (n, N_HEADS, T, T)
        rows = weights.sum(axis=-1)
        np.testing.assert_allclose(rows[np.broadcast_to(MASK[:, None], rows.shape)], 1.0,
                                   atol=1e-5)
        real = MASK[:, None, :, None] & MASK[:, None, None, :]
        assert np.all(weights[~np.broadcast_to(real, weights.shape)] == 0.0)


def test_attention_weights_over_training_samples():
    clf = quiet_fit(tiny(), X3_PAD, Y3)
    assert clf.attention_weights_.shape == X3.shape[:2]
    check_explain_rows(clf.attention_weights_, MASK)


def test_store_attention_weights_false_skips_the_pass_and_changes_nothing_else(monkeypatch):
    stored = quiet_fit(tiny(warm_start=True), X3_PAD, Y3)
    passes = []
    original = AttentionClassifier._pooling_attention
    monkeypatch.setattr(AttentionClassifier, "_pooling_attention",
                        lambda self, *args: passes.append(1) or original(self, *args))
    skipped = quiet_fit(tiny(store_attention_weights=False), X3_PAD, Y3)
    assert passes == [] and not hasattr(skipped, "attention_weights_")
    np.testing.assert_array_equal(skipped.params_, stored.params_)
    np.testing.assert_array_equal(skipped.predict_proba(X3_PAD), stored.predict_proba(X3_PAD))
    np.testing.assert_allclose(skipped.explain(X3_PAD), stored.attention_weights_, rtol=1e-6)
    # A refit that stops storing them drops the weights of the earlier fit.
    quiet_fit(stored.set_params(store_attention_weights=False), X3_PAD, Y3)
    assert not hasattr(stored, "attention_weights_")
    with pytest.raises(AttributeError):
        stored.attention_weights_


# ----------------------------------------------------------- outputs and API


def test_transform_feature_names_and_pandas_output():
    clf = quiet_fit(tiny(), X3_PAD, Y3)
    names = clf.get_feature_names_out()
    assert list(names) == [f"attentionclassifier{i}" for i in range(TINY["d_model"])]
    dense = clf.transform(X3_PAD)
    assert dense.dtype == np.float64 and np.isfinite(dense).all()
    frame = clf.set_output(transform="pandas").transform(ragged(X3, LENGTHS))
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(names)
    np.testing.assert_allclose(frame.to_numpy(), dense, rtol=1e-6)
    # 2D DataFrame input keeps its index.
    X, y, *_ = FORMS["dataframe"]
    X = X.set_axis(np.arange(100, 140))
    table = quiet_fit(tiny(), X, y).set_output(transform="pandas")
    assert list(table.transform(X).index) == list(X.index)


def test_predict_proba_log_proba_and_predict_agree():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(45, 5, 2))
    y = np.array(["a", "b", "c"])[np.argmax(X[:, :, 0].reshape(45, 5)[:, :3], axis=1)]
    clf = quiet_fit(tiny(), X, y)
    proba = clf.predict_proba(X)
    np.testing.assert_array_equal(clf.classes_, ["a", "b", "c"])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X))
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba), rtol=1e-10, atol=1e-12)
    assert 0.0 <= clf.score(X, y) <= 1.0


def test_predict_transform_explain_set_no_attributes():
    clf = quiet_fit(tiny(), X3_PAD, Y3)
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(clf).items()}
    clf.predict(X3_PAD)
    clf.predict_proba(ragged(X3, LENGTHS))
    clf.transform(X3_PAD)
    clf.explain(X3_PAD, all_layers=True)
    clf.score(X3_PAD, Y3)
    assert set(vars(clf)) == set(before)
    np.testing.assert_array_equal(clf.params_, before["params_"])
    np.testing.assert_array_equal(clf.attention_weights_, before["attention_weights_"])


def test_pickle_round_trip_predicts_identically():
    reg = quiet_fit(tiny(AttentionRegressor), X3_PAD, X3[:, 0, 0])
    clone = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(clone.predict(X3_PAD), reg.predict(X3_PAD))
    np.testing.assert_array_equal(clone.explain(X3_PAD), reg.explain(X3_PAD))
    np.testing.assert_array_equal(clone.transform(X3_PAD), reg.transform(X3_PAD))


# -------------------------------------------------------------------- training


def test_warm_start_continues_exactly_where_fit_stopped():
    warm = quiet_fit(tiny(warm_start=True), X3_PAD, Y3)
    quiet_fit(warm, X3_PAD, Y3)
    cold = quiet_fit(tiny(max_iter=10), X3_PAD, Y3)
    assert warm.n_iter_ == 10 and len(warm.loss_curve_) == 10
    # Optimizer moments, step count and random stream carry over: 5 + 5 epochs
    # are the same training run as 10.
    np.testing.assert_array_equal(warm.params_, cold.params_)
    assert warm.loss_curve_ == cold.loss_curve_
    assert warm.loss_curve_[-1] < warm.loss_curve_[4]
    # Without warm_start a second fit starts over.
    fresh = quiet_fit(tiny(), X3_PAD, Y3)
    quiet_fit(fresh, X3_PAD, Y3)
    assert fresh.n_iter_ == 5


def test_warm_start_may_switch_early_stopping():
    reg = quiet_fit(tiny(AttentionRegressor, warm_start=True), X3_PAD, X3[:, 0, 0])
    quiet_fit(reg.set_params(early_stopping=True), X3_PAD, X3[:, 0, 0])
    assert len(reg.validation_scores_) == 5 and np.isfinite(reg.best_validation_score_)
    quiet_fit(reg.set_params(early_stopping=False), X3_PAD, X3[:, 0, 0])
    assert reg.n_iter_ == 15 and np.isfinite(reg.best_loss_)


def test_partial_fit_one_epoch_per_call():
    with pytest.raises(ValueError, match="classes must be passed"):
        tiny().partial_fit(X3_PAD, Y3)
    clf = tiny()
    for call in range(1, 7):
        clf.partial_fit(X3_PAD, Y3, classes=[0, 1, 2] if call == 1 else None)
        assert clf.n_iter_ == call and len(clf.loss_curve_) == call
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.predict_proba(X3_PAD).shape == (len(Y3), 3)
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    # The first call is one epoch of fit.
    np.testing.assert_array_equal(tiny().partial_fit(X3_PAD, Y3, classes=[0, 1]).params_,
                                  quiet_fit(tiny(max_iter=1), X3_PAD, Y3).params_)
    with pytest.raises(ValueError, match="not the same as on the first call"):
        clf.partial_fit(X3_PAD, Y3, classes=[0, 1])
    with pytest.raises(ValueError, match="not seen"):
        clf.partial_fit(X3_PAD, np.full(len(Y3), 7))
    # Classes of an old partial_fit never leak into a later fit.
    quiet_fit(clf, X3_PAD, Y3)
    np.testing.assert_array_equal(clf.classes_, [0, 1])
    # partial_fit holds nothing out, whatever early_stopping says.
    reg = tiny(AttentionRegressor, early_stopping=True)
    for _ in range(2):
        reg.partial_fit(ragged(X3, LENGTHS), X3[:, 0, 0])
    assert reg.n_iter_ == 2 and reg.predict(X3_PAD).shape == (len(Y3),)


def _capture_validation_split(monkeypatch, cls):
    """A dict whose "validation" entry receives the held-out split of the next fit."""
    split = {}
    original = cls._split_validation

    def capture(self, *args):
        train, validation = original(self, *args)
        split["validation"] = validation
        return train, validation

    monkeypatch.setattr(cls, "_split_validation", capture)
    return split


def test_early_stopping_keeps_the_best_parameters(monkeypatch):
    split = _capture_validation_split(monkeypatch, AttentionRegressor)
    rng = np.random.default_rng(4)
    X = rng.normal(size=(80, 5, 2))
    y = X[:, :, 0].sum(axis=1) + rng.normal(scale=2.0, size=80)  # noisy: scores wander
    reg = quiet_fit(tiny(AttentionRegressor, early_stopping=True, max_iter=40,
                         n_iter_no_change=5, learning_rate_init=3e-2,
                         validation_fraction=0.25), X, y)
    scores = reg.validation_scores_
    assert len(scores) == reg.n_iter_ == len(reg.loss_curve_)
    assert reg.best_validation_score_ == max(scores)
    assert reg.best_loss_ is None
    values, mask, targets, _ = split["validation"]
    restored = reg._validation_score(reg._forward_output(
        [v[m] for v, m in zip(values, mask)]), targets)
    assert restored == pytest.approx(reg.best_validation_score_, abs=1e-6)


@pytest.mark.parametrize("scoring", ["loss", "accuracy"])
def test_classifier_early_stopping_scores_held_out_log_loss_or_accuracy(monkeypatch, scoring):
    from sklearn.metrics import accuracy_score, log_loss

    split = _capture_validation_split(monkeypatch, AttentionClassifier)
    rng = np.random.default_rng(5)
    X = rng.normal(size=(90, 5, 2))
    y = np.digitize(X[:, :, 0].sum(axis=1) + rng.normal(scale=1.5, size=90), [-1, 1])
    clf = quiet_fit(tiny(early_stopping=True, max_iter=30, n_iter_no_change=4,
                         learning_rate_init=3e-2, validation_fraction=0.3, scoring=scoring),
                    X, y)
    scores = clf.validation_scores_
    assert len(scores) == clf.n_iter_ and clf.best_validation_score_ == max(scores)
    values, mask, targets, _ = split["validation"]
    proba = clf.predict_proba([v[m] for v, m in zip(values, mask)])
    expected = (-log_loss(targets, proba, labels=[0, 1, 2]) if scoring == "loss"
                else accuracy_score(targets, proba.argmax(axis=1)))
    assert clf.best_validation_score_ == pytest.approx(expected, abs=1e-5)
    assert all(score <= 0 for score in scores) == (scoring == "loss")


def test_class_weight_balanced_raises_minority_recall():
    rng = np.random.default_rng(3)

    def draw(n):
        X = rng.normal(size=(n, 2))
        y = (rng.random(n) < 0.1).astype(int)
        X[y == 1] += 1.2
        return X, y

    (X, y), (X_test, y_test) = draw(300), draw(300)
    recall = {}
    for class_weight in (None, "balanced"):
        clf = quiet_fit(tiny(class_weight=class_weight, max_iter=30), X, y)
        recall[class_weight] = np.mean(clf.predict(X_test)[y_test == 1] == 1)
    assert recall["balanced"] > recall[None] + 0.2


def test_zero_sample_weight_is_like_dropping_the_samples():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(60, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0])
    weight = np.ones(60)
    weight[::3] = 0.0
    params = dict(max_iter=20, batch_size=64, shuffle=False)  # one full batch per epoch
    weighted = quiet_fit(tiny(AttentionRegressor, **params), X, y, sample_weight=weight)
    dropped = quiet_fit(tiny(AttentionRegressor, **params), X[weight > 0], y[weight > 0])
    # Only the target standardisation (over all samples vs kept ones) differs.
    np.testing.assert_allclose(weighted.predict(X), dropped.predict(X), rtol=0.1, atol=0.1)


def test_multi_output_regression():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(200, 6, 2))
    Y = np.stack([X[:, :, 0].sum(axis=1), X[:, :, 1].max(axis=1), X[:, -1, 0]], axis=1)
    reg = quiet_fit(tiny(AttentionRegressor, max_iter=40), X, Y * 100.0 + 5.0)
    assert reg.n_outputs_ == 3 and reg.predict(X).shape == (200, 3)
    assert reg.score(X, Y * 100.0 + 5.0) > 0.8
    column = quiet_fit(tiny(AttentionRegressor), X, Y[:, :1])
    assert column.predict(X).shape == (200, 1)
    assert quiet_fit(tiny(AttentionRegressor), X, Y[:, 0]).predict(X).shape == (200,)


def test_convergence_warning_only_when_max_iter_is_reached():
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(2\\)"):
        tiny(max_iter=2).fit(X3, Y3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = tiny(max_iter=50, tol=1e6, n_iter_no_change=2).fit(X3, Y3)
    assert clf.n_iter_ == 3  # the first epoch improves on inf, then 2 without improvement
    assert clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None


def test_same_random_state_gives_identical_models_whatever_n_jobs():
    fits = [quiet_fit(tiny(n_layers=2, dropout=0.1, n_jobs=n_jobs), X3_PAD, Y3)
            for n_jobs in (1, 1, 2)]
    for other in fits[1:]:
        np.testing.assert_array_equal(other.params_, fits[0].params_)
        np.testing.assert_array_equal(other.predict_proba(X3_PAD), fits[0].predict_proba(X3_PAD))
    assert fits[0].loss_curve_ == fits[2].loss_curve_
    different = quiet_fit(tiny(n_layers=2, dropout=0.1, random_state=1), X3_PAD, Y3)
    assert not np.array_equal(different.params_, fits[0].params_)


def test_without_positions_step_order_does_not_matter():
    clf = quiet_fit(tiny(positional="none", n_layers=2), X3_PAD, Y3)
    order = np.random.default_rng(8).permutation(X3.shape[1])
    np.testing.assert_allclose(clf.predict_proba(X3[:, order]), clf.predict_proba(X3),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(clf.explain(X3[:, order]), clf.explain(X3)[:, order],
                               rtol=1e-5, atol=1e-7)
    # Sinusoidal positions extend to sequences longer than any seen in fit.
    longer = np.concatenate([X3, X3], axis=1)
    assert np.isfinite(quiet_fit(tiny(), X3, Y3).predict_proba(longer)).all()


@pytest.mark.parametrize("cls", [AttentionClassifier, AttentionRegressor])
def test_predictions_agree_over_subsets_and_orders(cls):
    """scikit-learn's subset and sample-order invariance checks, to float32 rounding.

    Bitwise where the BLAS gives each row the same bits whatever the batch
    (tests/blas_probe.py), to 1e-5 relative elsewhere.
    """
    model = quiet_fit(tiny(cls, n_layers=2), X3_PAD, Y3)
    methods = ["predict", "transform"] + (["predict_proba"] if cls is AttentionClassifier else [])
    order = np.random.default_rng(3).permutation(len(X3_PAD))
    for method in methods:
        whole = getattr(model, method)(X3_PAD)
        assert_same_predictions(getattr(model, method)(X3_PAD[order]), whole[order])
        for rows in (slice(0, None, 2), slice(5, 6), slice(7, 30)):
            assert_same_predictions(getattr(model, method)(X3_PAD[rows]), whole[rows])


def test_sqrt_length_scaling_is_a_no_op_on_sequences_of_one_length():
    unscaled = quiet_fit(tiny(), X3, Y3)
    scaled = quiet_fit(tiny(length_scaling="sqrt"), X3, Y3)
    assert scaled._config.length_reference == X3.shape[1]
    np.testing.assert_array_equal(scaled.params_, unscaled.params_)
    np.testing.assert_array_equal(scaled.predict_proba(X3), unscaled.predict_proba(X3))


@pytest.mark.parametrize("cls", [AttentionClassifier, AttentionRegressor])
def test_sqrt_length_scaling_multiplies_the_context_by_relative_length(cls):
    """``transform`` = the unscaled context times sqrt(real steps / training mean)."""
    import dataclasses

    model = quiet_fit(tiny(cls, length_scaling="sqrt"), X3_PAD, Y3)
    assert model._config.length_scaling == "sqrt"
    assert model._config.length_reference == pytest.approx(LENGTHS.mean())
    scaled = model.transform(X3_PAD)
    model._config = dataclasses.replace(model._config, length_scaling="none")
    expected = model.transform(X3_PAD) * np.sqrt(LENGTHS / LENGTHS.mean())[:, None]
    np.testing.assert_allclose(scaled, expected, rtol=1e-5, atol=1e-6)
    # The pooling weights do not change: they stay a distribution over the real steps.
    check_explain_rows(model.explain(X3_PAD), MASK)


@pytest.mark.parametrize("options", [dict(solver="sgd", learning_rate_init=0.05),
                                     dict(solver="adamw", alpha=0.1),
                                     dict(dropout=0.3, max_grad_norm=0.5)])
def test_solvers_dropout_and_clipping_train(options):
    clf = quiet_fit(tiny(max_iter=15, **options), X3_PAD, Y3)
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    # Dropout only acts in training: prediction is deterministic.
    np.testing.assert_array_equal(clf.predict_proba(X3_PAD), clf.predict_proba(X3_PAD))
    again = quiet_fit(tiny(max_iter=15, **options), X3_PAD, Y3)
    np.testing.assert_array_equal(again.params_, clf.params_)


def test_verbose_reports_each_epoch_as_lines_without_tqdm(capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    quiet_fit(tiny(max_iter=3, verbose=True), X3, Y3)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(",")[0] for line in lines] == [f"Iteration {i}" for i in (1, 2, 3)]
    assert all("loss = " in line for line in lines)


@pytest.mark.parametrize("n_layers", [0, 1, 2])
@pytest.mark.parametrize("pooling", ["attention", "mean"])
@pytest.mark.parametrize("attention_score", ["dot", "scaled_dot", "general", "additive"])
def test_every_architecture_fits_and_predicts_finite(attention_score, pooling, n_layers):
    X, y = X3_PAD[:24], Y3[:24]
    for cls, target in ((AttentionClassifier, y), (AttentionRegressor, X3[:24, 0, 0])):
        est = quiet_fit(tiny(cls, attention_score=attention_score, pooling=pooling,
                             n_layers=n_layers, max_iter=2), X, target)
        assert np.isfinite(est.predict(X) if cls is AttentionRegressor
                           else est.predict_proba(X)).all()
        check_explain_rows(est.explain(X), MASK[:24])


def test_learns_where_the_spike_is():
    """The class is whether a sequence holds a spike; attention finds it."""
    def spikes(n, seed):
        rng = np.random.default_rng(seed)
        X = rng.normal(scale=0.3, size=(n, 12, 1))
        y = rng.integers(0, 2, size=n)
        where = rng.integers(0, 12, size=n)
        X[y == 1, where[y == 1], 0] += 3.0
        return X, y, where

    X, y, _ = spikes(200, 1)
    X_test, y_test, where = spikes(200, 2)
    clf = quiet_fit(tiny(n_layers=0, max_iter=30), X, y)
    assert clf.score(X_test, y_test) >= 0.9
    weights = clf.explain(X_test)[y_test == 1]
    assert np.mean(weights.argmax(axis=1) == where[y_test == 1]) >= 0.8


# ------------------------------------------------------------------ bad input


def _with(X, index, value):
    X = X.copy()
    X[index] = value
    return X


FIT_ERRORS = {
    "4d": (lambda: X3[..., None], "dim 4"),
    "1d": (lambda: X3[:, 0, 0], "Expected 2D array"),
    "nan_inside": (lambda: _with(X3, (3, 1, 0), np.nan), "NaN inside sample 3"),
    "nan_step_before_real": (lambda: _with(X3, (3, 1), np.nan), "NaN inside sample 3"),
    "partial_nan_padding": (lambda: _with(X3, (3, slice(4, None), 0), np.nan),
                            "NaN inside sample 3"),
    "inf": (lambda: _with(X3, (3, 1, 0), np.inf), "infinity"),
    "all_nan_sample": (lambda: _with(X3, 5, np.nan), "Sample 5 of X has no time step"),
    "empty_ragged": (lambda: [x for x in X3[:4]] + [np.empty((0, 2))] + list(X3[5:]),
                     "Sample 4 of X is an empty sequence"),
    "nan_ragged": (lambda: ragged(_with(X3, (2, 0, 1), np.nan), LENGTHS),
                   "NaN or infinity in sample 2"),
    "mixed_features_ragged": (lambda: [X3[0]] + [x[:, :1] for x in X3[1:]],
                              "Sample 1 of X has 1 features per step, but sample 0 has 2"),
    "3d_in_list": (lambda: [X3[0], X3[1][None]] + list(X3[2:]), "must be a 1D or 2D array"),
    "no_steps": (lambda: np.empty((40, 0, 2)), "at least one time step"),
    "strings": (lambda: np.full((40, 6, 2), "a"), "must be numeric"),
    "nan_table": (lambda: _with(X3[:, :, 0], (1, 1), np.nan), "NaN"),
}


@pytest.mark.parametrize("case", list(FIT_ERRORS))
def test_fit_refuses_bad_input_with_a_clear_message(case):
    make_X, message = FIT_ERRORS[case]
    with pytest.raises(ValueError, match=message):
        tiny(max_iter=1).fit(make_X(), Y3)


def test_predict_refuses_input_the_model_was_not_fitted_on():
    sequence_model = quiet_fit(tiny(positional="learned"), X3_PAD, Y3)
    table_model = quiet_fit(tiny(), X3[:, :, 0], Y3)
    rng = np.random.default_rng(7)
    cases = [
        (sequence_model, rng.normal(size=(3, 6, 3)), "X has 3 features, but .* expecting 2"),
        (sequence_model, [rng.normal(size=(4, 1))], "X has 1 features, but .* expecting 2"),
        (sequence_model, rng.normal(size=(3, 6)), "fitted on 3D/ragged sequences"),
        (sequence_model, pd.DataFrame(rng.normal(size=(3, 2))), "got 2D input"),
        (sequence_model, rng.normal(size=(3, 8, 2)), "longer than the 6 steps"),
        (sequence_model, _with(X3_PAD, (2, 0, 0), np.nan), "NaN inside sample 2"),
        (sequence_model, [], "0 sample"),
        (table_model, X3, "fitted on 2D input .* 6 columns"),
        (table_model, ragged(X3, LENGTHS), "fitted on 2D input"),
        (table_model, X3[:, :4, 0], "X has 4 features, but .* expecting 6"),
    ]
    for model, X, message in cases:
        for method in (model.predict, model.transform, model.explain):
            with pytest.raises(ValueError, match=message):
                method(X)


def test_parameter_errors():
    with pytest.raises(RuntimeError, match="device='cuda' cannot be used"):
        tiny(device="cuda").fit(X3, Y3)
    with pytest.raises(ValueError, match="divisible by n_heads"):
        tiny(d_model=9).fit(X3, Y3)
    with pytest.raises(ValueError, match="number of classes has to be greater than one"):
        tiny().fit(X3, np.zeros(len(Y3)))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        tiny().fit(X3, Y3[:-1])
    with pytest.raises(ValueError, match="at least one non-zero"):
        tiny().fit(X3, Y3, sample_weight=np.zeros(len(Y3)))


def test_verbose_uses_a_tqdm_bar_when_installed(monkeypatch):
    import sys
    import types

    events = []

    class FakeBar:
        def __init__(self, total, **kwargs):
            events.append(("total", total))

        def set_postfix(self, postfix):
            events.append(("postfix", sorted(postfix)))

        def update(self, n):
            events.append(("update", n))

        def close(self):
            events.append(("close",))

    monkeypatch.setitem(sys.modules, "tqdm.auto", types.SimpleNamespace(tqdm=FakeBar))
    quiet_fit(tiny(max_iter=2, verbose=True), X3, Y3)
    assert events[0] == ("total", 2)
    assert events.count(("update", 1)) == 2 and events[-1] == ("close",)
    assert ("postfix", ["loss"]) in events


def test_divergence_names_the_cause_and_the_learning_rate():
    clf = tiny(AttentionRegressor, max_iter=20, learning_rate_init=1e8, solver="sgd")
    with pytest.raises(FloatingPointError, match="learning_rate_init"):
        quiet_fit(clf, X3, np.arange(len(X3), dtype=float))


def test_inference_batches_are_bounded_in_positions_and_agree(monkeypatch):
    """Outputs do not depend on how inference splits the samples into batches."""
    from skattention.estimators import _base

    rng = np.random.default_rng(3)
    X = rng.normal(size=(23, 9, 2))
    X[5, 6:] = np.nan  # a shorter sequence
    y = (X[:, 0, 0] > 0).astype(int)
    model = AttentionClassifier(d_model=8, n_heads=2, n_layers=1, max_iter=3, batch_size=8,
                                random_state=0).fit(X, y)
    whole = (model.predict_proba(X), model.transform(X), model.explain(X),
             model.explain(X, all_layers=True))
    mask = ~np.isnan(X).any(axis=2)
    assert len(_base._batches(X, mask)) == 1
    # 16,384 positions a batch on the CPU, 65,536 on a GPU.
    long_mask = np.ones((2000, 64), dtype=bool)
    assert [len(b) for b in _base._batches(long_mask, long_mask)] == [256] * 7 + [208]
    assert [len(b) for b in _base._batches(long_mask, long_mask, "cuda")] == [1024, 976]
    monkeypatch.setattr(_base, "_PREDICT_TOKENS", 9 * 4)  # 4 sequences of 9 steps per batch
    batches = _base._batches(X, mask)
    assert [len(rows) for rows in batches] == [4] * 5 + [3]
    # Grouped by length: the one shorter sequence comes first, the rest keep their order.
    np.testing.assert_array_equal(np.concatenate(batches), [5] + [i for i in range(23) if i != 5])
    split = (model.predict_proba(X), model.transform(X), model.explain(X),
             model.explain(X, all_layers=True))
    for got, want in zip(split[:3], whole[:3]):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(split[3]["pooling"], whole[3]["pooling"], rtol=1e-6, atol=1e-7)
    for got, want in zip(split[3]["layers"], whole[3]["layers"]):
        assert got.shape == (23, 2, 9, 9)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
