"""Raw documents to padded sequences of token ids."""

import itertools
import numbers
import warnings
import zlib
from collections import Counter

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, RealNotInt
from sklearn.utils.validation import check_is_fitted

from ._tokenize import DEFAULT_TOKEN_PATTERN, check_documents, make_tokenizer

__all__ = ["PAD_ID", "UNK_ID", "START_ID", "PAD_TOKEN", "UNK_TOKEN", "START_TOKEN",
           "TextSequenceVectorizer"]

#: Id of padding positions (never a real position).
PAD_ID = 0
#: Id of words that are not in the vocabulary.
UNK_ID = 1
#: Id of the start token that opens every sequence when ``add_start_token=True``.
START_ID = 2
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
START_TOKEN = "<start>"
_N_SPECIAL = 3
#: Documents tokenised and encoded together by ``transform``.
ENCODE_CHUNK = 8192
#: Prefix of the ``vocabulary_`` keys of character n-grams: keeps the n-gram
#: "her" of "<where>" apart from the word "her", as fastText keeps subwords
#: apart from words. Never shown: token texts are the n-grams themselves.
CHAR_NGRAM_MARK = "\x00"


def _stack_padded(parts):
    """Stack id matrices of different widths, padding with ``PAD_ID``.

    Parameters
    ----------
    parts : list of ndarray of shape (n_i, width_i), int64

    Returns
    -------
    ids : ndarray of shape (sum n_i, max width_i), int64
        ``parts[0]`` itself when there is one part.
    """
    if len(parts) == 1:
        return parts[0]
    width = max(part.shape[1] for part in parts)
    ids = np.full((sum(part.shape[0] for part in parts), width), PAD_ID, dtype=np.int64)
    row = 0
    for part in parts:
        ids[row:row + part.shape[0], :part.shape[1]] = part
        row += part.shape[0]
    return ids


def _ngrams(tokens, n):
    """The ``n``-grams of ``tokens`` in reading order, joined by one space."""
    if n == 1:
        return tokens
    return [" ".join(tokens[i: i + n]) for i in range(len(tokens) - n + 1)]


def _char_ngrams(word, min_c, max_c):
    """Vocabulary keys of the character n-grams of ``"<" + word + ">"``.

    Order: every ``min_c``-gram left to right, then every ``min_c + 1``-gram,
    and so on; each key is the n-gram prefixed by ``CHAR_NGRAM_MARK``. As in
    fastText, the boundary markers alone (the 1-grams ``"<"`` and ``">"``)
    are not n-grams.
    """
    padded = f"<{word}>"
    size = len(padded)
    grams = []
    for n in range(min_c, max_c + 1):
        if n == 1:
            grams.extend(CHAR_NGRAM_MARK + c for c in word)
        else:
            grams.extend(CHAR_NGRAM_MARK + padded[i: i + n] for i in range(size - n + 1))
    return grams


def _term_text(term):
    """A term as shown to users: a character n-gram without its key prefix."""
    return term[1:] if term.startswith(CHAR_NGRAM_MARK) else term


def _bucket(term, n_buckets):
    """Stable hash bucket of a term in ``[0, n_buckets)``.

    CRC-32 of the UTF-8 bytes rather than :func:`hash`, which is salted per
    process and would give a pickled model different ids in a new process;
    ``surrogatepass`` keeps lone surrogates (valid in a ``str``) encodable.
    """
    return zlib.crc32(term.encode("utf-8", "surrogatepass")) % n_buckets


