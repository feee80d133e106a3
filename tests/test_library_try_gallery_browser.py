"""The pictures of "Try the LoRA" and of Compare's "Render in every run" stay on the page while the list follows the
renders: a poll used to draw every card anew (Compare on every poll, changed or not: each 1.5 s while one renders),
so every picture was loaded and painted again, flickered, and a focused one lost the keyboard focus."""

from __future__ import annotations

import io

from PIL import Image

import trainer
from studio.processes import process_token
from studio.settings import load_settings
from studio.workspace import Workspace
from tests.browser_studio import browser_marks, open_page
from tests.test_trainer_renders import REQUEST, finished_job
from tests.test_try_browser import _server

pytestmark = browser_marks


def _rendered(store, root, job, render_id: str) -> None:
    """The render finished as the worker leaves it: its pictures on disk and in its result."""
    folder = Workspace(root).jobs / job.id / "renders" / render_id
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for index, strength in enumerate((0, 1)):
        data = io.BytesIO()
        Image.new("RGB", (80, 64), (200, 40 * index, 40)).save(data, "PNG")
        (folder / f"{index}.png").write_bytes(data.getvalue())
        images.append({"strength": strength, "lora": None if strength == 0 else 0, "file": f"{index}.png"})
    store.finish(render_id, "completed", message="Rendered 2 images.", result={"images": images})


MARK = """(selector) => { const imgs = [...document.querySelectorAll(selector)];
  imgs.forEach((img) => { img.qaKept = true; }); return imgs.length; }"""
KEPT = "(selector) => [...document.querySelectorAll(selector)].map((img) => img.qaKept === true)"


def test_a_polled_try_list_keeps_the_pictures_it_shows(demo_root, demo_paths, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    app = trainer.create_app(load_settings({"STUDIO_ROOT": str(demo_root), "STUDIO_DEMO": "1"}))
    store = app.extensions["job_store"]
    job = finished_job(store, demo_root, demo_paths)
    client = app.test_client()
    done = client.post(f"/api/jobs/{job.id}/renders", json=REQUEST).get_json()["render"]["id"]
    _rendered(store, demo_root, job, done)
    waiting = client.post(f"/api/jobs/{job.id}/renders", json={**REQUEST, "seed": 8}).get_json()["render"]["id"]
    with _server(demo_root, tmp_path) as web, sync_playwright() as p:
        browser, page, problems = open_page(p)
        page.goto(f"{web.url}/jobs/{job.id}")
        shown = f".try-card[data-render='{done}'] img"
        expect(page.locator(shown)).to_have_count(2)
        page.wait_for_function("(s) => [...document.querySelectorAll(s)].every((img) => img.complete)", arg=shown)
        assert page.evaluate(MARK, shown) == 2
        store.start(waiting, process_token())  # the other render starts: its card changes, the list is drawn
        expect(page.locator(f".try-card[data-render='{waiting}'] [data-status]")).to_have_text("running")
        assert page.evaluate(KEPT, shown) == [True, True]
        _rendered(store, demo_root, job, waiting)
        expect(page.locator(f".try-card[data-render='{waiting}'] img")).to_have_count(2)
        assert page.evaluate(KEPT, shown) == [True, True]
        assert problems == []
        browser.close()


def test_compare_keeps_its_pictures_and_their_focus_while_it_polls(demo_root, demo_paths, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    app = trainer.create_app(load_settings({"STUDIO_ROOT": str(demo_root), "STUDIO_DEMO": "1"}))
    store = app.extensions["job_store"]
    first, second = (finished_job(store, demo_root, demo_paths) for _ in range(2))
    with _server(demo_root, tmp_path) as web, sync_playwright() as p:
        browser, page, problems = open_page(p)
        page.goto(f"{web.url}/compare?jobs={first.id},{second.id}")
        page.wait_for_function("document.querySelector('#ctry-size option') !== null")
        page.fill("#ctry-prompt", "[trigger], a red circle")
        page.click("#ctry-go")
        expect(page.locator(".ctry-row")).to_have_count(1)
        (made_first,) = store.list(parent_id=first.id, kind="render")
        _rendered(store, demo_root, first, made_first.id)  # the second run's still waits: the list polls each 1.5 s
        shown = "#ctry-list img"
        expect(page.locator(shown)).to_have_count(2)
        page.wait_for_function("(s) => [...document.querySelectorAll(s)].every((img) => img.complete)", arg=shown)
        assert page.evaluate(MARK, shown) == 2
        page.locator(shown).first.focus()
        page.wait_for_timeout(4000)  # two polls or more, nothing changed
        assert page.evaluate(KEPT, shown) == [True, True]
        assert page.evaluate("document.activeElement && document.activeElement.qaKept === true")
        assert problems == []
        browser.close()
