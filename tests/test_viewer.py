"""The HTML viewer: its scene from the lifted arrays, the programs that write it, and the page itself
opened in a real headless Chromium (skipped, with the reason, where no browser is installed)."""
import base64
import io
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stcformer import STCFormer, save_checkpoint
from stcformer.cli.common import run
from stcformer.cli.infer import main as infer_main
from stcformer.cli.view import main as view_main
from stcformer.data.skeleton import H36M_PARENTS
from stcformer.export.viewer import _levelling, page, read_person_files, viewer_scene

from test_infer import _two_people, files_in


def infer(*args):
    return run(lambda: infer_main([str(a) for a in args]))


def view(*args):
    return run(lambda: view_main([str(a) for a in args]))


@pytest.fixture(scope="module")
def two_people(tmp_path_factory):
    """A 300-frame lift of two people (one of them in frames 60-239) with a small random model."""
    tmp = tmp_path_factory.mktemp("viewer")
    torch.manual_seed(0)
    save_checkpoint(STCFormer(layers=1, d_hid=32, num_heads=2), tmp / "model.pt")
    (tmp / "people.json").write_text(json.dumps(_two_people(T=300, short=range(60, 240))))
    out = tmp / "out"
    assert infer("--checkpoint", tmp / "model.pt", "--keypoints", tmp / "people.json", "--person", "all",
                 "--width", 1000, "--height", 1000, "--fps", 25, "--out", out, "-f", 9, "--device", "cpu",
                 "--html", out / "view.html") == 0
    return out


def _decode(b64, dtype):
    return np.frombuffer(base64.b64decode(b64), dtype=np.dtype(dtype).newbyteorder("<"))


