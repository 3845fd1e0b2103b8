"""Time series classification: skattention's AttentionClassifier vs aeon's MiniRocket.

Accuracy and fit time on three UCR/UEA problems that aeon's wheel ships
(GunPoint, ItalyPowerDemand, BasicMotions), with their official train/test
splits, in one run.

aeon 1.x pins numba < 0.64 (and pandas < 3.1), so it cannot share
skattention's environment. This script runs in skattention's environment and
runs itself a second time, under ``--aeon-python``, in a separate virtual
environment that has aeon::

    python3 -m venv /tmp/aeon-venv && /tmp/aeon-venv/bin/pip install aeon
    python benchmarks/bench_timeseries.py --aeon-python /tmp/aeon-venv/bin/python

(from a checkout with skattention installed, or with ``PYTHONPATH=.``). The
aeon side loads each problem from the copy bundled with aeon (nothing is
downloaded), writes the train/test arrays to ``.npz`` files in a temporary
folder and fits ``MiniRocketClassifier`` (MiniRocket -> StandardScaler ->
RidgeClassifierCV, aeon's standard pipeline) on them, writing accuracies and
fit times to a ``.json`` file. This side reads the same arrays and fits
``AttentionClassifier`` on them (aeon's ``(n_cases, n_channels,
n_timepoints)`` layout, so ``channels_first=True``).

How the AttentionClassifier settings are chosen (on the training splits
only; the test splits are used for nothing but the final scores):

* fixed for all problems, from ``--screen`` (below) and reasoning about 40-67
  training cases: a small network (``d_model=32``, 4 heads, 1 layer), no
  dropout, mini-batches of 16 (several updates per epoch), Adam with a
  cosine learning-rate schedule from 3e-3 to 0 over a fixed 150 epochs
  (``learning_rate="cosine"``: the last epochs take ever smaller steps, so
  the fit ends in a settled place rather than wherever the last constant-rate
  step threw it). The loss-plateau stop is switched off
  (``n_iter_no_change=max_iter``): these losses sit at log(2) for the first
  tens of epochs and the default rule stops there; ``early_stopping`` would
  hold out 4-7 cases, too few to score on. The tokenizer adds each channel's
  first differences as extra channels (``derivative=True``), so that a token
  carries slope as well as level.
* cross-validated per problem (``GridSearchCV``, 5-fold stratified CV
  repeated twice on the training split, one seed; the lowest held-out log
  loss wins, since accuracy on 8-14 held-out cases ties often): the rest of the
  preprocessing, applied identically to train and test inside a
  ``Pipeline`` by :class:`SeriesTokenizer`:

  - ``normalize``: "series" (z-normalise every series per channel, the UCR
    convention) or "global" (one mean and scale per channel fitted on the
    training cases, which keeps differences in amplitude between cases);
  - ``patch_len``: 8 or 16 (overlapping windows with stride
    ``patch_len // 2``, one token each, as in PatchTST), so that a token
    carries local shape instead of a single value.

  Ties go to the earlier candidate (series before global, shorter patches
  first).

``--screen`` runs, instead of the benchmark, the candidates in ``SCREEN``
(the previous settings, each change on its own, and rejected alternatives:
other learning rates, warm-up, dropout, mean pooling, a wider model) through
stratified 5-fold CV on the training splits with seeds 0-4 and writes
``benchmarks/results_timeseries_screen.md``. There, first differences halve
the CV log loss on GunPoint and cut it by a quarter on BasicMotions; the
cosine schedule at 3e-3 matches the constant 1e-3 in accuracy with a lower
GunPoint log loss (0.17 vs 0.23); no alternative (cosine at 1e-2, warm-up,
dropout, mean pooling, d_model 64) is better on all three problems, and
d_model 64 doubles the fit time. Patches of 16 win on GunPoint and lose
badly on BasicMotions, and global z-normalisation wins on BasicMotions:
hence the per-problem grid.

Seed ensemble (issue #3; the rule below was written and committed before
the ensemble was screened, by someone who had read this script, including
the first run's per-seed test accuracies quoted in its disclosure, but no
report of a later run's test scores). The small network's result moves from
seed to seed on 40-67 training cases (GunPoint CV accuracy 0.90-0.96 over
seeds in the screen), and averaging several seeds' probabilities is the
standard way to reduce that variance. ``--screen-ensemble`` compares, on the
training splits only and with the same CV as ``--screen`` (seeds 0-4,
stratified 5-fold), the single model with a seed ensemble of five
(``SeedAveragedClassifier``: the mean ``predict_proba`` of five copies of the
classifier that differ only in ``random_state``; ensemble seed s uses member
seeds 5s, ..., 5s+4) at the three preprocessings that the screen or the grid
have preferred (series z-norm with patches of 8 and of 16, global z-norm with
patches of 8) on all three problems: 9 pairs, written to
``benchmarks/results_timeseries_screen_ensemble.md``. Rule: ``N_MEMBERS`` is
set to 5 if, averaged over the 9 pairs, the ensemble's CV log loss is lower
than the single model's *and* its CV accuracy is not lower (full precision);
otherwise it stays 1 (the single model). Only ensembles of five are screened
(no search over the size or anything else). If the ensemble is adopted, the
per-problem preprocessing grid runs over the ensemble (ensemble seed 0, i.e.
members 0-4) with the same candidates, CV, log-loss score and tie rule; the
benchmark seeds 0, 1, 2 are ensemble seeds (members 0-4, 5-9, 10-14); the
reported fit time is the whole ensemble's (five fits, one after another). The
full benchmark is then run once and reported as it comes out.

Outcome of ``--screen-ensemble``: averaged over the 9 pairs, CV accuracy
0.9411 (single model) vs 0.9520 (ensemble of five) and CV log loss 0.2445 vs
0.1917, so ``N_MEMBERS = 5`` (at 4.5x the time).

Both libraries run their Numba kernels on ``--n-jobs`` threads (default 2).
Each is warmed up on the problem (untimed) before its timed fits, so no fit
time includes JIT compilation. Each reported number is the mean (± standard
deviation) over ``--seeds`` (default 0 1 2) of a fit on the full training
split and a score on the test split.

Run ``--help`` for the options; the markdown report goes to stdout and to
``benchmarks/results_timeseries.md``.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

DATASETS = ("GunPoint", "ItalyPowerDemand", "BasicMotions")
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUTPUT = os.path.join(HERE, "results_timeseries.md")

SCREEN_OUTPUT = os.path.join(HERE, "results_timeseries_screen.md")

# Fixed AttentionClassifier settings (see the module docstring for why).
MAX_ITER = 150
FIXED_PARAMS = dict(d_model=32, n_heads=4, n_layers=1, dropout=0.0, solver="adam",
                    learning_rate_init=3e-3, learning_rate="cosine", batch_size=16,
                    max_iter=MAX_ITER, n_iter_no_change=MAX_ITER, alpha=1e-4,
                    pooling="attention", positional="sinusoidal", channels_first=True)
# Fixed preprocessing: first differences as extra channels (see the docstring).
FIXED_TOKENS = dict(derivative=True)
# Cross-validated preprocessing (candidate order breaks ties).
PARAM_GRID = [
    {"tokens__normalize": ["series"], "tokens__patch_len": [8, 16]},
    {"tokens__normalize": ["global"], "tokens__patch_len": [8, 16]},
]
FIXED_TOKENS_TEXT = ", ".join(f"{k}={v!r}" for k, v in FIXED_TOKENS.items())
CV_REPEATS = 2
# --screen: the candidates the fixed settings were chosen from, each a change
# to the pipeline above (seeds 0-4, 5-fold CV on the training split only).
PREVIOUS = {"clf__learning_rate": "constant", "clf__learning_rate_init": 1e-3,
            "tokens__derivative": False, "tokens__patch_len": 8}
SCREEN = [
    ("previous: constant 1e-3, patches 8, series z-norm", PREVIOUS),
    ("+ cosine 3e-3", {**PREVIOUS, "clf__learning_rate": "cosine",
                       "clf__learning_rate_init": 3e-3}),
    ("+ cosine 3e-3 + derivative (chosen fixed), patches 8", {"tokens__patch_len": 8}),
    ("chosen fixed, patches 16", {"tokens__patch_len": 16}),
    ("chosen fixed, patches 8, global z-norm", {"tokens__patch_len": 8,
                                                "tokens__normalize": "global"}),
    ("chosen fixed, patches 16, global z-norm", {"tokens__patch_len": 16,
                                                 "tokens__normalize": "global"}),
    ("chosen, patches 8, constant 1e-3", {"tokens__patch_len": 8,
                                          "clf__learning_rate": "constant",
                                          "clf__learning_rate_init": 1e-3}),
    ("chosen, patches 8, cosine 1e-2", {"tokens__patch_len": 8,
                                        "clf__learning_rate_init": 1e-2}),
    ("chosen, patches 8, + warm-up 10 epochs", {"tokens__patch_len": 8,
                                                "clf__warmup_iter": 10}),
    ("chosen, patches 8, dropout 0.1", {"tokens__patch_len": 8, "clf__dropout": 0.1}),
    ("chosen, patches 8, mean pooling", {"tokens__patch_len": 8, "clf__pooling": "mean"}),
    ("chosen, patches 8, d_model 64", {"tokens__patch_len": 8, "clf__d_model": 64}),
]
SCREEN_SEEDS = (0, 1, 2, 3, 4)
# Seed ensemble (issue #3): members averaged by the benchmarked classifier; 1
# is the single model. Set by the rule in the module docstring from
# --screen-ensemble, whose candidates follow (single vs ensemble of 5 at the
# three preprocessings the screen or the grid have preferred).
N_MEMBERS = 5
SCREEN_ENSEMBLE_MEMBERS = 5
SCREEN_ENSEMBLE_OUTPUT = os.path.join(HERE, "results_timeseries_screen_ensemble.md")
_PREPROCESSINGS = [
    ("patches 8, series z-norm", {"tokens__patch_len": 8}),
    ("patches 16, series z-norm", {"tokens__patch_len": 16}),
    ("patches 8, global z-norm", {"tokens__patch_len": 8, "tokens__normalize": "global"}),
]
SCREEN_ENSEMBLE = [
    (f"{kind}, {label}", {**params, "members": members})
    for label, params in _PREPROCESSINGS
    for kind, members in (("single model", 1),
                          (f"ensemble of {SCREEN_ENSEMBLE_MEMBERS}", SCREEN_ENSEMBLE_MEMBERS))
]
# Part of every report, so that the numbers are read for what they are.
SELECTION_HISTORY = (
    "**Disclosure: one change after seeing test scores.** The first full run at these "
    "settings (commit ee63fde, 2026-11-25) chose the preprocessing by CV *accuracy*. On "
    "GunPoint all four candidates tied at 0.960, the tie went to series z-norm with patches "
    "of 8, and the test accuracies were 0.9667, 0.9600, 0.8733 (GunPoint) / 0.9582, 0.9563, "
    "0.9602 (ItalyPowerDemand) / 1.0, 1.0, 1.0 (BasicMotions): mean 0.9638 against "
    "MiniRocket's 0.9862, -2.2 points (`benchmarks/results_timeseries_first_run.md`). The "
    "selection score was then changed to the CV log loss, which the training-split screen "
    "had shown to separate candidates that accuracy ties on (there GunPoint patches 16 vs 8: "
    "log loss 0.119 vs 0.168). In this benchmark's own CV (one classifier seed, two "
    "repeats) log loss also prefers patches of 8 on GunPoint (0.119 vs 0.199), so every "
    "problem gets the same preprocessing as in the first run and the same test accuracies "
    "(the later runs only fixed how near-ties in log loss are broken, series and global "
    "z-norm differing by float noise there, and this report's commit label and wording; "
    "the test accuracies were the same in every one). No setting was "
    "changed after that, so the result stands as measured: the changes "
    "above took the whole run from 44 min (two threads, loaded machine) to under 2 min (one "
    "thread) and closed 0.4 of the 0.6 points missing, and "
    "GunPoint seed 2 still generalises worse than seeds 0 and 1 (all three fit the training "
    "split perfectly, training loss < 0.002).")
# The rule's commit, and what the rule gave on the training splits.
RULE_COMMIT = "a086705"
ENSEMBLE_SCREEN = (
    "Outcome (`--screen-ensemble`, `benchmarks/results_timeseries_screen_ensemble.md`): mean "
    "CV accuracy 0.9411 (single) vs 0.9520 (ensemble), mean CV log loss 0.2445 vs 0.1917, so "
    "the ensemble was adopted (`N_MEMBERS = 5`); it was better or equal in accuracy on all 9 "
    "pairs (GunPoint patches 8: 0.944 -> 0.956, log loss 0.168 -> 0.121) and worse in log loss "
    "on two (ItalyPowerDemand patches 16: 0.219 -> 0.222; BasicMotions global z-norm: 0.011 -> "
    "0.019), at 4.5x the CV time.")
ENSEMBLE_HISTORY = (
    "**Second change (issue #3): a seed ensemble, fixed on the training splits before this run."
    "** The runs described above ended at -2.2 points against MiniRocket, 0.2 points short of "
    "the target, which the issue put down to the seed-to-seed variance of the small network on "
    "40-67 training cases (GunPoint CV accuracy 0.90-0.96 over seeds in the training-split "
    "screen). A seed ensemble (five copies differing only in `random_state`, probabilities "
    "averaged) and the rule for adopting it were written into this script's docstring and "
    f"committed (commit {RULE_COMMIT}) by someone who had read the script, including the first "
    "run's per-seed test accuracies quoted above, and the training-split screen, but not the "
    "reports of the test scores (`benchmarks/results_timeseries.md`, "
    "`benchmarks/results_timeseries_first_run.md`). Rule: adopt the ensemble if, averaged over "
    "the three problems at three preprocessings (9 pairs; seeds 0-4, stratified 5-fold CV on "
    "the training splits only), its CV log loss is lower than the single model's and its CV "
    "accuracy not lower. " + ENSEMBLE_SCREEN + " The benchmark was then run once with that "
    "setting and nothing was changed after it; this report is that run: {gap:+.1f} points, "
    "target {verdict}.")


def log(message):
    print(message, file=sys.stderr, flush=True)


def mean_std(values):
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


# ------------------------------------------------------------------ aeon side
# Runs under --aeon-python; imports aeon, numpy and scikit-learn only.

def aeon_worker(workdir, names, seeds, n_jobs, export_only=False):
    """Export each bundled problem to ``workdir`` and benchmark MiniRocket on it."""
    import aeon
    import numba
    import sklearn
    from aeon.classification.convolution_based import MiniRocketClassifier
    from aeon.datasets import load_classification

    bundled = os.path.join(os.path.dirname(aeon.__file__), "datasets", "data")
    results = {"aeon": aeon.__version__, "numba": numba.__version__, "numpy": np.__version__,
               "sklearn": sklearn.__version__, "python": platform.python_version(),
               "datasets": {}}
    for name in names:
        if not os.path.isfile(os.path.join(bundled, name, f"{name}_TRAIN.ts")):
            raise SystemExit(f"{name} is not bundled with aeon {aeon.__version__} "
                             f"(looked in {bundled}); refusing to download it.")
        # extract_path points at aeon's own data folder: the bundled files
        # are read and nothing is fetched.
        X_train, y_train = load_classification(name, split="train", extract_path=bundled)
        X_test, y_test = load_classification(name, split="test", extract_path=bundled)
        X_train, X_test = (np.ascontiguousarray(a, dtype=np.float64) for a in (X_train, X_test))
        y_train, y_test = (np.asarray(a).astype(str) for a in (y_train, y_test))
        np.savez(os.path.join(workdir, f"{name}.npz"), X_train=X_train, y_train=y_train,
                 X_test=X_test, y_test=y_test)
        if export_only:
            continue

        # Warm-up (JIT compilation or loading aeon's Numba cache), untimed.
        MiniRocketClassifier(n_jobs=n_jobs, random_state=0).fit(X_train, y_train)
        runs = []
        for seed in seeds:
            clf = MiniRocketClassifier(n_jobs=n_jobs, random_state=seed)
            start = time.perf_counter()
            clf.fit(X_train, y_train)
            fit_s = time.perf_counter() - start
            start = time.perf_counter()
            accuracy = float(np.mean(clf.predict(X_test) == y_test))
            predict_s = time.perf_counter() - start
            runs.append({"seed": seed, "accuracy": accuracy, "fit_s": fit_s,
                         "predict_s": predict_s})
            print(f"[aeon] {name} seed {seed}: accuracy {accuracy:.4f}, fit {fit_s:.2f} s",
                  file=sys.stderr, flush=True)
        results["datasets"][name] = {"runs": runs}
    results["numba_threads"] = numba.get_num_threads()
    results["numba_threading_layer"] = _threading_layer(numba)
    with open(os.path.join(workdir, "aeon_results.json"), "w") as handle:
        json.dump(results, handle, indent=1)


def _threading_layer(numba):
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel region has run
        return "not initialised"


# ----------------------------------------------------------- skattention side

def _import_skattention():
    try:
        import skattention
    except ImportError:  # running from a checkout that is not installed
        sys.path.insert(0, os.path.dirname(HERE))
        import skattention
    return skattention


def make_tokenizer_class():
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.utils.validation import check_is_fitted

    class SeriesTokenizer(TransformerMixin, BaseEstimator):
        """Normalise series and cut them into tokens, in aeon's layout.

        Parameters
        ----------
        normalize : {"series", "global", "none"}, default="series"
            "series": z-normalise each series of each channel over time;
            "global": subtract and divide by each channel's mean and standard
            deviation over all training cases and time points.
        patch_len : int, default=1
            Points per token: 1 keeps one token per time point; larger values
            make each token a window of ``patch_len`` points (its features
            are channel-major: channel 0's points, then channel 1's, ...).
        stride : int or None, default=None
            Step between windows; None means ``max(1, patch_len // 2)``. A
            last window ending on the final point is added when the stride
            does not land there.
        derivative : bool, default=False
            Append each channel's first differences (after normalising; 0 at
            the first point) as extra channels, before cutting tokens.

        Input and output are ``(n_cases, n_channels, n_timepoints)``; the
        output has ``n_channels * patch_len`` channels (twice that with
        ``derivative``) and one time point per token.
        """

        def __init__(self, normalize="series", patch_len=1, stride=None, derivative=False):
            self.normalize = normalize
            self.patch_len = patch_len
            self.stride = stride
            self.derivative = derivative

        def fit(self, X, y=None):
            X = self._check(X)
            if self.normalize == "global":
                self.mean_ = X.mean(axis=(0, 2))
                self.scale_ = X.std(axis=(0, 2))
                self.scale_[self.scale_ == 0] = 1.0
            self.n_timepoints_ = X.shape[2]
            return self

        def _check(self, X):
            X = np.asarray(X, dtype=np.float64)
            if X.ndim != 3:
                raise ValueError(f"Expected (n_cases, n_channels, n_timepoints); got {X.shape}.")
            if self.normalize not in ("series", "global", "none"):
                raise ValueError(f"Unknown normalize={self.normalize!r}.")
            return X

        def transform(self, X):
            check_is_fitted(self, "n_timepoints_")
            X = self._check(X)
            if self.normalize == "series":
                scale = X.std(axis=2, keepdims=True)
                scale[scale == 0] = 1.0
                X = (X - X.mean(axis=2, keepdims=True)) / scale
            elif self.normalize == "global":
                X = (X - self.mean_[None, :, None]) / self.scale_[None, :, None]
            if self.derivative:
                # First differences (0 at the first point) as extra channels.
                X = np.concatenate([X, np.diff(X, axis=2, prepend=X[:, :, :1])], axis=1)
            length = self.patch_len
            if length == 1:
                return X
            n_cases, n_channels, n_timepoints = X.shape
            length = min(length, n_timepoints)
            stride = self.stride or max(1, length // 2)
            starts = list(range(0, n_timepoints - length + 1, stride))
            if starts[-1] != n_timepoints - length:
                starts.append(n_timepoints - length)
            index = np.asarray(starts)[:, None] + np.arange(length)   # (tokens, length)
            windows = X[:, :, index]                   # (cases, channels, tokens, length)
            return np.ascontiguousarray(
                windows.transpose(0, 1, 3, 2).reshape(n_cases, n_channels * length, len(starts)))

    return SeriesTokenizer


def make_ensemble_class():
    from sklearn.base import BaseEstimator, ClassifierMixin, clone
    from sklearn.utils.validation import check_is_fitted

    class SeedAveragedClassifier(ClassifierMixin, BaseEstimator):
        """Average ``predict_proba`` over copies that differ only in their seed.

        Parameters
        ----------
        estimator : classifier with ``random_state`` and ``predict_proba``
        n_members : int, default=5
        random_state : int, default=0
            Member ``i`` is fitted with ``random_state * n_members + i``, so
            that ensembles with different seeds share no member.

        ``X`` is passed to the members unchanged (3D arrays included).
        """

        def __init__(self, estimator, n_members=5, random_state=0):
            self.estimator = estimator
            self.n_members = n_members
            self.random_state = random_state

        def fit(self, X, y):
            self.estimators_ = [
                clone(self.estimator).set_params(
                    random_state=self.random_state * self.n_members + i).fit(X, y)
                for i in range(self.n_members)]
            self.classes_ = self.estimators_[0].classes_
            return self

        def predict_proba(self, X):
            check_is_fitted(self, "estimators_")
            return np.mean([member.predict_proba(X) for member in self.estimators_], axis=0)

        def predict(self, X):
            return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    return SeedAveragedClassifier


def make_pipeline_factory(n_jobs):
    """``pipeline(seed, members=1, **params)``: ``SeriesTokenizer`` -> classifier.

    ``members > 1`` wraps the classifier in a ``SeedAveragedClassifier`` of
    that many seeds (``clf__`` parameters are passed on to its members).
    """
    from sklearn.pipeline import Pipeline

    _import_skattention()
    from skattention import AttentionClassifier

    SeriesTokenizer = make_tokenizer_class()
    SeedAveragedClassifier = make_ensemble_class()

    def pipeline(seed, members=1, **params):
        clf = AttentionClassifier(**FIXED_PARAMS, n_jobs=n_jobs, random_state=seed)
        if members > 1:
            clf = SeedAveragedClassifier(clf, n_members=members, random_state=seed)
            params = {("clf__estimator__" + key[len("clf__"):] if key.startswith("clf__")
                       else key): value for key, value in params.items()}
        return Pipeline([
            ("tokens", SeriesTokenizer(**FIXED_TOKENS)),
            ("clf", clf),
        ]).set_params(**params)

    return pipeline


def screen(workdir, names, n_jobs, cv_folds, candidates=SCREEN):
    """Cross-validate every candidate (``SCREEN``) on the training splits only.

    Each seed in ``SCREEN_SEEDS`` is one stratified ``cv_folds``-fold split
    (shuffled with that seed) and the classifier's ``random_state``; the
    table gives the mean held-out accuracy, its range over seeds and the
    mean held-out log loss (which separates candidates that accuracy on 8-14
    held-out cases per fold cannot).
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    pipeline = make_pipeline_factory(n_jobs)
    rows = []
    for name in names:
        data = np.load(os.path.join(workdir, f"{name}.npz"))
        X, y = data["X_train"], data["y_train"]
        for label, params in candidates:
            pipeline(0, **params, clf__max_iter=1).fit(X, y)   # compile, untimed
            start = time.perf_counter()
            per_seed, losses = [], []
            for seed in SCREEN_SEEDS:
                folds = StratifiedKFold(cv_folds, shuffle=True, random_state=seed)
                correct = 0
                for train, test in folds.split(X, y):
                    model = pipeline(seed, **params).fit(X[train], y[train])
                    proba = model.predict_proba(X[test])
                    truth = np.searchsorted(model.classes_, y[test])
                    correct += int(np.sum(np.argmax(proba, axis=1) == truth))
                    losses.extend(-np.log(np.clip(proba[np.arange(len(test)), truth],
                                                  1e-12, None)))
                per_seed.append(correct / len(y))
            seconds = time.perf_counter() - start
            rows.append((name, label, statistics.fmean(per_seed), min(per_seed),
                         max(per_seed), float(np.mean(losses)), seconds))
            log(f"[screen] {name} | {label}: accuracy {rows[-1][2]:.3f} "
                f"({min(per_seed):.3f}-{max(per_seed):.3f}), log loss {rows[-1][5]:.3f}, "
                f"{seconds:.0f} s")
    return rows


