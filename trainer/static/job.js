// Job page: live progress with the step-time split, log tail, loss chart, sample gallery (base / LoRA /
// LoRA without the trigger word per prompt) with step comparison, checkpoints, proof files, actions.
(function () {
  const { esc, statusChip, fmtLoss, jobCost, perHour, elapsed, phaseText, act, FINISHED } = trainer;
  const jobId = document.getElementById("job-root").dataset.job;
  const $ = (id) => document.getElementById(id);
  const chart = new LossChart($("loss-chart"), $("chart-tip"));
  const logView = new LogView($("log"));
  let job = null, logOffset = -1, lastStep = -1, samples = [], view = "gallery", lastSamplesKey = "", stepSplit = null;
  let seenStep = -1;  // the job's step when last shown
  let timelapses = [];  // prompts whose previews can be watched in turn, base model to the latest step
  let lastEvalKey = "", bestHeldStep = null, shownCheckpoints = [];
  if (new URLSearchParams(location.search).has("again")) {  // the form sent what was queued a moment ago
    studio.toast("This job was queued with the same settings a moment ago: no second one was made. Change a " +
      "setting (or wait a few seconds) to queue another.", "ok", 9000);
    history.replaceState(null, "", location.pathname + location.hash);
  }
  let logBusy = false, metricsBusy = false, samplesBusy = false, lastLog = 0, lastSamples = 0, samplesSoon = null;
  const comfyui = !!document.querySelector("[data-tool='comfyui']");  // installed: the top bar links it
  let bundleFor = null, lastCkptKey = null;
  const keepFocus = trainer.keepFocus(document.querySelector(".page-head .actions"));
  const notify = studio.notifier($("btn-notify"), `notify:${jobId}`);
  // while it waits or trains: stop the pod once the queue is done (not offered after: that would stop it at once)
  const autoStop = studio.podChoice($("job-autostop"), $("job-autostop-box"), { get: "/api/pod", put: "/api/pod/auto-stop" },
    "The pod stops by itself a minute after the queue is done.");
  let autoStopShown = false;

  // Elapsed and what the time cost on this machine: so far and in all while it runs, in all once it ended. It ticks
  // every second while the job runs, not only when a report comes (previews can take a minute without one).
  let shown = null;
  function showTime() {
    if (!shown) return;
    const job = shown.job, price = shown.price;
    // the ETA as reported, less the time since (the next report sets it again)
    const eta = job.status === "running" && job.eta_s != null
      ? Math.max(0, job.eta_s - Math.max(0, window.studio.now() / 1000 - (job.updated_at || 0))) : null;
    $("s-eta").textContent = eta != null ? studio.formatDuration(eta) : "–";
    $("s-elapsed").textContent = studio.formatDuration(elapsed(job));
    const spent = jobCost(elapsed(job), price);
    const inAll = eta != null ? jobCost(elapsed(job) + eta, price) : null;
    $("s-cost").hidden = !spent;
    if (spent) {
      $("s-cost").textContent = inAll ? `≈ ${spent} so far, ≈ ${inAll} in all` : `≈ ${spent}`;
      const shared = price.jobs_at_once > 1 ? `; ${price.jobs_at_once} jobs train at once (one per GPU), ` +
        "each paying its GPU's part" : "";
      $("s-cost").title = `At ${perHour(price)}${price.source === "runpod" ? ", this pod's price on RunPod" : " (GPU_PRICE_PER_HOUR)"}${shared}`;
    }
  }
  setInterval(() => { if (shown && shown.job.status === "running") showTime(); }, 1000);

  function renderJob(detail) {
    job = detail.job;
    // its step went back (resumed from a checkpoint behind the step it had reached): those steps train again, and
    // the chart follows them anew
    if (job.step < seenStep) { chart.dropAfter(job.step); lastStep = Math.min(lastStep, job.step); }
    seenStep = job.step;
    $("job-name").textContent = job.name;
    // the tab says how far it is, so a run can be followed from another tab
    const mark = { running: `${Math.floor((job.progress || 0) * 100)}% · `, completed: "✓ ", failed: "✗ " }[job.status] || "";
    document.title = `${mark}${job.name} · Trainer`;
    if ($("job-status").dataset.shown !== job.status) {  // a live region: said when the status changes, not every step
      $("job-status").dataset.shown = job.status; $("job-status").innerHTML = statusChip(job.status);
    }
    $("job-sub").textContent = [job.dataset_label, job.recipe, job.device_name && `on ${job.device_name}`,
      job.gpu != null && `GPU ${job.gpu}`].filter(Boolean).join(" · ");
    const pct = Math.round((job.progress || 0) * 1000) / 10;
    $("progress").firstElementChild.style.width = `${pct}%`;
    $("progress").setAttribute("aria-valuenow", pct);
    $("pct-text").textContent = `${pct}%`;
    $("step-text").textContent = `step ${job.step} / ${job.total_steps || "?"}`;
    $("phase").textContent = phaseText(job);
    // the same figure as the dashboard (the smoothed loss); the latest step's own loss under it
    $("s-loss").textContent = fmtLoss(job.smooth_loss ?? job.loss);
    $("s-loss-raw").hidden = job.loss == null || job.smooth_loss == null;
    $("s-loss-raw").textContent = `latest step: ${fmtLoss(job.loss)}`;
    $("s-speed").textContent = job.it_per_s ? `${job.it_per_s.toFixed(2)} it/s` : "–";
    $("s-split").hidden = !stepSplit;
    shown = detail;
    showTime();
    $("s-mem").textContent = job.gpu_mem_gb != null ? `${job.gpu_mem_gb.toFixed(1)} GB` : "–";
    // a failure's message is its error, which the red box below shows (with its log lines kept apart)
    let msg = job.status === "running" || (job.error && job.message === job.error) ? "" : job.message || "";
    if (detail.queue_position) msg += ` Position in the queue: ${detail.queue_position}.`;
    if (detail.worker_running === false) {
      msg += " No worker is running, so it cannot start yet: the worker restarts by itself within seconds; if this " +
        "stays, logs/worker.log says why.";
    }
    if (detail.schedule) {
      const own = detail.schedule.done_in_s - detail.schedule.starts_in_s;
      const price = jobCost(own, detail.price);
      msg += ` It should start in about ${studio.formatDuration(detail.schedule.starts_in_s)} and be done ` +
        `in about ${studio.formatDuration(detail.schedule.done_in_s)}${price ? `, costing about ${price}` : ""} (a rough estimate).`;
    }
    $("message").hidden = !msg; $("message").textContent = msg;
    $("error").hidden = !job.error; $("error").textContent = job.error || "";
    const notices = job.notices || [];  // what the run changed on its own: recomputation, skipped previews
    $("notices").hidden = !notices.length;
    $("notices").innerHTML = notices.map((text) => `<li>${esc(text)}</li>`).join("");
    const running = job.status === "running";
    $("btn-sample").disabled = !running; $("btn-save").disabled = !running;
    $("btn-sample").hidden = $("btn-save").hidden = FINISHED.has(job.status);  // only for a run on its way
    const waitingOrRunning = ["queued", "running"].includes(job.status);
    if (waitingOrRunning && !autoStopShown) autoStop();
    if (!waitingOrRunning) $("job-autostop").hidden = true;
    autoStopShown = waitingOrRunning;
    $("btn-stop").hidden = !["queued", "running", "stopping"].includes(job.status);
    $("btn-stop").disabled = job.status === "stopping" || (job.status === "running" && !!job.stopping);
    $("btn-resume").hidden = !["stopped", "failed"].includes(job.status);
    $("btn-continue").hidden = job.status !== "completed";  // Train more steps (job_continue.js)
    $("btn-bundle").hidden = job.status === "queued" && !job.started_at;  // nothing on disk yet
    if (FINISHED.has(job.status) && bundleFor !== `${job.status}:${job.step}`) labelBundle(`${job.status}:${job.step}`);
    const loraName = detail.lora && (detail.lora.library_file || detail.lora.file);  // as the library (and ComfyUI) call it
    const earlier = detail.lora ? detail.lora.earlier_step : null;  // training further, or cut short doing so
    trainer.morph($("lora-box"), detail.lora ? `<div class="download-lora"><div><strong>${esc(loraName)}</strong>
      <div class="muted" style="font-size:12px">${earlier != null ? `<span data-earlier>as it finished at step ${esc(earlier)}, before training further</span> · ` : ""}${studio.formatBytes(detail.lora.size)} · loads in ComfyUI and diffusers</div>
      ${proofLinks(detail.proof)}</div>
      <a class="button primary" id="download-lora" style="margin-left:auto" href="/api/jobs/${esc(job.id)}/files/${esc(detail.lora.path)}" download="${esc(loraName)}">Download LoRA</a></div>` : "");  // its links stay put under a click while it trains on
    renderCheckpoints(detail.checkpoints || []);
    // a new checkpoint or the end of the run: Try the LoRA (job_try.js) offers it at once, not at its next poll
    const ckptKey = `${job.status}:${(detail.checkpoints || []).map((c) => c.step).join(",")}`;
    if (lastCkptKey !== null && ckptKey !== lastCkptKey) document.dispatchEvent(new CustomEvent("trainer:checkpoints"));
    lastCkptKey = ckptKey;
  }

  // The finished job's proof beside the LoRA: the base-vs-LoRA grid and the README.
  function proofLinks(proof) {
    if (!proof) return "";
    const link = (path, id, text) => path ? `<a id="${id}" href="/api/jobs/${esc(jobId)}/files/${esc(path)}" target="_blank" rel="noopener">${text}</a>` : "";
    const workflow = proof.workflow ? `<a id="proof-workflow" href="/api/jobs/${esc(jobId)}/files/${esc(proof.workflow)}"
      download="${esc(((job && job.config && job.config.name) || "lora") + "-comfyui-workflow.json")}" title="Drop it onto ComfyUI: Z-Image-Turbo with this LoRA and its first preview prompt">ComfyUI workflow</a>` : "";
    return `<div style="font-size:12px;margin-top:.25rem">${[link(proof.grid, "proof-grid", "Base vs LoRA grid"),
      link(proof.readme, "proof-readme", "README.txt"), workflow, `<a href="#try-panel" id="try-link">Try it with your own prompt</a>`]
      .filter(Boolean).join(" · ")}</div>`;
  }

  // Where a step's time goes, measured by the engine every few steps (GPU events on a GPU).
  function renderSplit() {
    const t = stepSplit;
    if (!t) return;
    const ms = (v) => (v >= 100 ? Math.round(v) : v.toFixed(1));
    $("s-split").textContent = `${ms(t.step_ms)} ms/step: data ${ms(t.data_ms)} · fwd ${ms(t.forward_ms)} · ` +
      `bwd ${ms(t.backward_ms)} · opt ${ms(t.optimizer_ms)}`;
    $("s-split").title = `Average over the last ${t.steps} step(s): data, forward, backward and optimizer time`;
    $("s-split").hidden = false;
  }

  // The chart's legend: with evaluations, or a learning rate that changes (drawn on its own scale).
  function showLegend() {
    const rate = $("loss-chart").dataset.lr === "1";
    const evals = !!$("chart-legend-evals").dataset.evals;
    $("legend-lr").hidden = !rate;
    $("legend-eval").hidden = !evals;
    $("chart-legend-evals").hidden = !rate && !evals;
  }

  // The latest step's learning rate (warm-up and cosine change it); with Prodigy, the step size it found.
  function renderRate(rate) {
    if (rate == null) return;
    const prodigy = job && job.config && job.config.optimizer === "prodigy";
    $("s-lr").textContent = `${prodigy ? "Prodigy's step size" : "learning rate"}: ${Number(rate.toPrecision(2))}`;
    $("s-lr").title = prodigy ? "The learning rate Prodigy has found (times learning_rate); it grows over the first "
      + "hundred steps or so, then settles" : "The learning rate of the latest step";
    $("s-lr").hidden = false;
  }

  // "Download all" says how big the archive is once the job has ended (its files no longer change).
  async function labelBundle(key) {
    bundleFor = key;
    try {
      const info = await studio.api(`/api/jobs/${jobId}/bundle`);
      $("btn-bundle").textContent = `Download all (${studio.formatBytes(info.size)})`;
    } catch (e) { bundleFor = null; }
  }

  // The checkpoint nearest the lowest held-out loss (the job keeps it whatever keep_last says) is marked.
  function nearestCheckpoint(list, step) {
    if (step == null || !list.length) return null;
    return list.reduce((b, c) => (Math.abs(c.step - step) < Math.abs(b.step - step) ||
      (Math.abs(c.step - step) === Math.abs(b.step - step) && c.step < b.step) ? c : b)).step;
  }

  function renderCheckpoints(list) {
    shownCheckpoints = list;
    const best = nearestCheckpoint(list, bestHeldStep);
    const mark = (c) => (c.step === best ? ` <span class="chip best-held" title="Nearest the lowest loss of the held-out images (step ${bestHeldStep}): the checkpoint most likely to generalise. It is kept whatever keep_last says.">lowest held-out loss</span>` : "");
    trainer.morph($("checkpoints"), list.length ? `<table><thead><tr><th>Step</th><th class="num">Size</th><th></th></tr></thead>
      <tbody>${list.slice().reverse().map((c) => `<tr><td>${c.step}${mark(c)}${c.complete ? "" : ' <span class="muted" title="Its training state was freed when the job finished; its LoRA file is whole">(LoRA only)</span>'}</td>
      <td class="num muted">${studio.formatBytes(c.size)}</td>
      <td style="text-align:right">${c.library_file ? `<span class="muted" title="In the LoRA library${comfyui ? " and ComfyUI's loras" : ""}">✓ ${esc(c.library_file)}</span>`
        : `<button type="button" data-publish="${c.step}" title="Add this checkpoint's LoRA to the LoRA library${comfyui ? " and ComfyUI's loras" : ""} as ${esc(c.download_name)}">${comfyui ? "To ComfyUI" : "To library"}</button>`}
      <a class="button" href="/api/jobs/${esc(jobId)}/files/${esc(c.file)}" download="${esc(c.download_name)}">Download</a></td></tr>`).join("")}
      </tbody></table>` : `<div class="empty">No checkpoint yet.</div>`);  // drawn each update: only what changed
  }

  async function refreshLog() {
    if (logBusy) return; logBusy = true;
    try {
      const data = await studio.api(`/api/jobs/${jobId}/log?offset=${logOffset}`);
      const box = $("log");
      if (logOffset < 0 || data.offset < logOffset) logView.reset();  // first read, or the log was replaced
      if (data.text) logView.append(data.text);
      logOffset = data.offset;
      logView.render(job && job.status === "queued" ? "Waiting for the worker…" : "");
      if (data.text && $("follow").checked) box.scrollTop = box.scrollHeight;
    } catch (e) { if (e.status === 404) deleted(); } finally { logBusy = false; lastLog = Date.now(); }
  }

  // The evaluation loss (fixed images, noise levels and noise) and the held-out images': the stat and the legend.
  function renderEvals(evals) {
    const last = evals[evals.length - 1];
    $("s-eval-box").hidden = !last;
    $("chart-legend-evals").dataset.evals = last ? "1" : "";
    showLegend();
    if (!last) return;
    const best = LossChart.lowestHeld(evals);
    $("s-eval").textContent = fmtLoss(last.eval_loss);
    $("legend-held").hidden = !best;
    if (!best) { $("s-eval-sub").textContent = `at step ${last.step}`; return; }
    if (best.step !== bestHeldStep) { bestHeldStep = best.step; renderCheckpoints(shownCheckpoints); }
    $("s-eval-sub").textContent = `held-out ${fmtLoss(last.holdout_loss)}` +
      (best.step !== last.step ? ` · lowest ${fmtLoss(best.holdout_loss)} at step ${best.step}` : "");
  }

  async function refreshMetrics() {
    if (metricsBusy) return; metricsBusy = true;
    try {
      const data = await studio.api(`/api/jobs/${jobId}/metrics?after=${lastStep}`);
      if (data.points.length) {
        chart.add(data.points); lastStep = data.points[data.points.length - 1].step;
        const timed = data.points.filter((p) => p.timing);
        if (timed.length) { stepSplit = timed[timed.length - 1].timing; renderSplit(); }
        renderRate(data.points[data.points.length - 1].lr);
        showLegend();
      }
      const evalKey = JSON.stringify((data.evals || []).map((e) => e.step));
      if (evalKey !== lastEvalKey) { lastEvalKey = evalKey; chart.setEvals(data.evals); renderEvals(data.evals); }
    } catch (e) { /* retried */ } finally { metricsBusy = false; }
  }

  async function refreshSamples() {
    if (samplesBusy) return; samplesBusy = true;
    try {
      const answer = await studio.api(`/api/jobs/${jobId}/samples`);
      samples = answer.samples; timelapses = answer.timelapses || [];
      const key = noPreviews() + timelapses.map((t) => t.url).join() + samples.map((s) => `${s.step}:${s.urls.length}:${(s.pairs || []).map((p) => (p.base ? 1 : 0) + (p.lora_no_trigger ? 2 : 0) + (p.leak != null ? 4 : 0)).join("")}`).join(",");
      if (key !== lastSamplesKey) { lastSamplesKey = key; renderSamples(); }
    } catch (e) { /* retried */ } finally { samplesBusy = false; lastSamples = Date.now(); }
  }

  function figure(url, prompt, step) {
    return `<figure><img src="${esc(studio.thumb(url))}" data-full="${esc(url)}" tabindex="0" loading="lazy" alt="${esc(prompt || "sample")}" data-caption="step ${step}: ${esc(prompt || "")}">
      <figcaption title="${esc(prompt || "")}">${esc(prompt || "")}</figcaption></figure>`;
  }

  // One prompt of one step: base (LoRA off, same seed), LoRA, and LoRA with the trigger word removed.
  function triple(p, step) {
    const cell = (url, label, prompt, note) =>
      trainer.picture(url, label, `step ${step}, ${label}: ${prompt || ""}`, prompt || "", note);
    const noTrigger = p.no_trigger_prompt == null ? "no trigger word in this prompt" : "not rendered";
    const own = trainer.promptOptions(p.options);  // the prompt's own size, seed, ... (its --w, --h, --d)
    return `<div class="triple"><div class="muted" style="font-size:12px;margin:.3rem 0 .2rem" title="${esc(p.prompt)}">${esc(p.prompt)}${own ? ` <span class="prompt-options">(${esc(own)})</span>` : ""}</div>
      <div class="gallery-row" style="grid-template-columns:repeat(3,minmax(0,1fr))">
      ${cell(p.base, "Base (LoRA off)", p.prompt, "base not rendered for this step")}${cell(p.lora, "LoRA", p.prompt, "")}
      ${cell(p.lora_no_trigger, "LoRA, no trigger word", p.no_trigger_prompt, noTrigger)}</div>${studio.leakLine(p)}</div>`;
  }

  // "Watch it learn": one animation per prompt, the base model's picture, then every preview step's in turn.
  function timelapseLine() {
    if (!timelapses.length) return "";
    const prompts = (samples.find((s) => !s.base_only) || samples[0]).prompts || [];
    return `<div class="timelapse-line muted">Watch it learn: ${timelapses.map((t) =>
      `<a href="${esc(t.url)}" data-timelapse="${esc(t.url)}" title="${esc(prompts[t.index] || "")}">prompt ${t.index + 1}</a>`).join(" · ")}</div>`;
  }

  // A job set to render none says so, rather than promising previews that never come.
  function noPreviews() {
    const config = (job && job.config) || {};
    if (!job || !("sample_prompts" in config)) return "";
    if (!(config.sample_prompts || []).length) return "This job has no preview prompts: it renders no preview images.";
    return config.sample_every ? "" : "This job renders preview images only on “Sample now” (its sample_every is 0).";
  }

  // Drawn with trainer.redraw: a new preview step keeps the pictures already shown (no reload, no flicker, the focus
  // and the place read stay).
  function renderSamples() {
    const box = $("samples");
    if (!samples.length) { box.innerHTML = `<div class="empty">${esc(noPreviews() || "Preview images appear here: the base model's before the first step, then every few steps (and on “Sample now”).")}</div>`; return; }
    if (view === "gallery") {
      trainer.redraw(box, timelapseLine() + samples.slice().reverse().map((s) => {
        if (s.base_only) {  // rendered before the first step: the prompts as the base model draws them
          return `<div class="gallery-step"><h3>Before training: the base model</h3><div class="gallery-row">
            ${s.urls.map((u, i) => figure(u, s.prompts[i], "0 (base model)")).join("")}</div></div>`;
        }
        const paired = (s.pairs || []).some((p) => p.base || p.lora_no_trigger);
        const body = paired ? s.pairs.map((p) => triple(p, s.step)).join("")
          : `<div class="gallery-row">${s.urls.map((u, i) => figure(u, s.prompts[i], s.step)).join("")}</div>`;
        return `<div class="gallery-step"><h3>Step ${s.step}</h3>${body}</div>`;
      }).join(""));
      return;
    }
    const steps = samples.map((s) => s.step);
    const a = Number(box.dataset.a ?? steps[0]), b = Number(box.dataset.b ?? steps[steps.length - 1]);
    const A = samples.find((s) => s.step === a) || samples[0], B = samples.find((s) => s.step === b) || samples[samples.length - 1];
    const opts = (sel) => steps.map((s) => `<option value="${s}" ${s === sel ? "selected" : ""}>${s === 0 ? "base model" : `step ${s}`}</option>`).join("");
    const rows = Math.max(A.urls.length, B.urls.length);
    let grid = "";
    for (let i = 0; i < rows; i++) {
      grid += (A.urls[i] ? figure(A.urls[i], A.prompts[i], A.step) : "<div></div>") +
              (B.urls[i] ? figure(B.urls[i], B.prompts[i], B.step) : "<div></div>");
    }
    trainer.redraw(box, timelapseLine() + `<div class="compare-head"><select id="cmp-a">${opts(A.step)}</select><span class="muted">vs</span>
      <select id="cmp-b">${opts(B.step)}</select></div><div class="compare">${grid}</div>`);
  }

  function update(detail) {
    const prev = job;
    renderJob(detail);
    const mark = { completed: "✓", failed: "✗" }[job.status] || "■";  // a desktop notification when it ends
    notify({ active: !FINISHED.has(job.status), title: `${mark} ${job.name}: ${job.status}`, body: job.error || job.message });
    keepFocus();  // a Stop or Resume pressed from the keyboard went out of sight: the focus goes on in the bar
    const now = Date.now();
    const stepChanged = !prev || prev.step !== job.step || prev.status !== job.status;
    if (prev && prev.status !== job.status) trainer.pollWorkers();  // the worker chip follows at once
    if (stepChanged) refreshMetrics();
    if (stepChanged || now - lastLog > 3000) refreshLog();
    if (!prev || prev.status !== job.status || (stepChanged && now - lastSamples > 2000) || now - lastSamples > 8000) refreshSamples();
    else if (stepChanged && !samplesSoon) {  // a step within 2 s of the last look: looked at once those 2 s are over
      samplesSoon = setTimeout(() => { samplesSoon = null; refreshSamples(); }, 2000 - (now - lastSamples));
    }
  }

  document.addEventListener("click", async (e) => {
    const t = e.target;
    if (t.matches("[data-range]")) {
      document.querySelectorAll("[data-range]").forEach((b) => b.classList.toggle("active", b === t));
      chart.setRange(Number(t.dataset.range));
    } else if (t.matches("[data-view]")) {
      view = t.dataset.view; document.querySelectorAll("[data-view]").forEach((b) => b.classList.toggle("active", b === t));
      renderSamples();
    } else if (t.matches(".gallery-row img, .compare img")) {
      trainer.lightbox(t.dataset.full || t.src, t.dataset.caption);
    } else if (t.matches("[data-timelapse]")) {
      e.preventDefault();
      trainer.lightbox(t.dataset.timelapse, `${t.textContent}: ${t.title} (base model, then every preview step)`);
    } else if (t.matches("[data-publish]")) {  // the checkpoint that looked best, into the library (and ComfyUI)
      t.disabled = true;
      try {
        const res = await studio.api(`/api/jobs/${jobId}/checkpoints/${t.dataset.publish}/publish`, { method: "POST" });
        studio.toast(`Added to the LoRA library${res.comfyui ? " and ComfyUI's loras" : ""} as ${res.file}.`, "ok", 6000);
        update(await studio.api(`/api/jobs/${jobId}`));
      } catch (err) { studio.toast(err.message, "error"); t.disabled = false; }
    } else if (t.id === "btn-stop") {
      t.disabled = true; if (!(await act(jobId, "stop", job && job.status === "queued" ? null :
        "Stop this job? It saves a checkpoint first; you can resume it later."))) t.disabled = false;
    } else if (t.id === "btn-resume") { await act(jobId, "resume"); }
    else if (t.id === "btn-sample") { await act(jobId, "sample"); }
    else if (t.id === "btn-save") { await act(jobId, "save"); }
    else if (t.id === "btn-delete") {
      const running = job && ["running", "stopping"].includes(job.status);
      const res = await act(jobId, "delete", running ? "Delete this job? It is stopped first, then kept 7 days in Recently deleted (LoRA library page)." :
        "Delete this job and its folder (checkpoints, samples, renders, log)? The finished LoRA stays in the LoRA library; the job is kept 7 days in Recently deleted (LoRA library page), to restore.");
      if (res && res.deleted) location.href = "/";
    }
  });
  document.addEventListener("change", (e) => {
    if (e.target.id === "cmp-a" || e.target.id === "cmp-b") {
      $("samples").dataset[e.target.id === "cmp-a" ? "a" : "b"] = e.target.value; renderSamples();
    }
  });
  $("smoothing").addEventListener("input", (e) => {
    chart.setSmoothing(Number(e.target.value)); $("smoothing-value").textContent = Number(e.target.value).toFixed(2);
  });
  // The job is gone: deleted in another tab, or while this page's stream was down (the polling that stands in for the
  // stream then is answered 404 and says nothing, so the page showed the job as it was, for good).
  let gone = false;
  function deleted() {
    if (gone) return;
    gone = true;
    studio.toast("This job was deleted (Recently deleted, on the LoRA library page, keeps it a few days).", "info", 6000);
    setTimeout(() => { location.href = "/"; }, 2500);
  }
  trainer.live(`/api/jobs/${jobId}/events`, { job: update, deleted }, `/api/jobs/${jobId}`, "job");
  // the log while it runs; otherwise now and then, which also finds a job deleted meanwhile (a 404)
  setInterval(() => { if ((job && job.status === "running") || Date.now() - lastLog > 15000) refreshLog(); }, 4000);
})();
