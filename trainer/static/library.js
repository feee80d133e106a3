// LoRA library: every finished LoRA with its last samples, metadata, size and a download button.
(function () {
  const { esc, fmtDate, fmtLoss } = trainer;
  async function load() {
    const data = await studio.api("/api/library");
    document.getElementById("library-dirs").textContent = `Files in ${data.library_dir}` +
      (data.comfyui_dir ? ` and ${data.comfyui_dir} (ComfyUI)` : "");
    const box = document.getElementById("library");
    if (!data.loras.length) {
      box.innerHTML = `<div class="empty panel">No finished LoRA yet. <a href="/new">Train one</a>; it appears here when it completes.</div>`;
      return;
    }
    box.innerHTML = data.loras.map((l) => {
      const shots = l.samples ? l.samples.urls.slice(0, 3).map((u, i) =>
        `<img src="${esc(u)}" loading="lazy" alt="${esc(l.samples.prompts[i] || "sample")}" title="${esc(l.samples.prompts[i] || "")}">`).join("") : "";
      const meta = Object.entries(l.metadata || {}).filter(([k]) => !k.startsWith("_")).slice(0, 12)
        .map(([k, v]) => `<dt>${esc(k)}</dt><dd title="${esc(v)}">${esc(v)}</dd>`).join("");
      return `<article class="panel lora-card" data-job="${esc(l.job_id)}">
        ${shots ? `<div class="preview">${shots}</div>` : ""}
        <div><h3>${esc(l.name)}</h3><div class="muted" style="font-size:12px">${esc(l.file)} · ${studio.formatBytes(l.size)}</div></div>
        ${l.trigger_word ? `<div>trigger <span class="chip">${esc(l.trigger_word)}</span></div>` : ""}
        <dl>${l.dataset ? `<dt>dataset</dt><dd>${esc(l.dataset)}</dd>` : ""}${l.steps != null ? `<dt>steps</dt><dd>${l.steps}</dd>` : ""}
          ${l.loss != null ? `<dt>final loss</dt><dd>${fmtLoss(l.loss)}</dd>` : ""}<dt>${l.job_id ? "finished" : "modified"}</dt><dd>${fmtDate(l.finished_at)}</dd></dl>
        ${meta ? `<details><summary class="muted" style="cursor:pointer;font-size:12px">File metadata</summary><dl>${meta}</dl></details>` : ""}
        <div class="buttons"><a class="button primary" href="${esc(l.download_url)}" download>Download</a>
          ${l.job_id ? `<a class="button" href="/jobs/${esc(l.job_id)}">Open job</a>` : '<span class="muted" style="font-size:12px;align-self:center">job deleted</span>'}</div></article>`;
    }).join("");
  }
  load().catch((e) => studio.toast(e.message, "error", 8000));
})();
