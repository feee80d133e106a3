// The express page: a ZIP or images + a trigger word -> upload, caption, export, train, proof.
// Everything after the upload is state on the server: a reload (or a pod restart) shows the same run.
(function () {
  const { api, toast, esc, formatBytes, formatDuration } = window.studio;
  const $ = (id) => document.getElementById(id);
  const root = $("express");
  const trainer = (path) => window.studio.toolUrl("trainer").replace(/\/$/, "") + path;
  let expressId = root.dataset.expressId || null;
  let files = [];
  let upload = null; // {done, total, text} while this page uploads
  let timer = null;
  const UPLOAD_QUIET_S = 120;  // files that arrived this recently may still be arriving: a chunk takes up to 90 s

  // ---- the form
  let frames = null;  // the frames to take from videos (frame_choice.js), when the files or the link hold some
  function chooseFiles(list) {
    files = Array.from(list || []);
    frames = window.frameChoice.show($("x-frames"), files);
    const bytes = files.reduce((n, f) => n + f.size, 0);
    $("x-chosen").textContent = files.length ? `${files.length} file${files.length === 1 ? "" : "s"}, ${formatBytes(bytes)}` : "";
  }
  const drop = $("x-drop");
  drop.addEventListener("click", () => $("x-files").click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("x-files").click(); } });
  $("x-files").addEventListener("change", (e) => chooseFiles(e.target.files));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); chooseFiles(e.dataTransfer.files); });
  // files dropped beside the drop zone: the browser would open them instead of this page
  const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes("Files");
  window.addEventListener("dragover", (e) => { if (hasFiles(e)) e.preventDefault(); });
  window.addEventListener("drop", (e) => {
    if (!hasFiles(e) || e.defaultPrevented) return;
    e.preventDefault();
    if (!$("express-form").hidden) chooseFiles(e.dataTransfer.files);
    else toast("This run goes on with the files it was given. To train with more, add them to its dataset on the " +
      "Datasets page and train again, or start a new run on the Express page.", "info", 10000);
  });

  const link = () => $("x-link").value.trim();
  $("x-link").addEventListener("input", () => { $("x-limit-row").hidden = !link(); });
  window.linkCheck($("x-link"), $("x-link-check"), $("x-limit"), (held) => {
    if (!files.length) frames = window.frameChoice.showForLink($("x-frames"), link(), held);
  });
  const NOTHING = "Choose a ZIP or some images first, or paste a link to a ZIP or a Hugging Face dataset.";
  function checkInput() {
    if (!files.length && !link()) return NOTHING;
    if (!files.length && !/^https?:\/\/\S+$/i.test(link())) return "The link must start with http:// or https://.";
    return "";
  }

  // Files go up in chunks; a link goes to the server, whose import stage downloads it.
  async function startWith(run) {
    if (files.length) return uploadAndStart(run);
    const limit = $("x-limit").value.trim();
    render(await postStart({ url: link(), limit: limit ? Number(limit) : null, spread: Boolean(limit && $("x-spread").value),
      ...(frames ? frames() : {}) }));
    poll();
  }

  // The start, tried again through a proxy's hiccup (502, 524, a dropped connection): the files are on the pod by
  // then. A run already started (by a try whose answer was lost, or by another tab) is followed instead.
  async function postStart(json) {
    for (let tries = 1; ; tries++) {
      try {
        return await api(`/api/express/${expressId}/start`, { method: "POST", json });
      } catch (err) {
        if (err.status === 409) return api(`/api/express/${expressId}`);
        if ((err.status && err.status < 500) || tries >= 4) throw err;
        await new Promise((resolve) => setTimeout(resolve, 1500 * tries));
      }
    }
  }

  // "Keep the others": preserve_class, for the kinds whose captions call the subject by a class word
  function showKeep() {
    const kind = (document.querySelector("input[name=kind]:checked") || {}).value;
    const text = $("x-keep-text").dataset[kind];
    $("x-keep-row").hidden = !text;
    if (text) $("x-keep-text").textContent = text;
  }
  document.querySelectorAll("input[name=kind]").forEach((radio) => radio.addEventListener("change", showKeep));
  showKeep();

  let again = false;  // the form asks for files again for this run (showUploadAgain), not for a new run
  let starting = false;  // between a click on the form's button and the server's answer to the start
  $("express-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("x-error").textContent = checkInput();
    if ($("x-error").textContent || starting) return;
    starting = true;
    try { await submit(); } finally { starting = false; }
  });

  async function submit() {
    if (again) {
      $("express-form").hidden = true;
      try { await startWith(await api(`/api/express/${expressId}`)); } catch (err) { showUploadAgain(err.message); }
      return;
    }
    const kind = (document.querySelector("input[name=kind]:checked") || {}).value || "other";
    $("x-go").disabled = true;
    try {
      const preserve = !$("x-keep-row").hidden && $("x-keep").checked;
      const made = await api("/api/express", {
        method: "POST", json: { trigger_word: $("x-trigger").value, kind, preserve } });
      expressId = made.express.id;
      history.replaceState(null, "", `/express/${expressId}`);
      $("express-form").hidden = true;
      $("x-run").hidden = false;
      render(made);
      await startWith(made);
    } catch (err) {
      if (expressId) showUploadAgain(err.message); else $("x-error").textContent = err.message;  // the form is hidden
    }
    $("x-go").disabled = false;
  }

  let sent = null;  // {files, sessions}: what went up for this run, while its start has not gone through
  async function uploadAndStart(run) {
    if (sent && sent.files === files) return startWithSessions(sent.sessions);
    const base = `/api/datasets/${encodeURIComponent(run.express.dataset)}`;
    const total = files.reduce((n, f) => n + f.size, 0) || 1;
    const started = performance.now();
    let finished = 0;
    const sessions = [];
    upload = { done: 0, total, text: "starting" };
    for (const file of files) {
      const ui = {
        set(fraction) {
          const done = finished + fraction * file.size;
          const elapsed = (performance.now() - started) / 1000;
          const eta = done ? (elapsed * (total - done)) / done : null;
          upload = { done, total, text: `${file.name} · ${formatBytes(done)} of ${formatBytes(total)}`, eta };
          renderUpload();
        },
      };
      try {
        sessions.push(await window.chunkedUpload.uploadFile(base, file, ui));
      } catch (err) {
        toast(`${file.name}: ${err.message}`, "error", 8000);
      }
      finished += file.size;
    }
    upload = null;
    if (!sessions.length) { showUploadAgain("Nothing could be uploaded: choose the files again."); return; }
    sent = { files, sessions };
    await startWithSessions(sessions);
  }

  async function startWithSessions(sessions) {
    try {
      render(await postStart({ sessions, ...(frames ? frames() : {}) }));
    } catch (err) {
      showUploadAgain(`The files are on the pod, but the run could not start (${err.message}): press Upload and go on to try again.`);
      return;
    }
    sent = null;
    poll();
  }

  // leaving while files go up ends their upload (dropped again, they go on from what the pod kept): asked first
  window.addEventListener("beforeunload", (ev) => {
    if (upload) { ev.preventDefault(); ev.returnValue = ""; }
  });

  function showUploadAgain(message) {
    $("x-message").textContent = message;
    $("express-form").hidden = false;
    $("x-trigger").closest("form").querySelectorAll("label[for=x-trigger], #x-trigger, .x-kinds, #x-keep-row").forEach((el) => { el.hidden = true; });
    $("x-go").textContent = "Upload and go on";
    again = true;
  }

  // ---- the run
  const stagesView = window.studio.expressStages;  // the stage cards (express_stages.js)
  const renderUpload = () => stagesView.upload(upload);
  const renderStages = (run) => stagesView.render(run, upload);

  function renderPlan(run) {
    if (!run.plan) { $("x-plan").hidden = true; return; }
    $("x-plan").hidden = false;
    const rows = run.plan.choices.map((c) => `<tr><td>${esc(c.setting)}</td><td><code>${esc(JSON.stringify(c.value))}</code></td><td>${esc(c.why)}</td></tr>`);
    const where = { gpu: "on this GPU", cpu: "on the CPU", demo: "in demo mode" }[run.plan.estimate_device] || "";
    // what the training costs at the pod's price (a GPU's estimate only)
    const dollars = run.plan.estimate_device === "gpu" ? window.studio.dollars(run.plan.estimated_s, run.price) : null;
    const cost = dollars == null ? "" : ` (≈ ${dollars < 0.01 ? "under $0.01" : `$${dollars.toFixed(2)}`} at ${window.studio.perHour(run.price)})`;
    rows.unshift(`<tr><td>estimate</td><td>${formatDuration(run.plan.estimated_s)}${esc(cost)}</td><td>a rough guess ${where}</td></tr>`);
    $("x-plan-table").innerHTML = rows.join("");
    const train = run.stages.find((s) => s.stage === "train");
    if (train && train.edit_settings) $("x-edit").href = trainer(train.edit_settings);
    $("x-edit").hidden = !(train && train.edit_settings);
  }

  function renderWarnings(run) {
    const notes = (run.plan && run.plan.warnings) || [];
    $("x-warnings").hidden = !notes.length;
    $("x-warnings").innerHTML = notes.map((n) => `<p class="x-warn">⚠ ${esc(n)}</p>`).join("");
  }

  function figure(url, label) {
    if (!url) return `<figure><figcaption>${esc(label)}: none</figcaption></figure>`;
    return `<figure><a href="${esc(url)}" target="_blank" rel="noopener" title="Full size"><img loading="lazy" src="${esc(studio.thumb(url))}" alt="${esc(label)}"></a><figcaption>${esc(label)}</figcaption></figure>`;
  }

  function renderSamples(run) {
    const steps = run.samples || [];
    $("x-samples").hidden = !steps.length;
    // "Watch it learn": a prompt's pictures in turn, the base model's first (an animated WebP in a new tab)
    const watch = (run.timelapses || []).length ? `<div class="muted x-timelapse">Watch it learn: ${run.timelapses.map((t) =>
      `<a href="${esc(t.url)}" target="_blank" rel="noopener">prompt ${t.index + 1}</a>`).join(" · ")}</div>` : "";
    $("x-sample-steps").innerHTML = watch + steps.slice(-2).reverse().map((group) => group.base_only
      ? `<h4>Before training: the base model</h4><div class="x-pairs x-base">${group.pairs.map((p) => figure(p.base, p.prompt)).join("")}</div>`
      : `<h4>Step ${group.step}</h4>` + group.pairs.map((p) => `<div class="x-prompt">${esc(p.prompt)}</div><div class="x-pairs">
        ${figure(p.base, "base model")}${figure(p.lora, "with the LoRA")}${figure(p.lora_no_trigger, "LoRA, no trigger word")}</div>${studio.leakLine(p)}`).join("")).join("");
  }

  function renderDone(run) {
    const proof = run.proof;
    $("x-done").hidden = !proof;
    if (!proof) return;
    const links = [];
    if (proof.lora) links.push(`<a class="button primary" id="x-download" href="${esc(proof.lora)}" download>Download ${esc(proof.lora_file)} (${formatBytes(proof.lora_bytes)})</a>`);
    if (proof.readme) links.push(`<a class="button" href="${esc(proof.readme)}" target="_blank" rel="noopener">README.txt</a>`);
    if (proof.workflow) links.push(`<a class="button" id="x-workflow" href="${esc(proof.workflow)}"
      download="${esc(String(proof.lora_file || "lora").replace(/\.safetensors$/, ""))}-comfyui-workflow.json" title="Drop it onto ComfyUI">ComfyUI workflow</a>`);
    const train = run.stages.find((s) => s.stage === "train");
    if (train && train.job_page) {
      links.push(`<a class="button" id="x-try" href="${esc(trainer(train.job_page + "#try-panel"))}" target="_blank" rel="noopener"
        title="Render prompts of your own with it, at several strengths">Try it with your own prompt</a>`);
      if (proof.library_path && train.edit_settings) {  // a new job that goes on from it, in the full form
        const name = proof.library_path.split("/").pop().replace(/\.safetensors$/, "");
        links.push(`<a class="button" id="x-further" href="${esc(trainer(`${train.edit_settings}&start=${encodeURIComponent(name)}`))}"
          target="_blank" rel="noopener" title="A new job that goes on from this LoRA: more images, more steps">Train further</a>`);
      }
    }
    // a LoRA that changes pictures without its trigger word: say so, and offer the run again keeping the class
    let leak = "";
    if (proof.leak && proof.leak.leaks) {
      const again = proof.keep_class && train && train.edit_settings
        ? ` <a class="button" id="x-keep-again" href="${esc(trainer(`${train.edit_settings}&preserve_class=${encodeURIComponent(proof.keep_class)}`))}"
          target="_blank" rel="noopener">Train again keeping other ${proof.keep_class === "person" ? "people" : "objects"} as the base model draws them</a>` : "";
      leak = `<p class="x-leak" id="x-leak">Without its trigger word this LoRA still makes ${Math.round(proof.leak.share * 100)}% of its change
        to the previews: it changes every prompt it is loaded for, not only yours.${again}</p>`;
    }
    // photos in, LoRA out: how long it took on this pod, and what that cost when the pod's price is known
    const x = run.express;
    const took = x.finished_at && x.created_at ? x.finished_at - x.created_at : null;
    const spent = window.studio.dollars(took, run.price);
    const cost = spent == null ? "" : spent < 0.01 ? ", under $0.01" : `, about $${spent.toFixed(2)} at ${window.studio.perHour(run.price)}`;
    const timing = took != null ? `<p class="muted" id="x-took">From your files to this LoRA: ${esc(formatDuration(took))}${esc(cost)}.</p>` : "";
    const alone = run.uncaptioned ? `<p class="x-warn" id="x-done-uncaptioned">⚠ ${esc(run.uncaptioned.text)}</p>` : "";
    $("x-done").innerHTML = `<h3>Your LoRA is ready</h3>${timing}<div class="x-links">${links.join("")}</div>${alone}${leak}
      <p class="muted">${!proof.library_path ? "It is no longer in the LoRA library (deleted from it); the download above still works."
        : `Copied to <code>${esc(proof.library_path)}</code>${proof.comfyui_path ? ` and to ComfyUI: <code>${esc(proof.comfyui_path)}</code>` : " (install ComfyUI in the workspace to have it copied there too)"}.`}</p>
      ${proof.grid ? `<img class="x-grid" id="x-grid" src="${esc(proof.grid)}" alt="Base model and LoRA side by side">` : ""}`;
  }

  // The tab says how far it is, and Notify me brings a desktop notification when the run ends.
  let notify = null;  // made once the run exists (at load, or when the form has just made it)
  function tell(run) {
    if (!notify) notify = window.studio.notifier($("x-notify"), `notify:express:${expressId}`);
    const x = run.express;
    const train = run.stages.find((s) => s.stage === "train");
    const pct = train && train.status === "running" && train.total ? Math.floor((100 * train.done) / train.total) : null;
    const mark = { completed: "✓ ", failed: "✗ " }[x.status] || "";
    document.title = `${run.active ? (pct != null ? `${pct}% · ` : "… ") : mark}${x.name} · Express`;
    notify({ active: run.active, title: `${mark || "■ "}${x.name}: ${x.status === "completed" ? "your LoRA is ready" : x.status}`,
      body: x.error || x.message });
  }

  function render(run) {
    const x = run.express;
    tell(run);
    $("x-title").textContent = `${x.name} · trigger word ${x.config.trigger_word}`;
    // while it trains, what the training job says now ("Rendering the base model's previews"), not the stage's start
    const train = run.stages.find((s) => s.stage === "train");
    const training = x.status === "running" && x.phase === "train" && train && ["queued", "running"].includes(train.status);
    // (between its phases a training job has no message: its step then)
    const now = training && (train.message || (train.status === "running" && train.total ? `step ${train.done} of ${train.total}` : ""));
    // no worker runs it: that, not "queued" or a step that does not move
    const stalled = x.status === "running" && run.worker && run.worker.message;
    // a stop asked for and not taken yet (training ends its step or preparation first): said, and not asked twice
    const stopping = x.status === "running" && run.stages.some((s) => s.stage === x.phase && s.stopping);
    const message = x.error || stalled || (stopping && stagesView.STOPPING) || (now ? `Training: ${now}` : x.message) ||
      "";
    if (!(x.phase === "upload" && upload)) $("x-message").textContent = message;
    renderStages(run);
    renderPlan(run);
    renderWarnings(run);
    window.studio.expressUncaptioned(run, expressId, (answered) => { render(answered); poll(); });
    renderSamples(run);
    renderDone(run);
    // the files held no usable image, and none were added to the dataset since: Retry would find none again, the form
    // (new files) goes on
    const noImages = x.phase === "import" && !(run.dataset || {}).images &&
      run.stages.some((s) => s.stage === "import" && s.status === "completed");
    $("x-retry").hidden = !((x.status === "failed" || x.status === "stopped") && x.resumable) || noImages;
    $("x-stop").hidden = !(x.status === "running" && x.phase !== "upload");
    $("x-stop").disabled = stopping;
    $("x-stop").textContent = stopping ? "Stopping…" : "Stop";
    if (x.status === "running" && x.phase === "upload" && !upload && !starting && !files.length) {
      // files that arrived a moment ago come from another tab or window still sending them (or one just closed)
      const seen = run.upload_seen_s;
      showUploadAgain(seen != null && seen < UPLOAD_QUIET_S
        ? `Files for this run arrived ${formatDuration(seen)} ago: if another tab or window is still sending them, ` +
          "this page follows the run from there. If none is, choose the files again to go on."
        : "The upload did not finish: choose the files again to go on.");
    } else if (x.status === "failed" && x.phase === "import" && !upload) {
      showUploadAgain(`${message} Choose other files or another link to go on.`);
    } else if (again && !upload && !starting && x.phase !== "upload") {
      $("express-form").hidden = true;  // the run went on (Retry, or the files came from another tab): no files to ask for
    }
  }

  async function poll() {
    clearTimeout(timer);
    try {
      const run = await api(`/api/express/${expressId}`);
      render(run);
      const gone = run.stages.some((s) => s.status === "deleted");  // its job was deleted: no proof will come
      if (run.active || (run.express.status === "completed" && !run.proof && !gone)) timer = setTimeout(poll, 1500);
    } catch (err) {
      $("x-message").textContent = err.status === 404 ? "This express run does not exist." : `${err.message}: retrying…`;
      if (err.status !== 404) timer = setTimeout(poll, 3000);
    }
  }

  // On RunPod: stop the pod by itself once the LoRA is ready (the trainer dashboard's "when the queue is done")
  window.studio.podChoice($("x-autostop"), $("x-autostop-box"), { get: "/api/express/pod", put: "/api/express/pod" },
    "The pod stops by itself a minute after your LoRA is ready.")();

  $("x-retry").onclick = async () => {
    try { render(await api(`/api/express/${expressId}/retry`, { method: "POST" })); poll(); } catch (err) { toast(err.message, "error", 7000); }
  };
  $("x-stop").onclick = async () => {
    try { render(await api(`/api/express/${expressId}/stop`, { method: "POST" })); poll(); } catch (err) { toast(err.message, "error", 7000); }
  };

  if (expressId) poll();
})();