def skattention_side(workdir, names, seeds, n_jobs, cv_folds):
    import warnings

    import numba
    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, ParameterGrid, RepeatedStratifiedKFold

    skattention = _import_skattention()
    # A fixed epoch budget is the plan, so "max_iter reached" is expected.
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    pipeline = make_pipeline_factory(n_jobs)

    results = {"skattention": skattention.__version__, "numba": numba.__version__,
               "numpy": np.__version__, "sklearn": sklearn.__version__,
               "python": platform.python_version(), "datasets": {}}
    for name in names:
        data = np.load(os.path.join(workdir, f"{name}.npz"))
        X_train, y_train, X_test, y_test = (data[k] for k in
                                            ("X_train", "y_train", "X_test", "y_test"))
        # Warm-up of every candidate on this problem's shapes (untimed), so
        # that neither the search nor the timed fits include JIT compilation.
        for candidate in ParameterGrid(PARAM_GRID):
            pipeline(0, N_MEMBERS, **candidate, clf__max_iter=1).fit(X_train, y_train)
        # Model selection on the training split only.
        start = time.perf_counter()
        # Chosen by held-out log loss, the proper scoring rule: accuracy on
        # 8-14 held-out cases per fold moves in steps of 7-12 points and tied
        # on all four GunPoint candidates in the first run at these settings.
        search = GridSearchCV(pipeline(0, N_MEMBERS), PARAM_GRID, refit=False,
                              scoring={"accuracy": "accuracy", "log_loss": "neg_log_loss"},
                              cv=RepeatedStratifiedKFold(n_splits=cv_folds,
                                                         n_repeats=CV_REPEATS, random_state=0))
        search.fit(X_train, y_train)
        search_s = time.perf_counter() - start
        found = search.cv_results_
        # Rounded to the reported 3 decimals, so that candidates that differ
        # by less tie (series and global z-norm differ by ~1e-5 on GunPoint,
        # whose series are already z-normalised); argmax gives ties to the
        # first candidate.
        best = int(np.argmax(np.round(found["mean_test_log_loss"], 3)))
        chosen = dict(found["params"][best])
        cv_table = [(dict(p), float(a), float(s), float(-loss)) for p, a, s, loss in zip(
            found["params"], found["mean_test_accuracy"], found["std_test_accuracy"],
            found["mean_test_log_loss"])]
        log(f"[skattention] {name}: CV ({search_s:.1f} s) "
            + "; ".join(f"{_describe(p)}: accuracy {a:.3f}, log loss {loss:.3f}"
                        for p, a, _, loss in cv_table)
            + f" -> {_describe(chosen)}")

        runs = []
        for seed in seeds:
            model = pipeline(seed, N_MEMBERS, **chosen)
            start = time.perf_counter()
            model.fit(X_train, y_train)
            fit_s = time.perf_counter() - start
            start = time.perf_counter()
            accuracy = float(np.mean(model.predict(X_test) == y_test))
            predict_s = time.perf_counter() - start
            runs.append({"seed": seed, "accuracy": accuracy, "fit_s": fit_s,
                         "predict_s": predict_s,
                         "train_accuracy": float(model.score(X_train, y_train))})
            log(f"[skattention] {name} seed {seed}: accuracy {accuracy:.4f}, fit {fit_s:.2f} s")
        results["datasets"][name] = {
            "runs": runs, "chosen": chosen, "cv": cv_table, "search_s": search_s,
            "shape_train": list(X_train.shape), "n_test": int(X_test.shape[0]),
            "n_classes": int(np.unique(y_train).size)}
    results["numba_threads"] = numba.get_num_threads()
    results["numba_threading_layer"] = _threading_layer(numba)
    return results


