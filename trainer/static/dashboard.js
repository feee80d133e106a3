// Dashboard: the running job with live numbers, the queue, recent jobs; fed by /api/events.
(function () {
  const { esc, statusChip, fmtLoss, fmtDate, elapsed, phaseText, act, confirmDialog, workerChip } = trainer;
  const fmtD = studio.formatDuration;

  function renderNow(jobs, workers, price) {
    const box = document.getElementById("now");
    const active = jobs.filter((j) => j.status === "running" || j.status === "stopping");
    if (!active.length) {
      const waiting = jobs.some((j) => j.status === "queued");
      trainer.morph(box, waiting && !workers.length
        ? `<div class="error-box" style="margin-top:0">The training worker is not running, so queued jobs wait.
            It starts with the pod (supervisord program <code>worker</code>); by hand:
            <code>python -m trainer.worker</code>.</div>`
        : `<div class="empty">Nothing is training right now. <a href="/new">Start a job</a>.</div>`);
      return;
    }
    trainer.morph(box, active.map((j) => {
      const pct = Math.round((j.progress || 0) * 1000) / 10;
      const spent = trainer.jobCost(elapsed(j), price);
      return `<div class="running-card" data-job="${esc(j.id)}">
        <div style="display:flex;gap:.6rem;align-items:center;flex-wrap:wrap">
          <span class="title"><a href="/jobs/${esc(j.id)}">${esc(j.name)}</a></span>${statusChip(j.status)}
          <span class="muted">${esc(phaseText(j))}${j.gpu != null ? ` · GPU ${esc(j.gpu)}` : ""}</span>
          <span style="margin-left:auto;display:flex;gap:.4rem">
            <a class="button" href="/jobs/${esc(j.id)}">Open</a>
            <button class="danger" data-stop="${esc(j.id)}" ${j.status === "stopping" ? "disabled" : ""}>Stop</button>
          </span>
        </div>
        <div class="progress big"><div style="width:${pct}%"></div></div>
        <div class="progress-line"><span>step ${j.step} / ${j.total_steps || "?"}</span><span>${pct}%</span></div>
        <div class="stats">
          <div class="stat"><div class="label">Loss</div><div class="value">${fmtLoss(j.smooth_loss ?? j.loss)}</div></div>
          <div class="stat"><div class="label">Speed</div><div class="value">${j.it_per_s ? j.it_per_s.toFixed(2) + " it/s" : "–"}</div></div>
          <div class="stat"><div class="label">ETA</div><div class="value" data-eta>${fmtD(eta(j))}</div></div>
          <div class="stat"><div class="label">Elapsed</div><div class="value" data-elapsed>${fmtD(elapsed(j))}</div>
            ${spent ? `<div class="muted now-cost" style="font-size:11px">≈ ${spent}</div>` : ""}</div>
          <div class="stat"><div class="label">GPU memory</div><div class="value">${j.gpu_mem_gb != null ? j.gpu_mem_gb.toFixed(1) + " GB" : "–"}</div></div>
        </div></div>`;
    }).join('<hr style="border-color:var(--border)">'));
  }

  // The ETA as last reported, less the time since (as the job page counts it down); null before a rate is known.
  function eta(j) {
    if (j.status !== "running" || j.eta_s == null) return null;
    return Math.max(0, j.eta_s - Math.max(0, studio.now() / 1000 - (j.updated_at || 0)));
  }
  // A running job's elapsed time and ETA tick every second: no report comes while previews render (a minute or
  // more on a big model), and the card stood still meanwhile.
  function tick() {
    for (const card of document.querySelectorAll(".running-card[data-job]")) {
      const j = shown && shown.jobs.find((one) => one.id === card.dataset.job);
      if (!j) continue;
      card.querySelector("[data-elapsed]").textContent = fmtD(elapsed(j));
      card.querySelector("[data-eta]").textContent = fmtD(eta(j));
    }
  }
  setInterval(tick, 1000);

  // "≈ 25m (about 11:40)": a rough duration from now, with the clock time it lands on.
  function fromNow(seconds) {
    const at = new Date(Date.now() + seconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return `≈ ${fmtD(seconds)} (about ${at})`;
  }

  function renderQueue(jobs, schedule, price, order) {
    // run order: the server's (`order`, when polled), else the jobs' places
    const place = order ? new Map(order.map((id, i) => [id, i])) : null;
    const queued = jobs.filter((j) => j.status === "queued" && (!place || place.has(j.id)))
      .sort((a, b) => (place ? place.get(a.id) - place.get(b.id) : a.queue_key - b.queue_key));
    // several workers (one per GPU) take jobs side by side: the queue is done when its last-ending job is
    const times = queued.map((j) => schedule[j.id]);
    const last = times.length && times.every(Boolean)
      && times.reduce((a, b) => (b.done_in_s > a.done_in_s ? b : a));
    const spend = last ? trainer.cost(last.done_in_s, price) : null;  // this machine's time until the queue is done
    document.getElementById("queue-count").textContent = queued.length
      ? `${queued.length} waiting${last ? ` · all done in ${fromNow(last.done_in_s)}${spend ? `, ≈ ${spend}` : ""}` : ""}` : "";
    trainer.morph(document.getElementById("queue"), queued.length ? `<table><tbody>${queued.map((j, i) => `
      <tr class="job-row"><td class="muted">${i + 1}</td><td><a href="/jobs/${esc(j.id)}">${esc(j.name)}</a>
      <div class="muted" style="font-size:12px">${esc(j.dataset_label)} · ${studio.plural(j.total_steps, "step")}${!schedule[j.id] ? ""
        : schedule[j.id].starts_in_s < 5 ? " · starts now" : ` · starts in ${fromNow(schedule[j.id].starts_in_s)}`}</div>
      ${(j.message || "").startsWith("Waiting for the") ? `<div class="muted" style="font-size:12px">${esc(j.message)}</div>` : ""}
      ${schedule[j.id] && schedule[j.id].data_missing ? `<div class="field-error data-missing" style="font-size:12px">It fails when it
        starts: ${esc(schedule[j.id].data_missing)}</div>` : ""}</td>
      <td style="text-align:right;white-space:nowrap">${i ? `<button data-run-next="${esc(j.id)}" title="Move it to the front: it starts when the running job ends">Run next</button> ` : ""}<button data-cancel="${esc(j.id)}">Cancel</button></td></tr>`).join("")}</tbody></table>`
      : `<div class="empty">The queue is empty.</div>`);
  }

  function renderRecent(jobs) {
    const body = document.querySelector("#recent tbody");
    document.getElementById("recent-empty").hidden = jobs.length > 0;
    document.getElementById("recent").hidden = jobs.length === 0;
    document.getElementById("recent-count").textContent = jobs.length ? studio.plural(jobs.length, "job") : "";
    for (const id of [...picked]) if (!jobs.some((j) => j.id === id)) picked.delete(id);
    trainer.morph(body, jobs.map((j) => `<tr class="job-row" data-job="${esc(j.id)}">
      <td class="pick"><input type="checkbox" data-pick="${esc(j.id)}" aria-label="Compare ${esc(j.name)}" ${picked.has(j.id) ? "checked" : ""}></td>
      <td><a href="/jobs/${esc(j.id)}">${esc(j.name)}</a></td><td class="muted narrow-hide">${esc(j.dataset_label)}</td>
      <td>${statusChip(j.status)}</td>
      <td><div class="progress mini-progress"><div style="width:${(j.progress || 0) * 100}%"></div></div>
        <span class="muted" style="font-size:12px"> ${j.step}/${j.total_steps}</span></td>
      <td class="num">${fmtLoss(j.smooth_loss ?? j.loss)}</td><td class="muted narrow-hide">${fmtDate(j.created_at)}</td>
      <td class="num muted narrow-hide">${fmtD(elapsed(j))}</td></tr>`).join(""));
  }

  // Jobs ticked in Recent jobs, to compare side by side (two to four).
  const picked = new Set();
  const MAX_COMPARED = 4;
  function renderCompare() {
    const button = document.getElementById("compare-btn");
    button.hidden = picked.size === 0;
    button.disabled = picked.size < 2;
    button.textContent = picked.size < 2 ? "Tick one more to compare" : `Compare ${picked.size} runs`;
    button.dataset.href = `/compare?jobs=${[...picked].map(encodeURIComponent).join(",")}`;
  }

  const focusNow = trainer.keepFocus(document.getElementById("now"));
  const focusQueue = trainer.keepFocus(document.getElementById("queue"));
  let wasBusy = null;
  let shown = null;  // what the page shows now: a Run next answer is applied to it
  function render(data) {
    // a job asked to stop is "running" with `stopping` set: shown as stopping (its Stop button off, "Saving a checkpoint")
    data.jobs = data.jobs.map((j) => (j.stopping && j.status === "running" ? { ...j, status: "stopping" } : j));
    shown = data;
    const busy = data.jobs.some((j) => ["queued", "running", "stopping"].includes(j.status));
    if (busy !== wasBusy && wasBusy !== null) loadPod();  // a job began or the last one ended: the pod box follows
    wasBusy = busy;
    workerChip(data.workers || [], data.jobs);
    renderNow(data.jobs, data.workers || [], data.price);
    renderQueue(data.jobs, data.schedule || {}, data.price, data.queue);
    focusNow(); focusQueue();  // a Stop, Cancel or Run next pressed from the keyboard: the focus stays in its box
    renderRecent(data.jobs);
    renderCompare();
  }

  document.addEventListener("click", async (e) => {
    const stop = e.target.closest("[data-stop]"), cancel = e.target.closest("[data-cancel]");
    if (stop) {  // answered Cancel (or refused): the button is on again, and the focus goes back to it
      stop.disabled = true;
      if (!(await act(stop.dataset.stop, "stop", "Stop this job? It saves a checkpoint first and can be resumed."))) stop.disabled = false;
    }
    if (cancel) { cancel.disabled = true; await act(cancel.dataset.cancel, "stop"); }
    const next = e.target.closest("[data-run-next]");
    if (next) {
      next.disabled = true;
      const done = await act(next.dataset.runNext, "run-next");
      // shown at once from the answer (the live list follows); a fetch of /api/jobs would drop older queued jobs
      const was = done && shown && shown.jobs.find((j) => j.id === done.job.id);
      if (was && was.queue_key !== done.job.queue_key) {  // not yet shown by the live list
        render({ ...shown, schedule: {}, queue: shown.queue && [done.job.id, ...shown.queue.filter((id) => id !== done.job.id)],
          jobs: shown.jobs.map((j) => (j.id === done.job.id ? done.job : j)) });
      }
    }
    if (e.target.id === "compare-btn") { location.href = e.target.dataset.href; return; }
    const row = e.target.closest("tr[data-job]");
    if (row && !e.target.closest("a, button, input, td.pick")) location.href = `/jobs/${encodeURIComponent(row.dataset.job)}`;
  });
  document.addEventListener("change", (e) => {
    const box = e.target.closest("[data-pick]");
    if (!box) return;
    if (box.checked && picked.size >= MAX_COMPARED) {
      box.checked = false;
      studio.toast(`At most ${MAX_COMPARED} runs at once.`, "info");
      return;
    }
    if (box.checked) picked.add(box.dataset.pick); else picked.delete(box.dataset.pick);
    renderCompare();
  });
  // Where the volume's space went (GET /api/storage, measured at most every 30 s), biggest part first.
  async function loadStorage() {
    try {
      const d = await studio.api("/api/storage");
      const used = d.total - d.free;
      document.getElementById("storage-free").textContent = `${studio.formatBytes(d.free)} free of ${studio.formatBytes(d.total)}`;
      document.getElementById("storage-bar").style.width = `${d.total ? (100 * used) / d.total : 0}%`;
      const spare = d.freeable || { bytes: 0 };  // older jobs' earlier checkpoints: their training state only
      document.getElementById("storage").innerHTML = d.parts.filter((p) => p.bytes > 0).sort((a, b) => b.bytes - a.bytes)
        .map((p) => `<tr data-part="${esc(p.key)}"><td>${esc(p.label)}<div class="muted" style="font-size:11px">${esc(p.hint)}</div></td>
          <td class="num">${studio.formatBytes(p.bytes)}</td></tr>`).join("") + (spare.bytes > 0 ? `<tr data-part="freeable">
          <td>Of which: training state of ${studio.plural(spare.checkpoints, "earlier checkpoint")}<div class="muted" style="font-size:11px">
          nothing uses it (resuming and Train more steps go on from each job's last checkpoint); their LoRA files stay</div></td>
          <td class="num"><button id="free-states">Free ${studio.formatBytes(spare.bytes)}</button></td></tr>` : "");
    } catch (e) { /* kept as it was; the next round retries */ }
  }
  document.getElementById("storage").addEventListener("click", async (e) => {
    if (e.target.id !== "free-states") return;
    e.target.disabled = true;
    try {
      const done = await studio.api("/api/storage/free-states", { method: "POST" });
      studio.toast(`Freed ${studio.formatBytes(done.freed)} from ${studio.plural(done.checkpoints, "checkpoint")}.`, "ok");
    } catch (err) { studio.toast(err.message, "error"); }
    loadStorage();
  });
  loadStorage();
  setInterval(loadStorage, 60_000);

  // The pod with nothing to do (GET /api/pod): how long, what that cost, and on RunPod a button that stops it.
  const IDLE_NOTICE_S = 600;
  const autoStop = studio.podChoice(document.getElementById("auto-stop-row"), document.getElementById("auto-stop"),
    { get: "/api/pod", put: "/api/pod/auto-stop" }, "The pod stops by itself a minute after the queue is done.");
  // The last stop asked of RunPod since the pod last worked (GET /api/pod's last_stop), as a sentence: a refused one in
  // red (the pod goes on billing), an accepted one as news; null when there is none to tell.
  function stopNews(pod) {
    const last = pod.last_stop;
    if (!last || pod.busy > 0 || (pod.idle_since && last.at < pod.idle_since)) return null;
    const at = new Date(last.at * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    const who = last.by === "auto" ? " by itself (the queue was done)" : "";
    if (last.ok) return { failed: false, text: `RunPod was asked to stop this pod${who} at ${at}: it stops in a moment.` };
    const billing = pod.price ? ` (${trainer.perHour(pod.price)})` : "";
    return { failed: true, text: `The pod did not stop${who || " when asked"} at ${at}: ${last.error || "RunPod did not answer"}. `
      + `It is still running and billing${billing}: press Stop the pod, or stop it from RunPod's console.` };
  }
  async function loadPod() {
    const box = document.getElementById("pod-idle");
    let pod;
    try { pod = await studio.api("/api/pod"); } catch (e) { return; }
    if (pod.price_pending) setTimeout(loadPod, 2000);  // RunPod is being asked for the price: it comes in a moment
    autoStop(pod);
    const long = pod.idle_s != null && pod.idle_s >= IDLE_NOTICE_S;
    const news = stopNews(pod);
    box.hidden = pod.busy > 0 || (!long && !pod.can_stop && !news);
    box.classList.toggle("pod-stop-failed", !!(news && news.failed));
    box.style.borderColor = news && news.failed ? "var(--err)" : "";
    if (box.hidden) return;
    const spent = trainer.cost(pod.idle_s, pod.price);
    const said = long ? `The GPU has had nothing to do for ${fmtD(pod.idle_s)}${spent ? ` (≈ ${spent} at ${trainer.perHour(pod.price)})` : ""}.` : "";
    box.innerHTML = (news ? `<span id="pod-stop-news" style="flex-basis:100%${news.failed ? ";color:var(--err)" : ""}"
      role="${news.failed ? "alert" : "status"}">${esc(news.text)}</span>` : "")
      + `<span>${esc(said)}</span>${pod.can_stop
      ? ` <button class="danger" id="stop-pod" title="RunPod stops billing for the GPU; /workspace is kept">Stop the pod</button>` : ""}`;
  }
  document.getElementById("pod-idle").addEventListener("click", async (e) => {
    if (e.target.id !== "stop-pod") return;
    if (!(await confirmDialog("Stop this pod now?", "RunPod stops billing for its GPU. Everything in /workspace "
      + "stays (datasets, LoRAs, checkpoints, models); this page stops answering. Start the pod again from RunPod's "
      + "console.", "Stop the pod"))) return;
    const button = document.getElementById("stop-pod") || e.target;  // the box may have been drawn again meanwhile
    button.disabled = true;
    try {
      await studio.api("/api/pod/stop", { method: "POST" });
      document.getElementById("pod-idle").innerHTML = "<span>The pod is stopping: RunPod stops billing for it in a moment.</span>";
    } catch (err) {
      button.disabled = false;
      studio.toast(err.message, "error", 9000);
      loadPod();  // the box says it too, in red, for as long as the pod runs on
    }
  });
  loadPod();
  setInterval(loadPod, 30_000);
  trainer.live("/api/events", { jobs: render }, "/api/jobs?limit=50", "jobs");
})();
