// Uploads: drag-and-drop or file picker; every file goes up in chunks (chunked_upload.js), then one import job.
(function () {
  const { api, toast, formatBytes, formatDuration, plural } = window.studio;
  const ds = window.ds;
  const $ = (id) => document.getElementById(id);
  const PARALLEL_FILES = 3;
  let active = 0;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  // A finished upload panel shrinks to its one-line result after this long, so it stops covering the
  // gallery; clicking the line opens the details again.
  const COMPACT_AFTER_MS = 6000;
  let compactTimer = null;

  function expandPanel() {
    clearTimeout(compactTimer);
    $("uploads").classList.remove("compact");
    $("uploads-title").textContent = $("uploads-title").dataset.full || $("uploads-title").textContent;
    const focused = document.activeElement === $("uploads-title");
    ["tabindex", "role", "aria-expanded"].forEach((name) => $("uploads-title").removeAttribute(name));
    if (focused) $("uploads-close").focus({ preventScroll: true });
  }
  function compactLater(summary) {
    clearTimeout(compactTimer);
    compactTimer = setTimeout(() => {
      if (active) return;  // another batch is on its way: its rows and Cancel button stay in sight
      $("uploads-title").dataset.full = $("uploads-title").textContent;
      $("uploads-title").textContent = summary;
      $("uploads-title").title = "Show the details";
      const line = $("uploads-title"), focused = document.activeElement === $("upload-cancel");
      Object.entries({ tabindex: "0", role: "button", "aria-expanded": "false" }).forEach(([k, v]) => line.setAttribute(k, v));
      $("uploads").classList.add("compact");
      if (focused) line.focus({ preventScroll: true });  // the keyboard stays on the panel as it shrinks
    }, COMPACT_AFTER_MS);
  }

  // the panel's title says how a batch ended only when no other batch is still on its way
  const setTitle = (text) => { if (!active) $("uploads-title").textContent = text; };

  // why the page refuses a file before sending it (the server says the same of what it is sent)
  function refusal(file) {
    const ext = (file.name.match(/\.[^./\\]+$/) || [""])[0].toLowerCase();
    if (ext === ".svg") return "SVG is not supported: convert it to PNG";
    const what = ext ? `a ${ext} file` : "a file with no extension";
    const takes = ds.page.extensions.join(", ");
    if (!ds.page.extensions.includes(ext)) return `${what} is not imported: the studio takes ${takes}`;
    if (file.size === 0) return "empty file (0 bytes)";
    return null;
  }

  function row(file) {
    const el = document.createElement("div");
    el.className = "upload-row";
    el.innerHTML = `<span class="fname"></span><span class="pct muted">waiting</span>
      <div class="progress"><div style="width:0%"></div></div>`;
    el.querySelector(".fname").textContent = file.name;
    $("upload-rows").appendChild(el);
    return {
      set(fraction, text) {
        el.querySelector(".progress > div").style.width = `${Math.round(fraction * 100)}%`;
        el.querySelector(".pct").textContent = text;
      },
      // a refused file's row says so in two words (its reason is in the list below, and on hover)
      fail(message, reason) {
        el.classList.add("failed");
        el.querySelector(".pct").textContent = message;
        if (reason) el.title = `${file.name}: ${reason}`;
      },
    };
  }

  async function uploadAll(files) {
    if (!files.length) return;
    const panel = $("uploads");
    panel.classList.add("open");
    expandPanel();
    delete $("uploads-title").dataset.full;
    $("uploads-title").textContent = `Uploading ${plural(files.length, "file")}`;
    $("import-status").innerHTML = "";
    const frames = window.frameChoice.show($("upload-frames"), files);
    const limit = `over the upload limit of ${formatBytes(ds.page.max_upload_bytes)}`;
    const tooBig = files.filter((f) => f.size > ds.page.max_upload_bytes);
    if (tooBig.length) toast(`${tooBig.map((f) => f.name).join(", ")}: ${limit}.`, "error", 8000);
    // every file that does not come in is named with its reason: refused here, failed to upload, or skipped by the import
    const refused = tooBig.map((f) => ({ name: f.name, reason: limit }));
    const rows = new Map();
    const queue = files.filter((f) => f.size <= ds.page.max_upload_bytes).map((file) => {
      const ui = row(file);
      rows.set(file.name, ui);
      return { file, ui };
    });
    const sessions = [];
    const cancel = cancelButton();
    active++;
    async function worker() {
      while (queue.length && !cancel.signal.aborted) {
        const { file, ui } = queue.shift();
        try {
          const reason = refusal(file);
          if (reason) {
            refused.push({ name: file.name, reason });
            ui.fail("not imported", reason);
            continue;
          }
          sessions.push(await window.chunkedUpload.uploadFile(ds.base, file, ui, cancel.signal));
        } catch (e) {
          if (e.cancelled) { ui.fail("cancelled"); continue; }
          refused.push({ name: file.name, reason: e.message });
          ui.fail(e.message);
        }
      }
    }
    await Promise.all(Array.from({ length: PARALLEL_FILES }, worker));
    active--;
    cancel.remove();
    if (cancel.signal.aborted) return cancelled(sessions, queue);
    if (!sessions.length) {
      setTitle("Nothing uploaded");
      $("import-status").innerHTML = `<p style="color:var(--err)">${plural(refused.length, "file")} not uploaded.</p>${refusedList(refused)}`;
      return;
    }
    setTitle(refused.length ? `Uploaded; ${plural(refused.length, "file")} refused` : "Uploaded");
    try {
      const job = await api(`${ds.base}/imports`, { method: "POST", json: { sessions, ...(frames ? frames() : {}) } });
      await followImport(job.id, { refused, rows });
    } catch (e) {
      $("import-status").innerHTML = `<p style="color:var(--err)">${ds.esc(e.message)}</p>${refusedList(refused)}`;
    }
  }

  // the Cancel button of uploads on their way: it cuts what is in flight and sends nothing more. Files dropped
  // while others are sent share it: one press cancels them all (an earlier batch already importing goes on).
  let cancelling = null;
  function cancelButton() {
    if (!cancelling || cancelling.controller.signal.aborted) {
      const controller = new AbortController();
      const button = document.createElement("button");
      button.type = "button";
      button.id = "upload-cancel";
      button.className = "danger";
      button.textContent = "Cancel upload";
      button.title = "Stop sending: nothing of this upload is imported";
      button.onclick = () => {
        button.disabled = true;
        button.textContent = "Cancelling…";
        controller.abort();
      };
      cancelling = { controller, button, users: 0 };
    }
    const mine = cancelling;
    mine.users++;
    // beside the import's status, not in it: an earlier batch's import, reporting there, must not replace it
    if (!mine.button.isConnected) $("import-status").before(mine.button);
    return {
      signal: mine.controller.signal,
      remove() {
        if (--mine.users) return;
        mine.button.remove();
        if (cancelling === mine) cancelling = null;
      },
    };
  }

  // a cancelled upload imports nothing: the files it had sent whole are deleted from the pod too
  async function cancelled(sessions, queue) {
    for (const { ui } of queue) ui.fail("cancelled");
    await Promise.all(sessions.map((sid) => window.chunkedUpload.discard(`${ds.base}/uploads/${sid}`)));
    setTitle("Upload cancelled");
    $("import-status").innerHTML = `<p style="color:var(--warn)">Upload cancelled: nothing was imported, and what was
      sent has been deleted from the pod.</p>`;
  }

  // leaving the page while files are on their way ends their upload: the browser asks first
  window.addEventListener("beforeunload", (ev) => {
    if (active) { ev.preventDefault(); ev.returnValue = ""; }
  });

  const refusedList = (refused, count = refused.length) => refused.length ? `<details open class="refused"><summary>${plural(count, "file")} not imported</summary>
    <ul class="skipped">${refused.slice(0, 300).map((s) => `<li><b>${ds.esc(s.name)}</b>: ${ds.esc(s.reason)}</li>`).join("")}</ul></details>` : "";

  // "Imported 3 images, skipped 2; captions from …." -> what follows the counts ("; captions from …"), which the
  // panel's own sentence keeps
  const noteOf = (message) => (message || "").replace(/^Imported [\d,]+ images?(, skipped [\d,]+)?/, "").replace(/\.$/, "");

  // the progress of a running import, with its Stop button: made once, then only its text and bar change (a
  // button made again at every poll could lose a click)
  function progressRow(box, jobId) {
    let row = box.querySelector(".import-progress");
    if (row && row.dataset.job === jobId) return row;
    box.innerHTML = `<div class="upload-row import-progress"><span class="fname"></span><span class="muted eta"></span>
      <div class="progress"><div style="width:0%"></div></div></div>
      <button type="button" class="danger" id="import-stop" title="Stop the import: the images imported so far stay">Stop</button>`;
    row = box.querySelector(".import-progress");
    row.dataset.job = jobId;
    const stop = $("import-stop");
    stop.onclick = async () => {
      stop.disabled = true;
      stop.textContent = "Stopping…";
      try {
        await api(`${ds.base}/imports/${jobId}/stop`, { method: "POST" });
      } catch (e) {  // it ended meanwhile (the next poll shows how), or the request failed
        stop.disabled = false;
        stop.textContent = "Stop";
        toast(e.message, "error", 6000);
      }
    };
    return row;
  }
  const showStopping = (stopping) => {
    const stop = $("import-stop");
    if (stop && stopping) { stop.disabled = true; stop.textContent = "Stopping…"; }
  };
  // what a stopped import says: what it kept (the page knows it from the job's progress, it has no result)
  const stoppedMessage = (job) => `Stopped: ${plural(job.imported || 0, "image")} imported before the stop.`;

  // `upload`: what the page itself refused or failed to send ({name, reason} each), and the rows of the files sent
  async function followImport(jobId, upload = {}) {
    const panel = $("uploads");
    panel.classList.add("open");
    const box = $("import-status");
    let lastImported = 0;
    for (;;) {
      let job;
      try { job = await api(`${ds.base}/imports/${jobId}`); } catch (e) { await sleep(1500); continue; }
      if (job.status === "queued" || job.status === "running") {
        // a link's download and a big upload put together from its chunks count bytes; then every import counts images
        const downloading = job.phase === "downloading";
        const assembling = job.phase === "assembling" && job.bytes_total;
        const bytes = downloading || assembling;
        const [done, total] = bytes ? [job.bytes_done || 0, job.bytes_total || 0] : [job.done, job.total];
        const phase = { assembling: "Assembling", extracting: "Unpacking", importing: "Checking images" }[job.phase] || "Importing";
        const label = job.stopping ? "Stopping…"
          : downloading ? `${job.message || "Downloading"}… ${formatBytes(done)}${total ? ` of ${formatBytes(total)}` : ""}`
          : assembling ? `${job.message}… ${formatBytes(done)} of ${formatBytes(total)}`
          : job.phase === "frames" ? job.message || "Taking frames"  // "Taking frames from dog.mp4: 0:12 of 1:00"
          : `${phase}… ${done}/${total || "?"}`;
        const row = progressRow(box, jobId);
        row.querySelector(".fname").textContent = label;
        row.querySelector(".eta").textContent = job.eta_s ? formatDuration(job.eta_s) + " left" : "";
        row.querySelector(".progress > div").style.width = `${total ? Math.round((100 * done) / total) : 0}%`;
        showStopping(job.stopping);
        if ((job.imported || 0) - lastImported >= 60) { lastImported = job.imported; ds.reload(); }
        await sleep(700);
        continue;
      }
      const result = job.result || {};
      const skipped = result.skipped || [];
      const refused = [...(upload.refused || []), ...skipped];
      const notIn = refused.reduce((n, s) => n + (s.count || 1), 0);  // an entry may stand for many ("12,000 more files")
      const renamed = result.renamed || [];
      const imported = (result.imported || []).length;
      const ok = job.status === "completed";
      const stopped = job.status === "stopped";  // asked for: a warning, not an error
      const none = ok && !imported && refused.length > 0;  // finished, but nothing came in
      const mixed = ok && imported > 0 && refused.length > 0;  // a warning, not a success
      const good = ok && !refused.length;
      const message = ok && refused.length
        ? `Imported ${plural(imported, "image")}; ${plural(notIn, "file")} not imported${noteOf(job.message)}.`
        : stopped ? stoppedMessage(job) : job.message;
      for (const s of skipped) {
        const ui = upload.rows && upload.rows.get(s.name);
        if (ui) ui.fail("not imported", s.reason);  // its row said "uploaded": the import refused it
      }
      box.innerHTML = `<p style="color:var(${good ? "--ok" : mixed || stopped ? "--warn" : "--err"})">${ds.esc(message)}</p>${resumable(job) ? resumeButton(job) : ""}
        ${renamed.length ? `<details><summary>${plural(renamed.length, "file")} renamed to avoid overwriting</summary><ul class="skipped">${renamed.slice(0, 200).map((r) => `<li>${ds.esc(r.from)} → ${ds.esc(r.to)}</li>`).join("")}</ul></details>` : ""}
        ${refusedList(refused, notIn)}`;
      setTitle(none ? "Nothing imported" : mixed ? `Imported ${imported} of ${imported + notIn}`
        : ok ? "Import finished" : stopped ? "Import stopped" : "Import failed");
      wireResume(job);
      if (stopped) $("uploads").dataset.offered = job.id;  // "Import the rest" is offered here: closing dismisses it
      // the panel shrinks to one line only when there is nothing to read: a refused file stays listed until closed
      if (good || (!ok && !resumable(job) && !refused.length)) compactLater(`${good ? "✓" : "✕"} ${message}`);
      toast(message, good ? "ok" : mixed || stopped ? "info" : "error", 6000);
      ds.reload();
      return job;
    }
  }

  // an import cut short (a restart, a stop, a failed download) runs its source again: the link with its limit,
  // the bucket prefix, the upload's sessions; what the dataset already has is left out
  const resumable = (job) => ["failed", "stopped", "interrupted"].includes(job.status) && !!(job.config || {}).source;
  const resumeButton = (job) => `<button class="primary" id="import-resume">${job.status === "failed" ? "Try again" : "Import the rest"}</button>
    <div class="muted" style="font-size:13px;margin-top:.4rem">Images already in the dataset are left as they are.</div>`;
  function wireResume(job) {
    const button = $("import-resume");
    if (!button) return;
    button.onclick = async () => {
      button.disabled = true;
      try {
        const again = await api(`${ds.base}/imports/${job.id}/resume`, { method: "POST" });
        localStorage.setItem(`import-offered-${job.id}`, "1");
        $("uploads-title").textContent = "Importing";
        ds.followingImport = true;
        followImport(again.id).finally(() => { ds.followingImport = false; });
      } catch (e) {
        button.disabled = false;
        toast(e.message, "error", 8000);
      }
    };
  }
  // shown once per cut-short import when the page opens (closing the panel dismisses it)
  function offerResume(job) {
    if (localStorage.getItem(`import-offered-${job.id}`) || $("import-resume")) return;
    $("uploads").classList.add("open");
    expandPanel();
    delete $("uploads-title").dataset.full;
    $("uploads-title").textContent = job.status === "interrupted" ? "Import cut short" : "Import stopped";
    $("upload-rows").replaceChildren();
    const message = job.status === "stopped" ? stoppedMessage(job) : job.message || "";
    $("import-status").innerHTML = `<p style="color:var(--warn)">${ds.esc(message)}</p>${resumeButton(job)}`;
    $("uploads").dataset.offered = job.id;
    wireResume(job);
  }

  // file picker
  const input = $("file-input");
  const pick = () => input.click();
  $("btn-upload").onclick = pick;
  $("btn-upload-empty").onclick = pick;
  input.addEventListener("change", () => { uploadAll([...input.files]); input.value = ""; });
  const folder = $("folder-input");  // a whole folder, its subfolders too, as a dropped one
  $("btn-upload-folder").onclick = () => folder.click();
  folder.addEventListener("change", () => { uploadAll(window.chunkedUpload.pickedFolder(folder.files)); folder.value = ""; });
  $("uploads-close").onclick = () => {
    if ($("uploads").dataset.offered) localStorage.setItem(`import-offered-${$("uploads").dataset.offered}`, "1");
    delete $("uploads").dataset.offered;
    if (!active) {
      clearTimeout(compactTimer);
      $("uploads").classList.remove("open", "compact");
      $("upload-rows").replaceChildren();
      window.frameChoice.show($("upload-frames"), []);
    }
  };
  $("uploads-title").onclick = () => { if ($("uploads").classList.contains("compact")) expandPanel(); };
  $("uploads-title").onkeydown = (ev) => {  // the one-line result opens with the keyboard too
    if ((ev.key === "Enter" || ev.key === " ") && $("uploads").classList.contains("compact")) { ev.preventDefault(); expandPanel(); }
  };

  // drag and drop anywhere on the page
  let depth = 0;
  const hasFiles = (ev) => ev.dataTransfer && [...ev.dataTransfer.types].includes("Files");
  window.addEventListener("dragenter", (ev) => { if (hasFiles(ev)) { depth++; document.body.classList.add("dragging"); } });
  window.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) document.body.classList.remove("dragging"); });
  window.addEventListener("dragover", (ev) => {
    if (hasFiles(ev)) ev.preventDefault();  // a dropped link: link_import.js
  });
  window.addEventListener("drop", (ev) => {
    if (!ev.dataTransfer || !ev.dataTransfer.files.length) return;
    ev.preventDefault();
    depth = 0;
    document.body.classList.remove("dragging");
    window.chunkedUpload.droppedFiles(ev.dataTransfer)
      .then(uploadAll, (e) => toast(`The dropped folder could not be read: ${e.message}`, "error", 8000));
  });

  // an import still running when the page was reloaded keeps reporting
  ds.onStats = (d) => {
    const job = d.jobs && d.jobs.import;
    if (job && (job.status === "running" || job.status === "queued") && !ds.followingImport) {
      ds.followingImport = true;
      followImport(job.id).finally(() => { ds.followingImport = false; });
    } else if (job && ["interrupted", "stopped"].includes(job.status) && resumable(job) && !ds.followingImport && !active) {
      offerResume(job);
    }
    const panels = window.dsPanels;
    if (panels) panels.onStats(d);
  };
  ds.uploadAll = uploadAll;
  // an import started elsewhere on the page (a link: link_import.js) reports in the uploads panel
  ds.followImportInPanel = (title, jobId) => {
    $("uploads").classList.add("open");
    expandPanel();
    delete $("uploads-title").dataset.full;
    $("upload-rows").replaceChildren();
    $("uploads-title").textContent = title;
    $("import-status").innerHTML = "";
    return followImport(jobId);
  };
})();
