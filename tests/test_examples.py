"""The examples and the demo run and print what they promise."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_attention_weights_example_runs():
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "attention_weights.py")],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    padded = next(line for line in result.stdout.splitlines() if "padded" in line)
    assert padded.split()[-3:] == ["0.000", "0.000", "0.000"]


def _accuracy(stdout, model):
    match = re.search(rf"^{model}: (\d+) epochs in [\d.]+ s.*test accuracy ([\d.]+)$", stdout,
                      flags=re.MULTILINE)
    assert match, stdout
    return int(match.group(1)), float(match.group(2))


def test_cli_demo_runs_and_reports_results():
    result = subprocess.run([sys.executable, "-m", "skattention", "demo", "--epochs", "15"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # Text: SMS spam, then the tokens each class attended to most.
    epochs, accuracy = _accuracy(out, "TextAttentionClassifier")
    assert 1 <= epochs <= 15 and accuracy > 0.9
    tokens = {}
    for label in ("ham", "spam"):
        line = next(line for line in out.splitlines()
                    if line.startswith(f"  most attended tokens, {label}: "))
        pairs = line.split(": ", 1)[1].split(", ")
        assert len(pairs) == 8
        tokens[label] = [pair.rsplit(" ", 1)[0] for pair in pairs]
        weights = [float(pair.rsplit(" ", 1)[1]) for pair in pairs]
        assert weights == sorted(weights, reverse=True) and weights[0] > 0
        assert not {"<start>", "<unk>"} & set(tokens[label])
    assert {"call", "txt", "claim", "free", "www", "mobile"} & set(tokens["spam"])
    # Digits: accuracy and attention over the 8 pixel rows.
    epochs, accuracy = _accuracy(out, "AttentionClassifier")
    assert 1 <= epochs <= 15 and accuracy > 0.8
    rows = next(line for line in out.splitlines() if line.startswith("mean attention per"))
    weights = [float(w) for w in rows.split(":")[1].split()]
    assert len(weights) == 8 and abs(sum(weights) - 1) < 0.05
    # The attention core timing.
    timing = re.search(r"^attention forward \+ backward, .*: ([\d.]+) ms$", out, re.MULTILINE)
    assert timing and float(timing.group(1)) > 0
    # Progress goes to stderr (one summary line per fit when it is not a terminal).
    assert "sms spam: " in result.stderr and "digits: " in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_reports_errors_in_one_line():
    result = subprocess.run([sys.executable, "-m", "skattention", "demo", "--epochs", "0"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 1
    assert result.stderr.startswith("skattention: error:")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
