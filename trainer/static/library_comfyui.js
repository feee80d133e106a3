// ComfyUI's own Z-Image LoRAs that the library does not hold, under the cards: "Add to library" places the same
// file in the library (one in another trainer's layout then offers Convert on its card); ComfyUI's file stays.
(function () {
  const { esc } = trainer;
  const $ = (id) => document.getElementById(id);
  async function load() {
    let data;
    try { data = await studio.api("/api/library/comfyui"); } catch (e) { return; }
    const count = data.files.length;
    $("comfy-only").hidden = !count;
    $("comfy-only-title").textContent = `${count} Z-Image LoRA${count === 1 ? "" : "s"} in ComfyUI's loras only`;
    $("comfy-only-list").innerHTML = data.files.map((f) => `<li><strong>${esc(f.file)}</strong>
      <span class="muted">${studio.formatBytes(f.size)}${f.layout ? ` · in ${esc(f.layout)}` : ""}</span>
      <button type="button" data-comfy-add="${esc(f.file)}">Add to library</button></li>`).join("");
  }
  $("comfy-only-list").addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-comfy-add]");
    if (!button) return;
    button.disabled = true;
    try {
      const path = button.dataset.comfyAdd.split("/").map(encodeURIComponent).join("/");
      const added = await studio.api(`/api/library/comfyui/${path}/add`, { method: "POST" });
      studio.toast(`${added.file} is in the library${added.layout ? `; it is in ${added.layout}: Convert it on its card` : ""}.`, "ok", 8000);
      document.dispatchEvent(new CustomEvent("library:changed"));
    } catch (e) { studio.toast(e.message, "error", 8000); button.disabled = false; }
  });
  document.addEventListener("library:loaded", load);  // the cards changed: so may what the library holds
  if ($("library").dataset.loaded) load();  // the cards loaded while this script was on its way
})();
