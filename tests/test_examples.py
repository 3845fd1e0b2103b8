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
    result = subprocess.run([sys.executable, "-m", "skattention", "demo"], capture_output=True,
                            text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "forward + backward" in result.stdout
    assert "with 'the mat' padded:" in result.stdout
