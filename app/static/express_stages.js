// Express: the row of stage cards (upload, check images, caption, export, train), each with its state, progress
// and what it says now. Drawn by express.js on every poll, and the upload card as the files go up.
(function () {
  const { esc, formatBytes, formatDuration, plural } = window.studio;
  const $ = (id) => document.getElementById(id);
  const trainer = (path) => window.studio.toolUrl("trainer").replace(/\/$/, "") + path;
  const STAGE_TITLES = { upload: "Upload", import: "Check images", caption: "Caption", export: "Export", train: "Train" };
  // a stop is taken at the stage's next safe point: training finishes its step (or its preparation) first
  const STOPPING = "Stopping: it ends at its next safe point (training saves a checkpoint first), then Retry " +
    "goes on from there.";

  function bar(done, total) {
    const pct = total ? Math.min(100, Math.round((100 * done) / total)) : 0;
    return `<div class="progress"><div style="width:${pct}%"></div></div>`;
  }

  function renderUpload(upload) {
    const el = document.querySelector(".x-stage[data-stage=upload]");
    if (!el || !upload) return;
    el.className = "x-stage running";
    el.querySelector(".state").textContent = upload.eta != null ? `${formatDuration(upload.eta)} left` : "uploading";
    el.querySelector(".body").innerHTML = bar(upload.done, upload.total) + `<div class="msg">${esc(upload.text)}</div>`;
  }

  function stageCard(s) {
    const running = s.status === "running" || s.status === "queued";
    let state = running ? (s.eta_s != null ? `${formatDuration(s.eta_s)} left` : s.status) : s.status;
    if (s.noWorker) state = "no worker";  // "running" or "queued", and nothing runs it
    if (s.stopping) state = "stopping";  // asked to stop, and not there yet: its own message may still say its step
    let body = s.total ? bar(s.done, s.total) + `<div class="msg">${s.done} / ${s.total}</div>` : "";
    if (s.phase === "downloading" && running) {  // a link, on its way to the pod
      body = bar(s.bytes_done || 0, s.bytes_total || 0) +
        `<div class="msg">${formatBytes(s.bytes_done || 0)}${s.bytes_total ? ` of ${formatBytes(s.bytes_total)}` : ""}</div>`;
    }
    if (s.stage === "train" && s.loss != null && running) {  // while it trains; at the end its message gives the smoothed one
      body += `<div class="msg" title="The last step's loss; it jumps from step to step">loss ${Number(s.loss).toFixed(4)} (last step)</div>`;
    }
    const text = s.error || s.message;
    if (text && s.status !== "waiting") body += `<div class="msg">${esc(text)}</div>`;
    if (s.errors && s.errors.length) body += `<div class="msg">${s.errors.length} image(s) could not be captioned</div>`;
    const skipped = (s.stage === "import" && s.result && s.result.skipped) || [];  // which files were left out, and why
    if (skipped.length) {
      body += `<div class="msg x-skipped">Left out: ${skipped.slice(0, 5).map((f) => `${esc(f.name)} (${esc(f.reason)})`).join("; ")}` +
        `${skipped.length > 5 ? ` and ${skipped.slice(5).reduce((n, f) => n + (f.count || 1), 0).toLocaleString("en-US")} more` : ""}</div>`;
    }
    if (s.schedule && s.schedule.starts_in_s >= 5) {  // queued behind other training jobs
      body += `<div class="msg">Other training jobs run first: starts in about ${formatDuration(s.schedule.starts_in_s)}, ` +
        `done in about ${formatDuration(s.schedule.done_in_s)}.</div>`;
    }
    if (s.stopping) body += `<div class="msg x-stopping">${esc(STOPPING)}</div>`;
    if (s.noWorker) body += `<div class="msg x-no-worker">${esc(s.noWorker)}</div>`;
    if (s.uncaptioned) body += `<div class="msg x-warn-text">${esc(s.uncaptioned)}</div>`;  // trigger word alone
    if (s.stage === "train" && s.job_page) body += `<div class="msg"><a href="${esc(trainer(s.job_page))}" target="_blank" rel="noopener">Open the job page</a></div>`;
    if (s.status === "deleted") body += `<div class="msg"><a href="${esc(trainer("/library"))}" target="_blank" rel="noopener">Open the LoRA library</a></div>`;
    return `<li class="x-stage ${esc(s.status)}${s.noWorker ? " stalled" : ""}${s.stopping ? " stopping" : ""}" data-stage="${esc(s.stage)}"><h3>${STAGE_TITLES[s.stage]}<span class="state">${esc(state)}</span></h3><div class="body">${body}</div></li>`;
  }

  function renderStages(run, upload) {
    const phase = run.express.phase;
    const uploadStatus = phase === "upload" ? (upload ? "running" : "waiting") : "completed";
    const uploadCard = { stage: "upload", status: uploadStatus, done: 0, total: 0,
      message: phase === "upload" ? "" : `${plural((run.dataset || {}).images || 0, "image")} in the dataset` };
    // the training step says what holds it up (no worker) and which images train without a caption
    const stages = run.stages.map((s) => s.stage !== "train" ? s
      : { ...s, noWorker: run.worker && run.worker.message, uncaptioned: run.uncaptioned && run.uncaptioned.text });
    $("x-stages").innerHTML = [uploadCard, ...stages].map(stageCard).join("");
    renderUpload(upload);
  }

  window.studio.expressStages = {
    render: renderStages,
    upload: renderUpload,
    STOPPING,
  };
})();
