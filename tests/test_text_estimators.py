"""TextAttentionClassifier / TextAttentionRegressor: raw text in, sklearn behaviour out."""

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import estimator_checks as ec
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import validate_data

from skattention import AttentionClassifier, TextAttentionClassifier, TextAttentionRegressor
from skattention.datasets import load_sms_spam

FAST = dict(d_model=8, n_heads=2, d_ff=16, max_iter=30, batch_size=32,
            learning_rate_init=1e-2, random_state=0, n_jobs=1)

POSITIVE = ["good great fine", "great movie", "fine good fun", "fun great", "good fun"]
NEGATIVE = ["bad awful boring", "awful movie", "boring bad dull", "dull awful", "bad dull"]
DOCS = POSITIVE * 4 + NEGATIVE * 4
LABELS = np.array([1] * 20 + [0] * 20)


def _numeric_rows_to_documents(X):
    """Each row becomes a document of one token per column: 'f{column}_{value bin}'."""
    bins = np.clip(np.floor(X * 2).astype(int), -8, 8)
    return [" ".join(f"f{j}_{b}" for j, b in enumerate(row)) for row in bins]


class _NumericAdapterMixin:
    """Test-only: lets sklearn's full suite drive the text models with 2D numeric data."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = False
        tags.input_tags.one_d_array = False
        tags.input_tags.two_d_array = True
        return tags

    def _prepare_X(self, X, reset):
        X = validate_data(self, X, reset=reset)
        return super()._prepare_X(_numeric_rows_to_documents(X), reset)

    def explain(self, X):
        X = validate_data(self, X, reset=False)
        return super().explain(_numeric_rows_to_documents(X))

    def fit(self, X, y, sample_weight=None):
        self._fit(X, y, sample_weight, incremental=False)
        return self


class NumericTextClassifier(_NumericAdapterMixin, TextAttentionClassifier):
    pass


class NumericTextRegressor(_NumericAdapterMixin, TextAttentionRegressor):
    pass


def _adapter_failures(estimator):
    return {"check_sample_weight_equivalence_on_dense_data": (
        "float32 training agrees only to ~1e-6 relative")}


@parametrize_with_checks([NumericTextClassifier(**FAST), NumericTextRegressor(**FAST)],
                         expected_failed_checks=_adapter_failures)
def test_full_sklearn_suite_through_the_numeric_adapter(estimator, check):
    check(estimator)


DIRECT_CHECKS = [
    ec.check_estimator_cloneable, ec.check_estimator_repr, ec.check_no_attributes_set_in_init,
    ec.check_estimators_unfitted, ec.check_do_not_raise_errors_in_init_or_set_params,
    ec.check_mixin_order, ec.check_parameters_default_constructible,
    ec.check_get_params_invariance, ec.check_set_params, ec.check_estimator_tags_renamed,
    ec.check_valid_tag_types,
]


@pytest.mark.parametrize("Estimator", [TextAttentionClassifier, TextAttentionRegressor])
@pytest.mark.parametrize("check", DIRECT_CHECKS, ids=lambda c: c.__name__)
def test_data_agnostic_sklearn_checks(Estimator, check):
    check(Estimator.__name__, Estimator(**FAST))


def test_text_tags_say_strings_not_2d():
    tags = TextAttentionClassifier().__sklearn_tags__()
    assert tags.input_tags.string and tags.input_tags.one_d_array
    assert not tags.input_tags.two_d_array


def test_learns_words_and_attends_to_them():
    clf = TextAttentionClassifier(**{**FAST, "max_iter": 60}).fit(DOCS, LABELS)
    assert clf.score(["great fun", "awful boring"], [1, 0]) == 1.0
    explanation = clf.explain(["the movie was great"])
    tokens = [token for token, _ in explanation[0]]
    assert tokens == ["<start>", "the", "movie", "was", "great"]
    weights = np.array([w for _, w in explanation[0]])
    assert weights.sum() == pytest.approx(1.0, abs=1e-5)
    frame = explanation.to_frame()
    assert list(frame.columns) == ["document", "position", "token", "weight"]
    html = explanation.to_html()
    assert "great" in html and "rgba(" in html
    importances = clf.token_importances_
    assert list(importances.columns) == [0, 1]
    assert importances.loc["great", 1] > importances.loc["great", 0]


def test_empty_and_unknown_documents_get_finite_predictions():
    clf = TextAttentionClassifier(**FAST).fit(DOCS, LABELS)
    proba = clf.predict_proba(["", "zzz qqq", "   ", "!!!"])
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_pandas_series_keeps_its_index_in_explain_and_pandas_output():
    series = pd.Series(DOCS, index=[f"d{i}" for i in range(len(DOCS))])
    clf = TextAttentionClassifier(**FAST).fit(series, LABELS)
    assert clf.explain(series[:3]).to_frame()["document"].iloc[0] == "d0"
    out = clf.set_output(transform="pandas").transform(series[:3])
    assert list(out.index) == ["d0", "d1", "d2"]
    assert out.shape == (3, 8)


def test_pipeline_grid_search_two_jobs_and_cross_val():
    pipe = make_pipeline(FunctionTransformer(lambda docs: [d.lower() for d in docs]),
                         TextAttentionClassifier(**FAST))
    scores = cross_val_score(pipe, np.array(DOCS, dtype=object), LABELS, cv=2)
    assert scores.mean() > 0.8
    grid = GridSearchCV(TextAttentionClassifier(**FAST),
                        {"max_len": [4, 16], "n_heads": [1, 2]}, cv=2, n_jobs=2,
                        error_score="raise")
    grid.fit(DOCS, LABELS)
    assert grid.cv_results_["mean_test_score"].shape == (4,)
    assert grid.best_score_ > 0.8


def test_pickle_round_trip_predicts_identically():
    clf = TextAttentionClassifier(**FAST).fit(DOCS, LABELS)
    clone = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clone.predict_proba(DOCS), clf.predict_proba(DOCS))


def test_regressor_on_text():
    target = np.array([len(d.split()) for d in DOCS], dtype=float)
    reg = TextAttentionRegressor(**{**FAST, "max_iter": 60}).fit(DOCS, target)
    assert reg.score(DOCS, target) > 0.5
    assert reg.token_importances_.name == "importance"


@pytest.mark.parametrize("bad, match", [
    (["ok", None, "fine"], "document 1"),
    (["ok", float("nan")], "document 1"),
    (["ok", 3], "document 1"),
    (["ok", b"bytes"], "decode"),
    (np.array([["a", "b"], ["c", "d"]]), "1D"),
])
def test_bad_documents_get_errors_naming_the_position(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        TextAttentionClassifier(**FAST).fit(bad, np.arange(len(bad)) % 2)


def test_sms_spam_subset_is_learned():
    data = load_sms_spam()
    rng = np.random.default_rng(0)
    index = rng.permutation(len(data.data))[:1200]
    docs = [data.data[i] for i in index]
    clf = TextAttentionClassifier(**{**FAST, "d_model": 16, "max_iter": 4, "max_len": 48,
                                     "learning_rate_init": 5e-3})
    clf.fit(docs[:900], data.target[index[:900]])
    assert clf.score(docs[900:], data.target[index[900:]]) > 0.9


# ------------------------------------------------------- n-grams and hash buckets

NEGATION_DOCS = ["very good", "good film", "not bad", "very fine"] * 5 + \
    ["not good", "bad film", "very bad", "not fine"] * 5
NEGATION_LABELS = np.array([1] * 20 + [0] * 20)


def test_vectorizer_parameters_reach_the_vectorizer_and_grid_search():
    clf = TextAttentionClassifier(**FAST, ngram_range=(1, 2), n_buckets=8, min_df=2)
    params = clf.get_params()
    assert params["ngram_range"] == (1, 2) and params["n_buckets"] == 8
    clf.fit(NEGATION_DOCS, NEGATION_LABELS)
    assert clf.vectorizer_.get_params()["ngram_range"] == (1, 2)
    assert clf.vectorizer_.n_buckets == 8 and "not good" in clf.vectorizer_.vocabulary_
    # 6 words and 8 bigrams, each in 5+ documents, then the 8 buckets.
    assert clf._config.n_inputs == clf.vectorizer_.n_vocabulary_ == 3 + 14 + 8
    grid = GridSearchCV(TextAttentionClassifier(**FAST),
                        {"ngram_range": [(1, 1), (1, 2)], "n_buckets": [0, 4]}, cv=2,
                        error_score="raise").fit(NEGATION_DOCS, NEGATION_LABELS)
    assert grid.cv_results_["mean_test_score"].shape == (4,)
    assert grid.best_estimator_.vectorizer_.ngram_range in [(1, 1), (1, 2)]


def test_default_bigrams_are_explained_and_ranked():
    clf = TextAttentionClassifier(**{**FAST, "max_iter": 60}, n_buckets=4)
    assert clf.ngram_range == (1, 2) and clf.n_layers == 0 and clf.positional == "none"
    clf.fit(NEGATION_DOCS, NEGATION_LABELS)
    assert clf.score(["not good", "very good"], [0, 1]) == 1.0
    explanation = clf.explain(["not good at all"])
    tokens = [token for token, _ in explanation[0]]
    # Unknown words and bigrams are hashed to buckets, shown by their own text.
    assert tokens == ["<start>", "not", "good", "at", "all", "not good", "good at", "at all"]
    assert sum(w for _, w in explanation[0]) == pytest.approx(1.0, abs=1e-5)
    importances = clf.token_importances_
    assert len(importances) == clf.vectorizer_.n_vocabulary_ - 1
    assert "not good" in importances.index and "<bucket 3>" in importances.index
    assert importances.loc["not good", 0] > importances.loc["not good", 1]


@pytest.mark.parametrize("Estimator", [TextAttentionClassifier, TextAttentionRegressor])
def test_text_models_scale_the_context_by_the_square_root_of_relative_length(Estimator):
    import dataclasses

    assert Estimator().length_scaling == "sqrt"
    model = Estimator(**FAST).fit(DOCS, LABELS)
    lengths = np.count_nonzero(model.vectorizer_.transform(DOCS), axis=1)
    assert model._config.length_reference == pytest.approx(lengths.mean())
    new_docs = ["good", "good great fine fun movie good great", ""]
    new_lengths = np.count_nonzero(model.vectorizer_.transform(new_docs), axis=1)
    scaled, weights = model.transform(new_docs), model.explain(new_docs).weights
    model._config = dataclasses.replace(model._config, length_scaling="none")
    np.testing.assert_allclose(
        scaled, model.transform(new_docs) * np.sqrt(new_lengths / lengths.mean())[:, None],
        rtol=1e-5, atol=1e-7)
    for got, unscaled in zip(weights, model.explain(new_docs).weights):
        np.testing.assert_array_equal(got, unscaled)
    unscaled = Estimator(length_scaling="none", **FAST).fit(DOCS, LABELS)
    assert unscaled._config.length_scaling == "none"
    assert unscaled._config.length_reference == 1.0


def test_unigram_self_attention_model_still_available():
    clf = TextAttentionClassifier(**FAST, ngram_range=(1, 1), n_layers=1,
                                  positional="sinusoidal").fit(DOCS, LABELS)
    assert [t for t, _ in clf.explain(["great movie"])[0]] == ["<start>", "great", "movie"]
    assert clf._config.n_layers == 1 and clf._config.positional == "sinusoidal"
    assert clf.score(["great fun", "awful boring"], [1, 0]) == 1.0


def test_save_load_keeps_ngram_and_bucket_parameters(tmp_path):
    import skattention

    clf = TextAttentionClassifier(**FAST, ngram_range=(1, 3), n_buckets=5, min_df=2)
    clf.fit(NEGATION_DOCS, NEGATION_LABELS)
    path = tmp_path / "model.skat"
    skattention.save(clf, path)
    again = skattention.load(path)
    assert again.get_params()["ngram_range"] == (1, 3)
    assert again.vectorizer_.ngram_range == (1, 3) and again.vectorizer_.n_buckets == 5
    docs = ["not good at all", "very fine film", ""]
    np.testing.assert_array_equal(again.predict_proba(docs), clf.predict_proba(docs))


def test_char_ngram_range_reaches_the_vectorizer_explain_and_persistence(tmp_path):
    import skattention
    from skattention.text._vectorizer import CHAR_NGRAM_MARK

    assert TextAttentionClassifier().char_ngram_range is None
    assert TextAttentionRegressor().char_ngram_range is None
    clf = TextAttentionClassifier(**FAST, char_ngram_range=(3, 4), max_len=64)
    assert clf.get_params()["char_ngram_range"] == (3, 4)
    clf.fit(NEGATION_DOCS, NEGATION_LABELS)
    assert clf.vectorizer_.char_ngram_range == (3, 4)
    assert CHAR_NGRAM_MARK + "<no" in clf.vectorizer_.vocabulary_
    assert clf._config.n_inputs == clf.vectorizer_.n_vocabulary_
    assert clf.score(["not good", "very good"], [0, 1]) == 1.0
    tokens = [token for token, _ in clf.explain(["not good"])[0]]
    assert tokens == ["<start>", "not", "good", "not good", "<no", "not", "ot>", "<go", "goo",
                      "ood", "od>", "<not", "not>", "<goo", "good", "ood>"]
    assert "<no" in clf.token_importances_.index
    docs = ["not good at all", "very fine film", ""]
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(docs), clf.predict_proba(docs))
    path = tmp_path / "model.skat"
    skattention.save(clf, path)
    loaded = skattention.load(path)
    assert loaded.get_params()["char_ngram_range"] == (3, 4)
    assert loaded.vectorizer_.vocabulary_ == clf.vectorizer_.vocabulary_
    np.testing.assert_array_equal(loaded.predict_proba(docs), clf.predict_proba(docs))
    clf.set_params(char_ngram_range=None).fit(NEGATION_DOCS, NEGATION_LABELS)
    assert not any(k.startswith(CHAR_NGRAM_MARK) for k in clf.vectorizer_.vocabulary_)
    with pytest.raises(ValueError, match="char_ngram_range must be None or a tuple"):
        TextAttentionClassifier(**FAST, char_ngram_range=(0, 3)).fit(DOCS, LABELS)
    with pytest.raises(ValueError, match="The 'char_ngram_range' parameter"):
        TextAttentionRegressor(**FAST, char_ngram_range=[3, 4]).fit(DOCS, LABELS)
    grid = GridSearchCV(TextAttentionClassifier(**FAST, max_len=64),
                        {"char_ngram_range": [None, (3, 5)]}, cv=2,
                        error_score="raise").fit(NEGATION_DOCS, NEGATION_LABELS)
    assert grid.best_estimator_.vectorizer_.char_ngram_range in [None, (3, 5)]
    reg = TextAttentionRegressor(**FAST, char_ngram_range=(2, 3)).fit(DOCS, LABELS * 1.0)
    assert CHAR_NGRAM_MARK + "<g" in reg.vectorizer_.vocabulary_


def test_store_attention_weights_false_leaves_out_the_training_attention():
    stored = TextAttentionClassifier(**FAST).fit(DOCS, LABELS)
    clf = TextAttentionClassifier(**FAST, store_attention_weights=False).fit(DOCS, LABELS)
    assert not hasattr(clf, "attention_weights_") and not hasattr(clf, "token_importances_")
    np.testing.assert_array_equal(clf.predict_proba(DOCS), stored.predict_proba(DOCS))
    reg = TextAttentionRegressor(**FAST, warm_start=True).fit(DOCS, np.arange(len(DOCS)))
    assert reg.token_importances_.name == "importance"
    reg.set_params(store_attention_weights=False).fit(DOCS, np.arange(len(DOCS)))
    assert not hasattr(reg, "token_importances_") and not hasattr(reg, "attention_weights_")


class _EagerTextClassifier(TextAttentionClassifier):
    """The numeric estimators' rule: the attention_weights_ pass ends fit."""

    _store_attention_weights = AttentionClassifier._store_attention_weights


