"""The examples and the demo run and print what they promise."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_attention_weights_example_runs():
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "attention_weights.py")],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    padded = next(line for line in result.stdout.splitlines() if "padded" in line)
    assert padded.split()[-3:] == ["0.000", "0.000", "0.000"]


def test_cli_demo_runs_and_reports_timing():
    result = subprocess.run([sys.executable, "-m", "skattention", "demo", "--epochs", "15"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    accuracy = float(result.stdout.split("test accuracy ")[1].split()[0])
    assert accuracy > 0.8
    assert "attention forward + backward" in result.stdout


def test_cli_reports_errors_in_one_line():
    result = subprocess.run([sys.executable, "-m", "skattention", "demo", "--epochs", "0"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 1
    assert result.stderr.startswith("skattention: error:")
    assert "Traceback" not in result.stderr
