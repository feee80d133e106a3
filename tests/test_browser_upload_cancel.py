"""An upload on its way can be cancelled: the request in flight is cut, nothing more is sent, nothing is imported,
and what the pod had received (a finished file, a part of one) is deleted from it. Leaving the page meanwhile asks
first."""

from __future__ import annotations

import requests

from studio.workspace import Workspace
from tests.browser_studio import browser_marks, open_page
from tests.helpers import ServerProcess
from tests.test_datasets_support import image_bytes

pytestmark = browser_marks


def test_cancel_cuts_the_upload_imports_nothing_and_leaves_nothing_on_the_pod(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    paths = []
    for i, name in enumerate(["first.png", "second.png"]):
        (tmp_path / name).write_bytes(image_bytes(i, size=(96, 96)))
        paths.append(str(tmp_path / name))
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Cancelled"}, timeout=10).json()["id"]
        browser, page, problems = open_page(p)
        passed, held = [], []

        def chunks(route):  # the first file's piece goes through; the second's hangs, as on a slow connection
            (held if passed else passed).append(route)
            if len(passed) == 1 and not held:
                route.continue_()

        page.route("**/uploads/*/chunks/*", chunks)
        page.goto(f"{server.url}/d/{dataset_id}")
        page.set_input_files("#file-input", paths)
        cancel = page.locator("#upload-cancel")
        expect(cancel).to_be_visible()
        expect(page.locator(".upload-row", has_text="uploaded")).to_have_count(1, timeout=15_000)
        assert len(held) == 1
        # leaving now would end the upload: the page asks first
        asked = page.evaluate("""() => { const ev = new Event('beforeunload', { cancelable: true });
                                         window.dispatchEvent(ev); return ev.defaultPrevented; }""")
        assert asked is True
        cancel.click()
        expect(page.locator("#uploads-title")).to_have_text("Upload cancelled")
        expect(page.locator("#import-status")).to_contain_text("nothing was imported")
        expect(page.locator(".upload-row.failed", has_text="cancelled")).to_have_count(1)
        expect(cancel).to_have_count(0)
        uploads = Workspace(studio_root).uploads
        assert list(uploads.glob("session-*")) == [], "what was sent stays on the pod"
        images = requests.get(f"{server.url}/api/datasets/{dataset_id}/images", timeout=10).json()["images"]
        assert images == []
        asked = page.evaluate("""() => { const ev = new Event('beforeunload', { cancelable: true });
                                         window.dispatchEvent(ev); return ev.defaultPrevented; }""")
        assert asked is False  # nothing on its way any more: leaving is free
        assert problems == []
        browser.close()


def test_a_file_sent_again_after_the_page_closed_mid_upload_goes_on_from_what_the_pod_kept(studio_root, tmp_path):
    import os

    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    from tests.browser_studio import ARGS, CHROMIUM, watch_page

    big = tmp_path / "noise.png"
    Image.frombytes("RGB", (1000, 1000), os.urandom(1000 * 1000 * 3)).save(big)  # ~3 MB: 3 chunks of 1 MB
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9", "UPLOAD_CHUNK_MB": "1"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Resumed"}, timeout=10).json()["id"]
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context()
        first = context.new_page()
        passed = []

        def two_pieces(route):  # the connection goes after two pieces (then the laptop's lid closes)
            if len(passed) < 2:
                passed.append(route.request.url)
                route.continue_()
            else:
                route.abort()

        first.route("**/uploads/*/chunks/*", two_pieces)
        first.goto(f"{server.url}/d/{dataset_id}")
        first.set_input_files("#file-input", str(big))
        sid = None
        for _ in range(200):
            sid = first.evaluate("Object.keys(localStorage).filter((k) => k.startsWith('chunked-upload:'))"
                                 ".map((k) => localStorage.getItem(k))[0] || null")
            session = sid and requests.get(f"{server.url}/api/datasets/{dataset_id}/uploads/{sid}", timeout=10).json()
            if session and len(session["received"]) == 2:
                break
            first.wait_for_timeout(100)
        assert session["missing"] == [2], session
        first.close(run_before_unload=False)

        second = context.new_page()
        problems = watch_page(second)
        sent = []
        second.on("request", lambda r: sent.append(r.url) if "/chunks/" in r.url and r.method == "PUT" else None)
        second.goto(f"{server.url}/d/{dataset_id}")
        second.set_input_files("#file-input", str(big))
        expect(second.locator("#import-status")).to_contain_text("Imported 1 image", timeout=30_000)
        assert sent == [f"{server.url}/api/datasets/{dataset_id}/uploads/{sid}/chunks/2"]  # only the piece missing
        images = requests.get(f"{server.url}/api/datasets/{dataset_id}/images", timeout=10).json()["images"]
        assert [i["name"] for i in images] == ["noise.png"]
        assert second.evaluate("Object.keys(localStorage).filter((k) => k.startsWith('chunked-upload:')).length") == 0
        assert problems == []
        browser.close()