def _describe(params):
    patch = params["tokens__patch_len"]
    tokens = "points" if patch == 1 else f"patches {patch}/{max(1, patch // 2)}"
    return f"{params['tokens__normalize']} z-norm, {tokens}"


# ------------------------------------------------------------------- report

def _machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}"


def _git_revision():
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                              capture_output=True, text=True, check=True).stdout.strip()
        # This benchmark's own reports are left out: an earlier run's output
        # is not a change to the code being measured.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ":(top)", ":(top,exclude,glob)benchmarks/results_timeseries*.md"],
                               cwd=HERE, capture_output=True, text=True).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def report(ours, theirs, args, command, started, load_before, load_after, total_s):
    lines = []
    add = lines.append
    add("# AttentionClassifier vs MiniRocket on bundled UCR/UEA problems")
    add("")
    add(f"Measured {started:%Y-%m-%d %H:%M} UTC on {_machine()} (shared: 1/5/15-min load "
        f"average {'/'.join(f'{v:.1f}' for v in load_before)} before the run, "
        f"{'/'.join(f'{v:.1f}' for v in load_after)} after); whole run {total_s / 60:.1f} min.")
    add("")
    add("```")
    add(command)
    add("```")
    add("")
    add(f"* skattention {ours['skattention']} (git {_git_revision()}), numba {ours['numba']}, "
        f"numpy {ours['numpy']}, scikit-learn {ours['sklearn']}, Python {ours['python']}; "
        f"kernels on {args.n_jobs} thread(s) (`n_jobs={args.n_jobs}`; Numba pool "
        f"{ours['numba_threads']} threads, threading layer {ours['numba_threading_layer']}).")
    add(f"* aeon {theirs['aeon']}, numba {theirs['numba']}, numpy {theirs['numpy']}, "
        f"scikit-learn {theirs['sklearn']}, Python {theirs['python']} (separate venv); "
        f"`MiniRocketClassifier(n_jobs={args.n_jobs})` = MiniRocket (10,000 kernels) -> "
        f"StandardScaler -> RidgeClassifierCV (Numba pool {theirs['numba_threads']} threads, "
        f"threading layer {theirs['numba_threading_layer']}).")
    add(f"* Official train/test splits from the copies bundled in aeon's wheel. Accuracy on "
        f"the test split and fit wall time on the training split, mean ± std over seeds "
        f"{', '.join(map(str, args.seeds))} (both estimators take `random_state`); each side "
        f"warmed up (untimed) on the problem first, so no time includes JIT compilation. "
        f"skattention's fit time includes its preprocessing; its model-selection time is "
        f"listed separately.")
    add("")
    add("| dataset | train / test | length | channels | classes | MiniRocket accuracy | "
        "MiniRocket fit s | skattention accuracy | skattention fit s | difference (points) |")
    add("|---|---|---|---|---|---|---|---|---|---|")
    mr_means, sk_means = [], []
    for name in args.datasets:
        mine, other = ours["datasets"][name], theirs["datasets"][name]
        n_train, n_channels, length = mine["shape_train"]
        mr_acc = mean_std(r["accuracy"] for r in other["runs"])
        mr_fit = mean_std(r["fit_s"] for r in other["runs"])
        sk_acc = mean_std(r["accuracy"] for r in mine["runs"])
        sk_fit = mean_std(r["fit_s"] for r in mine["runs"])
        mr_means.append(mr_acc[0])
        sk_means.append(sk_acc[0])
        add(f"| {name} | {n_train} / {mine['n_test']} | {length} | {n_channels} | "
            f"{mine['n_classes']} | {mr_acc[0]:.4f} ± {mr_acc[1]:.4f} | "
            f"{mr_fit[0]:.2f} ± {mr_fit[1]:.2f} | {sk_acc[0]:.4f} ± {sk_acc[1]:.4f} | "
            f"{sk_fit[0]:.2f} ± {sk_fit[1]:.2f} | {100 * (sk_acc[0] - mr_acc[0]):+.1f} |")
    mr_mean, sk_mean = statistics.fmean(mr_means), statistics.fmean(sk_means)
    gap = 100 * (sk_mean - mr_mean)
    add(f"| **mean** | | | | | **{mr_mean:.4f}** | | **{sk_mean:.4f}** | | **{gap:+.1f}** |")
    add("")
    verdict = ("met" if gap >= -2.0 else f"missed by {-gap - 2.0:.1f} points")
    add(f"Target (mean accuracy within 2 points of MiniRocket): **{verdict}** "
        f"(skattention {gap:+.1f} points).")
    add("")
    add("## AttentionClassifier settings and how they were chosen")
    add("")
    fixed = ", ".join(f"{k}={v!r}" for k, v in FIXED_PARAMS.items())
    add(f"Fixed for all problems: `{fixed}` and `SeriesTokenizer({FIXED_TOKENS_TEXT})` "
        f"(first differences as extra channels): a small network for 40-67 training cases, "
        f"no dropout, a fixed 150-epoch budget with the loss-plateau stop off, the learning "
        f"rate annealed along a cosine. Chosen by cross-validation on the training splits "
        f"only (seeds 0-4, stratified 5-fold; `--screen`, results in "
        f"`benchmarks/results_timeseries_screen.md`) among the earlier settings (constant "
        f"1e-3, no differences), cosine or constant schedules at 1e-3/3e-3/1e-2, warm-up, "
        f"dropout 0.1, mean pooling and d_model 64."
        + (f" The classifier is a seed ensemble: `SeedAveragedClassifier(n_members={N_MEMBERS})`"
           f" averages the predicted probabilities of {N_MEMBERS} such networks that differ "
           f"only in `random_state` (benchmark seed s: member seeds {N_MEMBERS}s to "
           f"{N_MEMBERS}s+{N_MEMBERS - 1}); its fit time is that of all {N_MEMBERS} fits, one "
           f"after another." if N_MEMBERS > 1 else ""))
    add("")
    add(f"Preprocessing chosen per problem by the lowest held-out log loss in "
        f"{args.cv_folds}-fold stratified CV repeated {CV_REPEATS} times (`GridSearchCV`, "
        f"`RepeatedStratifiedKFold(random_state=0)`, classifier "
        f"{'(ensemble) ' if N_MEMBERS > 1 else ''}seed 0) on the training split "
        f"only; ties (to 3 decimals) go to the first candidate listed: `SeriesTokenizer(normalize, "
        f"patch_len)` in a `Pipeline` before the classifier, identical for train and test. "
        f"The test split is read only for the final scores.")
    add("")
    add(SELECTION_HISTORY)
    add("")
    add(ENSEMBLE_HISTORY.format(gap=gap, verdict=verdict))
    add("")
    add("| dataset | CV accuracy ± std / log loss per candidate (train split) | chosen | "
        "search s |")
    add("|---|---|---|---|")
    for name in args.datasets:
        mine = ours["datasets"][name]
        cells = "; ".join(f"{_describe(p)}: {a:.3f} ± {s:.3f} / {loss:.3f}"
                          for p, a, s, loss in mine["cv"])
        add(f"| {name} | {cells} | {_describe(mine['chosen'])} | {mine['search_s']:.1f} |")
    add("")
    add("Per-seed test accuracies: " + "; ".join(
        f"{name}: MiniRocket "
        + ", ".join(f"{r['accuracy']:.4f}" for r in theirs["datasets"][name]["runs"])
        + " / skattention "
        + ", ".join(f"{r['accuracy']:.4f}" for r in ours["datasets"][name]["runs"])
        for name in args.datasets) + ".")
    return "\n".join(lines) + "\n"


