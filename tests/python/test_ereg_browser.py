"""`dvc-stream ereg` driven by a real browser (headless Chromium through chromedriver, both
from Debian, installed by .ci/run): load the page, move a translation control, see the
difference image change, press Save, and find the value set in the saved registration; a page
from another origin (another port on 127.0.0.1, or a name rebound to 127.0.0.1) can neither
save nor read, even when it knows the token; values that make no Φ are refused on the page."""
import http.server
import subprocess
import threading
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
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chromium'}",
              # A name an attacker controls, resolved to this machine (what DNS rebinding achieves).
              "--host-resolver-rules=MAP rebound.test 127.0.0.1"):
        o.add_argument(a)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    d.set_script_timeout(20)
    yield d
    d.quit()


@pytest.fixture
def ereg(tmp_path):
    """A pair offset by 2 voxels in Z, and ereg serving it: (url with token, output folder)."""
    run(BIN / "dvc-stream", "synth", tmp_path / "s", "--shape", "48", "--chunk", "16", "--speckle", "4",
        "--translate", "2", "0", "0", "-q")
    server = subprocess.Popen([str(BIN / "dvc-stream"), "ereg", tmp_path / "s" / "im1.zarr", tmp_path / "s" / "im2.zarr",
                               "-od", tmp_path / "out"], stdout=subprocess.PIPE, text=True)
    try:
        url = next(w for w in server.stdout.readline().split() if w.startswith("http://"))
        assert url.startswith("http://127.0.0.1:") and "/?token=" in url
        yield url, tmp_path / "out"
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
