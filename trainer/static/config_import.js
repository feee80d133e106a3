// The new job form's text view reads its own settings (JSON or YAML) and an ai-toolkit config (its YAML, or the JSON
// its web UI saves): the server translates that one (POST /api/config/parse) and the panel under the text says what
// was taken, what the studio does its own way, and what to check. "Open a file" reads a config file into the text.
(function () {
  const { esc } = trainer;
  const $ = (id) => document.getElementById(id);
  // an ai-toolkit job, process, or its sections (the server decides; this only spares a round trip for plain JSON)
  const SECTIONS = ["network", "train", "save", "datasets", "sample", "model"];
  function maybeAiToolkit(obj) {
    if (!obj || typeof obj !== "object") return false;
    const inner = obj.config && typeof obj.config === "object" ? obj.config : obj;
    return Array.isArray(inner.process) || SECTIONS.filter((k) => obj[k] && typeof obj[k] === "object").length >= 2;
  }

  // {config, from?, taken?, own_way?, warnings?} of the text in `format` ("json" or "yaml"); throws with the reason
  async function read(text, format) {
    if (format === "json") {
      let config;
      try { config = JSON.parse(text); } catch (e) { throw new Error(`Not valid JSON: ${e.message}`); }
      if (!config || typeof config !== "object" || Array.isArray(config)) throw new Error("The config must be an object.");
      if (!maybeAiToolkit(config)) return { config };
    }
    return studio.api("/api/config/parse", { method: "POST", json: { text } });
  }

  function show(answer) {
    const box = $("config-import");
    if (answer.from !== "ai-toolkit") { box.hidden = true; return; }
    const list = (items) => items.map((t) => `<li>${esc(t)}</li>`).join("");
    box.innerHTML = `<strong>Read as an ai-toolkit config:</strong> ${answer.taken.length} settings taken into the form
        (${esc(answer.taken.slice(0, 6).join(", "))}${answer.taken.length > 6 ? ", …" : ""}); the others keep the form's values.
      ${answer.warnings.length ? `<ul class="import-warnings">${list(answer.warnings)}</ul>` : ""}
      <details><summary>Every setting taken (${answer.taken.length})</summary><ul>${list(answer.taken)}</ul></details>
      ${answer.own_way.length ? `<details><summary>Done the studio's way (${answer.own_way.length})</summary><ul>${list(answer.own_way)}</ul></details>` : ""}`;
    box.hidden = false;
    studio.toast(`Read as an ai-toolkit config: ${answer.taken.length} settings taken.`, "ok", 5000);
  }

  $("config-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    e.target.value = "";
    if (!file) return;
    if (file.size > 1024 * 1024) { studio.toast(`${file.name} is too large for a config (over 1 MB).`, "error"); return; }
    const text = await file.text();
    $("config-text").value = text;
    const json = /\.json$/i.test(file.name) || /^\s*[{[]/.test(text);
    document.dispatchEvent(new CustomEvent("config:file", { detail: { format: json ? "json" : "yaml" } }));
  });

  trainer.configText = { read, show };
})();
