"""`dvc-stream view` driven by a real browser (headless Chromium through chromedriver, as
test_ereg_browser.py): on a real run (synth + ldic), change the slice, the axis and the column,
click a point and read its row (the table's row, to the last bit), draw arrows, the status
map and the residual, and move the opacity slider. Screenshots are kept in
tests/python/artifacts/."""
import subprocess
import time

import pandas as pd
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from helpers import ARTIFACTS, BIN, chromium, run

LOADED = """
const img = document.getElementById(arguments[0]);
return img.complete && img.naturalWidth > 0 && img.src.includes(arguments[1]);
"""

# Non-transparent pixels of the arrows' canvas.
INKED = """
const c = document.getElementById("marks"), d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
return n;
"""

# Mean grey level of an image as drawn.
MEAN = """
const img = document.getElementById(arguments[0]);
if (!img.complete || img.naturalWidth === 0) return null;
const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
const g = c.getContext('2d'); g.drawImage(img, 0, 0);
const d = g.getImageData(0, 0, c.width, c.height).data;
let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i];
return [s / (d.length / 4)];
"""


@pytest.fixture
def browser(tmp_path):
    d = chromium(tmp_path / "chromium", "1400,900")
    yield d
    d.quit()


@pytest.fixture
def view(tmp_path):
    """A pair moved by 2 voxels in Z, ldic's field on it, and view serving both: (url, table)."""
    run(BIN / "dvc-stream", "synth", tmp_path / "s", "--shape", "48", "--chunk", "16", "--speckle", "4",
        "--translate", "2", "0", "0", "-q")
    s = tmp_path / "s"
    run(BIN / "dvc-stream", "ldic", s / "im1.zarr", s / "im2.zarr", "--half-window-size", "6", "--node-spacing", "8",
        "--out-dir", tmp_path / "out", "-q")
    table = tmp_path / "out" / "im1-im2-ldic.parquet"
    server = subprocess.Popen([str(BIN / "dvc-stream"), "view", table, s / "im1.zarr", s / "im2.zarr"],
                              stdout=subprocess.PIPE, text=True)
    try:
        url = next(w for w in server.stdout.readline().split() if w.startswith("http://"))
        assert url.startswith("http://127.0.0.1:") and "/?token=" in url
        yield url, table
    finally:
        server.kill()
        server.wait()


def set_range(browser, el_id, value):
    el = browser.find_element(By.ID, el_id)
    browser.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));", el, value)


def test_slice_column_click_row_arrows_status_residual(browser, view):
    url, table = view
    rows = pd.read_parquet(table)
    browser.get(url)
    wait = WebDriverWait(browser, 20)
    wait.until(lambda d: d.execute_script(LOADED, "base", "index=24") and d.execute_script(LOADED, "overlay", "column=Zdisp"))
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-points") == "25")
    assert "im1-im2-ldic.parquet" in browser.find_element(By.ID, "title").text
    # The colour bar's numbers are the converged rows' range of Zdisp: around the true 2.
    assert abs(float(browser.find_element(By.ID, "bar_lo").text) - 2) < 0.05
    assert abs(float(browser.find_element(By.ID, "bar_hi").text) - 2) < 0.05
    browser.save_screenshot(str(ARTIFACTS / "view-zdisp.png"))

    # Another slice: the nodes of plane Z = 16.
    set_range(browser, "slice", 17)
    wait.until(lambda d: d.execute_script(LOADED, "base", "index=17&") and d.find_element(By.TAG_NAME, "body").get_attribute("data-slice") == "0:17")
    # Another column: its overlay, its range.
    Select(browser.find_element(By.ID, "column")).select_by_value("error")
    wait.until(lambda d: d.execute_script(LOADED, "overlay", "column=error"))
    lo, hi = float(browser.find_element(By.ID, "lo").get_attribute("value")), float(browser.find_element(By.ID, "hi").get_attribute("value"))
    good = rows[rows.returnStatus == 2]
    assert good.error.min() * (1 - 1e-5) <= lo < hi <= good.error.max() * (1 + 1e-5), (lo, hi)

    # Click point 7 of the slice: its row, as the table holds it.
    time.sleep(0.3)
    k = 7
    dx, dy = browser.execute_script("return window.pointOffset(arguments[0]);", k)
    want = browser.execute_script("return points[arguments[0]].row;", k)
    ActionChains(browser).move_to_element_with_offset(browser.find_element(By.ID, "marks"), int(round(dx)), int(round(dy))).click().perform()
    wait.until(lambda d: d.find_element(By.ID, "row").get_attribute("data-row") == str(want)
               and "clicked" in d.find_element(By.ID, "rowtitle").text)
    shown = {tr.find_elements(By.TAG_NAME, "td")[0].text: tr.find_elements(By.TAG_NAME, "td")[1].get_attribute("data-value")
             for tr in browser.find_elements(By.CSS_SELECTOR, "#row tr")}
    row = rows.iloc[want]
    assert set(shown) == set(rows.columns)
    for name in rows.columns:
        assert float(shown[name]) == float(row[name]), (name, shown[name], row[name])
    assert row.Zpos == 16.0, "a node of the plane shown"

    # Arrows: drawn on the canvas.
    Select(browser.find_element(By.ID, "display")).select_by_value("arrows")
    wait.until(lambda d: d.execute_script(INKED) > 200)
    # The status map, and the opacity slider.
    Select(browser.find_element(By.ID, "display")).select_by_value("status")
    wait.until(lambda d: d.execute_script(LOADED, "overlay", "mode=status"))
    set_range(browser, "opacity", 30)
    wait.until(lambda d: d.find_element(By.ID, "overlay").value_of_css_property("opacity") == "0.3")
    # The residual of the field's own deformation: small (the field is right).
    Select(browser.find_element(By.ID, "display")).select_by_value("residual")
    wait.until(lambda d: d.execute_script(LOADED, "overlay", "/residual?"))
    assert browser.execute_script(MEAN, "overlay")[0] < 5
    set_range(browser, "opacity", 100)
    # Another axis: its slices.
    Select(browser.find_element(By.ID, "axis")).select_by_value("1")
    wait.until(lambda d: d.execute_script(LOADED, "base", "axis=1&index=24"))
    Select(browser.find_element(By.ID, "display")).select_by_value("interp")
    Select(browser.find_element(By.ID, "column")).select_by_value("Zdisp")
    wait.until(lambda d: d.execute_script(LOADED, "overlay", "mode=interp") and d.execute_script(LOADED, "overlay", "column=Zdisp"))
    set_range(browser, "opacity", 70)
    time.sleep(0.3)
    browser.save_screenshot(str(ARTIFACTS / "view-interpolated.png"))
