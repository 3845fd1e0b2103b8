"""The command line: fit / predict / explain / info on small CSV files, and its errors."""

import io
import os
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from skattention import (
    AttentionClassifier,
    AttentionRegressor,
    TextAttentionClassifier,
    TextAttentionRegressor,
)
from skattention.__main__ import _Progress, main
from skattention.persistence import FORMAT_VERSION, info, load

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ["--d-model", "8", "--n-heads", "2", "--d-ff", "16", "--max-iter", "5",
        "--batch-size", "32", "--n-jobs", "1", "--random-state", "0",
        "--learning-rate", "0.01"]

POSITIVE = ["good great fine", "great movie, really", "fine good fun", "fun great", "good fun"]
NEGATIVE = ["bad awful boring", "awful movie", "boring bad dull", "dull awful", "NA bad dull"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Small CSV files and models fitted on them by the CLI (shared by the module)."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.RandomState(0)
    texts = pd.DataFrame({"id": range(40), "text": POSITIVE * 4 + NEGATIVE * 4,
                          "label": ["pos"] * 20 + ["neg"] * 20})
    texts.loc[3, "text"] = None  # an empty cell is an empty document
    texts.to_csv(root / "text.csv", index=False)
    X = rng.normal(size=(48, 3))
    numeric = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "n": rng.randint(0, 5, 48),
                            "y": (X[:, 0] > 0).astype(int)})
    numeric.to_csv(root / "numeric.csv", index=False)
    numeric.assign(y=2 * X[:, 0] + X[:, 1]).to_csv(root / "regression.tsv", sep="\t",
                                                   index=False)
    paths = {"root": root, "text": root / "text.csv", "numeric": root / "numeric.csv",
             "regression": root / "regression.tsv"}
    for name, args in {
        "text_model": ["fit", str(paths["text"]), "--text-column", "text", "--target", "label",
                       "--max-len", "5"],
        "numeric_model": ["fit", str(paths["numeric"]), "--target", "y"],
        "regression_model": ["fit", str(paths["regression"]), "--target", "y", "--sep", "\\t"],
    }.items():
        paths[name] = root / f"{name}.skat"
        assert main([*args, "--out", str(paths[name]), "--quiet", *TINY]) == 0
    return paths


def _run(capsys, *args):
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def _error(capsys, *args):
    status, out, err = _run(capsys, *args)
    assert status == 1, (out, err)
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("skattention: error: ")]
    assert len(errors) == 1, err
    return errors[0]


# ----------------------------------------------------------------------- fit


def test_fit_text_with_cv(data, capsys, tmp_path):
    out_path = tmp_path / "model.skat"
    status, out, err = _run(capsys, "fit", data["text"], "--text-column", "text",
                            "--target", "label", "--out", out_path, "--cv", "3", *TINY)
    assert status == 0, err
    line = next(line for line in out.splitlines() if line.startswith("cross-validated"))
    assert "accuracy (3 folds)" in line
    scores = [float(s) for s in line.split("[")[1].rstrip("]").split()]
    assert len(scores) == 3 and all(0 <= s <= 1 for s in scores)
    assert f"saved TextAttentionClassifier (5 epochs on 40 rows) to {out_path}" in out
    assert "task: classification (auto: the target is not numeric" in err
    for label in ("fold 1/3", "fold 3/3", "fit"):
        assert f"{label}: 5/5 epochs, final loss" in err  # the progress summaries
    model = load(out_path)
    assert isinstance(model, TextAttentionClassifier)
    assert model.classes_.tolist() == ["neg", "pos"]
    assert model.verbose is False and model.d_model == 8 and model.max_iter == 5
    metadata = info(out_path)["metadata"]
    assert metadata["text_column"] == "text" and metadata["target"] == "label"


def test_fit_numeric_models(data):
    classifier = load(data["numeric_model"])
    assert isinstance(classifier, AttentionClassifier)
    assert classifier.classes_.tolist() == [0, 1]
    assert classifier.feature_names_in_.tolist() == ["a", "b", "n"]
    regressor = load(data["regression_model"])
    assert isinstance(regressor, AttentionRegressor) and regressor.n_features_in_ == 3
    assert isinstance(load(data["text_model"]), TextAttentionClassifier)


@pytest.mark.parametrize("task, target, expected", [
    ("regression", "n", TextAttentionRegressor),
    ("classification", "n", TextAttentionClassifier),
    ("auto", "n", TextAttentionClassifier),     # 5 distinct integers
    ("auto", "score", TextAttentionRegressor),  # floats
])
def test_task_choice(data, tmp_path, capsys, task, target, expected):
    frame = pd.read_csv(data["text"])
    frame["n"] = np.arange(40) % 5
    frame["score"] = np.linspace(0, 1, 40)
    frame.to_csv(tmp_path / "t.csv", index=False)
    status, _, err = _run(capsys, "fit", tmp_path / "t.csv", "--text-column", "text",
                          "--target", target, "--task", task, "--out", tmp_path / "m.skat",
                          "--quiet", *TINY)
    assert status == 0, err
    assert type(load(tmp_path / "m.skat")) is expected


