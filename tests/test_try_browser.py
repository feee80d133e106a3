"""Try the LoRA and Compare runs in a real browser against a real trainer server (no worker: the test plays it):
a running render is cancelled from its card, an emptied seed is a random one (not seed 0), and Compare's "Render
in every run" refuses an emptied strength instead of rendering the base model under each run's name."""

from __future__ import annotations

import trainer
from studio.processes import process_token
from studio.settings import load_settings
from tests.browser_studio import PHONE, assert_no_sideways_scroll, browser_marks, open_page
from tests.helpers import REPO, ServerProcess, free_port
from tests.test_trainer_renders import REQUEST, finished_job
from trainer import renders

pytestmark = browser_marks


def _server(demo_root, tmp_path):
    env = {"STUDIO_ROOT": str(demo_root), "STUDIO_DEMO": "1", "HOST": "127.0.0.1", "TRAINER_PORT": str(free_port()),
           "CAPTION_URL": "http://127.0.0.1:9", "PYTHONPATH": str(REPO)}
    return ServerProcess("trainer", env, port_var="TRAINER_PORT", log_path=tmp_path / "web.log")


def test_a_running_render_is_cancelled_from_its_card_and_an_emptied_seed_is_random(demo_root, demo_paths, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    app = trainer.create_app(load_settings({"STUDIO_ROOT": str(demo_root), "STUDIO_DEMO": "1"}))
    store = app.extensions["job_store"]
    job = finished_job(store, demo_root, demo_paths)
    client = app.test_client()
    made = client.post(f"/api/jobs/{job.id}/renders", json={**REQUEST, "strengths": [0, 0.5, 1, 1.5, 2]})
    running = made.get_json()["render"]["id"]
    store.start(running, process_token())  # the worker took it (this process: a live owner)
    with _server(demo_root, tmp_path) as web, sync_playwright() as p:
        browser, page, problems = open_page(p, PHONE)
        page.goto(f"{web.url}/jobs/{job.id}")
        card = page.locator(f".try-card[data-render='{running}']")
        button = card.locator("[data-try-delete]")
        expect(button).to_have_text("Cancel")
        expect(button).to_be_enabled()
        assert_no_sideways_scroll(page)
        button.click()
        expect(button).to_have_text("Cancelling…")
        expect(button).to_be_disabled()
        assert store.get(running).stopping  # the worker stops it after the picture it is making
        page.reload()  # the card says so when the page is opened again
        expect(card.locator("[data-try-delete]")).to_have_text("Cancelling…")
        store.finish(running, "stopped", message="Cancelled.")  # as the render process does
        store.delete(running)
        expect(card).to_have_count(0)

        # an emptied seed renders with a random seed, shown in the form and on the card (not seed 0)
        page.fill("#try-prompt", "[trigger], a green cube --n blurry")  # pasted from a preview prompt
        page.fill("#try-seed", "")
        page.click("#try-go")
        new = page.locator(".try-card").first
        expect(new.locator(".prompt")).to_have_text("tok, a green cube")
        expect(new.locator(".try-note")).to_have_text("--n (a negative prompt) was left out: a render here has none.")
        seed = page.input_value("#try-seed")
        assert seed.isdigit(), seed
        (render,) = [r for r in store.list(kind="render") if r.status == "queued"]
        assert render.config["seed"] == int(seed)
        expect(new.locator(".try-meta").first).to_contain_text(f"seed {seed} ·")

        # a card's New seed that cannot queue (the queue of waiting renders is full) says why where it was pressed
        for extra in range(renders.MAX_WAITING - 1):
            client.post(f"/api/jobs/{job.id}/renders", json={**REQUEST, "seed": 1000 + extra})
        expect(page.locator(".try-card")).to_have_count(renders.MAX_WAITING, timeout=30_000)
        reroll = page.locator(".try-card").last.locator("[data-try-reroll]")
        reroll.click()
        expect(page.locator(".toast", has_text="waiting already")).to_be_visible()
        expect(reroll).to_be_enabled()
        assert problems == []
        browser.close()


def test_compare_refuses_an_emptied_strength(demo_root, demo_paths, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    app = trainer.create_app(load_settings({"STUDIO_ROOT": str(demo_root), "STUDIO_DEMO": "1"}))
    store = app.extensions["job_store"]
    first, second = (finished_job(store, demo_root, demo_paths) for _ in range(2))
    with _server(demo_root, tmp_path) as web, sync_playwright() as p:
        browser, page, problems = open_page(p)
        page.goto(f"{web.url}/compare?jobs={first.id},{second.id}")
        page.wait_for_function("document.querySelector('#ctry-size option') !== null")
        page.fill("#ctry-prompt", "[trigger], a red circle")
        page.fill("#ctry-strength", "")
        page.fill("#ctry-seed", "")
        page.click("#ctry-go")
        expect(page.locator("#ctry-error")).to_contain_text("Type the LoRA strength")
        assert store.list(kind="render") == []  # nothing rendered the base model under a run's name
        assert page.input_value("#ctry-seed").isdigit()  # an emptied seed became a random one
        page.fill("#ctry-strength", "0.7")
        page.click("#ctry-go")
        expect(page.locator(".ctry-row")).to_have_count(1)
        made = store.list(kind="render")
        assert sorted(r.config["strengths"] for r in made) == [[0.0, 0.7], [0.7]]
        assert {r.config["seed"] for r in made} == {int(page.input_value("#ctry-seed"))}
        expect(page.locator("#ctry-error")).to_have_text("")
        assert problems == []
        browser.close()