def test_a_batch_importing_leaves_the_cancel_button_of_the_next_batch_on_its_way(studio_root, tmp_path):
    """Two batches dropped one after the other: the first one's import, reporting in the panel, replaced the second
    one's Cancel button, and the panel then shrank to one line while the second was still going up."""
    from playwright.sync_api import expect, sync_playwright

    for i, name in enumerate(["slow.png", "quick.png"]):
        (tmp_path / name).write_bytes(image_bytes(i, size=(96, 96)))
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Two batches"}, timeout=10).json()["id"]
        browser, page, problems = open_page(p)
        held = []

        def chunks(route):  # the first batch's piece hangs, as on a slow connection; the next one's goes through
            if held:
                route.continue_()
            else:
                held.append(route)

        page.route("**/uploads/*/chunks/*", chunks)
        page.goto(f"{server.url}/d/{dataset_id}")
        page.set_input_files("#file-input", str(tmp_path / "slow.png"))
        cancel = page.locator("#upload-cancel")
        expect(cancel).to_be_visible()
        page.wait_for_function("() => document.querySelectorAll('.upload-row').length === 1")
        page.set_input_files("#file-input", str(tmp_path / "quick.png"))
        expect(page.locator("#import-status")).to_contain_text("Imported 1 image", timeout=20_000)
        expect(cancel).to_be_visible()
        expect(page.locator("#uploads-title")).to_contain_text("Uploading")
        page.wait_for_timeout(7000)  # past the moment a finished panel shrinks to its one line
        assert "compact" not in (page.locator("#uploads").get_attribute("class") or "")
        expect(cancel).to_be_visible()
        cancel.click()
        expect(page.locator("#uploads-title")).to_have_text("Upload cancelled")
        images = requests.get(f"{server.url}/api/datasets/{dataset_id}/images", timeout=10).json()["images"]
        assert [image["name"] for image in images] == ["quick.png"]  # the batch that came in stays
        assert problems == []
        browser.close()


def test_outside_a_secure_context_an_upload_is_still_known_by_its_content(studio_root, tmp_path):
    """Plain http to a LAN address has no crypto.subtle: an upload was known for resuming by its name, size and date
    alone, so another file of that name, size and date could go on from the first one's pieces."""
    from playwright.sync_api import sync_playwright

    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Plain"}, timeout=10).json()["id"]
        browser, page, problems = open_page(p)
        page.add_init_script("Object.defineProperty(Crypto.prototype, 'subtle', { get: () => undefined });")
        page.goto(f"{server.url}/d/{dataset_id}")
        prints = page.evaluate("""async () => {
            const file = (bytes) => new File([new Uint8Array(bytes)], "a.png", { lastModified: 1700000000000 });
            const one = [1, 2, 3, 4], other = [1, 2, 3, 5];
            const print = window.chunkedUpload.fingerprint;
            return [window.crypto.subtle === undefined, await print(file(one)), await print(file(one)),
                    await print(file(other))];
        }""")
        assert prints[0] is True
        assert prints[1] == prints[2] and prints[1] != prints[3]
        assert problems == []
        browser.close()
