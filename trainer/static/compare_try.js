// Compare runs with a prompt of your own: the same prompt, seed and strength rendered with every run's
// LoRA (its final LoRA, else its latest checkpoint), Base once, side by side. Each run's render is an
// ordinary render of that job (its Try panel lists it too); the worker renders them one after another
// with the models loaded once. What was asked here is remembered in this browser for these runs.
(function () {
  const $ = (id) => document.getElementById(id);
  const root = $("compare-root");
  const form = $("ctry-form");
  if (!root || !form) return;
  const { esc } = window.trainer;
  const jobs = JSON.parse(root.dataset.jobs);
  const KEY = `compare-try:${jobs.map((j) => j.id).join(",")}`;
  const KEEP = 8;
  let tries = [];  // [{prompt, seed, strength, renders: [render id or null per job]}], newest first
  let listings = [];  // each job's /renders listing
  let timer = null;
  let drawn = null;  // the list's markup as last drawn

  const load = () => { try { return JSON.parse(localStorage.getItem(KEY)) || []; } catch (e) { return []; } };
  const save = () => { try { localStorage.setItem(KEY, JSON.stringify(tries.slice(0, KEEP))); } catch (e) { /* private mode */ } };
  const newSeed = () => { $("ctry-seed").value = String(Math.floor(Math.random() * 2147483647)); };
  const renderOf = (i, id) => (listings[i] ? listings[i].renders.find((r) => r.id === id) : null) || null;
  // the final LoRA, else the latest checkpoint; null while a run has no LoRA file yet
  const loraOf = (listing) => {
    const files = (listing.loras || []).filter((c) => c.value !== "all");
    return files.some((c) => c.value === "final") ? "final" : files.length ? Math.max(...files.map((c) => Number(c.value))) : null;
  };

  function cell(render, strength, label, job) {
    const image = render && render.images.find((im) => im.strength === strength);
    if (image) {
      const caption = `${label}, seed ${render.seed}: ${render.prompt}`;
      return window.trainer.picture(image.url, label, caption, `${job}: ${(render.loras[0] || {}).label || ""}`, "");
    }
    const note = !render ? "no LoRA yet" : render.status === "failed" ? "not rendered"
      : render.status === "running" ? "rendering…" : "waiting";
    const title = render && render.status === "failed" ? render.error || "" : render ? render.message || "" : "";
    return window.trainer.pending(render, label, note, title);
  }

  function draw() {
    const shown = tries.filter((t) => t.renders.some((id, i) => id && (!listings[i] || renderOf(i, id))));
    const html = shown.map((t) => {
      const renders = t.renders.map((id, i) => (id ? renderOf(i, id) : null));
      const base = renders.find((r) => r && r.strengths.includes(0));
      const cells = [cell(base, 0, "Base (LoRA off)", "")].concat(renders.map((r, i) =>
        cell(r, t.strength, `${jobs[i].name} · ${r ? (r.loras[0] || {}).label || "" : "–"}`, jobs[i].name)));
      const failed = renders.filter((r) => r && r.status === "failed");
      const busy = renders.some((r) => r && r.status === "running");
      return `<div class="compare-prompt ctry-row"><div class="muted" style="font-size:12px;margin:.3rem 0 .2rem">
        ${esc(t.prompt)} · seed ${t.seed} · strength ${t.strength}
        <button type="button" class="small" data-ctry-delete="${tries.indexOf(t)}"
          title="${busy ? "Stop these renders and delete them" : "Delete these renders"} (from each run's Try panel too)">${busy ? "Cancel" : "Delete"}</button></div>
        ${failed.map((r) => `<div class="error-box">${esc(r.error || "It failed.")}</div>`).join("")}
        <div class="gallery-row" style="grid-template-columns:repeat(${cells.length},minmax(0,240px))">${cells.join("")}</div></div>`;
    }).join("") || `<div class="empty">Type a prompt and press Render: every run's LoRA with the same seed, side by side.</div>`;
    if (html !== drawn) window.trainer.redraw($("ctry-list"), html);  // a poll that changed nothing leaves the pictures be
    drawn = html;
    const active = shown.some((t) => t.renders.some((id, i) => { const r = id && renderOf(i, id); return r && ["queued", "running"].includes(r.status); }));
    $("ctry-hint").textContent = active ? "rendering…" : listings.some((l) => l.warm) ? "Model loaded: a new render starts at once." : "";
    clearTimeout(timer);
    timer = setTimeout(refresh, active ? 1500 : 10000);
  }

  async function refresh() {
    try {
      listings = await Promise.all(jobs.map((j) => window.studio.api(`/api/jobs/${j.id}/renders`)));
    } catch (e) { clearTimeout(timer); timer = setTimeout(refresh, 5000); return; }  // retried
    draw();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if ($("ctry-seed").value.trim() === "") newSeed();  // an emptied seed is a random one (not seed 0), shown in the form
    const prompt = $("ctry-prompt").value, seed = Number($("ctry-seed").value);
    // an emptied strength reads as 0: every run would render the base model, shown as its LoRA
    const strength = $("ctry-strength").value.trim() === "" ? NaN : Number($("ctry-strength").value);
    const [width, height] = $("ctry-size").value.split("x").map(Number);
    $("ctry-error").textContent = "";
    if (!prompt.trim()) { $("ctry-error").textContent = "Type a prompt to render."; return; }
    if (!(Number.isFinite(strength) && strength !== 0 && Math.abs(strength) <= 2)) {
      $("ctry-error").textContent = "Type the LoRA strength to render every run at, between 0.1 and 2 (1 is full strength).";
      return;
    }
    const loras = listings.map(loraOf);
    if (loras.every((l) => l === null)) { $("ctry-error").textContent = "No run has a LoRA file yet."; return; }
    $("ctry-go").disabled = true;
    const ids = [], problems = [];
    let baseDone = false;
    for (let i = 0; i < jobs.length; i += 1) {  // in order, so the worker renders them in order
      if (loras[i] === null) { ids.push(null); continue; }
      const strengths = baseDone ? [strength] : [0, strength];
      try {
        const made = await window.studio.api(`/api/jobs/${jobs[i].id}/renders`, { method: "POST",
          json: { prompt, seed, strengths, width, height, lora: loras[i] } });
        ids.push(made.render.id); baseDone = true;
      } catch (e) { ids.push(null); problems.push(`${jobs[i].name}: ${e.message}`); }
    }
    $("ctry-error").textContent = problems.join(" ");
    if (ids.some(Boolean)) { tries.unshift({ prompt, seed, strength, renders: ids }); save(); }
    $("ctry-go").disabled = false;
    refresh();
  });
  $("ctry-prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); form.requestSubmit(); }
  });
  $("ctry-dice").addEventListener("click", newSeed);
  $("ctry-list").addEventListener("click", async (event) => {
    const button = event.target.closest("[data-ctry-delete]");
    if (!button) return;
    const row = tries[Number(button.dataset.ctryDelete)];
    button.disabled = true;
    try {
      await Promise.all(row.renders.map((id, i) => (id && renderOf(i, id)
        ? window.studio.api(`/api/jobs/${jobs[i].id}/renders/${id}`, { method: "DELETE" }) : null)));
      tries = tries.filter((t) => t !== row); save();
    } catch (e) { window.studio.toast(e.message, "error"); button.disabled = false; }  // the list may not change
    refresh();
  });

  // the form starts from the first run's own defaults: its first preview prompt and preview size
  (async function start() {
    tries = load();
    await refresh();
    const defaults = (listings[0] && listings[0].defaults) || {};
    $("ctry-prompt").value = defaults.prompt || "[trigger], ";
    const own = defaults.width && defaults.height ? [`${defaults.width}x${defaults.height}`] : [];
    $("ctry-size").innerHTML = [...new Set(own.concat(["1024x1024", "768x768", "512x512"]))].map((s) =>
      `<option value="${s}">${s.replace("x", "×")}${own[0] === s ? " (previews)" : ""}</option>`).join("");
    newSeed();
  })();
})();
