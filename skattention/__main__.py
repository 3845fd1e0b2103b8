"""Command line entry point: ``skattention`` / ``python -m skattention``.

Commands::

    skattention fit data.csv --target label [--text-column text] --out model.skat [--cv 5]
    skattention predict model.skat data.csv [--out predictions.csv] [--proba]
    skattention explain model.skat data.csv [--html report.html]
    skattention info model.skat
    skattention demo [--epochs N]

Errors are reported as one line, ``skattention: error: ...``, on stderr with
exit status 1 (set ``SKATTENTION_DEBUG=1`` to see the traceback instead).
Training shows a progress bar on stderr when it is a terminal, and one
summary line per fit otherwise (``--quiet`` silences both); the bar is drawn
from the estimator's own ``verbose`` output (or is the estimator's tqdm bar
when tqdm is installed), so training is exactly the same ``fit`` call as
without it.
"""

import argparse
import contextlib
import html
import io
import math
import os
import re
import sys
import time
import warnings

import numpy as np

__all__ = ["main"]

_AUTO_CLASSES_MAX = 20


class _UsageError(Exception):
    """A command-line usage error (reported like every other error)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(f"{message} (see '{self.prog} --help')")


# ------------------------------------------------------------------ helpers


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _separator(text):
    return "\t" if text in ("\\t", "tab") else text


class _Progress(io.TextIOBase):
    """Turns the estimators' ``verbose`` lines into a progress bar on a terminal.

    Used as ``sys.stdout`` while a model fits with ``verbose=True``: each
    ``Iteration N, loss = L`` line advances a bar redrawn in place on
    ``stderr``; anything else passes through to the real stdout. (When tqdm
    is installed the estimators draw their own bar on stderr and print no
    such lines, so this stays silent.)
    """

    _LINE = re.compile(r"Iteration (\d+), loss = (\S+)")

    def __init__(self, label, total, stdout, stderr, width=30):
        self.label, self.total, self.width = label, total, width
        self.stdout, self.stderr = stdout, stderr
        self.epoch, self._buffer = 0, ""

    def writable(self):
        return True

    def write(self, text):
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            match = self._LINE.match(line)
            if match is None:
                self.stdout.write(line + "\n")
                continue
            self.epoch = int(match.group(1))
            done = min(self.epoch, self.total)
            filled = int(self.width * done / max(self.total, 1))
            bar = "#" * filled + "-" * (self.width - filled)
            self.stderr.write(f"\r{self.label} [{bar}] {done}/{self.total} epochs, "
                              f"loss {float(match.group(2).rstrip(',')):.4f}")
            self.stderr.flush()
        return len(text)

    def close(self):
        if self._buffer:
            self.stdout.write(self._buffer)
            self._buffer = ""
        if self.epoch:
            self.stderr.write("\n")
            self.stderr.flush()
        super().close()


def _fit_with_progress(estimator, X, y, label, quiet):
    """``estimator.fit(X, y)``, showing progress on stderr unless ``quiet``.

    On a terminal, the fit runs with ``verbose=True`` and its per-epoch
    output becomes a bar (see :class:`_Progress`); otherwise (logs, pipes)
    one summary line follows the fit. Either way it is the same ``fit``.
    """
    if quiet:
        return estimator.fit(X, y)
    total = estimator.get_params()["max_iter"]
    start = time.perf_counter()
    stderr = sys.stderr
    if hasattr(stderr, "isatty") and stderr.isatty():
        estimator.set_params(verbose=True)
        progress = _Progress(label, total, sys.stdout, stderr)
        try:
            with contextlib.redirect_stdout(progress):
                estimator.fit(X, y)
        finally:
            progress.close()
            estimator.set_params(verbose=False)
    else:
        estimator.fit(X, y)
        print(f"{label}: {estimator.n_iter_}/{total} epochs, final loss "
              f"{estimator.loss_curve_[-1]:.4f} ({time.perf_counter() - start:.1f} s)",
              file=stderr)
    return estimator


def _read_csv(path, sep, text_column=None):
    import pandas as pd

    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory, not a CSV file")
    try:
        # Only empty cells are missing: "NA" or "null" in a text are words.
        frame = pd.read_csv(path, sep=sep, keep_default_na=False, na_values=[""],
                            dtype={text_column: str} if text_column else None)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty") from None
    except pd.errors.ParserError as exc:
        raise ValueError(f"cannot parse {path} as CSV (sep={sep!r}): "
                         f"{' '.join(str(exc).split())}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    if frame.shape[0] == 0:
        raise ValueError(f"{path} has no data rows")
    return frame


def _column(frame, name, path, option):
    if name not in frame.columns:
        shown = ", ".join(map(str, frame.columns[:20]))
        raise ValueError(f"column {name!r} ({option}) not found in {path}; its columns are: "
                         f"{shown}")
    return frame[name]


def _numeric_features(frame, columns, path):
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    bad = [c for c in columns if not (is_numeric_dtype(frame[c]) or is_bool_dtype(frame[c]))]
    if bad:
        raise ValueError(f"column {bad[0]!r} of {path} is not numeric; numeric models read "
                         "numeric columns only (use --text-column for a column of text, or "
                         "drop it)")
    return frame[list(columns)]


def _text_values(series):
    return series.fillna("").astype(str)


def _infer_task(y):
    """'classification' or 'regression' for --task auto, with the reason."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    if is_bool_dtype(y) or not is_numeric_dtype(y):
        return "classification", "the target is not numeric"
    values = y.to_numpy(dtype=np.float64)
    n_unique = np.unique(values).size
    if np.all(values == np.round(values)) and n_unique <= _AUTO_CLASSES_MAX:
        return "classification", f"{n_unique} distinct integer values"
    return "regression", (f"{n_unique} distinct values" if n_unique > _AUTO_CLASSES_MAX
                          else "non-integer values")


