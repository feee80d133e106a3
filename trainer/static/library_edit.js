// A library card's Edit…: a file no job finished gets a new name or the trigger word its Try it and ComfyUI
// workflows use (PATCH /api/library/files/<file>; only what changed is sent), then the cards load again.
(function () {
  document.getElementById("library").addEventListener("submit", async (ev) => {
    const form = ev.target.closest("form.card-edit-form");
    if (!form) return;
    ev.preventDefault();
    const file = form.closest("details.card-edit").dataset.file, json = {};
    for (const input of form.querySelectorAll("input")) {
      if (input.value.trim() !== input.defaultValue.trim()) json[input.name] = input.value.trim();
    }
    if (!Object.keys(json).length) { form.closest("details").open = false; return; }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const saved = await studio.api(`/api/library/files/${encodeURIComponent(file)}`, { method: "PATCH", json });
      studio.toast(`${saved.file}${saved.trigger_word ? `, trigger ${saved.trigger_word}` : ""}: saved.`, "ok", 5000);
      document.dispatchEvent(new CustomEvent("library:changed"));
    } catch (e) { studio.toast(e.message, "error", 8000); button.disabled = false; }
  });
})();