def screen_report(rows, args, command, started, total_s):
    lines = []
    add = lines.append
    add("# AttentionClassifier settings screen: cross-validation on the training splits")
    add("")
    add(f"Measured {started:%Y-%m-%d %H:%M} UTC on {_machine()}, skattention git "
        f"{_git_revision()}, kernels on {args.n_jobs} thread(s); whole run "
        f"{total_s / 60:.1f} min. The test splits are not read.")
    add("")
    add("```")
    add(command)
    add("```")
    add("")
    fixed = ", ".join(f"{k}={v!r}" for k, v in FIXED_PARAMS.items())
    add(f"Every candidate is the benchmarked pipeline (`SeriesTokenizer({FIXED_TOKENS_TEXT})` "
        f"-> `AttentionClassifier({fixed})`) with the changes its label names; "
        + (f"\"ensemble of {SCREEN_ENSEMBLE_MEMBERS}\" averages the predicted probabilities "
           f"of {SCREEN_ENSEMBLE_MEMBERS} such classifiers that differ only in their seed "
           f"(ensemble seed s: member seeds {SCREEN_ENSEMBLE_MEMBERS}s to "
           f"{SCREEN_ENSEMBLE_MEMBERS}s+{SCREEN_ENSEMBLE_MEMBERS - 1}). " if args.screen_ensemble
           else "\"previous\" is the setting of the earlier benchmark runs. ")
        + f"For each seed in "
        f"{', '.join(map(str, SCREEN_SEEDS))}: {args.cv_folds}-fold stratified CV of the "
        f"training split shuffled with that seed, the classifier seeded with it. Accuracy: "
        f"mean over seeds of the held-out accuracy (min-max over seeds); log loss: mean over "
        f"all held-out predictions.")
    add("")
    add("| dataset | candidate | CV accuracy | min-max over seeds | CV log loss | s |")
    add("|---|---|---|---|---|---|")
    for name, label, mean, low, high, loss, seconds in rows:
        add(f"| {name} | {label} | {mean:.3f} | {low:.3f}-{high:.3f} | {loss:.3f} | "
            f"{seconds:.0f} |")
    if args.screen_ensemble:
        add("")
        add(ensemble_rule(rows))
    return "\n".join(lines) + "\n"


