"""TextSequenceVectorizer: vocabulary, encoding, input validation, sklearn API."""

import pickle
import re
import unicodedata
import zlib
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.utils.estimator_checks import (
    check_do_not_raise_errors_in_init_or_set_params,
    check_estimator_cloneable,
    check_estimator_repr,
    check_estimator_tags_renamed,
    check_estimators_unfitted,
    check_get_params_invariance,
    check_mixin_order,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
    check_valid_tag_types,
)
from sklearn.exceptions import NotFittedError

from skattention.text import PAD_ID, START_ID, UNK_ID, TextSequenceVectorizer
from skattention.text._vectorizer import CHAR_NGRAM_MARK

DOCS = ["the cat sat on the mat", "the dog sat", "a cat and a dog", "birds fly"]


def _fit(docs=DOCS, **params):
    return TextSequenceVectorizer(**params).fit(docs)


# ------------------------------------------------------------------ vocabulary

def test_vocabulary_ids_by_frequency_then_alphabetical():
    vec = _fit()
    # the: 3, a/cat/dog/sat: 2 each (alphabetical), then the singletons.
    assert list(vec.vocabulary_) == ["the", "a", "cat", "dog", "sat",
                                     "and", "birds", "fly", "mat", "on"]
    assert list(vec.vocabulary_.values()) == list(range(3, 13))
    assert vec.n_vocabulary_ == 13 == max(vec.vocabulary_.values()) + 1


def test_min_df_and_max_df_counts_and_proportions():
    assert set(_fit(min_df=2).vocabulary_) == {"the", "cat", "dog", "sat"}
    assert set(_fit(min_df=0.5).vocabulary_) == {"the", "cat", "dog", "sat"}
    # "the" is in 2 of 4 documents: max_df=1 (count) and 0.25 drop every word in 2+.
    assert set(_fit(max_df=1).vocabulary_) == {"on", "mat", "and", "a", "birds", "fly"}
    assert set(_fit(max_df=0.25).vocabulary_) == set(_fit(max_df=1).vocabulary_)
    assert set(_fit(min_df=2, max_df=2).vocabulary_) == {"the", "cat", "dog", "sat"}


def test_vocabulary_matches_count_vectorizer_with_its_token_pattern():
    params = dict(token_pattern=r"(?u)\b\w\w+\b", min_df=2, max_df=0.9)
    ours = _fit(**params)
    theirs = CountVectorizer(**params).fit(DOCS)
    assert set(ours.vocabulary_) == set(theirs.vocabulary_)


def test_max_df_below_min_df_is_an_error():
    with pytest.raises(ValueError, match="max_df=1 corresponds to fewer documents"):
        _fit(min_df=2, max_df=1)


def test_max_features_keeps_most_frequent_with_alphabetical_ties():
    assert list(_fit(max_features=1).vocabulary_) == ["the"]
    # a, cat, dog, sat tie at 2 occurrences: alphabetical order decides.
    assert list(_fit(max_features=3).vocabulary_) == ["the", "a", "cat"]
    # Ties do not depend on document order.
    assert _fit(DOCS[::-1], max_features=3).vocabulary_ == _fit(max_features=3).vocabulary_


def test_empty_vocabulary_warns_and_encodes_everything_as_unknown():
    with pytest.warns(UserWarning, match="vocabulary is empty"):
        vec = _fit(["", "!!! ..."])
    assert vec.n_vocabulary_ == 3
    np.testing.assert_array_equal(vec.transform(["hello world"]), [[START_ID, UNK_ID, UNK_ID]])


# -------------------------------------------------------------------- encoding

def test_transform_start_token_unknowns_and_padding():
    vec = _fit()
    ids = vec.transform(["The CAT sat", "zebra", "the"])
    v = vec.vocabulary_
    np.testing.assert_array_equal(ids, [[START_ID, v["the"], v["cat"], v["sat"]],
                                        [START_ID, UNK_ID, PAD_ID, PAD_ID],
                                        [START_ID, v["the"], PAD_ID, PAD_ID]])
    assert ids.dtype == np.int64


@pytest.mark.parametrize("doc", ["", "   ", "?!", "zebra", "ZEBRAS unicorns xylophones"])
def test_empty_and_all_unknown_documents_keep_a_real_position(doc):
    ids = _fit().transform([doc])
    assert ids.shape[1] >= 1 and ids[0, 0] == START_ID
    assert set(ids[0, 1:].tolist()) <= {UNK_ID, PAD_ID}
    if not doc.strip("?! "):
        assert ids.shape == (1, 1)


