"""`dvc-stream ereg` driven by a real browser (headless Chromium through chromedriver, both
from Debian, installed by .ci/run): load the page, move a translation control, see the
difference image change, press Save, and find the value set in the saved registration."""
import subprocess
import time

import pandas as pd
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from helpers import BIN, run

MEAN_OF_IMAGE = """
const img = document.getElementById(arguments[0]);
if (!img.complete || img.naturalWidth === 0) return null;
const c = document.createElement('canvas');
c.width = img.naturalWidth; c.height = img.naturalHeight;
const g = c.getContext('2d'); g.drawImage(img, 0, 0);
const d = g.getImageData(0, 0, c.width, c.height).data;
let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i];
return [s / (d.length / 4)];  // a list: a mean of 0 must not read as 'not ready'
"""


@pytest.fixture
def browser():
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        o.add_argument(a)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    yield d
    d.quit()


def test_move_translation_and_save(browser, tmp_path):
    run(BIN / "dvc-stream", "synth", tmp_path / "s", "--shape", "48", "--chunk", "16", "--speckle", "4",
        "--translate", "2", "0", "0", "-q")
    server = subprocess.Popen([str(BIN / "dvc-stream"), "ereg", tmp_path / "s" / "im1.zarr", tmp_path / "s" / "im2.zarr",
                               "-od", tmp_path / "out"], stdout=subprocess.PIPE, text=True)
    try:
        url = next(w for w in server.stdout.readline().split() if w.startswith("http://"))
        assert url.startswith("http://127.0.0.1:")
        browser.get(url)
        wait = WebDriverWait(browser, 20)
        before = wait.until(lambda d: d.execute_script(MEAN_OF_IMAGE, "diff-0"))[0]
        assert before > 20, "image 2 is off by 2 voxels: the difference shows the texture"
        tz = browser.find_element(By.ID, "tz")
        tz.clear()
        tz.send_keys("2")
        wait.until(lambda d: "t=2,0,0" in d.find_element(By.ID, "diff-0").get_attribute("src"))
        time.sleep(0.3)
        after = wait.until(lambda d: d.execute_script(MEAN_OF_IMAGE, "diff-0"))[0]
        assert after < before / 5, f"the difference image changes when Φ is right: {before} → {after}"
        browser.find_element(By.ID, "save").click()
        wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("saved"))
        saved = pd.read_csv(tmp_path / "out" / "im1-im2-ereg-registration.tsv", sep="\t")
        assert len(saved) == 1
        assert (saved.Zdisp[0], saved.Ydisp[0], saved.Xdisp[0]) == (2.0, 0.0, 0.0)
        assert (saved.Fzz[0], saved.Fyy[0], saved.Fxx[0]) == (1.0, 1.0, 1.0)
    finally:
        server.kill()
        server.wait()