def ensemble_rule(rows):
    """The pre-declared rule (module docstring) applied to --screen-ensemble's rows."""
    single = [r for r in rows if r[1].startswith("single model")]
    ensemble = [r for r in rows if r[1].startswith("ensemble")]
    acc_single, acc_ensemble = (statistics.fmean(r[2] for r in rs) for rs in (single, ensemble))
    loss_single, loss_ensemble = (statistics.fmean(r[5] for r in rs) for rs in (single, ensemble))
    time_ratio = sum(r[6] for r in ensemble) / sum(r[6] for r in single)
    adopt = loss_ensemble < loss_single and acc_ensemble >= acc_single
    return (f"Mean over the {len(single)} (problem, preprocessing) pairs: single model CV "
            f"accuracy {acc_single:.4f}, log loss {loss_single:.4f}; ensemble of "
            f"{SCREEN_ENSEMBLE_MEMBERS} CV accuracy {acc_ensemble:.4f}, log loss "
            f"{loss_ensemble:.4f}; the ensemble takes {time_ratio:.1f}x the time. Rule "
            f"(fixed in advance, module docstring): adopt the ensemble if its mean log loss is "
            f"lower and its mean accuracy not lower: **{'adopt' if adopt else 'do not adopt'}"
            f"** (`N_MEMBERS = {SCREEN_ENSEMBLE_MEMBERS if adopt else 1}`).")


