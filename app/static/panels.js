// Bulk tools: auto-caption (with service status and live progress), find & replace with preview,
// prepend/append, undo of the last bulk change, export for training.
(function () {
  const { api, toast, formatDuration, formatBytes, plural } = window.studio;
  const ds = window.ds;
  const $ = (id) => document.getElementById(id);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const ACTIVE = new Set(["queued", "running"]);

  // ---- undo
  async function refreshUndo() {
    try {
      const u = await api(`${ds.base}/captions/undo`);
      $("btn-undo").disabled = !u.available;
      $("btn-undo").title = u.available ? `Undo ${u.op} (${plural(u.images, "caption")})` : "No bulk change to undo";
    } catch (e) { $("btn-undo").disabled = true; }
  }
  $("btn-undo").onclick = async () => {
    try {
      const r = await api(`${ds.base}/captions/undo`, { method: "POST" });
      const kept = (r.kept || []).length;  // edited by hand since the bulk change: those edits stay
      toast(`Undid ${r.op}: ${r.restored} caption${r.restored === 1 ? "" : "s"} restored` +
        (kept ? `; ${kept} edited since kept as you left ${kept === 1 ? "it" : "them"} (${r.kept.slice(0, 3).join(", ")}${kept > 3 ? ", …" : ""}).` : "."), "ok", kept ? 8000 : 4000);
      ds.reload();
    } catch (e) { toast(e.message, "error"); }
    refreshUndo();
  };

  // ---- find & replace
  let previewTimer = null;
  function replaceBody(apply) {
    return { find: $("find-input").value, replace: $("replace-input").value, regex: $("find-regex").checked,
      case_sensitive: $("find-case").checked, apply };
  }
  function highlight(text, body) {
    const flags = body.case_sensitive ? "g" : "gi";
    let re;
    try { re = new RegExp(body.regex ? body.find : window.studio.escapeRegex(body.find), flags); } catch (e) { return ds.esc(text); }
    let out = "", last = 0, m;
    while ((m = re.exec(text)) && m[0].length) {
      out += ds.esc(text.slice(last, m.index)) + `<del>${ds.esc(m[0])}</del>`;
      last = m.index + m[0].length;
    }
    return out + ds.esc(text.slice(last));
  }
  async function preview() {
    const body = replaceBody(false);
    $("replace-error").textContent = "";
    if (!body.find) { $("replace-matches").innerHTML = ""; $("replace-summary").textContent = ""; $("replace-apply").disabled = true; return; }
    try {
      const r = await api(`${ds.base}/captions/replace`, { method: "POST", json: body });
      $("replace-summary").textContent = `${r.replacements} match${r.replacements === 1 ? "" : "es"} in ${r.images} caption${r.images === 1 ? "" : "s"}`;
      $("replace-matches").innerHTML = r.rows.map((row) => `<div class="m"><div class="n">${ds.esc(row.name)}</div>
        <div>${highlight(row.before, body)}</div><div><ins>${ds.esc(row.after)}</ins></div></div>`).join("")
        + (r.images > r.rows.length ? `<p class="muted">…and ${r.images - r.rows.length} more</p>` : "");
      $("replace-apply").disabled = r.images === 0;
    } catch (e) {
      $("replace-error").textContent = e.message;
      $("replace-apply").disabled = true;
    }
  }
  ["find-input", "replace-input", "find-regex", "find-case"].forEach((id) =>
    $(id).addEventListener("input", () => { clearTimeout(previewTimer); previewTimer = setTimeout(preview, 250); }));
  $("btn-replace").onclick = () => { $("replace-dialog").showModal(); $("find-input").focus(); preview(); };
  // the dialog with a search filled in (the caption words' Remove: a regular expression, replaced by nothing)
  ds.openReplace = (find, regex) => {
    $("find-input").value = find; $("replace-input").value = "";
    $("find-regex").checked = !!regex; $("find-case").checked = false;
    $("replace-dialog").showModal(); preview();
  };
  $("replace-form").onsubmit = async (ev) => {
    ev.preventDefault();
    try {
      const r = await api(`${ds.base}/captions/replace`, { method: "POST", json: replaceBody(true) });
      toast(`Replaced ${plural(r.replacements, "match", "matches")} in ${plural(r.images, "caption")}. Undo is available.`, "ok");
      $("replace-dialog").close();
      ds.reload();
      refreshUndo();
    } catch (e) { $("replace-error").textContent = e.message; }
  };

  // ---- prepend / append
  $("btn-affix").onclick = () => {
    const n = ds.state.meta ? ds.state.meta.images : 0;
    $("affix-scope").textContent = `Applies to ${n === 1 ? "the image" : `all ${n} images`} (uncaptioned ones get just this text).`;
    $("affix-error").textContent = "";
    $("affix-dialog").showModal();
  };
  $("affix-form").onsubmit = async (ev) => {
    ev.preventDefault();
    try {
      const r = await api(`${ds.base}/captions/affix`, { method: "POST", json: {
        prepend: $("prepend-input").value, append: $("append-input").value, separator: $("affix-sep").value } });
      toast(`Changed ${r.changed} caption${r.changed === 1 ? "" : "s"}. Undo is available.`, "ok");
      $("affix-dialog").close();
      ds.reload();
      refreshUndo();
    } catch (e) { $("affix-error").textContent = e.message; }
  };

  // ---- caption service status
  let serviceTimer = null;
  async function checkService() {
    let s;
    try { s = await api("/api/caption-service"); } catch (e) { s = { reachable: false, status: "down", reason: e.message }; }
    const labels = {
      ready: "Caption service ready", loading: "Caption service is loading the model: captions start when it is ready",
      unloaded: "Caption service idle (model unloaded): it loads on the first caption, which takes a moment",
      error: "Caption service error", down: "Caption service is not running",
      downloading: `Caption model ${s.download || "downloading"}: start now and captioning begins when it is ready`,
    };
    const status = s.reachable ? s.status : (s.status || "down");
    const text = labels[status] || status;
    const detail = status === "downloading" ? "" : s.reason ? `: ${s.reason}` : s.device ? ` (${s.device})` : "";
    const dot = status === "downloading" ? "loading" : status;
    // the service's own word for its state (CAPTION_URL may be another machine's): text, even in the class
    $("svc-status").innerHTML = `<span class="dot ${ds.esc(dot)}"></span><span>${ds.esc(text + detail)}</span>`;
    $("btn-autocaption").title = text;
    $("svc-dot").className = `dot ${dot}`;
    return s;
  }

  // ---- auto-caption
  let following = null, modeChosen = false;
  let shownRun = null;  // the run whose end the banner speaks of (or whose end was seen)
  $("cap-preset").onchange = () => { if ($("cap-preset").value) $("cap-prompt").value = $("cap-preset").value; };

  // The dialog offers what makes sense for the dataset now: with every image captioned, "only
  // uncaptioned" would do nothing, so it says so and offers re-captioning (replacing) explicitly.
  // `target`: the images a run is for (the selection, or the image open in the editor); null: all of them.
  let target = null;
  function refreshCaptionSetup() {
    const meta = ds.state.meta || {};
    let total = meta.images || 0, missing = total - (meta.captioned || 0);
    if (target) {
      const known = new Map(ds.state.images.map((img) => [img.name, img]));
      total = target.length;
      missing = target.filter((name) => !((known.get(name) || {}).caption || "").trim()).length;
      $("cap-target-text").textContent = total === 1 ? `Only ${target[0]}, ` : `Only the ${total} selected images, `;
    }
    $("cap-target").hidden = !target;
    const allDone = total > 0 && missing === 0;
    const skip = $("cap-mode").querySelector('option[value="skip"]');
    skip.disabled = allDone;
    skip.textContent = allDone ? "Only uncaptioned (none left)" : `Only uncaptioned (${missing} of ${total})`;
    if (allDone && $("cap-mode").value === "skip") $("cap-mode").value = "overwrite";
    else if (!allDone && !modeChosen) $("cap-mode").value = "skip";
    $("cap-all-done").hidden = !allDone;
    const them = total === 1 ? ["it", "it", "the current one"] : ["them", "them", "the current ones"];
    $("cap-all-done").textContent = allDone ? `${total === 1 ? "The image has" : `All ${total} images have`} a caption. ` +
      `Re-captioning replaces ${them[0]} (or adds to ${them[1]}); Undo brings ${them[2]} back.` : "";
    const mode = $("cap-mode").value;
    $("cap-start").textContent = mode === "skip" ? `Caption ${plural(missing, "image")}`
      : mode === "overwrite" ? `Re-caption ${total === 1 ? "the image" : `all ${total}`} (replace)`
        : `Caption ${total === 1 ? "the image" : `all ${total}`} (${mode})`;
    $("cap-start").disabled = total === 0 || (mode === "skip" && missing === 0);
  }
  $("cap-mode").addEventListener("change", () => { modeChosen = true; refreshCaptionSetup(); });

  $("btn-autocaption").onclick = () => openCaption(ds.state.selecting && ds.state.selected.size ? [...ds.state.selected] : null);
  $("btn-caption-selected").onclick = () => openCaption([...ds.state.selected]);
  $("ed-caption").onclick = () => {
    const img = ds.state.images[ds.state.current];
    if (img) openCaption([img.name]);
  };
  $("cap-target-all").onclick = (ev) => { ev.preventDefault(); target = null; modeChosen = false; refreshCaptionSetup(); };
  function openCaption(names) {
    target = names; modeChosen = false;
    $("caption-error").textContent = "";
    refreshCaptionSetup();
    $("caption-dialog").showModal();
    checkService();
    clearInterval(serviceTimer);
    serviceTimer = setInterval(() => { if ($("caption-dialog").open) checkService(); else clearInterval(serviceTimer); }, 5000);
  }
  $("caption-form").onsubmit = async (ev) => {
    ev.preventDefault();
    $("caption-error").textContent = "";
    try {
      const job = await api(`${ds.base}/caption`, { method: "POST", json: {
        mode: $("cap-mode").value, style: $("cap-style").value, prompt: $("cap-prompt").value,
        ...(target ? { names: target } : {}) } });
      followCaption(job.id);
    } catch (e) { $("caption-error").textContent = e.message; }
  };
  $("cap-cancel").onclick = async () => {
    try { await api(`${ds.base}/caption`, { method: "DELETE" }); $("cap-message").textContent = "Cancelling after the current image…"; }
    catch (e) { toast(e.message, "error"); }
  };

  function renderCaptionJob(job) {
    const running = ACTIVE.has(job.status);
    $("caption-job").hidden = false;
    $("caption-setup").hidden = running;
    $("cap-start").hidden = running;
    $("cap-cancel").hidden = !running;
    $("cap-progress-text").textContent = `${job.done} / ${plural(job.total, "image")}`;
    $("cap-eta").textContent = running ? (job.eta_s != null ? `${formatDuration(job.eta_s)} left` : "estimating…") : job.status;
    $("cap-bar").style.width = `${job.total ? Math.round((100 * job.done) / job.total) : 0}%`;
    $("cap-message").textContent = job.message || "";
    if (job.current) {  // with the image's version, as the gallery asks: an image edited since is not shown as it was
      const row = ds.state.images.find((img) => img.name === job.current);
      $("cap-current-img").src = ds.thumbUrl(job.current, row && row.rev);
    }
    $("cap-failures").innerHTML = (job.errors || []).map((e) => `<li><b>${ds.esc(e.item)}</b>: ${ds.esc(e.message)}</li>`).join("");
    $("autocaption-label").textContent = running ? `Auto-caption ${job.done}/${job.total}` : "Auto-caption";
    const banner = $("job-banner");
    banner.innerHTML = running ? `<div class="caption-status"><span class="dot loading"></span>
      Auto-captioning: ${job.done}/${job.total}${job.eta_s != null ? ` · ${formatDuration(job.eta_s)} left` : ""} ·
      <a href="#" id="banner-open">details</a></div>` : "";
    const open = $("banner-open");
    if (open) open.onclick = (ev) => { ev.preventDefault(); $("btn-autocaption").click(); };
  }

  async function followCaption(jobId) {
    if (following === jobId) return;
    following = jobId;
    let seen = 0;
    for (;;) {
      let job;
      try { job = (await api(`${ds.base}/caption`)).job; } catch (e) { await sleep(2000); continue; }
      if (!job || job.id !== jobId) break;
      renderCaptionJob(job);
      // new captions in place: a reload would empty the grid (the scroll jumps) while someone looks or types
      if (job.done - seen >= 10) { seen = job.done; ds.refresh(); }
      if (!ACTIVE.has(job.status)) {
        toast(job.message, job.status === "completed" ? "ok" : "error", 7000);
        await ds.refresh();  // the counts the banner's button offers
        refreshUndo();
        showEnded(job);
        break;
      }
      await sleep(1000);
    }
    following = null;
  }

  // A run that failed or was cut off (the caption service died, a restart) stays said above the grid until dismissed,
  // with a button for what is left: the dialog's own message goes with the dialog.
  function showEnded(job) {
    shownRun = job.id;
    if (!["failed", "interrupted"].includes(job.status) || sessionStorage.getItem(`caption-seen:${job.id}`)) {
      $("job-banner").innerHTML = "";  // an older run's words go with it
      return;
    }
    const meta = ds.state.meta || {};
    const left = Math.max(0, (meta.images || 0) - (meta.captioned || 0));
    // "the rest": the dataset's uncaptioned images, for a run on all of them; a run on some opens the dialog
    const skip = (job.config || {}).mode === "skip" && !(job.config || {}).chosen;
    $("job-banner").innerHTML = `<div class="caption-status"><span class="dot error"></span>
      <span>Auto-caption ${job.status === "failed" ? "stopped" : "was cut off"} at ${job.done} of ${job.total}:
      ${ds.esc(job.error || job.message || "")}</span>
      ${skip && left ? `<button type="button" id="banner-rest">Caption the ${plural(left, "image")} left</button>`
        : `<button type="button" id="banner-open">Auto-caption…</button>`}
      <button type="button" id="banner-dismiss" title="Hide this until the next run">Dismiss</button></div>`;
    $("banner-dismiss").onclick = () => { sessionStorage.setItem(`caption-seen:${job.id}`, "1"); $("job-banner").innerHTML = ""; };
    const open = $("banner-open");
    if (open) open.onclick = () => $("btn-autocaption").click();
    const rest = $("banner-rest");
    if (rest) {
      rest.onclick = async () => {  // the same style and instructions, on the images still without a caption
        rest.disabled = true;
        try {
          const { style, prompt, max_tokens } = job.config;
          const body = { mode: "skip", style, prompt, ...(max_tokens ? { max_tokens } : {}) };
          followCaption((await api(`${ds.base}/caption`, { method: "POST", json: body })).id);
        } catch (e) { toast(e.message, "error", 7000); rest.disabled = false; }
      };
    }
  }

  // ---- export
  function trainLink(name) {
    return `<div><a class="button primary" id="export-train-link" target="_blank" rel="noopener"
      href="${window.studio.toolUrl("trainer")}new?dataset=${encodeURIComponent(name)}">Train a LoRA on <code>${ds.esc(name)}</code> →</a></div>`;
  }
  async function showVersions() {
    let data;
    try { data = await api(`/api/exports?dataset=${encodeURIComponent(ds.page.id)}`); } catch (e) { return; }
    const box = $("export-versions");
    box.hidden = !data.versions.length;
    $("export-versions-summary").textContent = `(${data.versions.length}` +
      (data.reclaimable_bytes ? `, ${formatBytes(data.reclaimable_bytes)} can be freed)` : ")");
    $("export-versions-list").innerHTML = data.versions.map((v) => {
      const users = v.used_by.map((j) => `${ds.esc(j.name)} (${ds.esc(j.status)})`).join(", ");
      const state = v.current ? `current <code>${v.names.map(ds.esc).join(", ")}</code>`
        : users ? `needed by ${users}` : "";
      const remove = v.deletable ? `<button type="button" class="danger" data-version="${ds.esc(v.version)}">Delete</button>` : "";
      return `<li><code>${ds.esc(v.version.slice(0, 8))}</code> · ${plural(v.images, "image")} · ${formatBytes(v.bytes)} ·
        ${new Date(v.exported_at * 1000).toLocaleString()} <span class="muted">${state}</span> ${remove}</li>`;
    }).join("");
  }
  $("export-versions-list").addEventListener("click", async (ev) => {
    const version = ev.target.dataset && ev.target.dataset.version;
    if (!version) return;
    try {
      const done = await api(`/api/exports/${version}`, { method: "DELETE" });
      toast(`Deleted version ${version.slice(0, 8)}: ${formatBytes(done.freed_bytes)} freed.`, "ok");
    } catch (e) { toast(e.message, "error", 7000); }
    showVersions();
  });
  // the parts of the Export dialog that come from the dataset's figures: filled when it opens, and again once the
  // figures are fresh (a click right after the page loaded comes before they arrive)
  function fillExport() {
    const meta = ds.state.meta || {};
    const last = meta.last_export;
    if (!$("export-name").value) $("export-name").value = (last && last.name) || meta.id || "";
    $("export-result").innerHTML = last
      ? `<span class="muted">Last export: ${plural(last.images, "image")} to <code>trainer/datasets/${ds.esc(last.name)}</code> on ${new Date(last.at * 1000).toLocaleString()}</span>${trainLink(last.name)}` : "";
    // Exact duplicates stay out of the export unless asked for: the dialog says so before it runs.
    const dupes = (meta.flag_counts || {}).duplicates || 0;
    $("export-dupes").hidden = !dupes;
    $("export-dupes-text").textContent = dupes ? `${plural(dupes, "exact duplicate")} flagged in the gallery ` +
      `${dupes === 1 ? "is" : "are"} left out: each picture is exported once.` : "";
    $("export-checks").innerHTML = ds.exportChecks(meta);
    const name = (last && last.name) || null;
    if (window.hubPush && name !== hubShownFor) { hubShownFor = name; window.hubPush.show(name); }
  }
  let hubShownFor;  // the export the publish section was shown for since the dialog opened
  let replaceNext = false;  // the next export may take over a name that is another dataset's export
  $("btn-export").onclick = () => {
    $("export-name").value = "";
    $("export-error").textContent = "";
    $("export-progress").hidden = true;
    $("export-include-dupes").checked = false;
    hubShownFor = undefined;
    fillExport();
    $("export-dialog").showModal();
    showVersions();
    // a caption typed a moment ago counts: saved, then the dialog again on fresh figures
    ds.flushSave().then(ds.refreshStats).then(() => {
      if ($("export-dialog").open && $("export-progress").hidden) fillExport();
    });
  };
  $("export-form").onsubmit = async (ev) => {
    ev.preventDefault();
    $("export-error").textContent = "";
    $("export-start").disabled = true;
    try {
      const replace = replaceNext;
      replaceNext = false;
      const job = await api(`${ds.base}/export`, { method: "POST", json: { name: $("export-name").value,
        include_duplicates: $("export-include-dupes").checked, replace } });
      $("export-progress").hidden = false;
      for (;;) {
        const s = (await api(`${ds.base}/export`)).job;
        if (!s || s.id !== job.id) break;
        $("export-bar").style.width = `${s.total ? Math.round((100 * s.done) / s.total) : 0}%`;
        if (!ACTIVE.has(s.status)) {
          if (s.status === "completed") {
            $("export-bar").style.width = "100%";
            $("export-result").innerHTML = `<span style="color:var(--ok)">✓ ${ds.esc(s.message)}</span>${trainLink(s.result.name)}`;
            toast(s.message, "ok");
            ds.refreshStats();
            showVersions();
            if (window.hubPush) window.hubPush.show(s.result.name);
          } else {
            $("export-error").textContent = s.message;
          }
          break;
        }
        await sleep(500);
      }
    } catch (e) {
      // the name is another dataset's export: one click takes the free name the server offers
      if (window.studio.showError($("export-error"), e, $("export-name"))) {
        const replace = document.createElement("button");  // on purpose: that dataset's jobs then train on these
        replace.type = "button"; replace.className = "link danger"; replace.textContent = "Replace it";
        replace.onclick = () => { replaceNext = true; $("export-form").requestSubmit(); };
        $("export-error").append(" ", replace);
      }
    }
    $("export-start").disabled = false;
  };

  window.dsPanels = {
    onStats(d) {
      refreshCaptionSetup();
      const job = d.jobs && d.jobs.caption;
      if (job && ACTIVE.has(job.status)) followCaption(job.id);
      else if (job && !following) showEnded(job);
    },
  };
  refreshUndo();
  checkService();
  setInterval(() => { if (!document.hidden && !$("caption-dialog").open) checkService(); }, 15000);
  // a run started elsewhere (another tab, the API, Express) shows here too, also one that ended meanwhile
  setInterval(async () => {
    if (document.hidden || following) return;
    try {
      const { job } = await api(`${ds.base}/caption`);
      if (job && ACTIVE.has(job.status)) followCaption(job.id);
      else if (job && job.id !== shownRun) { await ds.refresh(); showEnded(job); }
    } catch (e) { /* the next round asks again */ }
  }, 10000);
})();
