// Shared trainer helpers: live updates (SSE with polling fallback), status chips, number formats.
(function () {
  const esc = window.studio.esc;

  // Follows `url` with EventSource; the server ends each stream before proxies cut it and the browser
  // reconnects. After repeated failures it polls `pollUrl` instead, and tries the stream again later.
  // While the trainer cannot be reached (its web app restarting, the pod's proxy down) a banner says so: the page
  // would otherwise go on showing the last figures it had as if they were live.
  function offline(on) {
    let banner = document.getElementById("offline-banner");
    if (!on) { if (banner) banner.remove(); return; }
    if (banner) return;
    banner = document.createElement("div");
    banner.id = "offline-banner";
    banner.className = "banner banner-error";
    banner.setAttribute("role", "status");
    banner.textContent = "The trainer cannot be reached: what this page shows may be out of date. Reconnecting… " +
      "(Training goes on on the pod meanwhile.)";
    (document.getElementById("banners") || document.body).appendChild(banner);
  }

  // Logged out (here or in another tab): the page stops following and says so, instead of showing stale figures.
  function signedOut() {
    offline(false);
    if (document.getElementById("signed-out-banner")) return;
    const banner = document.createElement("div");
    banner.id = "signed-out-banner";
    banner.className = "banner banner-error";
    banner.setAttribute("role", "status");
    const next = encodeURIComponent(location.pathname + location.search);
    banner.innerHTML = `Logged out: this page no longer updates. <a href="/login?next=${next}">Log in again</a>.`;
    (document.getElementById("banners") || document.body).appendChild(banner);
  }

  function live(url, handlers, pollUrl, pollEvent) {
    let source = null, failures = 0, pollTimer = null, stopped = false;
    function connect() {
      if (stopped) return;
      source = new EventSource(url);
      Object.entries(handlers).forEach(([name, fn]) => {
        source.addEventListener(name, (ev) => { failures = 0; offline(false); fn(JSON.parse(ev.data)); });
      });
      source.addEventListener("bye", (ev) => {
        source.close();
        if ((JSON.parse(ev.data || "{}") || {}).signed_out) { stopped = true; signedOut(); return; }
        setTimeout(connect, 200);
      });
      source.onerror = () => {
        // the proxy answered the stream with an error page (502, 524): the browser gives the stream up for good,
        // and this is the only error it reports, so the page polls at once instead of waiting for three
        if (source.readyState === EventSource.CLOSED) { failures = 3; startPolling(); return; }
        failures += 1;
        if (failures >= 2) offline(true);  // one error is the stream's own reconnect
        if (failures >= 3) { source.close(); startPolling(); }
      };
    }
    function startPolling() {
      let rounds = 0;
      const tick = async () => {
        if (stopped) return;
        try { handlers[pollEvent](await studio.api(pollUrl)); offline(false); }
        catch (e) {
          if (e.status === 401) { stopped = true; signedOut(); return; }
          offline(!e.status || e.status >= 502);  // no answer, or the proxy's instead of the trainer's
        }
        rounds += 1;
        if (rounds >= 15) { failures = 0; pollTimer = null; connect(); return; }
        pollTimer = setTimeout(tick, 2000);
      };
      tick();
    }
    connect();
    return { close() { stopped = true; if (source) source.close(); clearTimeout(pollTimer); } };
  }

  function statusChip(status) {
    return `<span class="status status-${esc(status)}" data-status="${esc(status)}">${esc(status)}</span>`;
  }
  function fmtLoss(x) { return x == null ? "–" : Number(x).toFixed(4); }
  // a share kept of a LoRA's change (0..1) as a percentage: "99.6%" near the top, where rounding would say 100
  function fmtKept(share) {
    const percent = Number(share) * 100;
    return percent >= 99 && percent < 99.95 ? `${percent.toFixed(1)}%` : `${Math.round(percent)}%`;
  }
  // what `seconds` of this machine cost, as "$1.04" or "<$0.01" (null: no price known)
  function cost(seconds, price) {
    const dollars = window.studio.dollars(seconds, price);
    if (dollars == null) return null;
    return dollars < 0.01 ? "<$0.01" : `$${dollars.toFixed(2)}`;
  }
  // One job's part of the machine's cost: on a pod training several jobs at once (a worker per GPU), its GPU's.
  function jobCost(seconds, price) {
    const shared = price && price.jobs_at_once > 1 ? price.jobs_at_once : 1;
    return cost(seconds / shared, price);
  }
  const perHour = window.studio.perHour;
  function fmtDate(t) {
    if (!t) return "–";
    const d = new Date(t * 1000);
    return d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  }
  // every run of the job: the ended ones (a resumed or further-trained job's earlier runs) and the one running now
  function elapsed(job) {
    if (!job.started_at) return null;
    const running = job.status === "running" || job.status === "stopping";  // (a stop asked for: still running)
    return (job.run_s || 0) + (running ? Math.max(0, window.studio.now() / 1000 - job.started_at) : 0);
  }
  function phaseText(job) {
    if (job.status === "stopping" || (job.status === "running" && job.stopping)) return "Saving a checkpoint, then stopping";
    if (job.status !== "running") return "";
    const phases = { starting: "Starting", loading: "Loading models", caching: "Caching latents and captions",
      training: "Training", sampling: "Rendering previews", saving: "Saving a checkpoint", done: "Finishing" };
    return phases[job.phase] || job.phase || "";
  }
  // A question asked in the page, not with the browser's confirm() (which cannot be styled and stops the page): resolves
  // true for `okLabel`, false for Cancel or Escape. The keyboard starts on Cancel (an Enter pressed once too often
  // deletes nothing), Tab stays in the dialog, and the focus goes back where it was once answered.
  function confirmDialog(title, text, okLabel = "OK") {
    const earlier = document.getElementById("confirm-dialog");
    if (earlier && earlier.open) earlier.close();  // one question at a time: one still open is answered Cancel
    const opener = document.activeElement;
    const dlg = document.createElement("dialog");
    dlg.id = "confirm-dialog"; dlg.className = "confirm-dialog";
    dlg.setAttribute("aria-labelledby", "confirm-title"); dlg.setAttribute("aria-describedby", "confirm-text");
    dlg.innerHTML = `<h2 id="confirm-title"></h2><p id="confirm-text"></p>
      <div class="buttons"><button type="button" id="confirm-cancel" data-close>Cancel</button>
        <button type="button" class="danger" id="confirm-ok"></button></div>`;
    dlg.querySelector("#confirm-title").textContent = title;
    dlg.querySelector("#confirm-text").textContent = text;
    dlg.querySelector("#confirm-text").hidden = !text;
    const cancel = dlg.querySelector("#confirm-cancel"), ok = dlg.querySelector("#confirm-ok");
    ok.textContent = okLabel;
    cancel.onclick = () => dlg.close();
    ok.onclick = () => dlg.close("ok");
    dlg.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") { ev.preventDefault(); ev.stopPropagation(); dlg.close(); return; }
      if (ev.key !== "Tab") return;
      const first = cancel, last = ok, now = document.activeElement;
      if (ev.shiftKey ? now === first || !dlg.contains(now) : now === last || !dlg.contains(now)) {
        ev.preventDefault(); (ev.shiftKey ? last : first).focus();
      }
    });
    return new Promise((resolve) => {
      dlg.addEventListener("close", () => {
        dlg.remove();
        resolve(dlg.returnValue === "ok");
        focusBack(opener);
      }, { once: true });
      document.body.appendChild(dlg);
      dlg.showModal();
      cancel.focus();
    });
  }
  // The element focused before a dialog opened gets the focus again: its like by id when a redraw replaced it
  // meanwhile, and once more after the answer is handled when its caller had disabled it while it asked.
  function focusBack(opener) {
    const target = opener && !opener.isConnected && opener.id ? document.getElementById(opener.id) : opener;
    const back = () => {
      if (target && target !== document.body && target.isConnected && !target.disabled && target.focus) {
        target.focus({ preventScroll: true });
      }
    };
    back();
    setTimeout(() => { if (!document.activeElement || document.activeElement === document.body) back(); }, 0);
  }
  // a job's Stop or Delete asked first: "Stop this job? It saves…" reads as its title and its text
  function askAbout(action, question) {
    const cut = question.indexOf("? ");
    const title = cut < 0 ? question : question.slice(0, cut + 1), text = cut < 0 ? "" : question.slice(cut + 2);
    return confirmDialog(title, text, { stop: "Stop the job", delete: "Delete" }[action] || "OK");
  }
  async function act(jobId, action, confirmText) {
    if (confirmText && !(await askAbout(action, confirmText))) return null;
    const method = action === "delete" ? "DELETE" : "POST";
    const path = action === "delete" ? `/api/jobs/${jobId}` : `/api/jobs/${jobId}/${action}`;
    try {
      const data = await studio.api(path, { method });
      // what the server says it did (a queued job stops at once; Resume names the checkpoint it goes on from)
      const told = data && data.job && ["stop", "resume"].includes(action) ? data.job.message : null;
      const said = { stop: told || "Stopping: a checkpoint is saved first.", resume: told || "Queued again.",
        sample: "Previews are rendered after the current step.", save: "A checkpoint is saved after the current step.",
        delete: data && data.deleted ? "Job deleted (Recently deleted keeps it 7 days, on the LoRA library page)."
          : "Stopping the job, then deleting it.", clone: "Copy queued.",
        "run-next": "It runs next." };
      studio.toast(said[action] || "Done.", "ok");
      return data;
    } catch (e) { studio.toast(e.message, "error", 7000); return null; }
  }
  const FINISHED = new Set(["completed", "failed", "stopped", "interrupted"]);
  // `jobs`: what the page knows of recent jobs. The worker reports "idle" only after a job's bookkeeping,
  // and the live stream sends nothing new then, so a worker still "busy" on a job that has ended is
  // shown idle.
  function workerChip(workers, jobs) {
    const chip = document.getElementById("worker-chip");
    if (!chip) return;
    const ended = new Set((jobs || []).filter((j) => FINISHED.has(j.status)).map((j) => j.id));
    const busy = workers.find((w) => w.state === "busy" && !ended.has(w.job_id));
    chip.className = "chip worker-chip " + (workers.length ? "online" : "offline");
    const waiting = !busy && workers.some((w) => w.state === "waiting");
    const rendering = busy && String(busy.job_id || "").startsWith("render-");  // Try the LoRA
    const warm = !busy && workers.some((w) => w.state === "warm");  // Try the LoRA's models stay loaded a while
    chip.textContent = workers.length ? (rendering ? "worker rendering" : busy ? "worker busy"
      : waiting ? "worker waiting for models" : warm ? "worker idle · model loaded" : "worker idle") : "worker offline";
    if (workers.length > 1) {  // one per GPU: how many train now
      const working = workers.filter((w) => w.state === "busy" && !ended.has(w.job_id)).length;
      chip.textContent = `${workers.length} workers · ${working ? `${working} busy` : waiting ? "waiting for models" : "idle"}`;
    }
    chip.title = warm ? "Try the LoRA keeps its models loaded for a few minutes, so the next render starts at once; "
      + "a training or caption job takes the GPU back at once." : workers.length ? `pid ${workers.map((w) => w.pid).join(", ")}` :
      "No worker is running: jobs wait in the queue until the worker starts (python -m trainer.worker).";
  }
  async function pollWorkers() {
    try {
      const data = await studio.api("/api/jobs?limit=10");
      workerChip(data.workers || [], data.jobs);
    } catch (e) { /* retried */ }
  }
  // Every page polls, the dashboard too: its live stream only speaks when a job changes, not a worker.
  pollWorkers(); setInterval(pollWorkers, 5000);
  // One picture of a gallery row: its small preview (the full one opens in the lightbox), or a note where
  // there is none.
  function picture(url, label, caption, title, missing) {
    if (!url) {
      return `<figure class="missing"><div class="muted" style="font-size:11px;padding:1rem .4rem;text-align:center">${esc(missing)}</div>
        <figcaption>${esc(label)}</figcaption></figure>`;
    }
    return `<figure><img src="${esc(studio.thumb(url))}" data-full="${esc(url)}" tabindex="0" loading="lazy" alt="${esc(label)}" data-caption="${esc(caption)}">
      <figcaption title="${esc(title)}">${esc(label)}</figcaption></figure>`;
  }
  // A preview prompt's own settings (its --w, --h, --d, ... in the job's prompts): "832×1216 · seed 7".
  function promptOptions(o) {
    if (!o) return "";
    const parts = [];
    if (o.width) parts.push(`${o.width}×${o.height}`);
    if (o.seed != null) parts.push(`seed ${o.seed}`);
    if (o.steps != null) parts.push(`${o.steps} steps`);
    if (o.guidance != null) parts.push(`guidance ${o.guidance}`);
    if (o.negative) parts.push(`negative: ${o.negative}`);
    if (o.strength != null) parts.push(`LoRA at ${o.strength}`);
    return parts.join(" · ");
  }
  // A render's picture that is not there yet: a slot of its size saying what it waits for.
  function pending(render, label, note, title = "") {
    const ratio = render ? `${Number(render.width)} / ${Number(render.height)}` : "1";
    return `<figure class="pending"><div class="slot" style="aspect-ratio:${ratio}" title="${esc(title)}">${esc(note)}</div>
      <figcaption>${esc(label)}</figcaption></figure>`;
  }
  // A picture full size over the page; a click, Escape or Enter closes it, and the keyboard goes back to where it was.
  function lightbox(src, caption) {
    const opener = document.activeElement;
    const box = document.createElement("div"); box.className = "lightbox";
    box.setAttribute("role", "dialog"); box.setAttribute("aria-modal", "true"); box.tabIndex = -1;
    box.setAttribute("aria-label", caption || "Picture");
    box.innerHTML = `<img src="${esc(src)}" alt="${esc(caption || "")}"><div class="caption">${esc(caption || "")}</div>`;
    const close = () => {
      box.remove(); document.removeEventListener("keydown", onKey, true);
      if (opener && opener.isConnected && opener.focus) opener.focus();
    };
    const onKey = (ev) => {  // as a dialog closes; Tab stays on it (the page behind is out of reach while it is open)
      if (ev.key === "Escape" || ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); ev.stopPropagation(); close(); }
      else if (ev.key === "Tab") { ev.preventDefault(); box.focus(); }
    };
    box.addEventListener("click", close); document.addEventListener("keydown", onKey, true);
    document.body.appendChild(box);
    box.focus();
  }
  // A preview picture opens with the keyboard as with a click (Tab to it, then Enter or Space).
  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    if ((ev.key === "Enter" || ev.key === " ") && t instanceof HTMLImageElement && t.matches("img[data-full]")) {
      ev.preventDefault(); t.click();
    }
  });
  // Buttons used from the keyboard (Stop, Resume, Cancel, Run next) that the state they changed hides, disables or
  // removes: the returned function, called after each redraw of `box`, moves the focus on to the first control in
  // sight in `box` instead of leaving it on the page's start (where the next Tab begins again from the top).
  function keepFocus(box) {
    let pressed = null;
    box.addEventListener("click", (e) => {
      const button = e.target.closest("button");
      if (button && e.detail === 0) pressed = button;  // Enter or Space (a mouse click counts its clicks)
    });
    return () => {
      if (!pressed || (pressed.isConnected && pressed.offsetParent && !pressed.disabled)) return;
      const now = document.activeElement;
      const lost = !now || now === document.body || now === pressed;
      const next = [...box.querySelectorAll("button, a[href]")].find((b) => b.offsetParent && !b.disabled);
      pressed = lost && next ? next : null;  // followed on: a Sample now still on while it stops goes next
      if (pressed) pressed.focus({ preventScroll: true });
    };
  }
  // A list drawn anew keeping the pictures it shows already (the same src, loaded): a poll that changes a card's
  // status or adds a picture does not load and paint the others again (no flicker), and a focused one stays focused.
  function redraw(box, html) {
    const shown = new Map();
    box.querySelectorAll("img").forEach((img) => { if (img.complete) shown.set(img.getAttribute("src"), img); });
    const focused = box.contains(document.activeElement) ? document.activeElement : null;
    const fresh = document.createElement("template");
    fresh.innerHTML = html;
    fresh.content.querySelectorAll("img").forEach((img) => {
      const kept = shown.get(img.getAttribute("src"));
      if (!kept) return;
      shown.delete(img.getAttribute("src"));
      [...kept.attributes].forEach(({ name }) => { if (name !== "src" && !img.hasAttribute(name)) kept.removeAttribute(name); });
      [...img.attributes].forEach(({ name, value }) => { if (name !== "src") kept.setAttribute(name, value); });
      img.replaceWith(kept);
    });
    box.replaceChildren(fresh.content);
    if (focused && focused.isConnected && document.activeElement !== focused) focused.focus({ preventScroll: true });
  }
  // A box brought to `html` by changing only what differs, node by node: a live update every step replaced the
  // button a click was landing on (the click was lost: Stop, Run next, Cancel) and the boxes being ticked. An input's
  // state follows its attributes unless it has the focus.
  function morph(box, html) {
    const fresh = document.createElement("template");
    fresh.innerHTML = html;
    morphChildren(box, fresh.content);
  }
  function morphChildren(into, from) {
    const wanted = [...from.childNodes];
    wanted.forEach((node, i) => {
      const old = into.childNodes[i];
      if (!old) into.appendChild(node);
      else if (old.nodeType !== node.nodeType || old.nodeName !== node.nodeName) into.replaceChild(node, old);
      else if (node.nodeType !== Node.ELEMENT_NODE) { if (old.nodeValue !== node.nodeValue) old.nodeValue = node.nodeValue; }
      else {
        [...old.attributes].forEach(({ name }) => { if (!node.hasAttribute(name)) old.removeAttribute(name); });
        [...node.attributes].forEach(({ name, value }) => { if (old.getAttribute(name) !== value) old.setAttribute(name, value); });
        if (old instanceof HTMLInputElement && old !== document.activeElement) {
          old.checked = node.hasAttribute("checked");
          if (old.type !== "checkbox" && old.type !== "radio") old.value = node.getAttribute("value") || "";
        }
        if (old instanceof HTMLButtonElement) old.disabled = node.hasAttribute("disabled");
        morphChildren(old, node);
      }
    });
    while (into.childNodes.length > wanted.length) into.lastChild.remove();
  }
  window.trainer = { esc, live, statusChip, fmtLoss, fmtKept, cost, jobCost, perHour, fmtDate, elapsed, phaseText, act, confirmDialog, workerChip, pollWorkers, lightbox, redraw, morph, keepFocus,
    picture, pending, promptOptions, FINISHED };
})();