def test_without_start_token():
    vec = _fit(add_start_token=False)
    ids = vec.transform(["the cat", ""])
    np.testing.assert_array_equal(ids, [[3, vec.vocabulary_["cat"]], [UNK_ID, PAD_ID]])
    assert vec.inverse_transform(ids) == [["the", "cat"], ["<unk>"]]


def test_truncation_warns_once_per_call_with_the_count():
    vec = _fit(max_len=3)
    docs = ["the cat sat on the mat", "the dog", "a cat and a dog"]
    with pytest.warns(UserWarning) as record:
        ids = vec.transform(docs)
    assert len(record) == 1
    assert "2 of 3 documents had more than max_len=3" in str(record[0].message)
    assert record[0].filename == __file__
    v = vec.vocabulary_
    np.testing.assert_array_equal(ids, [[START_ID, v["the"], v["cat"]],
                                        [START_ID, v["the"], v["dog"]],
                                        [START_ID, v["a"], v["cat"]]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert vec.transform(["the dog"]).shape == (1, 3)
        assert _fit(max_len=None).transform([" ".join(["cat"] * 1000)]).shape == (1, 1001)


def test_truncation_without_start_token_and_fit_transform_warns():
    with pytest.warns(UserWarning, match="2 of 4 documents .* first 3 tokens\\.$"):
        ids = TextSequenceVectorizer(max_len=3, add_start_token=False).fit_transform(DOCS)
    assert ids.shape == (4, 3)
    # The vocabulary comes from whole documents.
    assert "mat" in TextSequenceVectorizer(max_len=2).fit(DOCS).vocabulary_


def test_fit_transform_equals_fit_then_transform():
    np.testing.assert_array_equal(TextSequenceVectorizer().fit_transform(DOCS),
                                  _fit().transform(DOCS))


def test_transform_with_tokens_aligns_with_ids():
    vec = _fit()
    ids, tokens = vec.transform_with_tokens(["The zebra sat", ""])
    assert tokens == [["<start>", "the", "zebra", "sat"], ["<start>"]]
    assert [len(t) for t in tokens] == (ids != PAD_ID).sum(axis=1).tolist()
    np.testing.assert_array_equal(ids, vec.transform(["The zebra sat", ""]))


def test_inverse_transform_round_trip():
    vec = _fit()
    docs = ["the cat sat on the mat", "a zebra and a dog", ""]
    back = vec.inverse_transform(vec.transform(docs))
    expected = [["<start>"] + [w if w in vec.vocabulary_ else "<unk>" for w in vec.tokenize(d)]
                for d in docs]
    assert back == expected
    assert vec.inverse_transform([[2, 3], [2]]) == [["<start>", "the"], ["<start>"]]
    with pytest.raises(ValueError, match="outside \\[0, 13\\)"):
        vec.inverse_transform([[2, 13]])
    with pytest.raises(ValueError, match="outside"):
        vec.inverse_transform(np.array([[-1]]))
    with pytest.raises(TypeError, match="ids must be integers"):
        vec.inverse_transform(np.array([[2.0, 3.0]]))
    with pytest.raises(ValueError, match="expected a 2D array"):
        vec.inverse_transform(np.array([2, 3]))


def test_lowercase_false_and_custom_pattern_with_group():
    vec = _fit(["Hello hello HELLO"], lowercase=False)
    assert set(vec.vocabulary_) == {"Hello", "hello", "HELLO"}
    vec = TextSequenceVectorizer(token_pattern=r"#(\w+)")
    assert vec.tokenize("see #Sklearn and #numba!") == ["sklearn", "numba"]
    with pytest.raises(ValueError, match="2 capturing groups"):
        TextSequenceVectorizer(token_pattern=r"(a)(b)").fit(DOCS)
    with pytest.raises(ValueError, match="not a valid regular expression"):
        TextSequenceVectorizer(token_pattern="(").fit(DOCS)


def test_tokenize_unicode_emoji_control_and_surrogates():
    vec = TextSequenceVectorizer()
    # Composed and decomposed accents give one token (NFC).
    assert vec.tokenize("Café CAFE\u0301") == ["café", "café"]
    assert vec.tokenize("naïve Straße ΣΊΣΥΦΟΣ 東京") == ["naïve", "straße", "σίσυφος", "東京"]
    # Emoji, control characters, zero-width space and lone surrogates separate words.
    assert vec.tokenize("hi😀there\x00a\x07b\u200bc\ud800d\udfffe") == \
        ["hi", "there", "a", "b", "c", "d", "e"]
    assert vec.tokenize("") == [] and vec.tokenize("😀 \t\n ") == []
    with pytest.raises(TypeError, match="decode it first"):
        vec.tokenize(b"bytes")
    with pytest.raises(TypeError, match="must be a str"):
        vec.tokenize(3)


def test_surrogate_tokens_survive_pickle():
    vec = TextSequenceVectorizer(token_pattern=r"\S+").fit(["a\ud800 b"])
    assert "a\ud800" in vec.vocabulary_
    again = pickle.loads(pickle.dumps(vec))
    assert again.vocabulary_ == vec.vocabulary_


# ---------------------------------------------------------------------- inputs

@pytest.mark.parametrize("make", [
    list, tuple, np.array, lambda d: np.array(d, dtype=object),
    lambda d: pd.Series(d, index=[10, 20, 30, 40]), lambda d: pd.Series(d, dtype="string"),
    lambda d: iter(d),
], ids=["list", "tuple", "ndarray-str", "ndarray-object", "series", "series-string", "iter"])
def test_accepted_containers_agree(make):
    expected = _fit().transform(DOCS)
    vec = TextSequenceVectorizer().fit(make(DOCS))
    np.testing.assert_array_equal(vec.transform(make(DOCS)), expected)


@pytest.mark.parametrize("X, error, message", [
    (["ok", None], ValueError, "document 1 is None"),
    (["ok", "fine", float("nan")], ValueError, "document 2 is NaN"),
    (pd.Series(["ok", None], index=["a", "b"]), ValueError,
     "document 1 \\(index label 'b'\\) is NaN"),
    (pd.Series(["ok", pd.NA], dtype="string"), ValueError, "document 1 is NaN"),
    (np.array(["ok", None], dtype=object), ValueError, "document 1 is None"),
    (["ok", b"raw"], TypeError, "document 1 is bytes; decode it to str first"),
    (np.array([b"raw"]), TypeError, "holds bytes .* decode"),
    (["ok", 3], TypeError, "document 1 has type int; expected str"),
    (np.array([1, 2]), TypeError, "must hold str documents"),
    (np.array([["a", "b"]]), ValueError, "expected a 1D sequence of documents"),
    (np.array("a"), ValueError, "expected a 1D sequence of documents"),
    ([["a", "b"]], ValueError, "expected a 1D sequence of documents"),
    (pd.DataFrame({"text": ["a"]}), ValueError, "expected a 1D sequence .* X\\['text'\\]"),
    ([], ValueError, "contains no documents"),
    (np.array([], dtype=str), ValueError, "contains no documents"),
    ("a single doc", TypeError, "got a single str; wrap one document in a list"),
    (b"a single doc", TypeError, "got a single bytes; decode it"),
    (42, TypeError, "must be an iterable of documents"),
], ids=lambda v: None)
@pytest.mark.parametrize("method", ["fit", "transform", "fit_transform", "transform_with_tokens"])
def test_bad_input_errors(X, error, message, method):
    vec = TextSequenceVectorizer() if method.startswith("fit") else _fit()
    with pytest.raises(error, match=message):
        getattr(vec, method)(X)


def test_unfitted_and_bad_params():
    with pytest.raises(NotFittedError):
        TextSequenceVectorizer().transform(DOCS)
    with pytest.raises(NotFittedError):
        TextSequenceVectorizer().inverse_transform([[2]])
    for params in [dict(max_len=0), dict(min_df=1.5), dict(max_df=-1), dict(max_features=0),
                   dict(token_pattern=None), dict(lowercase="yes")]:
        name = next(iter(params))
        with pytest.raises(ValueError, match=f"The '{name}' parameter"):
            TextSequenceVectorizer(**params).fit(DOCS)
    with pytest.raises(ValueError, match="The 'max_len' parameter"):
        TextSequenceVectorizer(max_len=0).tokenize("x")


# ------------------------------------------------------------- sklearn API

def test_pickle_round_trip():
    vec = _fit(max_features=5)
    again = pickle.loads(pickle.dumps(vec))
    assert again.vocabulary_ == vec.vocabulary_ and again.get_params() == vec.get_params()
    np.testing.assert_array_equal(again.transform(DOCS), vec.transform(DOCS))


def test_clone_and_get_params():
    vec = _fit(min_df=2, max_len=10)
    copy = clone(vec)
    assert copy.get_params() == vec.get_params()
    assert not hasattr(copy, "vocabulary_")
    assert vec.set_params(max_len=5).max_len == 5
    assert repr(TextSequenceVectorizer(max_len=8)) == "TextSequenceVectorizer(max_len=8)"


def test_tags():
    tags = TextSequenceVectorizer().__sklearn_tags__()
    assert tags.input_tags.string and tags.input_tags.one_d_array
    assert not tags.input_tags.two_d_array
    assert tags.requires_fit


@pytest.mark.parametrize("check", [
    check_estimator_cloneable, check_estimator_repr, check_no_attributes_set_in_init,
    check_estimators_unfitted, check_do_not_raise_errors_in_init_or_set_params,
    check_mixin_order, check_parameters_default_constructible, check_get_params_invariance,
    check_set_params, check_estimator_tags_renamed, check_valid_tag_types,
], ids=lambda c: c.__name__)
def test_sklearn_data_agnostic_checks(check):
    check("TextSequenceVectorizer", TextSequenceVectorizer())


def test_in_a_pipeline_with_a_column_transformer():
    from sklearn.compose import ColumnTransformer

    frame = pd.DataFrame({"text": DOCS, "other": range(4)})
    ct = ColumnTransformer([("seq", TextSequenceVectorizer(), "text")])
    out = ct.fit_transform(frame)
    np.testing.assert_array_equal(out, _fit().transform(DOCS))


# -------------------------------------------------------------------- fuzzing

_fit_vec = TextSequenceVectorizer(max_len=8).fit(["the cat", "ünïcödé 😀 text", "a b c"])


@given(st.text() | st.text(alphabet="aé_1 -'\u0301\u200b.Ж"))
def test_default_pattern_shortcut_finds_what_the_pattern_finds(doc):
    from skattention.text._tokenize import DEFAULT_TOKEN_PATTERN, make_tokenizer

    pattern = re.compile(DEFAULT_TOKEN_PATTERN)
    for lowercase in (True, False):
        tokenize = make_tokenizer(lowercase, DEFAULT_TOKEN_PATTERN)
        text = unicodedata.normalize("NFC", doc.lower() if lowercase else doc)
        assert tokenize(doc) == pattern.findall(text)


@given(st.lists(st.text(), min_size=1, max_size=5))
def test_fuzz_arbitrary_text(docs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ids, tokens = _fit_vec.transform_with_tokens(docs)
        fitted = TextSequenceVectorizer(max_len=4, min_df=1).fit(docs)
        own = fitted.transform(docs)
    for out, vec in [(ids, _fit_vec), (own, fitted)]:
        assert out.dtype == np.int64 and out.shape[0] == len(docs)
        assert 1 <= out.shape[1] <= vec.max_len
        assert out.min() >= 0 and out.max() < vec.n_vocabulary_
        np.testing.assert_array_equal(out[:, 0], START_ID)
        # Padding only ever follows the real positions.
        real = out != PAD_ID
        assert (real == (np.arange(out.shape[1]) < real.sum(axis=1, keepdims=True))).all()
    assert [len(t) for t in tokens] == (ids != PAD_ID).sum(axis=1).tolist()
    # Known words of the fitted documents never map to UNK.
    assert all(i != UNK_ID for row in own.tolist() for i in row)
    assert all(re.fullmatch(r"\w+", w) for w in fitted.vocabulary_)


# ------------------------------------------------------------- n-grams, buckets

def test_ngram_vocabulary_ids_and_row_order():
    vec = _fit(["not very good", "very good", "good"], ngram_range=(1, 2))
    # good: 3, very: 2, "very good": 2, then the singletons, ties alphabetical.
    assert vec.vocabulary_ == {"good": 3, "very": 4, "very good": 5, "not": 6, "not very": 7}
    assert vec.n_vocabulary_ == 8
    # Words in reading order, then the bigrams in reading order.
    np.testing.assert_array_equal(vec.transform(["not very good"]),
                                  [[START_ID, 6, 4, 3, 7, 5]])
    # Unknown bigrams are left out (n_buckets=0); an unknown word stays UNK.
    np.testing.assert_array_equal(vec.transform(["very bad good", "good"]),
                                  [[START_ID, 4, UNK_ID, 3],
                                   [START_ID, 3, PAD_ID, PAD_ID]])


def test_ngram_range_two_to_three_skips_words():
    vec = _fit(["a b c d"], ngram_range=(2, 3))
    assert set(vec.vocabulary_) == {"a b", "b c", "c d", "a b c", "b c d"}
    ids, tokens = vec.transform_with_tokens(["a b c d", "a"])
    assert tokens == [["<start>", "a b", "b c", "c d", "a b c", "b c d"], ["<start>"]]
    assert vec.inverse_transform(ids) == tokens
    assert _fit(["a b"], ngram_range=(2, 2), add_start_token=False).transform(["a"]).tolist() \
        == [[UNK_ID]]


def test_ngram_vocabulary_matches_count_vectorizer():
    params = dict(token_pattern=r"(?u)\b\w\w+\b", min_df=2, ngram_range=(1, 3), max_df=0.9)
    docs = DOCS + ["the cat sat on a dog", "the dog sat on the cat"]
    ours = _fit(docs, **params)
    theirs = CountVectorizer(**params).fit(docs)
    assert set(ours.vocabulary_) == set(theirs.vocabulary_)
    assert "sat on" in ours.vocabulary_ and "the cat sat" in ours.vocabulary_
    # the: 6; cat, dog, sat: 4 each (alphabetical); bigrams are rarer.
    assert list(_fit(docs, ngram_range=(1, 2), max_features=3).vocabulary_) == \
        ["the", "cat", "dog"]


def test_ngram_truncation_keeps_the_terms_of_a_word_prefix():
    vec = _fit(["a b c d e"], ngram_range=(1, 2), max_len=6)
    v = vec.vocabulary_
    # 5 positions after the start token: 3 words and their 2 bigrams (4 words need 7).
    with pytest.warns(UserWarning, match=r"1 of 2 documents had more than max_len=6 .*"
                      r"longest prefix of words whose terms .* fit in 5 positions "
                      r"\(plus the start token\)\.$") as record:
        ids = vec.transform(["a b c d e", "a b"])
    assert len(record) == 1
    np.testing.assert_array_equal(ids, [[START_ID, v["a"], v["b"], v["c"], v["a b"], v["b c"]],
                                        [START_ID, v["a"], v["b"], v["a b"], 0, 0]])
    # The cut document reads as its prefix would.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(vec.transform(["a b c"])[0], ids[0])
    # Unknown bigrams take no room: all 5 words fit when their bigrams are unknown.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert vec.transform(["a c e b d"]).tolist() == \
            [[START_ID, v["a"], v["c"], v["e"], v["b"], v["d"]]]


def test_hash_buckets_for_terms_outside_the_vocabulary():
    vec = _fit(["not good", "not bad", "good"], ngram_range=(1, 2), min_df=2, n_buckets=4)
    assert vec.vocabulary_ == {"good": 3, "not": 4}
    assert vec.n_vocabulary_ == 3 + 2 + 4
    ids, tokens = vec.transform_with_tokens(["not good at all"])
    assert tokens == [["<start>", "not", "good", "at", "all", "not good", "good at", "at all"]]
    offset = vec.n_vocabulary_ - 4
    expected = [offset + zlib.crc32(t.encode()) % 4 for t in tokens[0][3:]]
    np.testing.assert_array_equal(ids[0], [START_ID, 4, 3, *expected])
    assert (ids[0, 3:] >= offset).all() and UNK_ID not in ids
    names = vec.inverse_transform(ids)[0]
    assert names[:3] == ["<start>", "not", "good"]
    assert names[3:] == [f"<bucket {j - offset}>" for j in expected]
    # Stable across processes (not Python's salted hash) and through pickling.
    again = pickle.loads(pickle.dumps(vec))
    np.testing.assert_array_equal(again.transform(["not good at all"]), ids)
    with pytest.warns(UserWarning, match="encoded as a hash bucket"):
        assert _fit(["x", "y"], min_df=2, n_buckets=3).transform(["x"]).tolist() == \
            [[START_ID, 3 + zlib.crc32(b"x") % 3]]


@pytest.mark.parametrize("ngram_range", [(0, 1), (2, 1), (1,), (1.0, 2), (True, 2)])
def test_bad_ngram_range(ngram_range):
    with pytest.raises(ValueError, match="ngram_range must be a tuple"):
        TextSequenceVectorizer(ngram_range=ngram_range).fit(DOCS)
    with pytest.raises(ValueError, match="The 'ngram_range' parameter"):
        TextSequenceVectorizer(ngram_range=[1, 2]).fit(DOCS)
    with pytest.raises(ValueError, match="The 'n_buckets' parameter"):
        TextSequenceVectorizer(n_buckets=-1).fit(DOCS)


def test_ngram_and_bucket_pickle_and_fit_transform():
    vec = _fit(ngram_range=(1, 3), n_buckets=7, min_df=2)
    again = pickle.loads(pickle.dumps(vec))
    assert again.get_params() == vec.get_params() and again.vocabulary_ == vec.vocabulary_
    np.testing.assert_array_equal(again.transform(DOCS), vec.transform(DOCS))
    np.testing.assert_array_equal(
        TextSequenceVectorizer(ngram_range=(1, 3), n_buckets=7, min_df=2).fit_transform(DOCS),
        vec.transform(DOCS))


@pytest.mark.parametrize("check", [
    check_estimator_cloneable, check_estimator_repr, check_no_attributes_set_in_init,
    check_get_params_invariance, check_set_params, check_parameters_default_constructible,
], ids=lambda c: c.__name__)
def test_sklearn_checks_with_ngrams_and_buckets(check):
    check("TextSequenceVectorizer", TextSequenceVectorizer(ngram_range=(1, 2), n_buckets=16))


@given(st.lists(st.text(alphabet="ab c", max_size=30), min_size=1, max_size=5),
       st.integers(1, 3), st.integers(0, 5))
def test_fuzz_ngrams(docs, max_n, n_buckets):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        vec = TextSequenceVectorizer(ngram_range=(1, max_n), n_buckets=n_buckets,
                                     max_len=12).fit(docs)
        ids, tokens = vec.transform_with_tokens(docs)
    assert [len(t) for t in tokens] == (ids != PAD_ID).sum(axis=1).tolist()
    assert ids.shape[1] <= 12 and ids.max() < vec.n_vocabulary_
    # Every training term is known, so no position is UNK or a bucket.
    assert ids.max() < vec.n_vocabulary_ - n_buckets and UNK_ID not in ids
    back = vec.inverse_transform(ids)
    assert back == tokens


def test_transform_in_chunks_equals_one_pass(monkeypatch):
    from skattention.text import _vectorizer

    vec = _fit(max_len=4, ngram_range=(1, 2))
    docs = ["the cat sat on the mat", "dog", "", "a cat and a dog", "the mat", "cat cat"]
    with pytest.warns(UserWarning, match="2 of 6 documents"):
        whole, whole_tokens = vec.transform_with_tokens(docs)
    monkeypatch.setattr(_vectorizer, "ENCODE_CHUNK", 2)
    with pytest.warns(UserWarning, match="2 of 6 documents") as record:
        chunked, chunked_tokens = vec.transform_with_tokens(docs)
    assert len(record) == 1  # one warning for the call, not one per chunk
    np.testing.assert_array_equal(chunked, whole)
    assert chunked_tokens == whole_tokens
    # Chunks of unequal widths: a narrow first chunk is padded to the call's width.
    monkeypatch.setattr(_vectorizer, "ENCODE_CHUNK", 4)
    docs = ["dog", "cat", "dog", "cat", "the cat sat on the mat"]
    with pytest.warns(UserWarning, match="1 of 5 documents"):
        short_first = vec.transform(docs)
    monkeypatch.setattr(_vectorizer, "ENCODE_CHUNK", 8192)
    with pytest.warns(UserWarning, match="1 of 5 documents"):
        np.testing.assert_array_equal(short_first, vec.transform(docs))
    assert short_first.shape[1] == 4 and (short_first[:4, 2:] == PAD_ID).all()


@given(st.lists(st.text(alphabet="ab cd", max_size=30), min_size=1, max_size=6),
       st.integers(1, 3), st.integers(1, 3), st.integers(0, 5), st.sampled_from([None, 6]),
       st.booleans())
def test_fast_and_token_tracking_encodings_agree(docs, min_n, extra, n_buckets, max_len,
                                                 start):
    """``transform`` (ids only) and ``transform_with_tokens`` encode the same ids."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        vec = TextSequenceVectorizer(ngram_range=(min_n, min_n + extra - 1),
                                     n_buckets=n_buckets, max_len=max_len,
                                     add_start_token=start).fit(docs[: max(1, len(docs) // 2)])
        ids = vec.transform(docs)
        tracked, _ = vec.transform_with_tokens(docs)
    np.testing.assert_array_equal(ids, tracked)


# ------------------------------------------------------ character n-grams

def _mark(*grams):
    return [CHAR_NGRAM_MARK + g for g in grams]


def test_char_ngram_terms_of_a_small_example():
    vec = _fit(["good", "not good"], char_ngram_range=(3, 4))
    good_3, good_4 = ["<go", "goo", "ood", "od>"], ["<goo", "good", "ood>"]
    not_3, not_4 = ["<no", "not", "ot>"], ["<not", "not>"]
    # "good" and its n-grams occur twice, "not" and its once; ties are broken
    # by code point of the key, and the mark of character n-gram keys sorts first.
    assert list(vec.vocabulary_) == [
        *_mark(*sorted(good_3 + good_4)), "good", *_mark(*sorted(not_3 + not_4)), "not"]
    ids, tokens = vec.transform_with_tokens(["not good", "good film"])
    # Words, then every word's 3-grams in reading order, then the 4-grams;
    # each character n-gram shown as itself.
    assert tokens[0] == ["<start>", "not", "good", *not_3, *good_3, *not_4, *good_4]
    # Unknown character n-grams are left out, an unknown word stays UNK.
    assert tokens[1] == ["<start>", "good", "film", *good_3, *good_4]
    v = vec.vocabulary_
    assert ids[0].tolist() == [START_ID, v["not"], v["good"],
                               *(v[k] for k in _mark(*not_3, *good_3, *not_4, *good_4))]
    assert ids[1, :3].tolist() == [START_ID, v["good"], UNK_ID]
    assert vec.inverse_transform(ids) == [tokens[0], [*tokens[1][:2], "<unk>", *tokens[1][3:]]]
    # The character n-gram "not" is not the word "not"; short words are
    # bracketed whole, and the brackets alone are never 1-grams.
    assert v[CHAR_NGRAM_MARK + "not"] != v["not"]
    assert list(_fit(["a"], char_ngram_range=(1, 3)).vocabulary_) == \
        [*_mark("<a", "<a>", "a", "a>"), "a"]


def test_char_ngrams_follow_word_ngrams_and_off_by_default():
    assert TextSequenceVectorizer().char_ngram_range is None
    assert all(not k.startswith(CHAR_NGRAM_MARK) for k in _fit(DOCS).vocabulary_)
    vec = _fit(["ab cd"], ngram_range=(1, 2), char_ngram_range=(4, 4))
    assert vec.transform_with_tokens(["ab cd"])[1] == \
        [["<start>", "ab", "cd", "ab cd", "<ab>", "<cd>"]]


def test_char_ngrams_obey_the_vocabulary_limits():
    docs = ["cat", "cats", "cart", "dog"]
    # Document counts: "<c", "<ca", "ca" 3; "at", "t>", "cat" 2 ("at>", "<cat>" 1 ...);
    # every word 1.
    grams = {k[1:] for k in _fit(docs, char_ngram_range=(2, 3), min_df=2).vocabulary_}
    assert grams == {"<c", "<ca", "ca", "at", "t>", "cat"}
    assert all(k.startswith(CHAR_NGRAM_MARK)
               for k in _fit(docs, char_ngram_range=(2, 3), min_df=2).vocabulary_)
    at_most_2 = _fit(docs, char_ngram_range=(2, 3), max_df=2).vocabulary_
    assert "cat" in at_most_2 and not set(_mark("<c", "<ca", "ca")) & set(at_most_2)
    # max_features ranks words and character n-grams together (count, then code point).
    assert list(_fit(docs, char_ngram_range=(2, 3), max_features=4).vocabulary_) == \
        _mark("<c", "<ca", "ca", "at")
    # Unknown character n-grams are hashed (by their key) when n_buckets is set.
    vec = _fit(docs, char_ngram_range=(2, 3), min_df=2, n_buckets=5)
    ids, tokens = vec.transform_with_tokens(["cow"])
    assert tokens == [["<start>", "cow", "<c", "co", "ow", "w>", "<co", "cow", "ow>"]]
    offset = vec.n_vocabulary_ - 5
    v = vec.vocabulary_
    buckets = [offset + zlib.crc32((CHAR_NGRAM_MARK + t).encode()) % 5
               for t in ["co", "ow", "w>", "<co", "cow", "ow>"]]
    assert ids[0].tolist() == [START_ID, offset + zlib.crc32(b"cow") % 5,
                               v[CHAR_NGRAM_MARK + "<c"], *buckets[:3], *buckets[3:]]


def test_char_ngram_truncation_keeps_the_terms_of_a_word_prefix():
    vec = _fit(["ab cd ef"], char_ngram_range=(3, 3), max_len=8)
    v = vec.vocabulary_
    # Each word is one position and two 3-grams: 2 words fit in 7 positions, 3 need 9.
    with pytest.warns(UserWarning, match=r"1 of 1 documents had more than max_len=8 .*"
                      r"longest prefix of words whose terms"):
        ids = vec.transform(["ab cd ef"])
    assert ids.tolist() == [[START_ID, v["ab"], v["cd"],
                             *(v[k] for k in _mark("<ab", "ab>", "<cd", "cd>"))]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert vec.transform(["ab cd"]).tolist() == ids.tolist()
    with pytest.warns(UserWarning, match="1 of 1 documents"):
        assert vec.transform_with_tokens(["ab cd ef"])[0].tolist() == ids.tolist()


@pytest.mark.parametrize("char_ngram_range", [(0, 2), (3, 2), (3,), (3.0, 5), (True, 3),
                                              (3, 4, 5)])
def test_bad_char_ngram_range(char_ngram_range):
    with pytest.raises(ValueError, match="char_ngram_range must be None or a tuple"):
        TextSequenceVectorizer(char_ngram_range=char_ngram_range).fit(DOCS)
    with pytest.raises(ValueError, match="The 'char_ngram_range' parameter"):
        TextSequenceVectorizer(char_ngram_range=[3, 5]).fit(DOCS)


def test_char_ngram_pickle_params_and_fit_transform():
    vec = _fit(char_ngram_range=(2, 4), ngram_range=(1, 2), min_df=2, n_buckets=3)
    assert vec.get_params()["char_ngram_range"] == (2, 4)
    again = pickle.loads(pickle.dumps(vec))
    assert again.get_params() == vec.get_params() and again.vocabulary_ == vec.vocabulary_
    np.testing.assert_array_equal(again.transform(DOCS), vec.transform(DOCS))
    np.testing.assert_array_equal(clone(vec).fit_transform(DOCS), vec.transform(DOCS))
    assert clone(vec).set_params(char_ngram_range=None).fit(DOCS).vocabulary_ == \
        _fit(ngram_range=(1, 2), min_df=2).vocabulary_


@pytest.mark.parametrize("check", [
    check_estimator_cloneable, check_get_params_invariance, check_set_params,
], ids=lambda c: c.__name__)
def test_sklearn_checks_with_char_ngrams(check):
    check("TextSequenceVectorizer", TextSequenceVectorizer(char_ngram_range=(3, 5)))


@given(st.lists(st.text(alphabet="ab cd", max_size=30), min_size=1, max_size=6),
       st.integers(1, 3), st.integers(0, 2), st.integers(0, 5), st.sampled_from([None, 9]),
       st.booleans())
def test_fuzz_char_ngrams(docs, min_c, extra, n_buckets, max_len, start):
    """Fast and token-tracking encodings agree; tokens match ids; training terms known."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        vec = TextSequenceVectorizer(char_ngram_range=(min_c, min_c + extra),
                                     ngram_range=(1, 2), n_buckets=n_buckets,
                                     max_len=max_len, add_start_token=start).fit(docs)
        ids = vec.transform(docs)
        tracked, tokens = vec.transform_with_tokens(docs)
    np.testing.assert_array_equal(ids, tracked)
    assert [len(t) for t in tokens] == (ids != PAD_ID).sum(axis=1).tolist()
    assert ids.max() < vec.n_vocabulary_ - n_buckets
    assert vec.inverse_transform(ids) == tokens


@pytest.mark.parametrize("params", [
    dict(ngram_range=(1, 2), max_len=9),
    dict(ngram_range=(1, 3), max_len=12, add_start_token=False),
    dict(ngram_range=(2, 3), max_len=7),
    dict(ngram_range=(1, 2), n_buckets=7, max_len=10),
    dict(char_ngram_range=(2, 3), max_len=15),
    dict(ngram_range=(1, 2), char_ngram_range=(3, 4), n_buckets=5, max_len=20),
    dict(ngram_range=(1, 1), max_len=5, min_df=2),
])
def test_transform_truncates_as_the_term_by_term_path(params):
    # transform() cuts long documents with whole-array arithmetic;
    # transform_with_tokens() walks every term: both must keep the same ids.
    rng = np.random.default_rng(0)
    words = ["w%d" % i for i in range(12)]
    train = [" ".join(rng.choice(words, size=rng.integers(0, 14))) for _ in range(40)]
    test = [" ".join(rng.choice(words + ["unseen", "other"], size=rng.integers(0, 20)))
            for _ in range(60)]
    vec = _fit(train, **params)
    with warnings.catch_warnings(record=True) as fast_warnings:
        warnings.simplefilter("always")
        ids = vec.transform(test)
    with warnings.catch_warnings(record=True) as term_warnings:
        warnings.simplefilter("always")
        term_ids, tokens = vec.transform_with_tokens(test)
    np.testing.assert_array_equal(ids, term_ids)
    assert [str(w.message) for w in fast_warnings] == [str(w.message) for w in term_warnings]
    assert len(fast_warnings) == 1  # some documents were cut
    assert [len(t) for t in tokens] == (ids != PAD_ID).sum(axis=1).tolist()
