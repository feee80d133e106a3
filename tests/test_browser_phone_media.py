"""What a phone brings, in a real browser against a real server: an iPhone photo (HEIC, which Chromium cannot
show) shows upright in the tile and the editor and follows a rotation; a clip dropped on the gallery becomes its
sharpest frames, upright, with what the import says about them."""

from __future__ import annotations

import requests

from tests.browser_studio import DESKTOP, browser_marks, open_page
from tests.helpers import ServerProcess
from tests.test_datasets_image_formats import heic_photo
from tests.test_datasets_support import image_bytes
from tests.videos import video_bytes

pytestmark = browser_marks


def test_an_iphone_photo_shows_upright_in_the_gallery_and_the_editor(studio_root, tmp_path):
    """Chromium shows no HEIC: the tile and the editor show what the studio made of it, turned as on the phone."""
    from playwright.sync_api import expect, sync_playwright

    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Phone"}, timeout=10).json()["id"]
        files = [("files", ("IMG_0042.HEIC", heic_photo(size=(800, 600)), "image/heic"))]
        requests.post(f"{server.url}/api/datasets/{dataset_id}/upload?wait=20", files=files,
                      timeout=60).raise_for_status()
        browser, page, problems = open_page(p, DESKTOP)
        page.goto(f"{server.url}/d/{dataset_id}")
        expect(page.locator(".tile")).to_have_count(1)
        natural = """(selector) => { const i = document.querySelector(selector);
            return i && i.complete ? [i.naturalWidth, i.naturalHeight] : null; }"""
        page.wait_for_function(f"({natural})('.tile img') && ({natural})('.tile img')[0] > 0")
        tile = page.evaluate(natural, ".tile img")
        assert tile[0] < tile[1], tile  # a portrait, as it was taken
        expect(page.locator("#ed-size")).to_contain_text("600×800")
        page.wait_for_function(f"({natural})('#preview-img') && ({natural})('#preview-img')[0] > 0")
        assert page.evaluate(natural, "#preview-img") == [600, 800]
        page.click("#ed-rotr")
        expect(page.locator("#ed-size")).to_contain_text("800×600")
        page.wait_for_function(f"(({natural})('#preview-img') || [])[0] === 800")
        assert problems == []
        browser.close()


