// Keeps the model-download banner current on a page opened while the models download (progress, speed, ETA, a
// failure), and takes it away once they are ready. The server renders the first state; this asks again every
// few seconds (studio/model_banners.py) while a download is going on or retrying, and now and then while a failure
// shows: once models.txt or the token is fixed and the fetcher started again, the page follows without a reload.
(function () {
  const box = document.getElementById("banners");
  if (!box) return;
  const IDS = ["models-error", "models-retry", "models"];
  const EVERY_MS = 4000;
  const FAILED_EVERY_MS = 10000;  // a failure changes only when someone fixes it: asked less often
  const active = () => box.querySelector("#models, #models-retry");
  const failed = () => box.querySelector("#models-error");
  const next = () => (active() ? EVERY_MS : failed() ? FAILED_EVERY_MS : null);
  if (!next()) return;  // nothing downloading and nothing failed: nothing to follow

  function render(banners) {
    IDS.forEach((id) => { const old = document.getElementById(id); if (old) old.remove(); });
    banners.filter((b) => IDS.includes(b.id)).forEach((b) => {
      const div = document.createElement("div");
      div.className = `banner banner-${b.level}`;
      div.id = b.id;
      div.setAttribute("role", "status");
      div.textContent = b.text;
      box.appendChild(div);
    });
  }

  async function poll() {
    if (!document.hidden) {
      try {
        const response = await fetch("/_studio/model-banners", { headers: { Accept: "application/json" },
                                                                  cache: "no-store" });
        if (response.ok) {
          const data = await response.json();
          render(data.banners || []);
          if (!next()) return;  // ready: the banner is gone
        }
      } catch (e) { /* offline for a moment (pod proxy, service restart): ask again later */ }
    }
    setTimeout(poll, next() || EVERY_MS);
  }
  setTimeout(poll, next());
})();