def _assert_matches_explain(clf, docs):
    explanation = clf.explain(docs)
    for i in range(len(docs)):
        n = len(explanation.weights[i])
        np.testing.assert_array_equal(clf.attention_weights_[i, :n], explanation.weights[i])
        assert not clf.attention_weights_[i, n:].any()


def test_training_attention_pass_runs_on_first_read_with_the_eager_values():
    lazy = TextAttentionClassifier(**FAST).fit(DOCS, LABELS)
    fitted = vars(lazy)
    assert "attention_weights_" not in fitted and "token_importances_" not in fitted
    kept = fitted["_deferred_attention"]["ids"]
    # 24 ids fit in one byte: an eighth of the float64 weights it stands for.
    assert kept.dtype == np.uint8 and lazy.vectorizer_.n_vocabulary_ == 24
    eager = _EagerTextClassifier(**FAST).fit(DOCS, LABELS)
    assert "attention_weights_" in vars(eager) and "_deferred_attention" not in vars(eager)
    np.testing.assert_array_equal(lazy.params_, eager.params_)
    importances = lazy.token_importances_  # the first read runs the pass once
    assert "_deferred_attention" not in vars(lazy)
    assert {"attention_weights_", "token_importances_"} <= set(vars(lazy))
    np.testing.assert_array_equal(lazy.attention_weights_, eager.attention_weights_)
    assert lazy.token_importances_ is importances
    _assert_matches_explain(lazy, DOCS)
    with pytest.raises(AttributeError, match="no attribute 'not_an_attribute_'"):
        lazy.not_an_attribute_


