// Publish to Hugging Face, in the export dialog: the last export as a dataset repo (POST .../push-hub), its
// upload's progress, then a link to the repo. Disabled, with the reason, when the pod has no HF_TOKEN.
(function () {
  const { api, toast, formatBytes, plural } = window.studio;
  const ds = window.ds;
  const $ = (id) => document.getElementById(id);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const ACTIVE = new Set(["queued", "running"]);
  let exportName = null;
  let following = null;

  function showJob(job) {
    const running = job && ACTIVE.has(job.status);
    $("hub-start").disabled = running || !exportName;
    $("hub-progress").hidden = !running;
    $("hub-error").textContent = job && job.status !== "completed" && !running ? job.message || job.error || "" : "";
    if (running) {
      const share = job.bytes_total ? job.bytes_done / job.bytes_total : job.total ? job.done / job.total : 0;
      $("hub-bar").style.width = `${Math.round(100 * share)}%`;
      $("hub-result").textContent = job.message || "Publishing…";
      if (job.bytes_total) $("hub-result").textContent += ` (${formatBytes(job.bytes_done)} of ${formatBytes(job.bytes_total)})`;
    } else if (job && job.status === "completed") {
      const r = job.result;
      $("hub-result").innerHTML = `<span style="color:var(--ok)">✓ ${ds.esc(job.message)}</span>
        <a id="hub-link" href="${ds.esc(r.url)}" target="_blank" rel="noopener">${ds.esc(r.repo)}</a>
        <span class="muted">(${r.private ? "private" : "public"}, export ${ds.esc(r.export)}${r.removed.length ? `, ${plural(r.removed.length, "old file")} removed` : ""})</span>`;
      $("hub-push-summary").textContent = `(last: ${r.repo})`;
    } else {
      $("hub-result").textContent = "";
    }
  }

  async function follow(id) {
    if (following === id) return;
    following = id;
    while (following === id) {
      let state;
      try { state = await api(`${ds.base}/push-hub`); } catch (e) { break; }
      if (!state.job || state.job.id !== id) break;
      showJob(state.job);
      if (!ACTIVE.has(state.job.status)) {
        if (state.job.status === "completed") toast(state.job.message, "ok");
        break;
      }
      await sleep(700);
    }
    if (following === id) following = null;
  }

  async function show(name) {
    exportName = name || null;
    $("hub-push").hidden = !exportName;
    if (!exportName) return;
    let state;
    try { state = await api(`${ds.base}/push-hub`); } catch (e) { return; }
    const last = state.job && state.job.result;
    if (!$("hub-repo").value) $("hub-repo").value = (last && last.repo) || exportName;
    if (last) $("hub-private").checked = last.private;
    if (!state.token) {
      $("hub-start").disabled = true;
      $("hub-start").title = "Set HF_TOKEN (a token with write access) in the pod's environment and restart it.";
      $("hub-error").textContent = "The pod has no HF_TOKEN: set one with write access and restart the pod to publish.";
      return;
    }
    $("hub-start").title = "";
    showJob(state.job);
    if (state.job && ACTIVE.has(state.job.status)) follow(state.job.id);
  }

  $("hub-start").onclick = async () => {
    $("hub-error").textContent = "";
    $("hub-start").disabled = true;
    try {
      const job = await api(`${ds.base}/push-hub`, { method: "POST", json: { repo: $("hub-repo").value.trim(),
        private: $("hub-private").checked, export: exportName } });
      showJob(job);
      follow(job.id);
    } catch (e) {
      $("hub-error").textContent = e.message;
      $("hub-start").disabled = false;
    }
  };

  window.hubPush = { show };
})();
