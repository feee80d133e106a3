// Compare runs: the smoothed loss of two to four jobs in one chart (or their evaluation loss, or their held-out
// images' loss), the settings and results where they differ, and each prompt's latest preview from every run
// side by side (matched by prompt text).
(function () {
  const root = document.getElementById("compare-root");
  const chartCanvas = document.getElementById("compare-chart");
  if (!root || !chartCanvas) return;
  const { esc, fmtLoss, elapsed } = window.trainer;
  const jobs = JSON.parse(root.dataset.jobs);
  const COLORS = ["#4cc38a", "#6e9bff", "#f0a34a", "#e06ad0"];
  const chart = new LossChart(chartCanvas, document.getElementById("compare-tip"));

  // Results first (what you compare runs for), then every setting that is not the same in all of them.
  const RESULTS = [
    ["Status", (d) => d.job.status],
    ["Final loss (smoothed)", (d) => `${fmtLoss(d.job.smooth_loss ?? d.job.loss)}${
      ["queued", "running"].includes(d.job.status) ? " (so far: it still trains)" : ""}`],
    ["Evaluation loss", (d) => { const e = d.evals[d.evals.length - 1]; return e ? `${fmtLoss(e.eval_loss)} (step ${e.step})` : "–"; }],
    ["Held-out loss, lowest", (d, all) => {
      const best = lowestHeld(d);
      if (!best) return "–";
      const lowest = Math.min(...all.map(lowestHeld).filter(Boolean).map((e) => e.holdout_loss));
      const runs = all.filter((o) => lowestHeld(o)).length;
      return `${fmtLoss(best.holdout_loss)} at step ${best.step}${runs > 1 && best.holdout_loss === lowest ? " ★ generalises best" : ""}`;
    }],
    ["Without the trigger word", (d, all) => {  // how much the LoRA changes pictures without it (trainer.leak)
      if (!d.leak) return "–";
      const shares = all.filter((o) => o.leak).map((o) => o.leak.share);
      // a star only for a clear difference (10 points or more) by a LoRA that does not leak itself
      const best = shares.length > 1 && d.leak.share === Math.min(...shares) && !d.leak.leaks
        && Math.max(...shares) - d.leak.share >= 0.1;
      return `${Math.round(d.leak.share * 100)}% of the LoRA's change (step ${d.leak.step})`
        + `${best ? " ★ stays on its trigger word best" : ""}`;
    }],
    ["Steps", (d) => `${d.job.step} / ${d.job.total_steps}`],
    ["Speed", (d) => (d.job.it_per_s ? `${d.job.it_per_s.toFixed(2)} it/s` : "–")],
    ["Trained on", (d) => d.job.device_name || "–"],  // speeds of two GPUs are not comparable
    ["Training time", (d) => window.studio.formatDuration(elapsed(d.job))],
    ["Dataset", (d) => (d.job.datasets || []).length ? d.job.datasets.map((s) => `${s.name}${s.repeats !== 1 ? ` ×${s.repeats}` : ""} (${String(s.version).slice(0, 8)})`).join(" + ")
      : `${d.job.dataset}${d.job.dataset_version ? ` (${d.job.dataset_version.slice(0, 8)})` : ""}`],
  ];

  const lowestHeld = (d) => LossChart.lowestHeld(d.evals);

  function settingsTable(details) {
    const head = `<tr><th></th>${details.map((d, i) => `<th><span class="swatch" style="background:${COLORS[i]}"></span>
      <a href="/jobs/${esc(d.job.id)}">${esc(d.job.name)}</a></th>`).join("")}</tr>`;
    const row = (label, values, cls = "") => `<tr class="${cls}"><td class="muted">${esc(label)}</td>${values
      .map((v) => `<td>${esc(v)}</td>`).join("")}</tr>`;
    const results = RESULTS.filter(([label, get]) => details.some((d) => get(d, details) !== "–"))
      .map(([label, get]) => row(label, details.map((d) => get(d, details)), "result"));
    const configs = details.map((d) => d.config);
    const keys = [...new Set(configs.flatMap((c) => Object.keys(c)))];
    // as the form says them: "Learning rate", a list one item a line (preview prompts), empty text as "none"
    const text = (v) => (v === undefined ? "–" : v === "" ? "none" : typeof v === "string" ? v
      : Array.isArray(v) ? v.map((item) => (typeof item === "string" ? item : JSON.stringify(item))).join("\n")
      : JSON.stringify(v));
    const differ = keys.filter((k) => new Set(configs.map((c) => JSON.stringify(c[k]))).size > 1);
    const settings = differ.map((k) => row(labels[k] || k, configs.map((c) => text(c[k]))));
    const same = keys.length - differ.length;
    document.getElementById("compare-settings").innerHTML = head + results.join("") + settings.join("") +
      `<tr><td class="muted" colspan="${details.length + 1}">${differ.length ? "" : "Every setting is the same. "}` +
      `${same} other setting${same === 1 ? " is" : "s are"} the same in every run.</td></tr>`;
  }

  // The latest preview step of each run that has one (before training, only the base model exists).
  function latest(groups) {
    return [...groups].reverse().find((g) => !g.base_only) || null;
  }

  function previews(details, samples) {
    const steps = samples.map(latest);
    const prompts = [...new Set(steps.flatMap((g) => (g ? g.pairs.map((p) => p.prompt) : [])))];
    const box = document.getElementById("compare-previews");
    document.getElementById("compare-previews-note").textContent = steps.map((g, i) =>
      `${details[i].job.name}: ${g ? `step ${g.step}` : "no previews yet"}`).join(" · ");
    if (!prompts.length) { box.innerHTML = `<div class="empty">No run has previews yet.</div>`; return; }
    const cell = (url, label, caption) => window.trainer.picture(url, label, caption, label, "not in this run");
    box.innerHTML = prompts.map((prompt) => {
      const pairs = steps.map((g) => (g ? g.pairs.find((p) => p.prompt === prompt) : null));
      // the LoRA-off picture once when the runs rendered the same one (prompt, seed, size), else each run's
      const bases = [];
      pairs.forEach((p, i) => { if (p && p.base && !bases.some((b) => b.key === p.base_key)) bases.push({ key: p.base_key, url: p.base, run: i }); });
      const baseCells = bases.length > 1
        ? bases.map((b) => cell(b.url, `Base (LoRA off) · as ${details[b.run].job.name}`, `Base, as ${details[b.run].job.name} renders it: ${prompt}`))
        : [cell(bases.length ? bases[0].url : null, "Base (LoRA off)", `Base: ${prompt}`)];
      const cells = baseCells.concat(pairs.map((p, i) =>
        cell(p && p.lora, `${details[i].job.name} · step ${steps[i] ? steps[i].step : "–"}`, `${details[i].job.name}: ${prompt}`)));
      return `<div class="compare-prompt"><div class="muted" style="font-size:12px;margin:.3rem 0 .2rem">${esc(prompt)}</div>
        <div class="gallery-row" style="grid-template-columns:repeat(${cells.length},minmax(0,240px))">${cells.join("")}</div></div>`;
    }).join("");
  }

  // What the chart shows: each run's smoothed step loss, or its evaluations as measured.
  const MODES = {
    loss: { title: "Loss (smoothed)", points: (m) => m.points, raw: false },
    eval: { title: "Evaluation loss", points: (m) => (m.evals || []).map((e) => ({ step: e.step, loss: e.eval_loss })), raw: true },
    holdout: { title: "Held-out images' loss", raw: true,
      points: (m) => (m.evals || []).filter((e) => e.holdout_loss != null).map((e) => ({ step: e.step, loss: e.holdout_loss })) },
  };
  let mode = "loss", last = null;
  function drawChart() {
    if (!last) return;
    const { details, metrics } = last, chosen = MODES[mode];
    document.getElementById("compare-chart-title").textContent = chosen.title;
    const box = document.getElementById("compare-modes");
    box.hidden = !metrics.some((m) => (m.evals || []).length);
    box.querySelector('[data-mode="holdout"]').hidden = !metrics.some((m) => MODES.holdout.points(m).length);
    box.querySelectorAll("button").forEach((b) => b.classList.toggle("active", b.dataset.mode === mode));
    chart.setSeries(details.map((d, i) => ({ name: d.job.name, color: COLORS[i], points: chosen.points(metrics[i]) })), chosen.raw);
  }
  document.getElementById("compare-modes").addEventListener("click", (e) => {
    const button = e.target.closest("button[data-mode]");
    if (button) { mode = button.dataset.mode; drawChart(); }
  });

  let shown = "";  // what the page shows: redrawn only when a run moved
  let labels = {};  // each setting's name in the form
  async function load() {
    const api = window.studio.api;
    const [details, metrics, samples, catalog] = await Promise.all([
      Promise.all(jobs.map((j) => api(`/api/jobs/${j.id}`))),
      Promise.all(jobs.map((j) => api(`/api/jobs/${j.id}/metrics`))),
      Promise.all(jobs.map((j) => api(`/api/jobs/${j.id}/samples`))),
      api("/api/recipes"),
    ]);
    // while a run is queued or training (variants just queued, say), the page follows it
    if (details.some((d) => ["queued", "running"].includes(d.job.status))) setTimeout(follow, 5000);
    const key = JSON.stringify([details.map((d) => [d.job.status, d.job.step]), samples.map((s) => s.samples.length),
      metrics.map((m) => (m.evals || []).length)]);
    if (key === shown) return;
    shown = key;
    // a job made before a setting existed ran with its default: compare it as such
    const defaults = Object.fromEntries(catalog.recipes.map((r) => [r.name, r.defaults]));
    labels = Object.fromEntries(catalog.recipes.flatMap((r) => r.fields.map((f) => [f.name, f.label || f.name])));
    details.forEach((d, i) => {
      d.config = { ...(defaults[d.job.recipe] || {}), ...(d.job.config || {}) };
      d.evals = metrics[i].evals || [];
      d.leak = samples[i].leak;  // the latest preview step's share without the trigger word (null: not measured)
    });
    document.getElementById("compare-sub").textContent = details.map((d) => d.job.name).join(" · ");
    document.getElementById("compare-legend").innerHTML = details.map((d, i) =>
      `<span class="legend-item"><span class="swatch" style="background:${COLORS[i]}"></span>${esc(d.job.name)}</span>`).join("");
    last = { details, metrics };
    drawChart();
    settingsTable(details);
    previews(details, samples.map((s) => s.samples));
  }

  document.addEventListener("click", (e) => {  // a preview opens full size, as on the job page
    const img = e.target.closest(".gallery-row img");
    if (img) window.trainer.lightbox(img.dataset.full || img.src, img.dataset.caption);
  });
  // A preview that does not load (the proxy dropped it, the file is gone) is asked for once more, then says so in
  // its slot with a button to try again: a broken-image icon in a row read across for differences reads as a result.
  document.addEventListener("error", (e) => {
    const img = e.target;
    if (!(img instanceof HTMLImageElement) || !img.closest(".compare-prompt")) return;
    const src = img.dataset.src || img.getAttribute("src");
    if (!img.dataset.retried) {
      img.dataset.retried = "1"; img.dataset.src = src;
      setTimeout(() => { img.src = again(src); }, 1500);
      return;
    }
    const note = document.createElement("button");
    note.type = "button"; note.className = "img-failed"; note.dataset.src = src;
    note.dataset.full = img.dataset.full || ""; note.dataset.caption = img.dataset.caption || ""; note.dataset.alt = img.alt;
    note.textContent = "This picture did not load. Try again";
    img.replaceWith(note);
  }, true);
  document.addEventListener("click", (e) => {
    const note = e.target.closest(".img-failed");
    if (!note) return;
    const img = document.createElement("img");
    Object.assign(img.dataset, { src: note.dataset.src, full: note.dataset.full, caption: note.dataset.caption, retried: "1" });
    img.alt = note.dataset.alt;
    img.src = again(note.dataset.src);
    note.replaceWith(img);
  });
  // the same picture asked for anew (the browser would answer a failed address from its memory)
  const again = (src) => {
    const base = src.replace(/[?&]again=\d+$/, "");
    return `${base}${base.includes("?") ? "&" : "?"}again=${Date.now()}`;
  };

  function follow() {
    if (document.hidden) { setTimeout(follow, 5000); return; }
    load().catch(() => setTimeout(follow, 10000));  // a failed look is tried again, quietly
  }
  load().catch((e) => window.studio.toast(`Could not load the runs: ${e.message}`, "error", 8000));
})();