# ----------------------------------------------------------------------- main

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aeon-python", default=os.environ.get("AEON_PYTHON"),
                        help="python of a virtual environment with aeon installed "
                             "(default: $AEON_PYTHON)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n-jobs", type=int, default=2,
                        help="kernel threads for both libraries (default 2)")
    parser.add_argument("--cv-folds", type=int, default=5)
    parser.add_argument("--output", default=DEFAULT_OUTPUT,
                        help="markdown report path ('' to skip writing)")
    parser.add_argument("--screen", action="store_true",
                        help="instead of the benchmark, cross-validate the candidate "
                             "settings (SCREEN) on the training splits only; report to "
                             "stdout and --output (default " + os.path.relpath(
                                 SCREEN_OUTPUT) + ")")
    parser.add_argument("--screen-ensemble", action="store_true",
                        help="like --screen, for the seed-ensemble candidates "
                             "(SCREEN_ENSEMBLE; default --output " + os.path.relpath(
                                 SCREEN_ENSEMBLE_OUTPUT) + ")")
    parser.add_argument("--aeon-worker", metavar="WORKDIR", help=argparse.SUPPRESS)
    parser.add_argument("--export-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.screen_ensemble and args.output == DEFAULT_OUTPUT:
        args.output = SCREEN_ENSEMBLE_OUTPUT
    args.screen = args.screen or args.screen_ensemble
    if args.screen and args.output == DEFAULT_OUTPUT:
        args.output = SCREEN_OUTPUT

    if args.aeon_worker:
        aeon_worker(args.aeon_worker, args.datasets, args.seeds, args.n_jobs, args.export_only)
        return 0
    if not args.aeon_python:
        parser.error("--aeon-python is required (a python with aeon installed; see the "
                     "module docstring)")

    command = "python " + " ".join(
        [os.path.relpath(os.path.abspath(__file__))] + (sys.argv[1:] if argv is None else argv))
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_timeseries_") as workdir:
        log(f"[aeon] exporting the data{'' if args.screen else ' and fitting MiniRocket'} "
            f"with {args.aeon_python}")
        subprocess.run([args.aeon_python, os.path.abspath(__file__), "--aeon-worker", workdir,
                        "--datasets", *args.datasets, "--seeds", *map(str, args.seeds),
                        "--n-jobs", str(args.n_jobs)]
                       + (["--export-only"] if args.screen else []), check=True)
        if args.screen:
            rows = screen(workdir, args.datasets, args.n_jobs, args.cv_folds,
                          SCREEN_ENSEMBLE if args.screen_ensemble else SCREEN)
        else:
            with open(os.path.join(workdir, "aeon_results.json")) as handle:
                theirs = json.load(handle)
            ours = skattention_side(workdir, args.datasets, args.seeds, args.n_jobs,
                                    args.cv_folds)
    if args.screen:
        text = screen_report(rows, args, command, started, time.perf_counter() - t0)
    else:
        text = report(ours, theirs, args, command, started, load_before, os.getloadavg(),
                      time.perf_counter() - t0)
    print(text)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text)
        log(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
