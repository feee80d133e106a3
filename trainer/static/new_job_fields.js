// The new job form's settings: the recipe's fields as inputs (basic and advanced), read back into the config, shown
// again when the config changes (a preset, the text view, a copied job), the fields that apply to the settings chosen,
// and the memory presets. new_job.js owns the config (`state.config`) and what a change sets off.
trainer.jobFields = function (state) {
  const { esc } = trainer;
  const $ = (id) => document.getElementById(id);
  const NOT_A_NUMBER = "not a number";  // the server says "Must be a number." next to the field
  function inputFor(f) {
    const id = `f-${f.name}`, val = state.config[f.name];
    if (f.type === "boolean") {
      return `<div class="check-row"><input type="checkbox" id="${id}" name="${f.name}" ${val ? "checked" : ""}>
        <span class="muted">${val ? "on" : "off"}</span></div>`;
    }
    if (f.choices) {
      return `<select id="${id}" name="${f.name}">${f.choices.map((c) =>
        `<option value="${esc(c)}" ${c === val ? "selected" : ""}>${esc(c)}</option>`).join("")}</select>`;
    }
    if (f.type === "array" && f.items === "string") {
      return `<textarea id="${id}" name="${f.name}" rows="4" placeholder="one per line">${esc((val || []).join("\n"))}</textarea>`;
    }
    if (f.type === "array") {
      return `<input id="${id}" name="${f.name}" value="${esc((val || []).join(", "))}" placeholder="comma separated">`;
    }
    if (f.type === "integer" || f.type === "number") {
      const attrs = [f.min != null && !f.exclusive_min ? `min="${f.min}"` : "", f.max != null ? `max="${f.max}"` : "",
        f.type === "integer" ? 'step="1"' : 'step="any"'].join(" ");
      return `<input type="number" id="${id}" name="${f.name}" value="${val == null ? "" : esc(val)}" ${attrs}
        placeholder="${f.nullable ? "automatic" : ""}">`;
    }
    return `<input id="${id}" name="${f.name}" value="${esc(val ?? "")}">`;
  }

  function renderFields() {
    for (const section of ["basic", "advanced"]) {
      const fields = state.recipe.fields.filter((f) => (f.section || "advanced") === section);
      $(`${section}-fields`).innerHTML = fields.map((f) => {
        const wide = f.type === "array" && f.items === "string" ? " wide" : "";
        return `<div class="field${wide}" data-field="${f.name}"><label for="f-${f.name}">${esc(f.label || f.name)}</label>
          ${inputFor(f)}<div class="help">${esc(f.help)}${f.default != null && f.default !== "" && f.type !== "array" ? ` Default: ${esc(f.default)}.` : ""}</div>
          <div class="field-error" id="err-${f.name}"></div></div>`;
      }).join("");
    }
  }

  function readField(f, el) {
    if (f.type === "boolean") return el.checked;
    const raw = el.value;
    if (f.type === "array" && f.items === "string") return raw.split("\n").map((s) => s.trim()).filter(Boolean);
    if (f.type === "array") {
      return raw.split(/[,\s]+/).filter(Boolean).map((s) => (f.items === "string" ? s : Number(s)));
    }
    if (f.type === "integer" || f.type === "number") {
      // what the browser cannot read as a number ("1,5", "1e") shows as typed but its value is "": not "automatic"
      if (el.validity && el.validity.badInput) return NOT_A_NUMBER;
      if (raw.trim() === "") return f.nullable ? null : raw;
      const n = Number(raw);
      return Number.isFinite(n) ? n : raw; // the server names the field when it is not a number
    }
    return raw;
  }

  function syncFormFromConfig() {
    for (const f of state.recipe.fields) {
      const el = $(`f-${f.name}`);
      if (!el) continue;
      const val = state.config[f.name];
      if (f.type === "boolean") { el.checked = !!val; el.nextElementSibling.textContent = val ? "on" : "off"; }
      else if (f.type === "array" && f.items === "string") el.value = (val || []).join("\n");
      else if (f.type === "array") el.value = (val || []).join(", ");
      else el.value = val == null ? "" : val;
    }
    markPreset(); showApplicable();
  }

  // A field that applies to some settings only (shown_when, e.g. the LoKr factor with network lokr) is hidden
  // otherwise; its value stays in the config, as the server reads it.
  function showApplicable() {
    // a setting a config leaves out (one copied from a job older than the setting) has its default
    const valueOf = (key) => (key in state.config ? state.config[key]
      : (state.recipe.fields.find((f) => f.name === key) || {}).default);
    for (const f of state.recipe.fields) {
      if (!f.shown_when) continue;
      const box = document.querySelector(`[data-field="${f.name}"]`);
      const applies = Object.entries(f.shown_when).every(([key, values]) => values.includes(valueOf(key)));
      if (box) box.hidden = !applies;
    }
  }

  function markPreset() {
    document.querySelectorAll("#presets button").forEach((b) => {
      const preset = state.recipe.presets[b.dataset.preset];
      const match = Object.entries(preset).every(([k, v]) => JSON.stringify(state.config[k]) === JSON.stringify(v));
      b.classList.toggle("active", match);
      b.setAttribute("aria-pressed", String(match));
    });
  }

  function renderPresets() {
    const labels = { "16gb": "16 GB", "24gb": "24 GB", "48gb": "48+ GB" };
    $("presets").innerHTML = Object.keys(state.recipe.presets).map((key) => {
      const tip = Object.entries(state.recipe.presets[key]).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join("\n");
      return `<button type="button" data-preset="${esc(key)}" title="${esc(tip)}">${esc(labels[key] || key)}</button>`;
    }).join("");
  }

  // The settings of `config` this recipe has, and the names of those it has not (a draft kept before the studio was
  // updated, a job copied from an older version): one the form cannot show could never be taken out of the config.
  function known(config) {
    const names = new Set(state.recipe.fields.map((f) => f.name));
    const kept = {}, left = [];
    for (const [key, value] of Object.entries(config || {})) {
      if (names.has(key)) kept[key] = value; else left.push(key);
    }
    return { kept, left };
  }

  return { renderFields, readField, syncFormFromConfig, showApplicable, markPreset, renderPresets, known };
};