def test_deferred_attention_survives_pickle_save_and_refits(tmp_path):
    from skattention.persistence import load, save

    clf = TextAttentionClassifier(**FAST, warm_start=True).fit(DOCS, LABELS)
    clone = pickle.loads(pickle.dumps(clf))
    assert "_deferred_attention" in vars(clone)
    save(clf, tmp_path / "model.skat")  # the file holds the weights: save runs the pass
    assert "attention_weights_" in vars(clf) and "_deferred_attention" not in vars(clf)
    loaded = load(tmp_path / "model.skat")
    for other in (clone, loaded):
        np.testing.assert_array_equal(other.attention_weights_, clf.attention_weights_)
        pd.testing.assert_frame_equal(other.token_importances_, clf.token_importances_)
    # A second fit replaces the read weights by a new deferred pass of the new parameters.
    clf.fit(DOCS[::-1], LABELS[::-1])
    assert "attention_weights_" not in vars(clf) and "token_importances_" not in vars(clf)
    _assert_matches_explain(clf, DOCS[::-1])
    clf.set_params(store_attention_weights=False).fit(DOCS, LABELS)
    assert "_deferred_attention" not in vars(clf)
    assert not hasattr(clf, "attention_weights_") and not hasattr(clf, "token_importances_")
    # partial_fit defers the pass over its batch and keeps no importances of its own.
    batch = TextAttentionClassifier(**FAST).partial_fit(DOCS[:6], LABELS[:6], classes=[0, 1])
    assert not hasattr(batch, "token_importances_")
    assert batch.attention_weights_.shape[0] == 6
    _assert_matches_explain(batch, DOCS[:6])


