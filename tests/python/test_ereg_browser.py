"""`dvc-stream ereg` driven by a real browser (headless Chromium through chromedriver, both
from Debian, installed by .ci/run): load the page, move a translation control, see the
difference image change, press Save, and find the value set in the saved registration; press
every step button (±1/±5 voxels, ±0.1°/±1°, ±0.01/±0.05 stretch) and find the Φ shown and the
Φ saved equal to spam's computePhi of what the presses add up to; the comparisons (signed,
absolute, checkerboard), image 2's own slices and "apply Δ", reset; "save deformed image 1"
writes spam's applyPhi of image 1 and refuses to replace it; a page from another origin
(another port on 127.0.0.1, or a name rebound to 127.0.0.1) can neither save nor read, even
when it knows the token; values that make no Φ are refused on the page. Screenshots are kept
in tests/python/artifacts/."""
import http.server
import subprocess
import threading
import time

import numpy as np
import pandas as pd
import pytest
import spam.deformation
import spam.DIC
import tifffile
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from helpers import ARTIFACTS, BIN, chromium, run

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

# What a hostile page does: the requests a browser lets any page send to another origin.
ATTACKER_PAGE = b"""<!doctype html><html><body><script>
async function attack(target, token) {
  const q = token ? "token=" + token : "";
  const out = {};
  const body = JSON.stringify({t: [9, 9, 9], r: [0, 0, 0]});
  for (const [name, type] of [["save_text", "text/plain"], ["save_form", "application/x-www-form-urlencoded"]]) {
    try {
      await fetch(target + "/save?" + q, {method: "POST", mode: "no-cors", headers: {"Content-Type": type}, body});
      out[name] = "sent";
    } catch (e) { out[name] = "failed"; }
  }
  try {
    const r = await fetch(target + "/save?" + q, {method: "POST", headers: {"Content-Type": "application/json"}, body});
    out.save_json = "answered " + r.status;
  } catch (e) { out.save_json = "failed"; }
  try {
    const r = await fetch(target + "/info?" + q);
    out.info = "read " + (await r.text());
  } catch (e) { out.info = "failed"; }
  out.slice = await new Promise((done) => {
    const img = new Image();
    img.onload = () => done("loaded " + img.naturalWidth + "x" + img.naturalHeight);
    img.onerror = () => done("failed");
    img.src = target + "/slice?picture=1&axis=0&index=8&" + q;
  });
  return out;
}
</script></body></html>"""


@pytest.fixture
def browser(tmp_path):
    # A name an attacker controls, resolved to this machine (what DNS rebinding achieves).
    d = chromium(tmp_path / "chromium", "1500,1050", "--host-resolver-rules=MAP rebound.test 127.0.0.1")
    yield d
    d.quit()


def serve(tmp_path, *args):
    server = subprocess.Popen([str(BIN / "dvc-stream"), "ereg", *args, "-od", tmp_path / "out"], stdout=subprocess.PIPE, text=True)
    url = next(w for w in server.stdout.readline().split() if w.startswith("http://"))
    assert url.startswith("http://127.0.0.1:") and "/?token=" in url
    return server, url


@pytest.fixture
def ereg(tmp_path):
    """A pair offset by 2 voxels in Z, and ereg serving it: (url with token, output folder)."""
    run(BIN / "dvc-stream", "synth", tmp_path / "s", "--shape", "48", "--chunk", "16", "--speckle", "4",
        "--translate", "2", "0", "0", "-q")
    server, url = serve(tmp_path, tmp_path / "s" / "im1.zarr", tmp_path / "s" / "im2.zarr")
    try:
        yield url, tmp_path / "out"
    finally:
        server.kill()
        server.wait()


@pytest.fixture
def ereg_tiff(tmp_path):
    """The same pair as TIFFs (for spam's applyPhi to read): (url, output folder, image folder)."""
    run(BIN / "dvc-stream", "synth", tmp_path / "s", "--shape", "48", "--speckle", "4", "--translate", "2", "0", "0",
        "--format", "tiff", "-q")
    server, url = serve(tmp_path, tmp_path / "s" / "im1.tif", tmp_path / "s" / "im2.tif")
    try:
        yield url, tmp_path / "out", tmp_path / "s"
    finally:
        server.kill()
        server.wait()


@pytest.fixture
def attacker():
    """Another origin: a page on another port of 127.0.0.1."""
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(ATTACKER_PAGE)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    thread.join()