def test_fit_reports_convergence_warning_once(data, capsys, tmp_path):
    status, _, err = _run(capsys, "fit", data["numeric"], "--target", "y", "--cv", "2",
                          "--out", tmp_path / "m.skat", *TINY)
    assert status == 0
    assert err.count("skattention: warning: Stochastic Optimizer: Maximum iterations") == 1


# ------------------------------------------------------------------- predict


def test_predict_text_prints_and_writes(data, capsys, tmp_path):
    status, out, err = _run(capsys, "predict", data["text_model"], data["text"], "--proba")
    assert status == 0, err
    printed = pd.read_csv(io.StringIO(out))
    assert printed.columns.tolist() == ["prediction", "proba_neg", "proba_pos"]
    model = load(data["text_model"])
    texts = pd.read_csv(data["text"], keep_default_na=False)["text"].tolist()
    assert printed["prediction"].tolist() == model.predict(texts).tolist()
    np.testing.assert_allclose(printed[["proba_neg", "proba_pos"]].sum(axis=1), 1.0)

    out_path = tmp_path / "predictions.csv"
    status, out, err = _run(capsys, "predict", data["text_model"], data["text"],
                            "--out", out_path)
    assert status == 0 and out == ""
    assert f"wrote 40 predictions to {out_path}" in err
    assert pd.read_csv(out_path)["prediction"].tolist() == printed["prediction"].tolist()


def test_predict_numeric_selects_columns_by_name(data, capsys, tmp_path):
    frame = pd.read_csv(data["numeric"])
    shuffled = frame[["n", "y", "b", "a"]].assign(extra="x")  # reordered, extra columns
    shuffled.to_csv(tmp_path / "new.csv", index=False)
    status, out, _ = _run(capsys, "predict", data["numeric_model"], tmp_path / "new.csv")
    assert status == 0
    model = load(data["numeric_model"])
    expected = model.predict(frame[["a", "b", "n"]])
    assert pd.read_csv(io.StringIO(out))["prediction"].tolist() == expected.tolist()


def test_predict_regression_uses_the_fitted_separator(data, capsys):
    status, out, _ = _run(capsys, "predict", data["regression_model"], data["regression"])
    assert status == 0
    predictions = pd.read_csv(io.StringIO(out))["prediction"]
    assert len(predictions) == 48 and np.isfinite(predictions).all()


# ------------------------------------------------------------------- explain


def test_explain_text_html(data, capsys, tmp_path):
    report = tmp_path / "report.html"
    status, _, err = _run(capsys, "explain", data["text_model"], data["text"],
                          "--html", report)
    assert status == 0, err
    page = report.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count('<span title="') > 40
    assert "background-color: rgba(220, 50, 32, 1.000)" in page  # each text's top token
    assert "row 0: predicted " in page
    assert "awful" in page


def test_explain_text_prints_top_tokens(data, capsys):
    status, out, _ = _run(capsys, "explain", data["text_model"], data["text"], "--top", "2")
    assert status == 0
    lines = out.splitlines()
    assert len(lines) == 40
    assert lines[0].startswith("row 0: predicted ")
    assert len(lines[0].split(": ")[-1].split(", ")) == 2


def test_explain_numeric(data, capsys, tmp_path):
    report = tmp_path / "report.html"
    status, _, _ = _run(capsys, "explain", data["numeric_model"], data["numeric"],
                        "--html", report)
    assert status == 0
    page = report.read_text(encoding="utf-8")
    assert "<th>a</th><th>b</th><th>n</th>" in page
    assert page.count("<tr>") == 49 and "rgba(220, 50, 32" in page
    status, out, _ = _run(capsys, "explain", data["numeric_model"], data["numeric"])
    table = pd.read_csv(io.StringIO(out))
    assert table.columns.tolist() == ["prediction", "attention_a", "attention_b", "attention_n"]
    np.testing.assert_allclose(table.iloc[:, 1:].sum(axis=1), 1.0, atol=2e-3)


def test_info(data, capsys):
    status, out, _ = _run(capsys, "info", data["text_model"])
    assert status == 0
    assert out.startswith(f"TextAttentionClassifier (model file format {FORMAT_VERSION})")
    assert "text_column: text" in out and "d_model=8" in out