def _scene(html: str) -> dict:
    m = re.search(r'<script id="scene" type="application/json">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


def test_page_is_one_small_file_with_no_network(two_people):
    html = (two_people / "view.html").read_text()
    size = (two_people / "view.html").stat().st_size
    assert size < 2_000_000, size  # 300 frames, two people, no video frames
    assert "://" not in html and "<link" not in html and not re.search(r"<script[^>]*\bsrc=", html)
    scene = _scene(html)
    assert scene["frames"] == 300 and [p["track"] for p in scene["people"]] == [7, 8] and scene["fps"] == 25
    assert files_in(two_people) == ["person_7", "person_8", "view.html"]


def test_scene_carries_the_lifted_arrays(two_people):
    """Positions are the npz's skeleton_3d + scaled root, z up, levelled; frames without a pose are NaN."""
    scene = _scene((two_people / "view.html").read_text())
    z = np.load(two_people / "person_8" / "poses_3d.npz")
    p = scene["people"][1]
    fixed = _decode(p["fixed"], "f4").reshape(300, 17, 3)
    posed = z["posed"]
    assert posed[60:240].all() and not posed[:60].any()
    assert np.isnan(fixed[~posed]).all() and np.isfinite(fixed[posed]).all()
    # rigid: the levelling and the root move the skeleton, bone lengths stay skeleton_3d's
    sk = z["skeleton_3d"][posed]
    for j, parent in enumerate(H36M_PARENTS[1:], 1):
        np.testing.assert_allclose(np.linalg.norm(fixed[posed][:, j] - fixed[posed][:, parent], axis=-1),
                                   np.linalg.norm(sk[:, j] - sk[:, parent], axis=-1), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(_decode(p["kp"], "f4").reshape(300, 17, 2), z["keypoints_2d"].astype(np.float32))
    flags = _decode(p["flags"], "u1").reshape(300, 17)
    assert ((flags & 1) == (z["scores"] >= 0.3)).all() and ((flags & 2) == 2 * z["filled"]).all()


def test_levelling_stands_a_tilted_person_up():
    """A camera pitched 30 degrees down sees people tilted: the scene's up is their body axis."""
    rng = np.random.default_rng(0)
    body = np.zeros((50, 17, 3))
    body[:, 8] = [0, 0, 1.3]                       # thorax above the ankles
    body[:, [3, 6]] = [[0.1, 0, 0.05], [-0.1, 0, 0.05]]
    body += rng.normal(scale=0.01, size=body.shape)
    a = np.deg2rad(30)
    tilt = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rot = _levelling([body @ tilt.T])
    axis = ((body @ tilt.T) @ rot.T)[:, 8] - ((body @ tilt.T) @ rot.T)[:, [3, 6]].mean(1)
    axis = axis.mean(0) / np.linalg.norm(axis.mean(0))
    assert axis[2] > 0.999
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-9)
    assert np.array_equal(_levelling([-body]), np.eye(3))  # upside down on average: left as it is


def test_view_program_writes_the_same_scene_from_the_folder(two_people, tmp_path, capsys):
    assert view(two_people, "--html", tmp_path / "again.html") == 0
    assert "2 people, 300 frames" in capsys.readouterr().out
    a, b = _scene((two_people / "view.html").read_text()), _scene((tmp_path / "again.html").read_text())
    a.pop("title"), b.pop("title")
    assert a == b
    one = read_person_files(two_people / "person_7" / "poses_3d.npz")
    assert len(one) == 1 and len(_scene(page(viewer_scene(one)))["people"]) == 1


@pytest.mark.parametrize("args, message", [
    (["{empty}", "--html", "{tmp}/v.html"], "no poses_3d.npz here"),
    (["{tmp}/missing", "--html", "{tmp}/v.html"], "no such file or folder"),
    (["{text}", "--html", "{tmp}/v.html"], "not a readable npz"),
    (["{empty}", "--html", "{tmp}/v.txt"], "the viewer is a .html file"),
])
def test_view_bad_input_is_one_line(tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "t.npz").write_text("not an npz")
    subst = dict(empty=tmp_path / "empty", tmp=tmp_path, text=tmp_path / "t.npz")
    assert view(*[a.format(**subst) for a in args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "v.html").exists() and not (tmp_path / "v.txt").exists()


def test_infer_html_flags_are_checked_first(tmp_path, capsys, two_people):
    kp = two_people.parent / "people.json"
    for extra, message in ((["--html", tmp_path / "v.png"], "the viewer is a .html file"),
                           (["--html", tmp_path / "v.html", "--html-video"], "--html-video needs --html and --video")):
        assert infer("--checkpoint", "missing.pt", "--keypoints", kp, "--fps", 25, "--out", tmp_path / "o",
                     *extra) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_video_frames_are_small_jpegs():
    from PIL import Image

    from stcformer.export.viewer import encode_video_frames

    frames = (np.full((480, 640, 3), i, np.uint8) for i in range(10))
    v = encode_video_frames(frames, 10, max_frames=4)
    assert v["every"] == 3 and len(v["frames"]) == 4 and (v["width"], v["height"]) == (320, 240)
    with Image.open(io.BytesIO(base64.b64decode(v["frames"][1]))) as im:
        assert im.format == "JPEG" and im.size == (320, 240)


# ---------------------------------------------------------------- in a real browser

def _browser():
    """A headless Chromium through its driver, with no way to the network; skip saying why not."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("no browser: apt-get install chromium chromium-driver (Debian) for the viewer's browser test")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,800", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"):
        options.add_argument(arg)  # every network request goes to a closed port: the page must need none
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def open_page(driver, html):
    """Open ``html`` from the file system and wait until the page has drawn."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(Path(html).resolve().as_uri())
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")


def _canvas_pixels(driver):
    from PIL import Image

    url = driver.execute_script("return document.getElementById('view').toDataURL('image/png')")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as im:
        return np.asarray(im.convert("RGB")).astype(np.int16)


def _bone_pixels(rgb) -> int:
    """Pixels of the left (blue) or right (red) bones' colours."""
    blue, red = np.array([31, 119, 180]), np.array([214, 39, 40])
    return int(((np.abs(rgb - blue).max(-1) < 30) | (np.abs(rgb - red).max(-1) < 30)).sum())


def test_viewer_plays_in_a_real_browser(two_people, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _browser()
    try:
        open_page(driver, two_people / "view.html")
        people = driver.find_element(By.ID, "people")
        assert people.get_attribute("data-count") == "2" and people.text == "2 people"  # two tracks
        first = _canvas_pixels(driver)
        assert _bone_pixels(first) > 200  # skeletons drawn at frame 0
        driver.find_element(By.ID, "slider").send_keys(Keys.END)  # the slider, as a user moves it
        assert driver.execute_script("return window.viewer.frame()") == 299
        driver.find_element(By.ID, "slider").send_keys(Keys.HOME, *[Keys.RIGHT] * 150)
        assert driver.execute_script("return window.viewer.frame()") == 150
        moved = _canvas_pixels(driver)
        assert _bone_pixels(moved) > 200 and np.abs(moved - first).max(-1).astype(bool).sum() > 100
        canvas = driver.find_element(By.ID, "view")
        ActionChains(driver).move_to_element(canvas).click_and_hold().move_by_offset(160, 40).release().perform()
        orbited = _canvas_pixels(driver)
        assert np.abs(orbited - moved).max(-1).astype(bool).sum() > 100  # the orbit drag turned the view
        names = driver.find_elements(By.CSS_SELECTOR, "#legend .who")
        assert [n.text for n in names] == ["person 7", "person 8"]
        for n in names:
            n.click()  # hide both
        assert _bone_pixels(_canvas_pixels(driver)) < 20
        names[1].click()  # person 8 back
        assert _bone_pixels(_canvas_pixels(driver)) > 100
        driver.find_element(By.ID, "play").click()
        WebDriverWait(driver, 20).until(lambda d: d.execute_script("return window.viewer.frame()") > 150)
        shot = tmp_path / "viewer.png"
        driver.save_screenshot(str(shot))
        print(f"viewer screenshot: {shot}")
        assert shot.stat().st_size > 10_000
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        assert not errors, errors
        loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert all(n.startswith(("data:", "file:")) for n in loaded), loaded
    finally:
        driver.quit()


def test_touch_orbits_and_pinch_zooms(two_people):
    """One finger turns the view, two fingers spread apart zoom in (touch events, as a phone sends)."""
    driver = _browser()
    try:
        driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 2})
        open_page(driver, two_people / "view.html")
        dist = "return window.viewer.camera().dist"

        def touch(kind, *points):
            driver.execute_cdp_cmd("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [
                {"x": x, "y": y, "id": i} for i, (x, y) in enumerate(points)]})

        before, d0 = _canvas_pixels(driver), driver.execute_script(dist)
        touch("touchStart", (300, 300))
        for k in range(1, 6):
            touch("touchMove", (300 + 20 * k, 300))
        touch("touchEnd")
        turned = _canvas_pixels(driver)
        assert np.abs(turned - before).max(-1).astype(bool).sum() > 100
        assert driver.execute_script(dist) == d0
        touch("touchStart", (400, 300), (440, 300))
        for k in range(1, 6):
            touch("touchMove", (400 - 15 * k, 300), (440 + 15 * k, 300))
        touch("touchEnd")
        assert driver.execute_script(dist) < 0.7 * d0  # fingers spread: closer
        assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()