class TextSequenceVectorizer(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Turn raw documents into padded sequences of token ids.

    The sequence counterpart of scikit-learn's ``CountVectorizer``: documents
    are tokenised the same way (lower-casing, then a regular expression), the
    vocabulary is pruned with the same ``min_df``/``max_df``/``max_features``
    rules, but each document becomes a row of word ids in reading order rather
    than a row of counts, ready for an attention model. Word n-grams
    (``ngram_range``) are appended to the words as extra positions with ids
    of their own, so that a model can attend to "not good" as one token;
    fastText-style character n-grams of every word (``char_ngram_range``)
    can be appended as further positions, so that unseen or rare forms
    ("unwatchable") share evidence with known ones; and terms outside the
    vocabulary can share hashed embedding rows (``n_buckets``), as in fastText.

    Parameters
    ----------
    lowercase : bool, default=True
        Lower-case documents (:meth:`str.lower`) before tokenising.
    token_pattern : str, default=r"(?u)\\b\\w+\\b"
        Regular expression whose matches are the tokens; if it has one
        capturing group, the group's text is the token (as in
        ``CountVectorizer``). The default keeps one-character words, unlike
        ``CountVectorizer``'s ``r"(?u)\\b\\w\\w+\\b"``: dropping "a", "I",
        "2" or "u" is harmless for a bag of words but removes words from the
        sequence an attention model reads (and "u"/"2"/"4" are common words in
        SMS text). Pass ``r"(?u)\\b\\w\\w+\\b"`` for ``CountVectorizer``'s
        tokens. Documents are normalised to Unicode NFC before matching;
        punctuation, emoji, control characters and lone surrogates are
        separators under the default pattern (see :meth:`tokenize`).
    ngram_range : tuple (min_n, max_n), default=(1, 1)
        Terms are the word n-grams with ``min_n <= n <= max_n`` (words joined
        by one space, as in ``CountVectorizer``). A row holds the ``min_n``-grams
        in reading order, then the ``min_n + 1``-grams, and so on: ``(1, 2)``
        encodes "not very good" as ``not, very, good, not very, very good``.
        The vocabulary limits below apply to all terms together.
    char_ngram_range : tuple (min_c, max_c) or None, default=None
        If set, every word ``w`` also contributes the character n-grams of
        ``"<" + w + ">"`` with ``min_c <= n <= max_c`` as terms (fastText's
        subwords; the markers tell prefixes and suffixes from inner n-grams,
        and the markers alone are never 1-grams). They follow the word
        n-grams in the row: every word's ``min_c``-grams in reading order,
        then the ``min_c + 1``-grams, and so on, so ``(3, 4)`` appends
        ``<go, goo, ood, od>, <goo, good, ood>`` for "good". They count
        towards ``min_df``/``max_df``/``max_features`` like every other term,
        unknown ones are left out of the row (or hashed, with ``n_buckets``),
        and they are separate from words: the n-gram "her" of "where" does
        not share an id with the word "her" (in ``vocabulary_`` its key is
        the n-gram prefixed by ``"\\x00"``, ``CHAR_NGRAM_MARK``). Rows grow
        several-fold (about ``3 * len(w)`` positions per word for ``(3, 5)``),
        so raise ``max_len`` with them. None (the default) adds none.
    min_df : float in [0.0, 1.0] or int, default=1
        Ignore words that occur in fewer documents than this: an int is a
        count of documents, a float a proportion of the training documents.
    max_df : float in [0.0, 1.0] or int, default=1.0
        Ignore words that occur in more documents than this (int: count,
        float: proportion), e.g. corpus-specific stop words.
    max_features : int, default=None
        Keep only the ``max_features`` most frequent words (total count over
        the training documents) left after ``min_df``/``max_df``; ties are
        broken by code-point order of the word. None keeps all.
    n_buckets : int, default=0
        Terms outside the vocabulary (unseen, or pruned by the limits above)
        get one of ``n_buckets`` shared ids, chosen by a stable hash of the
        term (CRC-32), instead of ``UNK_ID``; with ``min_df=2``, say, the
        rare training terms then still train the rows that unseen terms of
        new documents fall into. With 0, an unknown word is ``UNK_ID`` and
        an unknown n-gram of two or more words is left out of the row (it
        would only repeat its words' ``UNK_ID``).
    max_len : int, default=256
        Longest sequence returned, counting the start token and the n-gram
        positions. Longer documents keep their longest prefix of words whose
        positions (words, word n-grams within the prefix and the words'
        character n-grams) fit; each
        :meth:`transform` call that cuts any document emits one
        ``UserWarning`` saying how many were cut. None never truncates. The
        vocabulary is always built from whole documents.
    add_start_token : bool, default=True
        Write ``START_ID`` at position 0 of every row. If False, an empty
        document is encoded as a single ``UNK_ID`` so that every row still has
        at least one real (non-padding) position.

    Attributes
    ----------
    vocabulary_ : dict of str to int
        Term (word, space-joined n-gram, or ``CHAR_NGRAM_MARK`` + character
        n-gram) to id (ids from 3, most frequent term first).
    n_vocabulary_ : int
        Number of ids, special ones and hash buckets included:
        ``3 + len(vocabulary_) + n_buckets``; the size of an embedding table
        for these sequences. Bucket ``b`` has id
        ``n_vocabulary_ - n_buckets + b``.

    See Also
    --------
    sklearn.feature_extraction.text.CountVectorizer : bag-of-words counts.

    Notes
    -----
    Ids:

    * ``0`` (``PAD_ID``): padding after the end of a document.
    * ``1`` (``UNK_ID``): a word not in the vocabulary.
    * ``2`` (``START_ID``): a start token written at position 0 of every row
      when ``add_start_token=True``. It gives every document, including an
      empty one or one made only of unknown words, at least one real position,
      so a model always has something to attend to and pool, and its
      prediction is finite (for an empty document it is a learned "no
      evidence" output rather than a division by zero).
    * ``3, 4, ...``: vocabulary terms, most frequent first (total count over
      the training documents, ties broken by code-point order of the term), so
      the ids are deterministic.
    * ``3 + len(vocabulary_), ...``: the ``n_buckets`` hash buckets, if any.

    ``transform`` returns one array of ids; the mask of real positions is
    ``ids != PAD_ID``. Rows are as long as the longest (possibly truncated)
    document in the call, so two calls can return different widths.

    Examples
    --------
    >>> from skattention.text import TextSequenceVectorizer
    >>> vec = TextSequenceVectorizer().fit(["the cat sat", "the dog"])
    >>> vec.transform(["the cat", "a bird", ""])
    array([[2, 3, 4],
           [2, 1, 1],
           [2, 0, 0]])
    >>> vec.inverse_transform([[2, 3, 1, 0]])
    [['<start>', 'the', '<unk>']]
    >>> bigrams = TextSequenceVectorizer(ngram_range=(1, 2)).fit(["not good", "good"])
    >>> bigrams.vocabulary_
    {'good': 3, 'not': 4, 'not good': 5}
    >>> bigrams.inverse_transform(bigrams.transform(["not good at all"]))
    [['<start>', 'not', 'good', '<unk>', '<unk>', 'not good']]
    """

    _parameter_constraints = {
        "lowercase": ["boolean"],
        "token_pattern": [str],
        "min_df": [Interval(RealNotInt, 0, 1, closed="both"),
                   Interval(numbers.Integral, 1, None, closed="left")],
        "max_df": [Interval(RealNotInt, 0, 1, closed="both"),
                   Interval(numbers.Integral, 1, None, closed="left")],
        "max_features": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "ngram_range": [tuple],
        "char_ngram_range": [tuple, None],
        "n_buckets": [Interval(numbers.Integral, 0, None, closed="left")],
        "max_len": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "add_start_token": ["boolean"],
    }

    def __init__(self, *, lowercase=True, token_pattern=DEFAULT_TOKEN_PATTERN,
                 ngram_range=(1, 1), char_ngram_range=None,
                 min_df=1, max_df=1.0, max_features=None, n_buckets=0, max_len=256,
                 add_start_token=True):
        self.lowercase = lowercase
        self.token_pattern = token_pattern
        self.ngram_range = ngram_range
        self.char_ngram_range = char_ngram_range
        self.min_df = min_df
        self.max_df = max_df
        self.max_features = max_features
        self.n_buckets = n_buckets
        self.max_len = max_len
        self.add_start_token = add_start_token

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.one_d_array = True
        tags.input_tags.two_d_array = False
        tags.transformer_tags.preserves_dtype = []
        return tags

    # ------------------------------------------------------------- tokenising

    def tokenize(self, doc):
        """Split one document into tokens (the words that get ids).

        Lower-cases (if ``lowercase``), normalises to Unicode NFC, then returns
        every match of ``token_pattern`` (the capturing group's text if it has
        one). Works for any ``str``, including emoji, control characters and
        lone surrogates, which the default pattern treats as separators.
        Needs no fitting.

        Parameters
        ----------
        doc : str

        Returns
        -------
        tokens : list of str
        """
        self._validate_params()
        if not isinstance(doc, str):
            raise TypeError(f"doc must be a str, got {type(doc).__name__}"
                            + ("; decode it first, e.g. doc.decode('utf-8')."
                               if isinstance(doc, (bytes, bytearray)) else "."))
        return self._tokenizer()(doc)

    def _tokenizer(self):
        return make_tokenizer(self.lowercase, self.token_pattern)

    def _tokenize_all(self, X):
        self._check_ngram_range()
        self._check_char_ngram_range()
        tokenize = self._tokenizer()
        return [tokenize(doc) for doc in check_documents(X)]

    def _check_ngram_range(self):
        ngram_range = self.ngram_range
        if (len(ngram_range) != 2
                or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool)
                           for n in ngram_range)
                or not 1 <= ngram_range[0] <= ngram_range[1]):
            raise ValueError(f"ngram_range must be a tuple (min_n, max_n) of ints with "
                             f"1 <= min_n <= max_n; got {ngram_range!r}.")
        return int(ngram_range[0]), int(ngram_range[1])

    def _check_char_ngram_range(self):
        """``(min_c, max_c)`` as ints, or None when character n-grams are off."""
        char_range = self.char_ngram_range
        if char_range is None:
            return None
        if (len(char_range) != 2
                or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool)
                           for n in char_range)
                or not 1 <= char_range[0] <= char_range[1]):
            raise ValueError(f"char_ngram_range must be None or a tuple (min_c, max_c) of "
                             f"ints with 1 <= min_c <= max_c; got {char_range!r}.")
        return int(char_range[0]), int(char_range[1])

    def _char_terms(self, tokens, char_range, cache):
        """Character n-gram keys of every word, as :meth:`_encode` orders them.

        Returns
        -------
        terms : list of (int, str)
            ``(index of the word, key)`` pairs; ``cache`` maps a word to its
            keys by n-gram size (``_char_ngrams`` of one size at a time).
        """
        min_c, max_c = char_range
        per_size = []
        for word in tokens:
            grams = cache.get(word)
            if grams is None:
                grams = cache[word] = [_char_ngrams(word, n, n)
                                       for n in range(min_c, max_c + 1)]
            per_size.append(grams)
        return [(i, key) for k in range(max_c - min_c + 1)
                for i, grams in enumerate(per_size) for key in grams[k]]

    def _terms(self, tokens, char_range=None, cache=None):
        """Every term of one tokenised document, n-gram by n-gram."""
        min_n, max_n = self._check_ngram_range()
        if min_n == max_n == 1:
            terms = tokens
        else:
            terms = list(itertools.chain.from_iterable(_ngrams(tokens, n)
                                                       for n in range(min_n, max_n + 1)))
        if char_range is not None:
            terms = terms + [key for _, key in self._char_terms(tokens, char_range, cache)]
        return terms

    # ------------------------------------------------------------- vocabulary

    def _build_vocabulary(self, tokenized):
        n_docs = len(tokenized)
        max_doc_count = (self.max_df if isinstance(self.max_df, numbers.Integral)
                         else self.max_df * n_docs)
        min_doc_count = (self.min_df if isinstance(self.min_df, numbers.Integral)
                         else self.min_df * n_docs)
        if max_doc_count < min_doc_count:
            raise ValueError(f"max_df={self.max_df!r} corresponds to fewer documents "
                             f"({max_doc_count:g}) than min_df={self.min_df!r} "
                             f"({min_doc_count:g}) for {n_docs} documents.")
        # Every term is in 1 to n_docs documents: document counts only matter
        # when the bounds can prune (a third of the vocabulary's cost).
        prune = min_doc_count > 1 or max_doc_count < n_docs
        term_counts = Counter()
        doc_counts = Counter()
        char_range = self._check_char_ngram_range()
        cache = {}
        for tokens in tokenized:
            terms = self._terms(tokens, char_range, cache)
            term_counts.update(terms)
            if prune:
                doc_counts.update(set(terms))
        if prune:
            words = [w for w, c in doc_counts.items() if min_doc_count <= c <= max_doc_count]
        else:
            words = list(term_counts)
        # Most frequent first, ties alphabetical: a stable sort by count
        # (reverse keeps the order of ties) after the C-level string sort,
        # several times faster than one sort on (-count, word) tuples.
        words.sort()
        words.sort(key=term_counts.__getitem__, reverse=True)
        if self.max_features is not None:
            words = words[:self.max_features]
        if not words:
            fate = "a hash bucket" if self.n_buckets else "UNK"
            warnings.warn("The vocabulary is empty (no token found, or all pruned by "
                          f"min_df/max_df): every word will be encoded as {fate}.",
                          UserWarning, stacklevel=4)
        self.vocabulary_ = dict(zip(words, range(_N_SPECIAL, _N_SPECIAL + len(words))))
        self.n_vocabulary_ = _N_SPECIAL + len(words) + self.n_buckets

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the vocabulary of the documents.

        Parameters
        ----------
        X : list of str, 1D ndarray of str, or pandas Series
            Training documents.
        y : None
            Ignored.

        Returns
        -------
        self : TextSequenceVectorizer
        """
        self._build_vocabulary(self._tokenize_all(X))
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None):
        """Learn the vocabulary and return the id sequences (tokenises once).

        Parameters
        ----------
        X : list of str, 1D ndarray of str, or pandas Series
        y : None
            Ignored.

        Returns
        -------
        ids : ndarray of shape (n_documents, max_length), int64
        """
        tokenized = self._tokenize_all(X)
        self._build_vocabulary(tokenized)
        ids, _, n_cut = self._encode(tokenized, want_tokens=False)
        self._warn_truncated(n_cut, len(tokenized))
        return ids

    # --------------------------------------------------------------- encoding

    def _encode(self, tokenized, want_tokens):
        min_n, max_n = self._check_ngram_range()
        char_range = self._check_char_ngram_range()
        char_cache = {}
        get = self.vocabulary_.get
        n_buckets = self.n_buckets
        bucket_offset = self.n_vocabulary_ - n_buckets
        start = self.add_start_token
        limit = None if self.max_len is None else self.max_len - int(start)
        rows, token_rows, n_cut = [], [], 0
        for tokens in tokenized:
            if not want_tokens:
                # Fast path: ids straight from the terms, without the text of
                # each term that explain() needs.
                row = self._row_ids(tokens, min_n, max_n, get, bucket_offset)
                char_terms = None
                if char_range is not None:
                    char_terms = self._char_terms(tokens, char_range, char_cache)
                    row.extend(self._char_ids(char_terms, get, bucket_offset))
                if limit is not None and len(row) > limit:
                    row = self._prefix_ids(tokens, min_n, max_n, char_terms, get,
                                           bucket_offset, limit)
                    n_cut += 1
                if start:
                    row.insert(0, START_ID)
                elif not row:
                    row = [UNK_ID]
                rows.append(row)
                continue
            # (index of the term's last word, id, text) for every emitted term,
            # n-gram order by n-gram order, each in reading order.
            terms = []
            for n in range(min_n, max_n + 1):
                for end, term in enumerate(_ngrams(tokens, n), start=n - 1):
                    j = get(term)
                    if j is None:
                        if n_buckets:
                            j = bucket_offset + _bucket(term, n_buckets)
                        elif n == 1:
                            j = UNK_ID
                        else:
                            continue
                    terms.append((end, j, term))
            if char_range is not None:
                for end, key in self._char_terms(tokens, char_range, char_cache):
                    j = get(key)
                    if j is None:
                        if not n_buckets:
                            continue
                        j = bucket_offset + _bucket(key, n_buckets)
                    terms.append((end, j, key[1:]))
            if limit is not None and len(terms) > limit:
                # Keep the longest prefix of words whose terms all fit, so
                # that a cut document is encoded as its prefix would be.
                per_word = np.bincount([t[0] for t in terms], minlength=len(tokens))
                n_words = int(np.searchsorted(np.cumsum(per_word), limit, side="right"))
                terms = [t for t in terms if t[0] < n_words]
                n_cut += 1
            row = [t[1] for t in terms]
            if start:
                row.insert(0, START_ID)
            elif not row:
                row = [UNK_ID]
            rows.append(row)
            if want_tokens:
                texts = [t[2] for t in terms]
                if start:
                    texts.insert(0, START_TOKEN)
                elif not texts:
                    texts = [UNK_TOKEN]
                token_rows.append(texts)
        lengths = np.fromiter(map(len, rows), dtype=np.intp, count=len(rows))
        width = int(lengths.max())
        ids = np.zeros((len(rows), width), dtype=np.int64)
        ids[np.arange(width) < lengths[:, None]] = np.fromiter(
            itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        return ids, token_rows, n_cut

    def _row_ids(self, tokens, min_n, max_n, get, bucket_offset):
        """Ids of every term of one document, as :meth:`_encode` orders them.

        Returns
        -------
        row : list of int
            n-gram order by n-gram order, each in reading order; unknown
            words are ``UNK_ID`` (or their hash bucket), unknown longer
            n-grams are skipped (or hashed).
        """
        n_buckets = self.n_buckets
        row = []
        for n in range(min_n, max_n + 1):
            terms = _ngrams(tokens, n)
            if n_buckets:
                row.extend([j if j is not None else bucket_offset + _bucket(term, n_buckets)
                            for j, term in zip(map(get, terms), terms)])
            elif n == 1:
                row.extend(map(get, terms, itertools.repeat(UNK_ID)))
            else:
                row.extend([j for j in map(get, terms) if j is not None])
        return row

    def _prefix_ids(self, tokens, min_n, max_n, char_terms, get, bucket_offset, limit):
        """Ids of the longest prefix of words whose terms fit in ``limit`` positions.

        The vectorised form of the truncation in :meth:`_encode`'s term by
        term path (which :meth:`transform_with_tokens` takes): the same
        terms, in the same order, as a cut document's prefix would give.

        Returns
        -------
        row : list of int
        """
        terms, ends = [], []
        for n in range(min_n, max_n + 1):
            grams = _ngrams(tokens, n)
            terms.extend(grams)
            ends.append(np.arange(n - 1, n - 1 + len(grams)))
        if char_terms is not None:
            terms.extend(key for _, key in char_terms)
            ends.append(np.fromiter((end for end, _ in char_terms), dtype=np.intp,
                                    count=len(char_terms)))
        ids = np.fromiter(map(get, terms, itertools.repeat(-1)), dtype=np.int64,
                          count=len(terms))
        ends = np.concatenate(ends)
        missing = np.flatnonzero(ids < 0)
        if self.n_buckets:
            for i in missing:
                ids[i] = bucket_offset + _bucket(terms[i], self.n_buckets)
        elif min_n == 1:
            # Unknown words are UNK; unknown n-grams and character n-grams
            # take no position.
            words = missing[missing < len(tokens)]
            ids[words] = UNK_ID
        kept = ids >= 0
        ids, ends = ids[kept], ends[kept]
        per_word = np.bincount(ends, minlength=len(tokens))
        n_words = int(np.searchsorted(np.cumsum(per_word), limit, side="right"))
        return ids[ends < n_words].tolist()

    def _char_ids(self, char_terms, get, bucket_offset):
        """Ids of the character n-grams from :meth:`_char_terms`: unknown ones
        skipped, or hashed (by their key) when ``n_buckets`` is set."""
        n_buckets = self.n_buckets
        keys = [key for _, key in char_terms]
        if n_buckets:
            return [j if j is not None else bucket_offset + _bucket(key, n_buckets)
                    for j, key in zip(map(get, keys), keys)]
        return [j for j in map(get, keys) if j is not None]

    def _warn_truncated(self, n_cut, n_docs):
        if n_cut:
            kept = self.max_len - int(self.add_start_token)
            plus = " (plus the start token)" if self.add_start_token else ""
            if tuple(self.ngram_range) == (1, 1) and self.char_ngram_range is None:
                what = f"their first {kept} tokens{plus}."
            else:
                what = (f"the longest prefix of words whose terms (words and n-grams) fit in "
                        f"{kept} positions{plus}.")
            warnings.warn(f"{n_cut} of {n_docs} documents had more than max_len={self.max_len} "
                          f"positions and were truncated to {what}", UserWarning, stacklevel=4)

    def transform(self, X):
        """Encode documents as padded id sequences.

        Parameters
        ----------
        X : list of str, 1D ndarray of str, or pandas Series

        Returns
        -------
        ids : ndarray of shape (n_documents, max_length), int64
            Row ``i`` holds document ``i``'s ids followed by ``PAD_ID``
            (``0``); ``max_length`` is the longest row in this call (at least
            1, at most ``max_len``). Unseen words are ``UNK_ID``.
        """
        ids, _ = self._transform(X, want_tokens=False)
        return ids

    def transform_with_tokens(self, X):
        """Encode documents and also return the token text of every position.

        Parameters
        ----------
        X : list of str, 1D ndarray of str, or pandas Series

        Returns
        -------
        ids : ndarray of shape (n_documents, max_length), int64
            As :meth:`transform`.
        tokens : list of list of str
            ``tokens[i][j]`` is the text at ``ids[i, j]`` for every real
            position (``len(tokens[i]) == (ids[i] != 0).sum()``): ``"<start>"``
            for the start token, and the term (word, n-gram with its words
            joined by one space, or character n-gram such as ``"<go"``) as
            written after lower-casing for every other position, unknown
            and hashed terms included (unlike :meth:`inverse_transform`,
            which shows them as ``"<unk>"`` or ``"<bucket b>"``).
        """
        return self._transform(X, want_tokens=True)

    def _transform(self, X, want_tokens):
        check_is_fitted(self, "vocabulary_")
        self._validate_params()
        self._check_ngram_range()
        self._check_char_ngram_range()
        docs = check_documents(X)
        tokenize = self._tokenizer()
        # Tokens as Python objects take ~1 KB per short document, ten times
        # the documents themselves: tokenising and encoding a chunk at a
        # time keeps only the int64 ids of the whole call.
        parts, token_rows, n_cut = [], [], 0
        for start in range(0, len(docs), ENCODE_CHUNK):
            tokenized = [tokenize(doc) for doc in docs[start:start + ENCODE_CHUNK]]
            ids, rows, cut = self._encode(tokenized, want_tokens)
            parts.append(ids)
            token_rows.extend(rows)
            n_cut += cut
        self._warn_truncated(n_cut, len(docs))
        return _stack_padded(parts), token_rows

    def inverse_transform(self, X):
        """Map id sequences back to tokens.

        Parameters
        ----------
        X : array-like of shape (n_documents, length) of int, or a list of 1D
            int sequences of any lengths

        Returns
        -------
        tokens : list of list of str
            Padding is dropped; ``START_ID`` and ``UNK_ID`` are rendered as
            ``"<start>"`` and ``"<unk>"``, hash bucket ``b`` as
            ``"<bucket b>"``.
        """
        check_is_fitted(self, "vocabulary_")
        if hasattr(X, "to_numpy"):
            X = X.to_numpy()
        if isinstance(X, np.ndarray) or not hasattr(X, "__len__"):
            arr = np.asarray(X)
            if arr.ndim != 2:
                raise ValueError(f"expected a 2D array of ids, got shape {arr.shape}.")
            rows = list(arr)
        else:
            rows = [np.asarray(row) for row in X]
        n = self.n_vocabulary_
        id_to_token = self._id_to_token()
        n_known = len(id_to_token)
        out = []
        for i, row in enumerate(rows):
            if row.ndim != 1:
                raise ValueError(f"row {i} of ids has shape {row.shape}; expected 1D.")
            if row.size and row.dtype.kind not in "iu":
                raise TypeError(f"ids must be integers, got dtype {row.dtype} in row {i}.")
            bad = (row < 0) | (row >= n)
            if bad.any():
                raise ValueError(f"row {i} holds id {row[bad][0]}, outside [0, {n}).")
            out.append([id_to_token[j] if j < n_known else f"<bucket {j - n_known}>"
                        for j in row.tolist() if j != PAD_ID])
        return out

    def _id_to_token(self):
        """Text of every id below the buckets: special tokens, then the vocabulary.

        Returns
        -------
        tokens : list of str of length ``n_vocabulary_ - n_buckets``
        """
        tokens = [PAD_TOKEN, UNK_TOKEN, START_TOKEN] + [UNK_TOKEN] * len(self.vocabulary_)
        for term, j in self.vocabulary_.items():
            tokens[j] = _term_text(term)
        return tokens
