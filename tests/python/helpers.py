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


def chromium(profile, size, *extra):
    """Headless Debian Chromium under selenium, with a fresh profile folder and the flags that
    keep it off the network (this machine's network is closed); `extra` adds arguments."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
              f"--window-size={size}", *extra):
        o.add_argument(a)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    d.set_script_timeout(20)
    return d