def test_viewer_with_video_frames_in_a_real_browser(tmp_path):
    """--html-video's frames draw under the 2D keypoints (the inset is not blank)."""
    from stcformer.export.viewer import encode_video_frames, write_viewer

    out = tmp_path / "lift"
    people = _lifted_arrays(T=12)
    frames = encode_video_frames((np.full((100, 200, 3), (0, 160, 0), np.uint8) for _ in range(12)), 12)
    write_viewer(out / "v.html", viewer_scene(people, video_frames=frames))
    driver = _browser()
    try:
        open_page(driver, out / "v.html")
        from selenium.webdriver.support.ui import WebDriverWait

        green = "const c = document.getElementById('inset').getContext('2d').getImageData(160, 40, 1, 1).data; " \
                "return [c[0], c[1], c[2]]"
        WebDriverWait(driver, 20).until(lambda d: d.execute_script(green)[1] > 120)
        assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()


def _lifted_arrays(T: int) -> list:
    """The npz arrays of one person standing still (for the page's own checks)."""
    rng = np.random.default_rng(1)
    rec = np.tile(rng.normal(scale=0.2, size=(1, 17, 3)).astype(np.float32), (T, 1, 1))
    return [dict(reconstruction=rec, skeleton_3d=rec, skeleton_scale=np.float32(1), root_translation=np.tile(
        np.float32([[0, 0, 4]]), (T, 1)), keypoints_2d=np.full((T, 17, 2), 50, np.float32),
        scores=np.ones((T, 17), np.float32), filled=np.zeros((T, 17), bool), size=np.int32([200, 100]),
        fps=np.float32(10))]


if __name__ == "__main__":
    # python tests/test_viewer.py PAGE.html OUT.png [FRAME]: a screenshot of a page with the test's browser
    # (the README's picture of the viewer)
    page_, png = sys.argv[1], sys.argv[2]
    browser = _browser()
    try:
        open_page(browser, page_)
        browser.execute_script(f"window.viewer.seek({int(sys.argv[3]) if len(sys.argv) > 3 else 0})")
        browser.save_screenshot(png)
    finally:
        browser.quit()