def test_fit_tokenises_once_and_token_importances_match_the_training_ids(monkeypatch):
    from skattention.text import TextSequenceVectorizer

    tokenised = []
    original = TextSequenceVectorizer._tokenizer

    def counting_tokenizer(self):
        tokenize = original(self)

        def counted(doc):
            tokenised.append(doc)
            return tokenize(doc)
        return counted

    monkeypatch.setattr(TextSequenceVectorizer, "_tokenizer", counting_tokenizer)
    clf = TextAttentionClassifier(**FAST).fit(DOCS, LABELS)
    assert len(tokenised) == len(DOCS)  # fit tokenises every document once
    assert "_fit_ids" not in clf.__dict__  # only the deferred pass's compact ids are kept
    ids = clf.vectorizer_.transform(DOCS)
    labels = np.asarray(LABELS)
    for label in clf.classes_:
        rows = labels == label
        mass = np.bincount(ids[rows].ravel(), weights=clf.attention_weights_[rows].ravel(),
                           minlength=clf.vectorizer_.n_vocabulary_) / rows.sum()
        np.testing.assert_allclose(clf.token_importances_[label].to_numpy(), mass[1:])
    with pytest.raises(ValueError):
        clf.fit(DOCS, LABELS[:-1])
    assert "_fit_ids" not in clf.__dict__
    warm = TextAttentionClassifier(**FAST, warm_start=True).fit(DOCS, LABELS)
    warm.fit(DOCS[::-1], LABELS[::-1])  # a second fit: ids from transform, same bookkeeping
    assert "_fit_ids" not in warm.__dict__ and len(warm.attention_weights_) == len(DOCS)
