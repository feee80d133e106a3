// Adding a LoRA to the library: from a link (the pod downloads it) or from this computer (a .safetensors file picked
// or dropped on the page goes up in chunks: chunked_upload.js). Either way a job of the job store converts, checks
// and places it, and the cards load again when it is in.
(function () {
  const { esc } = trainer;
  const $ = (id) => document.getElementById(id);
  const state = $("lora-link-state");

  // an import's (or a card's Convert's) job until it ends, said in `into`; the cards load again when it is in
  // `into`: where its progress shows, or a function that finds it each time (a card drawn again meanwhile)
  async function follow(jobId, where = state) {
    for (;;) {
      const found = (await studio.api("/api/library/imports")).imports.find((j) => j.id === jobId);
      if (!found) return;
      const into = (typeof where === "function" ? where() : where) || document.createElement("span");
      const done = found.phase === "converting" ? (found.eta_s ? `about ${studio.formatDuration(found.eta_s)} left` : "")
        : found.bytes_done ? `${studio.formatBytes(found.bytes_done)}${found.bytes_total ? ` of ${studio.formatBytes(found.bytes_total)}` : ""}` : "";
      into.textContent = found.status === "running" || found.status === "queued"
        ? `${found.message || "Downloading"}${done ? ` · ${done}` : ""}` : "";
      if (found.status === "completed") {
        studio.toast(found.message, "ok", 6000);
        const file = (found.result || {}).file;  // a way straight on: render a prompt with it
        if (file) into.innerHTML = `${esc(found.message)} <a href="/library/try/${encodeURIComponent(file)}">Try it</a>`;
        document.dispatchEvent(new CustomEvent("library:changed"));
        return found;
      }
      if (!["queued", "running"].includes(found.status)) {
        studio.toast(found.error || found.message || `Adding it ${found.status}.`, "error", 10000);
        into.textContent = found.error || "";
        return found;
      }
      await new Promise((resolve) => setTimeout(resolve, 700));
    }
  }

  window.libraryImports = { follow };

  $("lora-link").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const button = $("lora-link-add");
    button.disabled = true;
    state.textContent = "";  // what the last one said is not about this one
    try {
      const { job } = await studio.api("/api/library/import", { method: "POST", json: { url: $("lora-url").value } });
      $("lora-url").value = "";
      await follow(job.id);
    } catch (e) {
      state.textContent = e.message;
      studio.toast(e.message, "error", 10000);
    } finally { button.disabled = false; }
  });

  // From this computer: one file at a time, in chunks (a LoRA of a few hundred MB outlasts the proxy's 100 s)
  let busy = false;
  async function upload(file) {
    if (busy) { studio.toast("One file at a time: wait for this one to be in the library.", "info", 5000); return; }
    if (!/\.safetensors$/i.test(file.name)) {
      state.textContent = `${file.name} is not a .safetensors file: a LoRA for the library is one.`;  // not the last one's
      studio.toast(state.textContent, "error", 8000);
      return;
    }
    busy = true;
    const button = $("lora-file-pick"), bar = $("lora-upload-bar");
    button.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    try {
      const sid = await chunkedUpload.uploadFile("/api/library", file, {
        set(fraction, text) { bar.value = fraction; state.textContent = `Uploading ${file.name}: ${text}`; },
      });
      bar.hidden = true;
      await complete(sid);
    } catch (e) {
      state.textContent = "";
      studio.toast(`${file.name}: ${e.message}`, "error", 10000);
    } finally { busy = false; button.disabled = false; bar.hidden = true; }
  }
  // the upload's job; when it failed and kept the chunks (a full disk, a restart), a way to run it again unsent
  async function complete(sid) {
    const { job } = await studio.api(`/api/library/uploads/${sid}/complete`, { method: "POST" });
    const ended = await follow(job.id);
    if (!ended || ended.status === "completed" || (ended.config || {}).chunks_kept === false) return;  // refused
    state.innerHTML = `${esc(ended.error || "It did not finish.")} <button type="button" id="lora-upload-again">Try again</button>
      <span class="muted">(the file is on the pod already)</span>`;
    $("lora-upload-again").addEventListener("click", () => {
      state.textContent = "Trying again…";
      complete(sid).catch((e) => studio.toast(e.message, "error", 10000));
    });
  }
  $("lora-file-pick").addEventListener("click", () => $("lora-file").click());
  $("lora-file").addEventListener("change", (ev) => {
    const [file] = ev.target.files;
    ev.target.value = "";
    if (file) upload(file);
  });
  // a file dropped anywhere on the page
  const hasFiles = (ev) => Array.from(ev.dataTransfer.types || []).includes("Files");
  document.addEventListener("dragover", (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    $("lora-link").classList.add("dropping");
  });
  document.addEventListener("dragleave", (ev) => { if (!ev.relatedTarget) $("lora-link").classList.remove("dropping"); });
  document.addEventListener("drop", (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    $("lora-link").classList.remove("dropping");
    const files = Array.from(ev.dataTransfer.files);
    if (files.length > 1) studio.toast("One file at a time: adding the first.", "info", 5000);
    if (files.length) upload(files[0]);
  });
})();