def _estimator_class(text, task):
    from . import (
        AttentionClassifier,
        AttentionRegressor,
        TextAttentionClassifier,
        TextAttentionRegressor,
    )

    return {(True, "classification"): TextAttentionClassifier,
            (True, "regression"): TextAttentionRegressor,
            (False, "classification"): AttentionClassifier,
            (False, "regression"): AttentionRegressor}[(text, task)]


_MODEL_OPTIONS = {
    # option dest: estimator parameter
    "max_iter": "max_iter", "d_model": "d_model", "n_heads": "n_heads",
    "n_layers": "n_layers", "d_ff": "d_ff", "max_len": "max_len",
    "learning_rate": "learning_rate_init", "batch_size": "batch_size",
    "random_state": "random_state", "n_jobs": "n_jobs", "device": "device",
    "early_stopping": "early_stopping", "class_weight": "class_weight",
}


def _model_params(args, text, task):
    params = {param: getattr(args, dest) for dest, param in _MODEL_OPTIONS.items()
              if getattr(args, dest) is not None}
    if task == "regression" and "class_weight" in params:
        raise ValueError("--class-weight applies to classification")
    if not args.early_stopping:
        params.pop("early_stopping", None)
    return params


@contextlib.contextmanager
def _reported_warnings():
    """Show each distinct warning once, as a one-line message on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            seen = set()
            for w in caught:
                message = " ".join(str(w.message).split())
                if message not in seen:
                    seen.add(message)
                    print(f"skattention: warning: {message}", file=sys.stderr)


def _load_model(path):
    from .persistence import _load

    estimator, header = _load(path)
    metadata = header.get("metadata")
    return estimator, metadata if isinstance(metadata, dict) else {}


def _model_input(estimator, metadata, frame, path, text_column):
    """The model's X from a CSV: its text column, or its feature columns."""
    from .estimators._text import _TextInputMixin

    if isinstance(estimator, _TextInputMixin):
        name = text_column or metadata.get("text_column") or "text"
        return _text_values(_column(frame, name, path, "the text column"))
    if text_column:
        raise ValueError(f"this model ({type(estimator).__name__}) reads numeric columns, "
                         "not --text-column")
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        missing = [str(c) for c in names if c not in frame.columns]
        if missing:
            raise ValueError(f"{path} lacks the column(s) the model was fitted on: "
                             f"{', '.join(missing[:10])}")
        return _numeric_features(frame, list(names), path)
    target = metadata.get("target")
    columns = [c for c in frame.columns if c != target]
    return _numeric_features(frame, columns, path)


def _format_value(value):
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


