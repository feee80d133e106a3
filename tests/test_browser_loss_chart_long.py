"""The loss chart of a long run: 300,000 steps (the form allows a million) draw, zoom and show the learning rate,
where spreading every point into Math.min(...) threw a RangeError past about 100,000 and left the chart blank."""

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
