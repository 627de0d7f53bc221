"""Paths and a runner shared by the Python tests (imported by test modules in this folder)."""
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "target" / "debug"
EXAMPLES = ROOT / "tests" / "data" / "spam-0.9.1"
# Screenshots the browser tests keep (git-ignored).
ARTIFACTS = ROOT / "tests" / "python" / "artifacts"
ARTIFACTS.mkdir(exist_ok=True)


def run(*args):
    """Runs a dvc-stream binary; fails the test with its stderr if it fails."""
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r