# ----------------------------------------------------------------- commands


def _fit(args):
    from sklearn.base import clone, is_classifier
    from sklearn.model_selection import KFold, StratifiedKFold

    from .persistence import save

    frame = _read_csv(args.data, args.sep, args.text_column)
    y = _column(frame, args.target, args.data, "--target")
    if y.isna().any():
        raise ValueError(f"the target column {args.target!r} has {int(y.isna().sum())} empty "
                         "cells")
    text = args.text_column is not None
    if not text and args.max_len is not None:
        raise ValueError("--max-len applies to text models (with --text-column)")
    if text:
        if args.text_column == args.target:
            raise ValueError("--text-column and --target name the same column")
        X = _text_values(_column(frame, args.text_column, args.data, "--text-column"))
    else:
        features = [c for c in frame.columns if c != args.target]
        if not features:
            raise ValueError(f"{args.data} has no feature columns besides the target")
        X = _numeric_features(frame, features, args.data)
    if args.task == "auto":
        task, reason = _infer_task(y)
        print(f"task: {task} (auto: {reason}; set --task to override)", file=sys.stderr)
    else:
        task = args.task
    if task == "regression":
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        if is_bool_dtype(y) or not is_numeric_dtype(y):
            raise ValueError(f"regression needs a numeric target; column {args.target!r} is "
                             "not numeric")
        y = y.astype(np.float64)
    elif y.dtype.kind == "f" and np.all(y == np.round(y)):
        y = y.astype(np.int64)  # 1.0/2.0 read from a CSV are the labels 1/2
    cls = _estimator_class(text, task)
    estimator = cls(**_model_params(args, text, task))
    if args.cv is not None:
        if args.cv < 2:
            raise ValueError("--cv needs at least 2 folds")
        seed = args.random_state if args.random_state is not None else 0
        splitter = (StratifiedKFold if is_classifier(estimator) else KFold)(
            n_splits=args.cv, shuffle=True, random_state=seed)
        scores = []
        for i, (train, test) in enumerate(splitter.split(X, y)):
            model = _fit_with_progress(clone(estimator), X.iloc[train], y.iloc[train],
                                       f"fold {i + 1}/{args.cv}", args.quiet)
            scores.append(model.score(X.iloc[test], y.iloc[test]))
        metric = "accuracy" if task == "classification" else "R^2"
        print(f"cross-validated {metric} ({args.cv} folds): {np.mean(scores):.4f} "
              f"+/- {np.std(scores):.4f} [" + " ".join(f"{s:.4f}" for s in scores) + "]")
    _fit_with_progress(estimator, X, y, "fit", args.quiet)
    metadata = {"command": "fit", "data": os.path.basename(args.data), "target": args.target,
                "text_column": args.text_column, "task": task, "sep": args.sep,
                "n_rows": int(frame.shape[0])}
    save(estimator, args.out, metadata=metadata)
    print(f"saved {cls.__name__} ({estimator.n_iter_} epochs on {frame.shape[0]} rows) to "
          f"{args.out}")
    return 0


def _predict(args):
    import pandas as pd

    estimator, metadata = _load_model(args.model)
    sep = args.sep if args.sep is not None else metadata.get("sep", ",")
    frame = _read_csv(args.data, sep, args.text_column or metadata.get("text_column"))
    X = _model_input(estimator, metadata, frame, args.data, args.text_column)
    prediction = estimator.predict(X)
    if prediction.ndim == 1:
        out = pd.DataFrame({"prediction": prediction})
    else:
        out = pd.DataFrame(prediction, columns=[f"prediction_{j}"
                                                for j in range(prediction.shape[1])])
    if args.proba:
        if not hasattr(estimator, "predict_proba"):
            raise ValueError(f"--proba needs a classifier, not {type(estimator).__name__}")
        proba = estimator.predict_proba(X)
        for j, label in enumerate(estimator.classes_):
            out[f"proba_{label}"] = proba[:, j]
    if args.out:
        out.to_csv(args.out, index=False)
        print(f"wrote {len(out)} predictions to {args.out}", file=sys.stderr)
    else:
        out.to_csv(sys.stdout, index=False)
    return 0