# -------------------------------------------------------------------- errors


def _error_cases(data, tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "pickle.skat").write_bytes(b"\x80\x04\x95not a model")
    return {
        "missing data": (["fit", tmp_path / "absent.csv", "--target", "y", "--out",
                          tmp_path / "m.skat"], "no such file: "),
        "missing model": (["predict", tmp_path / "absent.skat", data["numeric"]],
                          "no such file: "),
        "bad target": (["fit", data["numeric"], "--target", "label", "--out",
                        tmp_path / "m.skat"], "column 'label' (--target) not found"),
        "bad text column": (["fit", data["text"], "--target", "label", "--text-column",
                             "body", "--out", tmp_path / "m.skat"], "column 'body'"),
        "non-numeric column": (["fit", data["text"], "--target", "label", "--out",
                                tmp_path / "m.skat"], "column 'text' of"),
        "not a model": (["predict", data["numeric"], data["numeric"]],
                        "not a skattention model file"),
        "pickle as model": (["explain", tmp_path / "pickle.skat", data["text"]],
                            "not a skattention model file"),
        "missing columns": (["predict", data["numeric_model"], data["text"]],
                            "lacks the column(s) the model was fitted on: a, b, n"),
        "proba on regressor": (["predict", data["regression_model"], data["regression"],
                                "--proba"], "--proba needs a classifier"),
        "max-len on numeric": (["fit", data["numeric"], "--target", "y", "--max-len", "3",
                                "--out", tmp_path / "m.skat"], "--max-len applies to text"),
        "empty csv": (["fit", tmp_path / "empty.csv", "--target", "y", "--out",
                       tmp_path / "m.skat"], "is empty"),
        "string regression": (["fit", data["text"], "--text-column", "text", "--target",
                               "label", "--task", "regression", "--out", tmp_path / "m.skat"],
                              "regression needs a numeric target"),
        "estimator rejects": (["fit", data["numeric"], "--target", "y", "--d-model", "6",
                               "--n-heads", "4", "--out", tmp_path / "m.skat"],
                              "must be divisible by n_heads"),
        "bad option value": (["demo", "--epochs", "0"], "must be a positive integer"),
        "unknown command": (["train"], "invalid choice"),
        "missing argument": (["fit", data["numeric"]], "required"),
        "output directory": (["predict", data["numeric_model"], data["numeric"], "--out",
                              tmp_path / "no" / "such" / "dir.csv"], ""),
    }


def test_errors_are_one_line(data, capsys, tmp_path):
    for name, (args, message) in _error_cases(data, tmp_path).items():
        line = _error(capsys, *args)
        assert message in line, (name, line)
    assert not (tmp_path / "m.skat").exists()


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "fit" in capsys.readouterr().out


def test_progress_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stdout, stderr = io.StringIO(), Terminal()
    progress = _Progress("fit", 4, stdout, stderr)
    progress.write("Iteration 1, loss = 0.50000000 (0.01 s)\nIteration 2, loss = 0.2")
    progress.write("5000000 (0.01 s)\nsomething else\n")
    progress.close()
    assert stdout.getvalue() == "something else\n"
    assert stderr.getvalue() == ("\rfit [" + "#" * 7 + "-" * 23 + "] 1/4 epochs, loss 0.5000"
                                 "\rfit [" + "#" * 15 + "-" * 15 + "] 2/4 epochs, loss 0.2500\n")


def test_fit_on_a_terminal_draws_the_bar_from_verbose(data, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # the estimators' line output
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    status, out, err = _run(capsys, "fit", data["numeric"], "--target", "y",
                            "--out", tmp_path / "m.skat", *TINY)
    assert status == 0, err
    assert "Iteration" not in out and "Iteration" not in err
    assert "\rfit [" + "#" * 30 + "] 5/5 epochs, loss " in err
    assert load(tmp_path / "m.skat").verbose is False


# ------------------------------------------------------------ process entry


def test_python_dash_m_runs_a_command(data, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out_path = tmp_path / "predictions.csv"
    result = subprocess.run([sys.executable, "-m", "skattention", "predict",
                             str(data["text_model"]), str(data["text"]), "--out",
                             str(out_path)], capture_output=True, text=True, timeout=300,
                            cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
    assert len(pd.read_csv(out_path)) == 40
    result = subprocess.run([sys.executable, "-m", "skattention", "predict",
                             str(tmp_path / "absent.skat"), str(data["text"])],
                            capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert result.returncode == 1
    assert result.stderr == f"skattention: error: no such file: {tmp_path / 'absent.skat'}\n"


def test_console_script_is_declared():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    with open(ROOT / "pyproject.toml", "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert scripts["skattention"] == "skattention.__main__:main"
