// LoRA library: every finished LoRA with its final base-vs-LoRA previews, proof files, metadata, size, a
// download button, a smaller copy at a lower rank (a LoKr's also as a LoRA), and a delete button.
(function () {
  const { esc, fmtDate, fmtLoss, fmtKept, confirmDialog } = trainer;
  let loras = [];  // what the cards show, for their Delete buttons
  // every trigger word of the file (a LoRA of several datasets may have one per concept), else the job's
  function triggers(l) {
    try {
      const words = JSON.parse((l.metadata || {}).trigger_words || "null");
      if (Array.isArray(words) && words.length) return words.map(String);
    } catch (e) { /* not a list: the one trigger word below */ }
    return l.trigger_word ? [l.trigger_word] : [];
  }
  // a card is named for its file (renamed in the library or not); a job's card also names the job it came from
  function title(l) { return l.job_id && l.library_file ? l.library_file.replace(/\.safetensors$/, "") : l.name; }
  function hostOf(url) { try { return new URL(url).hostname || url; } catch (e) { return url; } }
  async function load() {
    const data = await studio.api("/api/library");
    document.getElementById("library-dirs").textContent = `Files in ${data.library_dir}` +
      (data.comfyui_dir ? ` and ${data.comfyui_dir} (ComfyUI)` : "");
    const box = document.getElementById("library");
    if (!data.loras.length) {
      box.innerHTML = `<div class="empty panel">No finished LoRA yet. <a href="/new">Train one</a>; it appears here when it completes.</div>`;
      box.dataset.loaded = "1";  // for scripts that arrive later
      document.dispatchEvent(new CustomEvent("library:loaded"));
      return;
    }
    const mergeable = data.loras.filter((l) => l.library_file && !l.foreign && !l.refused).length;  // Merge… needs two
    box.innerHTML = data.loras.map((l, index) => {
      // the final previews: base (LoRA off) beside LoRA on for the first prompts, else the plain images
      const pairs = l.samples && (l.samples.pairs || []).filter((p) => p.base).slice(0, 2);
      const shots = pairs && pairs.length ? pairs.map((p) =>
        `<img src="${esc(studio.thumb(p.base))}" loading="lazy" alt="base: ${esc(p.prompt)}" title="Base (LoRA off): ${esc(p.prompt)}">` +
        `<img src="${esc(studio.thumb(p.lora))}" loading="lazy" alt="LoRA: ${esc(p.prompt)}" title="LoRA: ${esc(p.prompt)}">` +
        (p.lora_no_trigger ? `<img src="${esc(studio.thumb(p.lora_no_trigger))}" loading="lazy" alt="no trigger: ${esc(p.no_trigger_prompt)}" title="LoRA, no trigger word: ${esc(p.no_trigger_prompt)}">`
          : `<div class="muted" style="font-size:10px;align-self:center;text-align:center">no trigger word</div>`)).join("")
        : l.samples ? l.samples.urls.slice(0, 3).map((u, i) =>
        `<img src="${esc(studio.thumb(u))}" loading="lazy" alt="${esc(l.samples.prompts[i] || "sample")}" title="${esc(l.samples.prompts[i] || "")}">`).join("") : "";
      const legend = pairs && pairs.length ? `<div class="muted pairs-legend" style="font-size:11px;display:grid;grid-template-columns:repeat(3,1fr);text-align:center">
        <span>base</span><span>LoRA</span><span>no trigger</span></div>` : "";
      const proof = l.proof ? [l.proof.grid && `<a href="${esc(l.proof.grid)}" target="_blank" rel="noopener">Base vs LoRA grid</a>`,
        l.proof.readme && `<a href="${esc(l.proof.readme)}" target="_blank" rel="noopener">README</a>`,
        l.proof.workflow && `<a href="${esc(l.proof.workflow)}" download="${esc((l.library_file || l.file).replace(/\.safetensors$/, ""))}-comfyui-workflow.json"
          title="Drop it onto ComfyUI">ComfyUI workflow</a>`]
        .filter(Boolean).join(" · ") : "";
      const meta = Object.entries(l.metadata || {}).filter(([k]) => !k.startsWith("_")).slice(0, 40)
        .map(([k, v]) => `<dt>${esc(k)}</dt><dd title="${esc(v)}">${esc(v)}</dd>`).join("");
      const usable = !l.foreign && !l.refused;  // a file copied in by hand in another trainer's layout waits for Convert
      // its job trains further now: the file stays as it is (tried, downloaded) until the new one replaces it
      const further = l.training_further;
      const fixed = usable && !further;
      return `<article class="panel lora-card" data-job="${esc(l.job_id)}">
        ${shots ? `<div class="preview${pairs && pairs.length ? " pairs" : ""}">${shots}</div>${legend}` : ""}
        ${l.leak ? studio.leakLine({ leak: l.leak.share, leaks: l.leak.leaks }) : ""}
        <div><h3>${esc(title(l))}</h3><div class="muted" style="font-size:12px">${esc(l.library_file || l.file)} · ${studio.formatBytes(l.size)}</div>
          ${l.job_id && title(l) !== l.name ? `<div class="muted" style="font-size:12px" data-trained-as>trained as the job ${esc(l.name)}</div>` : ""}
          ${l.checkpoint_of ? `<div class="muted" style="font-size:12px">checkpoint at step ${l.checkpoint_of.step} of ${esc(l.checkpoint_of.job_name)}</div>` : ""}
          ${/^https?:\/\//.test((l.metadata || {}).source_url || "") && !(l.metadata || {}).civitai_url ? `<div class="muted" style="font-size:12px">from <a href="${esc(l.metadata.source_url)}" target="_blank" rel="noopener" title="${esc(l.metadata.source_url)}">${esc(hostOf(l.metadata.source_url))}</a></div>` : ""}
          ${/^https?:\/\//.test((l.metadata || {}).civitai_url || "") ? `<div class="muted" style="font-size:12px">from <a href="${esc(l.metadata.civitai_url)}" target="_blank" rel="noopener">${esc(l.metadata["modelspec.title"] || "Civitai")}</a> on Civitai</div>` : ""}
          ${(l.metadata || {}).comfyui_file ? `<div class="muted" style="font-size:12px">from ComfyUI's loras (${esc(l.metadata.comfyui_file)})</div>` : ""}
          ${l.lokr ? `<div class="muted" style="font-size:12px" title="Tried, made smaller and loaded like a LoRA">a LyCORIS LoKr${l.lokr_factor != null ? `, factor ${l.lokr_factor}` : ""}</div>` : ""}
          ${l.foreign ? `<div class="card-note" data-foreign>In ${esc(l.foreign)}, as another trainer wrote it: ComfyUI loads it as it is;
            <strong>Convert</strong> it to try it, train it further, make it smaller or merge it here.</div>` : ""}
          ${l.refused ? `<div class="card-note error" data-refused>${esc(l.refused)}</div>` : ""}
          ${further ? `<div class="card-note" data-further>${further === "running" ? "Training further now" : "Queued to train further"}:
            this file is replaced when it is done; rename, delete and train further wait until then.</div>` : ""}
          ${(l.metadata || {}).converted_from ? `<div class="muted" style="font-size:12px" title="${(l.metadata || {}).loha_kept ? "Written by another trainer as a LyCORIS LoHa; the studio wrote each layer's change as a LoRA's on the way in" : "Written by another trainer; the studio renamed its layers on the way in, the weights unchanged"}">converted from ${esc(l.metadata.converted_from)}</div>` : ""}
          ${(l.metadata || {}).lokr_source ? `<div class="muted" style="font-size:12px">a LoRA copy of ${esc(l.metadata.lokr_source)} at rank ${esc(l.metadata.lora_rank)}, keeping ${fmtKept(l.metadata.lokr_kept)} of its change</div>` : ""}
          ${(l.metadata || {}).resized_from ? `<div class="muted" style="font-size:12px">${esc(l.metadata.resized_from)} at rank ${esc(l.metadata.lora_rank || l.metadata.lokr_w2_rank)}, keeping ${fmtKept(l.metadata.resize_kept)} of its change</div>` : ""}</div>
        ${triggers(l).length ? `<div>${triggers(l).length > 1 ? "triggers" : "trigger"} ${triggers(l).map((w) => `<span class="chip">${esc(w)}</span>`).join(" ")}</div>` : ""}
        ${proof ? `<div class="proof" style="font-size:12px">${proof}</div>` : ""}
        <dl>${l.dataset ? `<dt>dataset</dt><dd>${esc(l.dataset)}</dd>` : ""}${l.steps != null ? `<dt>steps</dt><dd>${l.steps}</dd>` : ""}
          ${l.loss != null ? `<dt>final loss</dt><dd title="smoothed, as on the dashboard">${fmtLoss(l.loss)}</dd>` : ""}<dt>${l.job_id ? "finished" : "modified"}</dt><dd>${fmtDate(l.finished_at)}</dd></dl>
        ${meta ? `<details><summary class="muted" style="cursor:pointer;font-size:12px">File metadata</summary><dl>${meta}</dl></details>` : ""}
        <div class="buttons">${l.foreign ? `<button type="button" class="primary" data-convert="${esc(l.library_file)}"${l.converting ? ` data-converting="${esc(l.converting)}"` : ""}
            title="Write it in this studio's layout under the same name; the file as it is now goes to Recently deleted">Convert</button>` : ""}
          <a class="button${l.foreign ? "" : " primary"}" href="${esc(l.download_url)}" download>Download</a>
          ${!usable ? "" : l.job_id ? `<a class="button" href="/jobs/${esc(l.job_id)}#try-panel" title="Render your own prompt with it at several strengths">Try it</a>
          <a class="button" href="/jobs/${esc(l.job_id)}">Open job</a>` : `<a class="button" href="/library/try/${encodeURIComponent(l.library_file)}"
            title="Render your own prompt with it at several strengths">Try it</a>${l.checkpoint_of ? `<a class="button" href="/jobs/${esc(l.checkpoint_of.job_id)}"
            title="The checkpoint at step ${l.checkpoint_of.step} of ${esc(l.checkpoint_of.job_name)}">Open job</a>` : ""}`}
          ${fixed && l.library_file && (!l.lokr || l.lokr_factor != null) ? `<a class="button" href="/new?start=${encodeURIComponent(l.library_file.replace(/\.safetensors$/, ""))}${
            l.job_id ? `&from=${encodeURIComponent(l.job_id)}` : ""}" title="A new job that goes on from this LoRA (new images, more steps)">Train further</a>` : ""}
          ${rankMenu(l, index, "smaller")}${rankMenu(l, index, "as-lora")}
          ${usable && l.library_file && mergeable > 1 ? `<button type="button" data-merge="${esc(l.library_file)}" title="Merge it with other LoRAs of the library into one file">Merge…</button>` : ""}
          ${l.library_file && !further ? editMenu(l) : ""}
          ${further ? "" : `<button type="button" class="danger" data-delete="${index}">Delete</button>`}</div>
        ${l.foreign ? `<div class="muted convert-state" data-convert-state></div>` : ""}</article>`;
    }).join("");
    loras = data.loras;
    applyFilter();
    box.dataset.loaded = "1";
    document.dispatchEvent(new CustomEvent("library:loaded"));
  }
  document.addEventListener("library:changed", () => load());  // a file made elsewhere on the page (a merge)

  // With many LoRAs: the cards whose name, file, trigger words or dataset hold every word typed.
  function applyFilter() {
    const words = document.getElementById("library-filter").value.toLowerCase().split(/\s+/).filter(Boolean);
    const cards = [...document.querySelectorAll("#library .lora-card")];
    let shown = 0;
    cards.forEach((card, index) => {
      const l = loras[index] || {};
      const text = [l.name, l.file, l.library_file, l.dataset, ...triggers(l)].filter(Boolean).join(" ").toLowerCase();
      card.hidden = !words.every((w) => text.includes(w));
      shown += card.hidden ? 0 : 1;
    });
    document.getElementById("library-filter-row").hidden = cards.length < 2;
    document.getElementById("library-count").textContent = words.length ? `${shown} of ${cards.length}` : `${cards.length} LoRAs`;
  }
  document.getElementById("library-filter").addEventListener("input", applyFilter);

  // "Make smaller": the same LoRA at a lower rank (its largest directions kept; a LoKr's larger factors), a smaller
  // file to share. "Save as a LoRA" (a LoKr's): a LoRA of its largest directions, for sites and tools that load LoRAs
  // only. The server offers the ranks and how large each file would be.
  const MENUS = {
    smaller: { label: "Make smaller", options: "smaller", ask: "smaller", make: "resize",
      title: (l) => `${l.lokr ? "A copy with its larger factors at a lower rank" : "A copy at a lower rank"}: a smaller file, most of the change kept`,
      done: (made) => `${made.file}: ${studio.formatBytes(made.size)} instead of ${studio.formatBytes(made.from_size)}, ` +
        `keeping ${fmtKept(made.kept)} of the LoRA's change.` },
    "as-lora": { label: "Save as a LoRA", options: "as_lora", ask: "as-lora", make: "as-lora",
      title: () => "A LoRA copy of this LoKr (its largest directions), for sites, generators and tools that load LoRAs only",
      done: (made) => `${made.file}: a LoRA of rank ${made.rank}, ${studio.formatBytes(made.size)}, keeping ` +
        `${fmtKept(made.kept)} of the LoKr's change.` },
  };
  // a library file's name (the one ComfyUI lists) and, for a file no job finished, the trigger word Try it and ComfyUI
  // workflows use (a job's is its own); library_edit.js saves
  function editMenu(l) {
    return `<details class="card-edit" data-file="${esc(l.library_file)}"><summary class="button" title="${l.job_id ? "Rename the file" : "Rename it, or set its trigger word"}">${l.job_id ? "Rename…" : "Edit…"}</summary>
      <form class="card-edit-form"><label>Name <input name="name" value="${esc(l.library_file.replace(/\.safetensors$/, ""))}" maxlength="80" autocomplete="off" required></label>
        ${l.job_id ? "" : `<label>Trigger word <input name="trigger_word" value="${esc(l.trigger_word || "")}" maxlength="200" autocomplete="off" placeholder="empty: the file's own"></label>`}
        <button type="submit" class="primary">Save</button></form></details>`;
  }
  function rankMenu(l, index, kind) {
    const menu = MENUS[kind], options = l[menu.options] || [];
    if (!l.library_file || !options.length) return "";
    return `<details class="smaller" data-kind="${kind}" data-file="${esc(l.library_file)}"><summary class="button" title="${esc(menu.title(l))}">${menu.label}</summary>
      <div class="smaller-menu">${options.map((o) => `<button type="button" data-copy="${index}" data-rank="${o.rank}">rank ${o.rank}
        <span class="muted">≈ ${studio.formatBytes(o.bytes)}<span data-kept></span></span></button>`).join("")}</div></details>`;
  }
  // opened, a menu says what each rank keeps of the change (the server reads the file's layers once)
  document.getElementById("library").addEventListener("toggle", async (ev) => {
    const menu = ev.target;
    if (!menu.matches || !menu.matches("details.smaller") || !menu.open || menu.dataset.kept) return;
    menu.dataset.kept = "asked";
    try {
      const { options } = await studio.api(`/api/library/files/${encodeURIComponent(menu.dataset.file)}/${MENUS[menu.dataset.kind].ask}`);
      for (const o of options) {
        const slot = menu.querySelector(`button[data-rank="${o.rank}"] [data-kept]`);
        if (slot) slot.textContent = `, keeps ${fmtKept(o.kept)}`;
      }
    } catch (e) { delete menu.dataset.kept; }  // the sizes still show; asked again when opened again
  }, true);
  async function copy(index, kind, rank, button) {
    const l = loras[index], menu = MENUS[kind];
    button.disabled = true;
    try {
      const made = await studio.api(`/api/library/files/${encodeURIComponent(l.library_file)}/${menu.make}`,
        { method: "POST", json: { rank } });
      studio.toast(menu.done(made), "ok", 8000);
      load();
    } catch (e) { studio.toast(e.message, "error", 8000); button.disabled = false; }
  }

  // Delete: the file leaves the library (and ComfyUI's folder), and the job it came from goes with it.
  async function remove(index) {
    const l = loras[index];
    if (!l) return;
    const parts = [];
    const name = l.library_file || l.file;
    if (l.library_file) parts.push(`removes it from ${l.in_comfyui ? "the LoRA library and ComfyUI's folder" : "the LoRA library"}`);
    if (l.job_id) parts.push("deletes its training job (checkpoints, previews, renders, log)");
    if (!(await confirmDialog(`Delete ${name}?`, `This ${parts.join(" and ")}. Recently deleted, below, keeps `
      + `${parts.length > 1 ? "both" : "it"} 7 days.`, "Delete"))) return;
    try {
      if (l.library_file) await studio.api(`/api/library/files/${encodeURIComponent(l.library_file)}`, { method: "DELETE" });
      if (l.job_id) await studio.api(`/api/jobs/${encodeURIComponent(l.job_id)}`, { method: "DELETE" });
      studio.toast(`Deleted ${name}: Recently deleted, below, can bring it back.`, "ok");
    } catch (e) { studio.toast(`Delete failed: ${e.message}`, "error"); }
    loadTrash();
    load();
  }
  document.getElementById("library").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-delete]");
    if (b) remove(Number(b.dataset.delete));
    const r = ev.target.closest("button[data-copy]");
    if (r) copy(Number(r.dataset.copy), r.closest("details").dataset.kind, Number(r.dataset.rank), r);
  });
  // Recently deleted: jobs and library files, kept some days; Restore puts one back as it was.
  async function loadTrash() {
    let data;
    try { data = await studio.api("/api/trash"); } catch (e) { return; }
    const box = document.getElementById("trash");
    box.hidden = !data.entries.length;
    document.getElementById("trash-list").innerHTML = data.entries.map((e) => `<li data-entry="${esc(e.id)}">
      <span class="chip">${e.kind === "job" ? "training job" : "LoRA file"}</span> <strong>${esc(e.name)}</strong>
      <span class="muted">${studio.formatBytes(e.size)} · deleted ${fmtDate(e.deleted_at)} · kept until ${fmtDate(e.expires_at)}</span>
      ${e.restorable ? `<button type="button" data-restore="${esc(e.id)}">Restore</button>` : ""}</li>`).join("");
    document.getElementById("trash-days").textContent = `kept ${data.days} days`;
    // come from a deleted job's page: its list is shown at once (it was hidden when the browser looked for it)
    if (location.hash === "#trash" && !box.hidden && !loadTrash.shown) { loadTrash.shown = true; box.scrollIntoView(); }
  }
  document.getElementById("trash").addEventListener("click", async (ev) => {
    const restore = ev.target.closest("[data-restore]");
    try {
      if (restore) {
        restore.disabled = true;
        const { restored } = await studio.api(`/api/trash/${encodeURIComponent(restore.dataset.restore)}/restore`, { method: "POST" });
        const also = restored.also ? (restored.kind === "job" ? ", and its LoRA in the library" : ", with its training job") : "";
        studio.toast(`${restored.name} is back${restored.kind === "job" ? " with its checkpoints and previews" : " in the library"}${also}.`, "ok");
        if (restored.also_refused) studio.toast(restored.also_refused, "error", 8000);
      } else if (ev.target.closest("#trash-empty")) {
        if (!(await confirmDialog("Empty Recently deleted?",
          "Remove everything in Recently deleted for good, to free its space?", "Empty"))) return;
        const { freed_bytes: freed } = await studio.api("/api/trash", { method: "DELETE" });
        studio.toast(`Recently deleted is empty${freed ? `: ${studio.formatBytes(freed)} freed` : ""}.`, "ok");
      } else return;
    } catch (e) { studio.toast(e.message, "error", 8000); }
    loadTrash(); load();
  });
  document.addEventListener("library:trash", () => loadTrash());  // a file put there elsewhere (Convert)
  load().catch((e) => studio.toast(e.message, "error", 8000));
  loadTrash();
})();