def _html_page(title, subtitle, body):
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;"
            "line-height:1.8} table{border-collapse:collapse} td,th{padding:2px 6px;"
            "border:1px solid #ddd;text-align:right}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(subtitle)}</p>\n{body}\n"
            "</body>\n</html>\n")


def _attention_table(names, weights, labels):
    """An HTML table of per-column attention, cells shaded by weight."""
    head = "".join(f"<th>{html.escape(str(n))}</th>" for n in names)
    rows = []
    for label, row in zip(labels, weights):
        top = float(np.max(row)) if row.size else 1.0
        cells = "".join(
            f'<td style="background-color: rgba(220, 50, 32, '
            f'{(float(w) / top if top > 0 else 0.0):.3f})">{float(w):.3f}</td>' for w in row)
        rows.append(f"<tr><th>{html.escape(label)}</th>{cells}</tr>")
    return (f'<table class="skattention-attention"><tr><th>row</th>{head}</tr>\n'
            + "\n".join(rows) + "\n</table>")


def _explain(args):
    import pandas as pd

    from .estimators._text import _TextInputMixin

    estimator, metadata = _load_model(args.model)
    sep = args.sep if args.sep is not None else metadata.get("sep", ",")
    frame = _read_csv(args.data, sep, args.text_column or metadata.get("text_column"))
    X = _model_input(estimator, metadata, frame, args.data, args.text_column)
    prediction = estimator.predict(X)
    labels = [f"row {i}: predicted "
              + (_format_value(p) if np.ndim(p) == 0 else ", ".join(map(_format_value, p)))
              for i, p in enumerate(prediction)]
    name = type(estimator).__name__
    if isinstance(estimator, _TextInputMixin):
        explanation = estimator.explain(pd.Series(X.to_numpy(), index=labels))
        if args.html:
            body = explanation.to_html()
        else:
            for i, label in enumerate(labels):
                pairs = sorted(explanation[i], key=lambda p: -p[1])[:args.top]
                print(f"{label}: " + ", ".join(f"{t} {w:.3f}" for t, w in pairs))
    else:
        weights = estimator.explain(X)
        columns = [str(c) for c in X.columns]
        if args.html:
            body = _attention_table(columns, weights, labels)
        else:
            out = pd.DataFrame(weights, columns=[f"attention_{c}" for c in columns])
            out.insert(0, "prediction", list(prediction) if prediction.ndim == 1
                       else [" ".join(map(_format_value, p)) for p in prediction])
            out.to_csv(sys.stdout, index=False, float_format="%.4f")
    if args.html:
        page = _html_page(f"{name}: where the model looked",
                          f"{args.model} on {args.data} ({len(labels)} rows); each cell or "
                          "token is shaded by the pooling attention it received.", body)
        with open(args.html, "w", encoding="utf-8") as f:
            f.write(page)
        print(f"wrote the explanation of {len(labels)} rows to {args.html}", file=sys.stderr)
    return 0


