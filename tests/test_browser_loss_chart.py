"""The loss chart alone in chromium: a long run's 300,000 steps (the form allows a million) draw with their learning
rate, where spreading every point into Math.min(...) threw a RangeError past about 100,000 and left the chart blank;
and on a phone a tap shows the tooltip and a sideways drag pans."""

from __future__ import annotations

from tests.browser_studio import ARGS, CHROMIUM, browser_marks
from tests.helpers import REPO

pytestmark = browser_marks


def test_a_run_of_300000_steps_draws(tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.set_content('<canvas id="c" style="width:900px;height:300px"></canvas><div id="t"></div>')
        page.add_script_tag(path=str(REPO / "trainer" / "static" / "loss_chart.js"))
        drawn = page.evaluate("""() => {
            const chart = new LossChart(document.getElementById("c"), document.getElementById("t"));
            const points = [];
            for (let step = 1; step <= 300000; step++) {
              const loss = 0.3 + 0.1 * Math.sin(step / 50) / Math.sqrt(step);
              points.push({ step, loss, lr: 1e-4 * (1 - step / 4e5) });
            }
            chart.add(points);
            chart.draw();
            return { points: chart.canvas.dataset.points, lr: chart.canvas.dataset.lr };
        }""")
        assert drawn == {"points": "300000", "lr": "1"}
        assert errors == []
        browser.close()


def test_on_a_phone_a_tap_shows_the_tooltip_and_a_sideways_drag_pans():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
        page = context.new_page()
        page.set_content('<div style="position:relative"><canvas id="c" style="width:360px;height:220px"></canvas>'
                         '<div id="t" style="position:absolute;display:none"></div></div>')
        page.add_script_tag(path=str(REPO / "trainer" / "static" / "loss_chart.js"))
        page.evaluate("""() => {
            window.chart = new LossChart(document.getElementById("c"), document.getElementById("t"));
            const points = [];
            for (let step = 1; step <= 500; step++) points.push({ step, loss: 0.5 - step / 2000 });
            chart.add(points);
        }""")
        assert page.evaluate("getComputedStyle(document.getElementById('c')).touchAction") == "pan-y"
        page.tap("#c", position={"x": 200, "y": 100})
        assert page.locator("#t").is_visible() and "step" in page.locator("#t").inner_text()
        assert page.evaluate("chart.view") is None  # a tap does not pin the view: it still follows new steps
        page.evaluate("chart.view = [100, 300]; chart.draw()")  # zoomed in (a range button)
        box = page.locator("#c").bounding_box()
        y = box["y"] + 100
        page.evaluate("""([x0, x1, y]) => {
            const c = document.getElementById("c");
            const fire = (type, x) => c.dispatchEvent(new PointerEvent(type, { pointerType: "touch", clientX: x,
              clientY: y, bubbles: true, isPrimary: true }));
            fire("pointerdown", x0); fire("pointermove", x0 + 30); fire("pointermove", x1);
            window.dispatchEvent(new PointerEvent("pointerup", { pointerType: "touch" }));
        }""", [box["x"] + 250, box["x"] + 100, y])
        view = page.evaluate("chart.view")
        assert view[0] > 100 and round(view[1] - view[0]) == 200  # dragged left: later steps come into view
        browser.close()