def load_and_save(browser, url):
    browser.get(url)
    wait = WebDriverWait(browser, 20)
    wait.until(lambda d: d.execute_script(MEAN_OF_IMAGE, "diff-0"))
    browser.find_element(By.ID, "save").click()
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith(("saved", "not saved")))
    return browser.find_element(By.ID, "status").text


def test_move_translation_and_save(browser, ereg):
    url, out = ereg
    browser.get(url)
    wait = WebDriverWait(browser, 20)
    browser.find_element(By.ID, "mode_abs").click()
    wait.until(lambda d: "picture=abs" in d.find_element(By.ID, "diff-0").get_attribute("src"))
    time.sleep(0.3)
    before = wait.until(lambda d: d.execute_script(MEAN_OF_IMAGE, "diff-0"))[0]
    assert before > 20, "image 2 is off by 2 voxels: the difference shows the texture"
    tz = browser.find_element(By.ID, "tz")
    tz.clear()
    tz.send_keys("2")
    wait.until(lambda d: "t=2%2C0%2C0" in d.find_element(By.ID, "diff-0").get_attribute("src"))
    time.sleep(0.3)
    after = wait.until(lambda d: d.execute_script(MEAN_OF_IMAGE, "diff-0"))[0]
    assert after < before / 5, f"the difference image changes when Φ is right: {before} → {after}"
    browser.find_element(By.ID, "save").click()
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("saved"))
    saved = pd.read_csv(out / "im1-im2-ereg-registration.tsv", sep="\t")
    assert len(saved) == 1
    assert (saved.Zdisp[0], saved.Ydisp[0], saved.Xdisp[0]) == (2.0, 0.0, 0.0)
    assert (saved.Fzz[0], saved.Fyy[0], saved.Fxx[0]) == (1.0, 1.0, 1.0)


def test_a_rotation_that_makes_no_phi_is_refused_on_the_page(browser, ereg):
    url, out = ereg
    assert load_and_save(browser, url).startswith("saved")
    saved = (out / "im1-im2-ereg-registration.tsv").read_bytes()
    rz = browser.find_element(By.ID, "rz")
    rz.clear()
    rz.send_keys("1e308")
    # The live Φ says why there is none …
    WebDriverWait(browser, 20).until(lambda d: "r = 1e308" in d.find_element(By.ID, "phi_error").text)
    assert browser.find_element(By.ID, "phi_00").text == "–"
    browser.find_element(By.ID, "save").click()
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "status").text.startswith("not saved"))
    status = browser.find_element(By.ID, "status").text
    assert "r = 1e308" in status and "360" in status, status
    assert (out / "im1-im2-ereg-registration.tsv").read_bytes() == saved, "the saved registration is unchanged"