def test_a_clip_dropped_on_the_gallery_becomes_its_sharpest_frames(studio_root, artifacts_dir, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    clip = tmp_path / "dog walk.mp4"
    clip.write_bytes(video_bytes([1, 2, 3], size=(320, 192), turned=True))
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Dog"}, timeout=10).json()["id"]
        browser, page, problems = open_page(p, DESKTOP)
        page.goto(f"{server.url}/d/{dataset_id}")
        expect(page.locator("#empty")).to_contain_text("videos")
        assert ".mp4" in page.locator("#file-input").get_attribute("accept")
        page.set_input_files("#file-input", str(clip))
        expect(page.locator("#import-status")).to_contain_text("Imported 3 images", timeout=30_000)
        expect(page.locator("#import-status")).to_contain_text("3 frames from 1 video")
        expect(page.locator(".tile")).to_have_count(3)
        assert [t.get_attribute("data-name") for t in page.locator(".tile").all()] == [
            "dog walk-00m00.7s.jpg", "dog walk-00m02.7s.jpg", "dog walk-00m04.7s.jpg"]
        expect(page.locator("#ed-size")).to_contain_text("192×320")  # upright, as the phone was held
        expect(page.locator("#upload-frames")).to_contain_text("Frames from 1 video: one every")
        expect(page.locator("#upload-frames .frame-seconds")).to_be_disabled()  # the import took the choice
        (artifacts_dir / "datasets").mkdir(exist_ok=True)
        page.screenshot(path=str(artifacts_dir / "datasets" / "09-frames-from-a-video.png"))
        assert problems == []
        browser.close()


def test_the_frames_chosen_under_an_upload_go_with_its_import_and_stay_for_the_next(studio_root, tmp_path):
    """One frame a second: a clip of six one-second scenes gives six frames (three by the pod's setting, every
    2 s); the panel says what each video will give, and the next upload starts from the same choice."""
    from playwright.sync_api import expect, sync_playwright

    clip = tmp_path / "cat.mp4"
    clip.write_bytes(video_bytes([1, 2, 3, 4, 5, 6], seconds_each=1.0, sharp_at=5, size=(320, 192)))
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Cat"}, timeout=10).json()["id"]
        browser, page, problems = open_page(p, DESKTOP)
        page.goto(f"{server.url}/d/{dataset_id}")
        page.evaluate("""localStorage.setItem("frame-choice", JSON.stringify({frame_seconds: 1, max_frames: 10}))""")
        page.set_input_files("#file-input", str(clip))
        expect(page.locator("#import-status")).to_contain_text("6 frames from 1 video", timeout=30_000)
        expect(page.locator(".tile")).to_have_count(6)
        assert page.locator("#upload-frames .frame-seconds").input_value() == "1"
        assert page.locator("#upload-frames .max-frames").input_value() == "10"
        page.click("#uploads-close")
        expect(page.locator("#upload-frames")).to_be_hidden()
        page.reload()
        page.set_input_files("#file-input", str(clip))  # the same clip again: the same choice, shown per video
        expect(page.locator("#upload-frames")).to_contain_text("cat.mp4 (0:06): up to 6 frames")
        expect(page.locator("#import-status")).to_contain_text("Imported", timeout=30_000)
        assert page.locator("#upload-frames .frame-seconds").input_value() == "1"
        assert problems == []
        browser.close()


def test_express_shows_the_frames_choice_for_a_clip(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    clip = tmp_path / "cat.mp4"
    clip.write_bytes(video_bytes([1, 2, 3, 4, 5, 6], seconds_each=1.0, sharp_at=5, size=(320, 192)))
    photo = tmp_path / "cat.png"
    photo.write_bytes(image_bytes(1))
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        browser, page, problems = open_page(p, DESKTOP)
        page.goto(f"{server.url}/express")
        page.set_input_files("#x-files", str(photo))
        expect(page.locator("#x-frames")).to_be_hidden()  # no video: nothing to choose
        page.set_input_files("#x-files", [str(photo), str(clip)])
        expect(page.locator("#x-frames")).to_contain_text("Frames from 1 video: one every")
        expect(page.locator("#x-frames")).to_contain_text("cat.mp4 (0:06): up to 3 frames")
        page.select_option("#x-frames .frame-seconds", "1")
        expect(page.locator("#x-frames")).to_contain_text("cat.mp4 (0:06): up to 6 frames")
        assert problems == []
        browser.close()


def test_on_a_phone_the_toast_leaves_the_reason_a_file_was_skipped_readable(studio_root, tmp_path, artifacts_dir):
    """The uploads panel and the toasts both sit at the bottom of a phone's screen: with the panel open, the toasts
    go to the top, so the line saying why a file was skipped is not under one."""
    from playwright.sync_api import expect, sync_playwright

    from tests.browser_studio import PHONE

    (tmp_path / "good.png").write_bytes(image_bytes(1, size=(96, 72)))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Phone"}, timeout=10).json()["id"]
        browser, page, problems = open_page(p, PHONE)
        page.goto(f"{server.url}/d/{dataset_id}")
        page.set_input_files("#file-input", [str(tmp_path / "good.png"), str(tmp_path / "broken.png")])
        status = page.locator("#import-status")
        expect(status).to_contain_text("broken.png", timeout=30_000)
        toast = page.locator(".toast").first
        expect(toast).to_be_visible()
        page.screenshot(path=str(artifacts_dir / "datasets" / "upload-skipped-390.png"))
        a, b = toast.bounding_box(), status.bounding_box()
        assert a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"], (a, b)  # one above the other
        assert problems == []
        browser.close()


def test_an_upload_of_nothing_usable_is_not_shown_as_a_success(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Nothing"}, timeout=10).json()["id"]
        browser, page, problems = open_page(p)
        page.goto(f"{server.url}/d/{dataset_id}")
        page.set_input_files("#file-input", [str(tmp_path / "broken.png")])
        expect(page.locator("#import-status")).to_contain_text("broken.png", timeout=30_000)
        expect(page.locator("#uploads-title")).to_have_text("Nothing imported")
        expect(page.locator(".toast.toast-error", has_text="Imported 0 images; 1 file not imported")).to_be_visible()
        assert problems == []
        browser.close()
