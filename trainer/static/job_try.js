// "Try the LoRA" on the job page: one prompt and seed rendered at several LoRA strengths side by side
// (Base is strength 0), from the final LoRA, any checkpoint, or every checkpoint (a row each); on the library's
// try page, from that one file. The worker renders; the list follows.
(function () {
  const $ = (id) => document.getElementById(id);
  const panel = $("try-panel");
  const form = $("try-form");
  if (!panel || !form) return;
  const { esc, statusChip } = window.trainer;
  const api = panel.dataset.api;  // the LoRA's API: a training job's, or a library file's
  const self = api.startsWith("/api/library/files/") ? decodeURIComponent(api.split("/").pop()) : null;
  let own = self;  // the library's copy of what is tried (a job's final LoRA too): not offered to render with or beside
  const STRENGTHS = [0, 0.4, 0.6, 0.8, 1, 1.2, 1.5];
  const MAX_CHOSEN = 6;
  let chosen = new Set();
  let renders = [], loras = [], training = null, warm = false, filled = false, lastKey = "", timer = null, busy = false;
  let loraPicked = false;  // the LoRA list was chosen from: keep that choice; else follow the newest (the final LoRA)

  const strengthLabel = (s) => (s === 0 ? "Base" : String(s));
  const newSeed = () => { $("try-seed").value = String(Math.floor(Math.random() * 2147483647)); };

  function drawStrengths() {
    $("try-strengths").innerHTML = STRENGTHS.map((s) => `<button type="button" data-strength="${s}"
      class="${chosen.has(s) ? "active" : ""}" aria-pressed="${chosen.has(s)}"
      title="${s === 0 ? "The base model: the same prompt and seed without the LoRA" : `LoRA at strength ${s}`}">${strengthLabel(s)}</button>`).join("");
  }

  function sizes(defaults) {
    const own = defaults.width && defaults.height ? [[defaults.width, defaults.height]] : [];
    const seen = new Set();
    return own.concat([[1024, 1024], [768, 768], [512, 512], [832, 1216], [1216, 832]]).filter(([w, h]) => {
      const key = `${w}x${h}`; if (seen.has(key)) return false; seen.add(key); return true;
    });
  }

  // The first listing fills the form: the job's first preview prompt, its preview size, the default
  // strengths, a random seed.
  function fill(defaults) {
    filled = true;
    own = self || defaults.library_file || null;
    $("try-prompt").value = defaults.prompt || "[trigger], ";
    const previews = defaults.width && defaults.height ? `${defaults.width}x${defaults.height}` : null;
    $("try-size").innerHTML = sizes(defaults).map(([w, h]) =>
      `<option value="${w}x${h}">${w}×${h}${`${w}x${h}` === previews ? ` (${esc(defaults.size_note || "previews")})` : ""}</option>`).join("");
    chosen = new Set(defaults.strengths || [0, 1]);
    newSeed();
    drawStrengths();
    if (location.hash === "#try-panel") {  // from the library's "Try it": once the panels above have drawn
      setTimeout(() => { $("try-panel").scrollIntoView({ block: "start" }); $("try-prompt").focus({ preventScroll: true }); }, 500);
    }
  }

  // "With" and "Beside": the library's LoRAs to render with (on every image) or beside the one tried (the API
  // takes up to two and three; the form offers one of each)
  let libraryKey = "";
  async function loadLibrary() {
    let files = [];
    try { files = (await window.studio.api("/api/library/files")).files; } catch (e) { return; }  // the form works without
    const names = files.map((f) => `${f.name}.safetensors`).filter((file) => file !== own)
      .sort((a, b) => a.replace(/\.safetensors$/, "").localeCompare(b.replace(/\.safetensors$/, "")));
    if (names.join("\n") === libraryKey) return;  // unchanged: an open list stays open
    libraryKey = names.join("\n");
    const options = names.map((file) => `<option value="${esc(file)}">${esc(file.replace(/\.safetensors$/, ""))}</option>`).join("");
    for (const [id, none] of [["try-with", "no other LoRA"], ["try-beside", "nothing"]]) {
      const current = $(id).value;
      $(id).innerHTML = `<option value="">${none}</option>${options}`;
      if ([...$(id).options].some((o) => o.value === current)) $(id).value = current;
    }
    withChanged();
  }
  // a render's own LoRA files (the job's, or the library file tried) and the library's shown beside them
  const besideOf = (render) => render.loras.filter((l, i) => l.library && !(self && i === 0));
  const ownOf = (render) => render.loras.filter((l, i) => !l.library || (self && i === 0));
  function withChanged() { $("try-with-strength").hidden = !$("try-with").value; }
  const withOf = () => ($("try-with").value ? [{ file: $("try-with").value, strength: Number($("try-with-strength").value) }] : []);
  const withText = (render) => (render.with || []).map((w) => ` · with ${esc(w.label)} at ${w.strength}`).join("");

  function drawLoras() {
    const current = $("try-lora").value;
    $("try-lora").innerHTML = loras.map((c) => `<option value="${esc(c.value)}">${esc(c.label)}</option>`).join("");
    if (loraPicked && loras.some((c) => String(c.value) === current)) $("try-lora").value = current;
  }

  // The order the worker renders in: the base model once, then each LoRA file's other strengths.
  function plan(render) {
    const out = render.strengths.includes(0) ? [{ lora: null, strength: 0 }] : [];
    render.loras.forEach((_, i) => render.strengths.filter((s) => s !== 0).forEach((s) => out.push({ lora: i, strength: s })));
    return out.map((p, index) => ({ ...p, index }));
  }

  // the image without the LoRA tried: the base model, or the base model with the LoRAs the render uses too
  const baseLabel = (render) => ((render.with || []).length ? "This LoRA off" : "Base (LoRA off)");

  function figure(render, p, label) {
    const image = render.images.find((im) => im.strength === p.strength && (im.lora ?? null) === p.lora);
    const which = p.lora === null ? baseLabel(render) : `${(render.loras[p.lora] || {}).label || "LoRA"}, strength ${p.strength}`;
    const caption = `${which}, seed ${render.seed}: ${render.prompt}`;
    if (image) {
      return `<figure><img src="${esc(window.studio.thumb(image.url))}" data-full="${esc(image.url)}" tabindex="0" alt="${esc(which)}"
        data-caption="${esc(caption)}" loading="lazy"><figcaption title="${esc(which)}">${esc(label)}</figcaption></figure>`;
    }
    const note = render.status === "failed" ? "not rendered" : render.status === "running" && p.index === render.done
      ? (render.picture_steps ? `rendering… step ${render.picture_step || 0} of ${render.picture_steps}` : "rendering…")
      : "waiting";
    return window.trainer.pending(render, label, note);
  }

  // One LoRA file: one row, Base first. Several (every checkpoint) at one strength: one row, a picture per
  // file in training order; at several strengths: a row per file, its strengths across.
  function images(render) {
    const steps = plan(render);
    const base = steps.filter((p) => p.lora === null).map((p) => figure(render, p, baseLabel(render)));
    const row = (items) => `<div class="gallery-row">${items.join("")}</div>`;
    if (render.loras.length <= 1) return row(base.concat(steps.filter((p) => p.lora !== null).map((p) => figure(render, p, `LoRA ${p.strength}`))));
    const strengths = render.strengths.filter((s) => s !== 0);
    if (strengths.length === 1) {
      return row(base.concat(steps.filter((p) => p.lora !== null).map((p) => figure(render, p, render.loras[p.lora].label))));
    }
    const titled = (title, items, lora) => `<div class="try-sweep-row"><div class="try-sweep-title"><span>${esc(title)}</span>${lora ? toLibrary(lora) : ""}</div>${row(items)}</div>`;
    return (base.length ? titled((render.with || []).length ? "This LoRA off" : "Base model", base) : "") + render.loras.map((lora, i) =>
      titled(lora.label, steps.filter((p) => p.lora === i).map((p) => figure(render, p, `LoRA ${p.strength}`)), lora)).join("");
  }

  // A checkpoint that looks best goes to the library (job.js handles [data-publish], as in its checkpoint list).
  function toLibrary(lora) {
    return lora.final ? "" : ` <button type="button" class="small" data-publish="${Number(lora.step)}"
      title="Add this checkpoint's LoRA to the LoRA library (and ComfyUI's loras)">To library</button>`;
  }

  function loraText(render) {
    const own = ownOf(render), others = besideOf(render);
    const text = own.length <= 1 ? (own.length ? own[0].label : "")
      : `${own.length} LoRA files, steps ${own[0].step} to ${own[own.length - 1].step}`;
    return others.length ? `${text} beside ${others.map((l) => l.label).join(", ")}` : text;
  }

  // A render of one library file with others applied (With): the LoRA library's Merge, those files at those
  // strengths (the one tried at 1, or at its strongest when 1 was not rendered), to keep as one file.
  function mergeLink(render) {
    const tried = ownOf(render);
    const file = self || (tried.length === 1 && tried[0].final ? own : null);
    if (render.status !== "completed" || !file || !(render.with || []).length || besideOf(render).length) return "";
    const strength = render.strengths.includes(1) ? 1 : Math.max(...render.strengths.filter((v) => v !== 0));
    const query = [[file, strength], ...render.with.map((w) => [w.file, w.strength])]
      .map(([f, v]) => `merge=${encodeURIComponent(`${f.replace(/\.safetensors$/, "")}:${v}`)}`).join("&");
    return `<a class="button" href="/library?${query}#merge" data-try-merge
      title="These LoRAs at these strengths as one file, in the LoRA library">Merge…</a>`;
  }

  function card(render) {
    const active = render.status === "queued" || render.status === "running";
    // waiting behind a training run: it can pause (a checkpoint), let the renders run, then go on by itself
    const pause = render.status === "queued" && training && !training.stopping
      ? ` <button type="button" data-try-pause="${esc(training.id)}" title="It saves a checkpoint now, the renders run, then it continues from that step by itself">Pause “${esc(training.name)}” and render now</button>` : "";
    const note = render.status === "failed" ? `<div class="error-box">${esc(render.error || "It failed.")}</div>`
      : active || render.status === "completed" ? `<div class="try-meta">${esc(render.message || "")}${pause}</div>` : "";
    return `<div class="try-card" data-render="${esc(render.id)}">
      <div class="try-head">${statusChip(render.status)}<span class="prompt">${esc(render.prompt)}</span>
        <span class="actions"><button type="button" data-try-reroll="${esc(render.id)}" title="The same prompt, strengths and LoRA with a new random seed">New seed</button>
        <button type="button" data-try-reuse="${esc(render.id)}" title="Put these settings in the form">Use settings</button>
        ${render.status === "completed" ? `<a class="button" href="${esc(api)}/renders/${esc(render.id)}/workflow" download data-try-workflow
          title="This render as a ComfyUI workflow (its prompt, seed, size and steps, the LoRA at ${render.strengths.includes(1) ? 1 : "its strongest"}${
          (render.with || []).length ? ", the other LoRA too" : ""}): drop it onto ComfyUI">ComfyUI</a>` : ""}
        ${mergeLink(render)}
        ${render.status === "running"  // a running render is cancelled: it stops at the next step of its picture
          ? `<button type="button" data-try-delete="${esc(render.id)}" ${render.cancelling ? "disabled" : ""}
            title="Stop it at the next step of the picture it is making, and delete it">${render.cancelling ? "Cancelling…" : "Cancel"}</button>`
          : `<button type="button" data-try-delete="${esc(render.id)}">Delete</button>`}</span></div>
      <div class="try-meta">seed ${render.seed} · ${render.width}×${render.height} · ${render.steps} steps · ${esc(loraText(render))}${withText(render)}${
        render.loras.length === 1 && render.status === "completed" ? toLibrary(render.loras[0]) : ""}</div>
      ${(render.notes || []).map((text) => `<div class="try-meta try-note">${esc(text)}</div>`).join("")}
      ${note}${images(render)}</div>`;
  }

  function draw() {
    const key = JSON.stringify([renders, loras, training, warm]);
    if (key === lastKey) return;
    lastKey = key;
    form.hidden = !loras.length;
    drawLoras();
    const active = renders.filter((r) => r.status === "queued" || r.status === "running").length;
    // the worker keeps the models loaded for a while after a render: the next one starts at once
    $("try-hint").textContent = active ? `${active} rendering or waiting`
      : warm ? "Model loaded: a new render starts at once." : "";
    window.trainer.redraw($("try-list"), renders.length ? renders.map(card).join("")
      : `<div class="empty">${loras.length ? "Type a prompt and press Render: the same seed at each strength, side by side, Base being the model without the LoRA."
        : "Once the first checkpoint is saved, try it here with a prompt of your own."}</div>`);
  }

  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      let data;
      try { data = await window.studio.api(`${api}/renders`); } catch (e) { return; }  // retried
      renders = data.renders; loras = data.loras; training = data.training; warm = !!data.warm;
      if (!filled && loras.length) { fill(data.defaults); loadLibrary(); }
      draw();  // a mistake here is a script error, not swallowed as a network one
    } finally { busy = false; schedule(); }
  }

  function schedule() {
    clearTimeout(timer);
    const active = renders.some((r) => r.status === "queued" || r.status === "running");
    timer = setTimeout(() => { if (document.hidden) schedule(); else refresh(); }, active ? 1500 : 10000);
  }

  document.addEventListener("trainer:checkpoints", () => refresh());  // job.js: a checkpoint was saved, or the run ended

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if ($("try-seed").value.trim() === "") newSeed();  // an emptied seed is a random one (not seed 0), shown in the form
    const [width, height] = $("try-size").value.split("x").map(Number);
    const lora = $("try-lora").value;
    const body = { prompt: $("try-prompt").value, strengths: [...chosen].sort((a, b) => a - b),
      seed: Number($("try-seed").value), width, height, lora: ["final", "all"].includes(lora) ? lora : Number(lora),
      with: withOf(), beside: $("try-beside").value ? [$("try-beside").value] : [] };
    $("try-error").textContent = "";
    if (!body.prompt.trim()) { $("try-error").textContent = "Type a prompt to render."; return; }
    if (!chosen.size) { $("try-error").textContent = "Pick at least one strength."; return; }
    $("try-go").disabled = true;
    try { await post(body); } finally { $("try-go").disabled = false; }
  });

  // `button`: a card's New seed, far below the form's error line: its failure is said where it was pressed
  async function post(body, button = null) {
    try {
      await window.studio.api(`${api}/renders`, { method: "POST", json: body });
      lastKey = "";
      await refresh();
    } catch (e) {
      if (!button) { $("try-error").textContent = e.message; return; }
      window.studio.toast(e.message, "error", 8000);
      button.disabled = false;
    }
  }

  // The LoRA choice a render was made with, as the form and the API name it.
  const loraOf = (render) => { const own = ownOf(render); return own.length > 1 ? "all" : own[0].final ? "final" : own[0].step; };

  $("try-prompt").addEventListener("keydown", (event) => {  // Ctrl+Enter renders, as Enter saves a caption
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); form.requestSubmit(); }
  });
  $("try-dice").addEventListener("click", newSeed);
  $("try-with").addEventListener("change", withChanged);
  $("try-with").addEventListener("focus", loadLibrary);  // a LoRA added in another tab since
  $("try-lora").addEventListener("change", () => { loraPicked = true; });
  $("try-strengths").addEventListener("click", (event) => {
    const button = event.target.closest("[data-strength]");
    if (!button) return;
    const s = Number(button.dataset.strength);
    if (chosen.has(s)) chosen.delete(s);
    else if (chosen.size < MAX_CHOSEN) chosen.add(s);
    else window.studio.toast(`At most ${MAX_CHOSEN} strengths per render.`, "info");
    drawStrengths();
  });
  $("try-list").addEventListener("click", async (event) => {
    const pauseButton = event.target.closest("[data-try-pause]");
    if (pauseButton) {
      pauseButton.disabled = true;
      try {
        await window.studio.api(`/api/jobs/${pauseButton.dataset.tryPause}/pause`, { method: "POST" });
        window.studio.toast("Pausing the training: a checkpoint first, then the renders, then it goes on.", "ok", 6000);
        lastKey = ""; refresh();
      } catch (e) { window.studio.toast(e.message, "error"); pauseButton.disabled = false; }
      return;
    }
    const reuse = event.target.closest("[data-try-reuse]");
    const remove = event.target.closest("[data-try-delete]");
    const reroll = event.target.closest("[data-try-reroll]");
    const id = reuse ? reuse.dataset.tryReuse : remove ? remove.dataset.tryDelete : reroll ? reroll.dataset.tryReroll : null;
    const render = renders.find((r) => r.id === id);
    if (!render) return;
    if (reroll) {
      reroll.disabled = true;
      await post({ prompt: render.prompt, strengths: render.strengths, width: render.width, height: render.height,
        seed: Math.floor(Math.random() * 2147483647), lora: loraOf(render),
        with: (render.with || []).map(({ file, strength }) => ({ file, strength })),
        beside: besideOf(render).map((l) => l.file) }, reroll);
    } else if (reuse) {
      $("try-prompt").value = render.prompt;
      $("try-seed").value = String(render.seed);
      chosen = new Set(render.strengths); drawStrengths();
      const size = `${render.width}x${render.height}`;
      if (![...$("try-size").options].some((o) => o.value === size)) {
        $("try-size").insertAdjacentHTML("beforeend", `<option value="${size}">${render.width}×${render.height}</option>`);
      }
      $("try-size").value = size;
      const lora = String(loraOf(render));
      if (loras.some((c) => String(c.value) === lora)) { $("try-lora").value = lora; loraPicked = true; }
      const next = besideOf(render)[0];
      if (!next || [...$("try-beside").options].some((o) => o.value === next.file)) $("try-beside").value = next ? next.file : "";
      const together = (render.with || [])[0];
      if (!together || [...$("try-with").options].some((o) => o.value === together.file)) {
        $("try-with").value = together ? together.file : "";
        if (together) $("try-with-strength").value = String(together.strength);
        withChanged();
      }
      $("try-prompt").focus();
    } else {
      remove.disabled = true;
      try {
        const done = await window.studio.api(`${api}/renders/${render.id}`, { method: "DELETE" });
        // a running one is cancelled: it goes once the worker has stopped it (the list follows)
        renders = done.deleted ? renders.filter((r) => r.id !== render.id)
          : renders.map((r) => (r.id === render.id ? { ...r, cancelling: true } : r));
        lastKey = ""; draw();
      } catch (e) { window.studio.toast(e.message, "error"); remove.disabled = false; }
    }
  });
  refresh();
})();
