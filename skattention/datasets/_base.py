"""Loaders for the small real text data sets shipped inside the package.

The files live in ``skattention/datasets/data`` as xz-compressed UTF-8 TSVs
(header ``text<TAB>label``, CSV-style quoting of fields that hold ``"``), so
loading never touches the network.
"""

from importlib import resources

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

__all__ = ["load_sms_spam", "load_sst2"]

_SST2_SUBSETS = ("train", "dev", "test")


def _resource(name):
    return resources.files(__package__).joinpath("data", name)


def _read_tsv(name):
    with _resource(name).open("rb") as f:
        frame = pd.read_csv(f, sep="\t", keep_default_na=False, compression="xz",
                            dtype={"text": str}, encoding="utf-8")
    return frame


def _descr(name):
    return _resource(name).read_text(encoding="utf-8")


def _bunch(text, target, target_names, descr_name, data_name, as_frame, return_X_y):
    target = np.asarray(target, dtype=np.int64)
    if as_frame:
        frame = pd.DataFrame({"text": pd.Series(text, dtype="str"), "target": target})
        data, target = frame["text"], frame["target"]
    else:
        frame = None
        data = [str(t) for t in text]
    if return_X_y:
        return data, target
    return Bunch(data=data, target=target, target_names=np.asarray(target_names),
                 frame=frame, DESCR=_descr(descr_name),
                 filename=str(_resource(data_name)))


def load_sms_spam(*, return_X_y=False, as_frame=False):
    """Load the SMS Spam Collection (5,574 messages, ham or spam).

    ============== =========================
    Samples        5,574
    Classes        2 (ham 4,827, spam 747)
    Text           raw SMS messages
    ============== =========================

    Read :ref:`the description <sms_spam_dataset>` (``DESCR``) for source,
    citation and terms.

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    as_frame : bool, default=False
        If True, ``data`` is a pandas Series of str named ``"text"``,
        ``target`` an int Series named ``"target"``, and ``frame`` a DataFrame
        with both columns (as scikit-learn's loaders do).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        data : list of str (Series if ``as_frame``)
            The messages, in the original order.
        target : ndarray of shape (5574,), int64 (Series if ``as_frame``)
            0 = ham, 1 = spam.
        target_names : ndarray of str
            ``["ham", "spam"]``.
        frame : DataFrame or None
            Columns ``text`` and ``target`` if ``as_frame``, else None.
        DESCR : str
            Description, source, citation and terms.
        filename : str
            Path of the compressed TSV.
    (data, target) : tuple if ``return_X_y``

    Examples
    --------
    >>> from skattention.datasets import load_sms_spam
    >>> sms = load_sms_spam()
    >>> len(sms.data), sms.target_names.tolist(), int(sms.target.sum())
    (5574, ['ham', 'spam'], 747)
    """
    name = "sms_spam.tsv.xz"
    raw = _read_tsv(name)
    target_names = ["ham", "spam"]
    labels = raw["label"].to_numpy(dtype=object)
    unknown = set(labels) - set(target_names)
    if unknown:  # pragma: no cover - guards the shipped file
        raise ValueError(f"unexpected labels in {name}: {sorted(unknown)}")
    target = (labels == "spam").astype(np.int64)
    return _bunch(raw["text"].tolist(), target, target_names, "sms_spam.rst", name,
                  as_frame, return_X_y)


def load_sst2(*, subset="train", return_X_y=False, as_frame=False):
    """Load SST-2, binary sentiment of movie-review sentences and phrases.

    ======= ======= ===================================================
    subset  rows    classes (0 = negative, 1 = positive)
    ======= ======= ===================================================
    train   67,349  0: 29,780, 1: 37,569 (GLUE train: phrases + sentences)
    dev     872     0: 428, 1: 444 (GLUE dev, the usual reporting split)
    test    1,821   0: 912, 1: 909 (Kim 2014's labelled test sentences)
    ======= ======= ===================================================

    Texts are already tokenised and lower-cased by the original authors.
    Read :ref:`the description <sst2_dataset>` (``DESCR``) for source,
    citation and terms.

    Parameters
    ----------
    subset : {"train", "dev", "test"}, default="train"
        Which split to load.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    as_frame : bool, default=False
        If True, ``data`` is a pandas Series of str named ``"text"``,
        ``target`` an int Series named ``"target"``, and ``frame`` a DataFrame
        with both columns.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        data : list of str (Series if ``as_frame``)
        target : ndarray of shape (n,), int64 (Series if ``as_frame``)
            0 = negative, 1 = positive.
        target_names : ndarray of str
            ``["negative", "positive"]``.
        frame : DataFrame or None
        DESCR : str
        filename : str
            Path of the compressed TSV.
    (data, target) : tuple if ``return_X_y``

    Examples
    --------
    >>> from skattention.datasets import load_sst2
    >>> dev = load_sst2(subset="dev")
    >>> len(dev.data), dev.target_names.tolist()
    (872, ['negative', 'positive'])
    """
    if subset not in _SST2_SUBSETS:
        raise ValueError(f"subset must be one of {list(_SST2_SUBSETS)}, got {subset!r}.")
    name = f"sst2_{subset}.tsv.xz"
    raw = _read_tsv(name)
    return _bunch(raw["text"].tolist(), raw["label"].to_numpy(), ["negative", "positive"],
                  "sst2.rst", name, as_frame, return_X_y)