def _info(args):
    from .persistence import info

    header = info(args.model)
    print(f"{header['class']} (model file format {header['format_version']})")
    versions = header.get("versions") or {}
    print("written with " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    params = header.get("params") or {}
    shown = [f"{k}={v!r}" for k, v in sorted(params.items()) if not isinstance(v, dict)]
    print("parameters: " + ", ".join(shown))
    for key, value in sorted((header.get("metadata") or {}).items()):
        print(f"{key}: {value}")
    return 0


def _demo_text(args):
    """TextAttentionClassifier on the bundled SMS spam collection."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split

    from . import TextAttentionClassifier
    from .datasets import load_sms_spam

    sms = load_sms_spam()
    X_train, X_test, y_train, y_test = train_test_split(
        sms.data, sms.target, test_size=0.25, random_state=args.seed, stratify=sms.target)
    print(f"sms spam: {len(X_train)} training / {len(X_test)} test messages")
    # No self-attention layer: the pooling attention reads the token
    # embeddings themselves, which trains in seconds and keeps the
    # token importances about single words. The demo's models are small
    # enough that one kernel thread is fastest (and immune to busy cores).
    clf = TextAttentionClassifier(d_model=16, n_heads=2, n_layers=0, max_len=48, min_df=2,
                                  max_iter=args.epochs, learning_rate_init=5e-3,
                                  batch_size=64, random_state=args.seed, n_jobs=1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=".*were truncated.*")
        _fit_with_progress(clf, X_train, y_train, "sms spam", quiet=False)
        seconds = time.perf_counter() - start
        accuracy = clf.score(X_test, y_test)
    print(f"TextAttentionClassifier: {clf.n_iter_} epochs in {seconds:.1f} s "
          f"(first fit includes compiling or loading the kernels), test accuracy {accuracy:.3f}")
    importances = clf.token_importances_.drop(index=["<start>", "<unk>"], errors="ignore")
    for label in clf.classes_:
        top = importances[label].nlargest(8)
        print(f"  most attended tokens, {sms.target_names[label]}: "
              + ", ".join(f"{token} {weight:.3f}" for token, weight in top.items()))


def _demo(args):
    """Train attention models on built-in data and show where they looked.

    First a TextAttentionClassifier on the bundled SMS spam collection, then
    an AttentionClassifier on scikit-learn's bundled handwritten digits
    (1,797 real 8x8 images) read as sequences of 8 pixel rows with 8
    features each; a last part times the attention core itself.
    """
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split

    from . import AttentionClassifier
    from . import functional as F

    _demo_text(args)

    digits = load_digits()
    X = digits.images / 16.0
    X_train, X_test, y_train, y_test = train_test_split(
        X, digits.target, test_size=0.25, random_state=args.seed, stratify=digits.target)
    print(f"digits: {X_train.shape[0]} training / {X_test.shape[0]} test images, "
          f"each a sequence of {X.shape[1]} rows x {X.shape[2]} pixels")
    clf = AttentionClassifier(d_model=32, n_heads=4, n_layers=1, max_iter=args.epochs,
                              learning_rate_init=3e-3, batch_size=64,
                              random_state=args.seed, n_jobs=1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _fit_with_progress(clf, X_train, y_train, "digits", quiet=False)
    seconds = time.perf_counter() - start
    print(f"AttentionClassifier: {clf.n_iter_} epochs in {seconds:.1f} s, "
          f"test accuracy {clf.score(X_test, y_test):.3f}")
    weights = clf.explain(X_test)
    print("mean attention per pixel row (top to bottom):",
          " ".join(f"{w:.2f}" for w in weights.mean(axis=0)))
    for digit in (0, 1, 7):
        rows = weights[y_test == digit].mean(axis=0)
        print(f"  digit {digit}: most attended row {int(np.argmax(rows))}, weights "
              + " ".join(f"{w:.2f}" for w in rows))

    rng = np.random.default_rng(args.seed)
    batch, heads, length, head_width = 64, 4, 128, 16
    shape = (batch, heads, length, head_width)
    q, k, v = (rng.normal(size=shape).astype(np.float32) for _ in range(3))
    lengths = rng.integers(length // 2, length + 1, size=batch)
    key_mask = np.arange(length)[None, :] < lengths[:, None]
    timings = []
    for _ in range(6):
        start = time.perf_counter()
        context, attention = F.attention(q, k, v, key_mask)
        grads = F.attention_backward(q, k, v, attention, np.ones_like(context), key_mask)
        timings.append(time.perf_counter() - start)
    print(f"attention forward + backward, B={batch} H={heads} L={length} D={head_width} "
          f"float32: {1e3 * np.median(timings[1:]):.1f} ms")
    assert np.isfinite(grads.query).all()
    return 0


# --------------------------------------------------------------------- main


def _add_model_options(parser):
    group = parser.add_argument_group("model options (default: the estimator's)")
    group.add_argument("--max-iter", type=_positive_int, help="training epochs")
    group.add_argument("--d-model", type=_positive_int, help="embedding width")
    group.add_argument("--n-heads", type=_positive_int, help="attention heads")
    group.add_argument("--n-layers", type=int, help="self-attention layers (0: pooling only)")
    group.add_argument("--d-ff", type=_positive_int, help="feed-forward width")
    group.add_argument("--max-len", type=_positive_int, help="longest text, in tokens")
    group.add_argument("--learning-rate", type=_positive_float, help="initial learning rate")
    group.add_argument("--batch-size", type=_positive_int, help="mini-batch size")
    group.add_argument("--random-state", type=int, help="random seed")
    group.add_argument("--n-jobs", type=int, help="kernel threads")
    group.add_argument("--device", choices=("auto", "cpu", "cuda"))
    group.add_argument("--early-stopping", action="store_true",
                       help="hold out 10%% of the rows and stop when their score stalls")
    group.add_argument("--class-weight", choices=("balanced",),
                       help="reweight classes inversely to their frequency")


def _parser():
    parser = _Parser(prog="skattention",
                     description="Attention models for scikit-learn, with a Numba core.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = commands.add_parser("fit", help="fit a model on a CSV file and save it",
                              description="Fit an attention model on a CSV file and save it "
                              "(see skattention.persistence).")
    fit.add_argument("data", help="CSV file with a header row")
    fit.add_argument("--target", required=True, help="column to predict")
    fit.add_argument("--text-column", help="column of raw text (a text model); without it, "
                     "every other column is a numeric feature")
    fit.add_argument("--out", required=True, help="model file to write, e.g. model.skat")
    fit.add_argument("--task", choices=("auto", "classification", "regression"),
                     default="auto", help="auto: classification for a non-numeric target or "
                     f"at most {_AUTO_CLASSES_MAX} distinct integers, else regression")
    fit.add_argument("--cv", type=int, help="also report K-fold cross-validated scores")
    fit.add_argument("--sep", type=_separator, default=",",
                     help="field separator (default ','; '\\t' or 'tab' for TSV)")
    fit.add_argument("--quiet", action="store_true", help="no progress output")
    _add_model_options(fit)
    fit.set_defaults(handler=_fit)

    predict = commands.add_parser("predict", help="predict the rows of a CSV file")
    predict.add_argument("model", help="model file written by 'skattention fit'")
    predict.add_argument("data", help="CSV file with the model's columns")
    predict.add_argument("--out", help="CSV file to write (default: print)")
    predict.add_argument("--proba", action="store_true",
                         help="add class probabilities (classifiers)")
    predict.add_argument("--text-column", help="text column (default: the one fitted on)")
    predict.add_argument("--sep", type=_separator, help="field separator (default: as fitted)")
    predict.set_defaults(handler=_predict)

    explain = commands.add_parser("explain", help="show where the model looked")
    explain.add_argument("model", help="model file written by 'skattention fit'")
    explain.add_argument("data", help="CSV file with the model's columns")
    explain.add_argument("--html", help="write an HTML report (highlighted tokens, or a "
                         "shaded table of per-column attention)")
    explain.add_argument("--top", type=_positive_int, default=5,
                         help="tokens printed per text without --html (default 5)")
    explain.add_argument("--text-column", help="text column (default: the one fitted on)")
    explain.add_argument("--sep", type=_separator, help="field separator (default: as fitted)")
    explain.set_defaults(handler=_explain)

    info = commands.add_parser("info", help="describe a model file")
    info.add_argument("model")
    info.set_defaults(handler=_info)

    demo = commands.add_parser("demo", help="train on built-in data and show the attention")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--epochs", type=_positive_int, default=40,
                      help="training epochs of each model (default 40)")
    demo.set_defaults(handler=_demo)
    return parser


def _message(exc):
    if isinstance(exc, FileNotFoundError) and exc.filename is not None:
        return f"no such file: {exc.filename}"
    if isinstance(exc, IsADirectoryError) and exc.filename is not None:
        return f"is a directory: {exc.filename}"
    if isinstance(exc, PermissionError) and exc.filename is not None:
        return f"permission denied: {exc.filename}"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def main(argv=None):
    """Run the command line interface.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments without the program name; None reads ``sys.argv``.

    Returns
    -------
    status : int
        The process exit status: 0 on success, 1 on any error (reported as
        one ``skattention: error: ...`` line on stderr).
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(f"skattention: error: {exc}", file=sys.stderr)
        return 1
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    try:
        with _reported_warnings():
            return args.handler(args)
    except KeyboardInterrupt:
        print("skattention: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``skattention predict ... | head``): stop quietly,
        # and keep Python from complaining again when it flushes stdout at exit.
        with contextlib.suppress(AttributeError, OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:
        if os.environ.get("SKATTENTION_DEBUG"):
            raise
        print(f"skattention: error: {_message(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