def test_another_origin_can_neither_save_nor_read(browser, ereg, attacker):
    url, out = ereg
    target, token = url.split("/?token=")
    saved = out / "im1-im2-ereg-registration.tsv"

    def attack(with_token):
        browser.get(attacker)
        return browser.execute_async_script("attack(arguments[0], arguments[1]).then(arguments[2])", target,
                                            token if with_token else "")

    # Without the token (what any page can try), and with it (a leaked URL): Host and Origin
    # checks refuse the second.
    for with_token in (False, True):
        got = attack(with_token)
        assert got["save_json"] == "failed", got  # the preflight is refused
        assert got["info"] == "failed" and got["slice"] == "failed", got
        assert not saved.exists(), f"a page from another origin saved a registration: {got}"

    # The page itself, with its token, saves …
    assert load_and_save(browser, url).startswith("saved")
    first = saved.read_bytes()
    assert pd.read_csv(saved, sep="\t").Zdisp[0] == 0.0
    # … and the other page still cannot overwrite it.
    for with_token in (False, True):
        attack(with_token)
        time.sleep(0.3)
        assert saved.read_bytes() == first, "a page from another origin changed the saved registration"

    # DNS rebinding: an attacker's name resolved to 127.0.0.1 is the server's origin to the
    # browser, but the Host it sends is refused, so the page and its data do not load.
    port = target.rsplit(":", 1)[1]
    browser.get(f"http://rebound.test:{port}/?token={token}")
    assert "refused" in browser.page_source or "not this machine" in browser.page_source, browser.page_source[:400]
    assert not browser.find_elements(By.ID, "save")
    got = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch("/info?token=" + arguments[0]).then((r) => r.text().then((t) => done(r.status + " " + t)), () => done("failed"));
    """, token)
    assert got.startswith("403"), got
    assert saved.read_bytes() == first


# What the page shows: each parameter's box and the 3 × 4 Φ table, as text.
SHOWN = """
const v = (id) => document.getElementById(id).value;
const phi = [];
for (let i = 0; i < 3; i++) { const row = []; for (let j = 0; j < 4; j++) row.push(document.getElementById(`phi_${i}${j}`).textContent); phi.push(row); }
return {boxes: Object.fromEntries(["tz", "ty", "tx", "rz", "ry", "rx", "zz", "zy", "zx"].map((k) => [k, v(k)])), phi};
"""

STEPS = {"t": [-5, -1, 1, 5], "r": [-1, -0.1, 0.1, 1], "z": [-0.05, -0.01, 0.01, 0.05]}


def step_id(p, s):
    return p + "_" + ("p" if s > 0 else "m") + f"{abs(s):g}".replace(".", "")


def expected_phi(m):
    return spam.deformation.computePhi({"t": [m["tz"], m["ty"], m["tx"]], "r": [m["rz"], m["ry"], m["rx"]],
                                        "z": [m["zz"], m["zy"], m["zx"]]})


def shown_matches(browser, m):
    """Whether the page shows the moves m and their Φ (4 significant digits, tiny values 0)."""
    got = browser.execute_script(SHOWN)
    if any(abs(float(got["boxes"][k]) - v) > 1e-9 for k, v in m.items()):
        return False
    want = expected_phi(m)
    for i in range(3):
        for j in range(4):
            text = got["phi"][i][j]
            mantissa = text.lstrip("-").split("e")[0].replace(".", "").lstrip("0")
            if text in ("", "–") or len(mantissa) > 4:
                return False
            w = want[i, j]
            if abs(w) < 1e-9:
                if text != "0":
                    return False
            elif abs(float(text) - w) > 5e-4 * abs(w) + 1e-12:
                return False
    return True


def wait_shown(browser, m):
    try:
        WebDriverWait(browser, 20).until(lambda d: shown_matches(d, m))
    except TimeoutException:
        raise AssertionError(f"the page shows {browser.execute_script(SHOWN)}, not {m} and {expected_phi(m)}") from None


def wait_loaded(browser):
    WebDriverWait(browser, 20).until(lambda d: all(d.execute_script(MEAN_OF_IMAGE, f"{k}-{a}") for k in ("im1", "im2", "diff")
                                                   for a in range(3)))


def test_every_step_button_and_reset_move_phi_as_pressed(browser, ereg):
    url, out = ereg
    browser.get(url)
    wait = WebDriverWait(browser, 20)
    wait_loaded(browser)
    m = {"tz": 0.0, "ty": 0.0, "tx": 0.0, "rz": 0.0, "ry": 0.0, "rx": 0.0, "zz": 1.0, "zy": 1.0, "zx": 1.0}
    assert shown_matches(browser, m)
    # Every button once (they cancel out), then a few more per parameter so that each ends
    # somewhere of its own; the page must follow at every step.
    extra = {"tz": [1, 1], "ty": [-5], "tx": [1, 5, -1], "rz": [0.1, 0.1, 0.1], "ry": [-1], "rx": [1, -0.1],
             "zz": [0.01], "zy": [-0.05], "zx": [0.05, 0.01, -0.01, -0.01]}
    for p in m:
        for s in STEPS[p[0]] + extra[p]:
            browser.find_element(By.ID, step_id(p, s)).click()
            m[p] = round(m[p] + s, 9)
        wait_shown(browser, m)
    # Accumulated steps show as typed: 0.3, not 0.30000000000000004.
    assert browser.find_element(By.ID, "rz").get_attribute("value") == "0.3"
    browser.save_screenshot(str(ARTIFACTS / "ereg-controls.png"))
    browser.find_element(By.ID, "save").click()
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("saved"))
    saved = pd.read_csv(out / "im1-im2-ereg-registration.tsv", sep="\t")
    want = expected_phi(m)
    names = [["Fzz", "Fzy", "Fzx", "Zdisp"], ["Fyz", "Fyy", "Fyx", "Ydisp"], ["Fxz", "Fxy", "Fxx", "Xdisp"]]
    got = np.array([[saved[n][0] for n in row] for row in names])
    assert np.abs(got - want[:3]).max() < 1e-6, (got, want)
    assert (saved.Zpos[0], saved.Ypos[0], saved.Xpos[0]) == (23.5, 23.5, 23.5)
    # Reset goes back to where ereg started (no -pf: the identity).
    browser.find_element(By.ID, "reset").click()
    m0 = {k: (1.0 if k[0] == "z" else 0.0) for k in m}
    wait_shown(browser, m0)


def test_comparisons_separate_slices_and_apply_delta(browser, ereg):
    url, out = ereg
    browser.get(url)
    wait = WebDriverWait(browser, 20)
    wait_loaded(browser)

    def mean_after(check):
        wait.until(lambda d: check(d.find_element(By.ID, "diff-0").get_attribute("src")))
        time.sleep(0.3)
        return wait.until(lambda d: d.execute_script(MEAN_OF_IMAGE, "diff-0"))[0]

    # Image 2's slice moved on its own by the 2 voxels image 2 is off, then "apply Δ": tZ = 2.
    slider = browser.find_element(By.ID, "s2z")
    s1 = int(browser.find_element(By.ID, "sz").get_attribute("value"))
    browser.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));", slider, s1 + 2)
    wait.until(lambda d: f"picture=2&axis=0&index={s1 + 2}&" in d.find_element(By.ID, "im2-0").get_attribute("src"))
    assert f"index={s1}&" in browser.find_element(By.ID, "im1-0").get_attribute("src"), "image 1's slice stays"
    browser.find_element(By.ID, "apply_0").click()
    wait.until(lambda d: d.find_element(By.ID, "tz").get_attribute("value") == "2")
    assert int(slider.get_attribute("value")) == s1, "image 2's slice back on image 1's"
    # Signed difference (spam's default) under the right Φ: mid grey; absolute: black.
    signed = mean_after(lambda src: "picture=signed" in src and "t=2%2C0%2C0" in src)
    assert abs(signed - 127.5) < 8, signed
    browser.find_element(By.ID, "mode_abs").click()
    assert mean_after(lambda src: "picture=abs" in src) < 8
    # Checkerboard: squares of image 1 and of image 2 moved; more squares with +.
    browser.find_element(By.ID, "mode_checker").click()
    mean_after(lambda src: "picture=checker" in src and "squares=8" in src)
    browser.find_element(By.ID, "sq_plus").click()
    browser.find_element(By.ID, "sq_plus").click()
    browser.find_element(By.ID, "sq_minus").click()
    checker = mean_after(lambda src: "squares=9" in src)
    im1 = browser.execute_script(MEAN_OF_IMAGE, "im1-0")[0]
    assert abs(checker - im1) < 10, (checker, im1)
    browser.save_screenshot(str(ARTIFACTS / "ereg-checkerboard.png"))
    # The linked sliders move image 2's slice with image 1's.
    s = browser.find_element(By.ID, "sz")
    browser.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));", s, 10)
    wait.until(lambda d: "index=10&" in d.find_element(By.ID, "im2-0").get_attribute("src"))
    # Slices fit the window: far larger than the 48-voxel slices.
    assert browser.find_element(By.ID, "im1-0").size["width"] >= 200


def test_save_deformed_image_1(browser, ereg_tiff):
    url, out, images = ereg_tiff
    browser.get(url)
    wait = WebDriverWait(browser, 20)
    wait_loaded(browser)
    for b in ("tz_p1", "tz_p1", "rx_p01", "zy_p001"):
        browser.find_element(By.ID, b).click()
    m = {"tz": 2.0, "ty": 0.0, "tx": 0.0, "rz": 0.0, "ry": 0.0, "rx": 0.1, "zz": 1.0, "zy": 1.01, "zx": 1.0}
    wait_shown(browser, m)
    browser.find_element(By.ID, "save_def").click()
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith(("saved", "not saved")))
    path = out / "im1-im2-ereg-def.tif"
    assert browser.find_element(By.ID, "status").text == f"saved {path}"
    got = tifffile.imread(path)
    im1 = tifffile.imread(images / "im1.tif")
    assert got.shape == im1.shape and got.dtype == im1.dtype
    # spam's applyPhi of image 1 by the Φ the presses make (about the centre; its border of
    # one voxel is spam's zero).
    want = spam.DIC.applyPhi(im1, Phi=expected_phi(m))
    inner = (slice(2, -2),) * 3
    assert np.abs(got[inner] - want[inner]).max() < 1e-2 * np.abs(want[inner]).max()
    # Another save refuses to replace it (ereg was not started with --overwrite).
    first = path.read_bytes()
    browser.find_element(By.ID, "tz_p1").click()
    browser.find_element(By.ID, "save_def").click()
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("not saved"))
    assert "overwrite" in browser.find_element(By.ID, "status").text
    assert path.read_bytes() == first
    assert not list(out.glob("*partial*"))
