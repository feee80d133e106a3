// Express: images the caption service refused or failed on, which would train on the trigger word alone (the run
// waits for a choice: caption them again, or train anyway). Drawn by express.js on every poll.
(function () {
  const { api, toast, esc, formatDuration, plural } = window.studio;
  const $ = (id) => document.getElementById(id);

  // Images the caption service refused or failed on: how many and why; while the run waits, the choice
  window.studio.expressUncaptioned = function (run, expressId, answered) {
    const missing = run.uncaptioned;
    const box = $("x-uncaptioned");
    box.hidden = !missing;
    if (!missing) return;
    const reasons = missing.reasons.map((r) => `<li>${esc(plural(r.count, "image"))}: ${esc(r.reason)} ` +
      `<span class="muted">(${esc(r.names.join(", "))}${r.count > r.names.length ? " …" : ""})</span></li>`).join("");
    const choice = missing.waiting ? `<p>Caption them again (a refusal may not happen twice), or train anyway: they then
      train on the trigger word alone, and the LoRA learns less about what is in them.</p>
      <div class="x-links"><button class="primary" id="x-caption-again" type="button">Caption them again</button>
      <button id="x-train-anyway" type="button">Train anyway</button></div>
      <p class="muted">If you choose nothing, training starts anyway in about <span id="x-anyway-in"></span>.</p>` : "";
    const html = `<h3>Images without a caption</h3><p class="x-warn">⚠ ${esc(missing.text)}</p>
      <ul class="x-reasons">${reasons}</ul>${choice}`;
    if (box.dataset.shown !== html) {  // drawn again only when it changes: a click on a button is never lost
      box.innerHTML = html;
      box.dataset.shown = html;
      const answer = (choice) => async (e) => {
        e.target.disabled = true;
        try {
          answered(await api(`/api/express/${expressId}/uncaptioned`, { method: "POST", json: { choice } }));
        } catch (err) { toast(err.message, "error", 7000); e.target.disabled = false; }
      };
      if (missing.waiting) { $("x-caption-again").onclick = answer("caption"); $("x-train-anyway").onclick = answer("train"); }
    }
    if (missing.waiting) $("x-anyway-in").textContent = formatDuration(missing.trains_anyway_in_s);
  };
})();
