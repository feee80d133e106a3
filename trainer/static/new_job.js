// New job form: built from the recipe's form fields; one config object is the truth for the form and the
// JSON/YAML text view; every change is validated by the server and errors appear next to their field.
(function () {
  const { esc } = trainer;
  const params = new URLSearchParams(location.search);
  const state = { recipe: null, config: {}, format: "json",
    idemKey: crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2), submitting: false,
    datasets: [], taken: new Set(),
    // the trigger word and LoRA name the form filled in itself: a field still holding one follows the dataset
    auto: { trigger: null, name: null } };
  const $ = (id) => document.getElementById(id);
  let textTimer = null, renderSeq = 0, nameSeq = 0, shownPrimary = null;
  // the datasets to train on: one, or a mix with repeats (dataset_mix.js)
  const mix = trainer.datasetMix($("mix"), (picksChanged) => {
    if (!picksChanged) { scheduleValidate(); return; }  // a repeats field: the mix panel updated itself
    paintCards(); followPrimary();
  }, (word) => {  // a preview prompt for a further dataset's concept: the first prompt with its word
    const prompts = state.config.sample_prompts || [];
    const first = prompts.find((text) => text.includes("[trigger]")) || "[trigger] a portrait photo";
    state.config.sample_prompts = [...prompts, first.replace(/\[trigger\]/g, word)];
    syncFormFromConfig(); changed();
  });
  if (params.get("dataset")) mix.only(params.get("dataset"));

  document.getElementById("datasets-link").href = studio.toolUrl("datasets");
  // the server's check of the form shown: errors by their fields, warnings, the estimates (job_check.js)
  const { showReport, runValidate, scheduleValidate } = trainer.jobCheck(state, () => payload(), () => saveDraft());

  // the recipe's fields as inputs, read back and shown again (new_job_fields.js)
  const { renderFields, readField, syncFormFromConfig, showApplicable, markPreset, renderPresets, known } =
    trainer.jobFields(state);

  async function renderText(force = false) {
    const box = $("config-text");
    if (document.activeElement === box && !force) return;
    if (state.format === "json") { box.value = JSON.stringify(state.config, null, 2); return; }
    const seq = ++renderSeq;
    try {
      const { text } = await studio.api("/api/config/render", { method: "POST", json: { config: state.config } });
      if (seq === renderSeq && (force || document.activeElement !== box)) box.value = text; // only the newest answer
    } catch (e) { $("config-text-error").textContent = e.message; }
  }

  function changed() { renderText(); markPreset(); renderMix(); showApplicable(); scheduleValidate(); }
  function renderMix() { mix.render(state.config.trigger_word, state.config.sample_prompts || []); }

  async function loadDatasets() {
    const { datasets } = await studio.api("/api/datasets");
    state.datasets = datasets;
    mix.setKnown(datasets);
    const box = $("datasets");
    if (!datasets.length) {
      box.innerHTML = `<div class="empty">No exported datasets yet. Open the <a href="${studio.toolUrl("datasets")}">dataset
        manager</a>, caption your images and press Export; the dataset then appears here.</div>`;
      return;
    }
    if (!mix.picks.length && datasets.length === 1) mix.only(datasets[0].name);
    box.innerHTML = datasets.map((d) => `<div class="dataset-pick"><button type="button" class="dataset-card"
        data-dataset="${esc(d.name)}" data-trigger="${esc(d.trigger_word)}">
        <strong>${esc(d.name)}</strong>
        <span class="meta">${studio.plural(d.images, "image")} · ${d.captioned} captioned${d.trigger_word ? ` · trigger <span class="chip">${esc(d.trigger_word)}</span>` : ""}</span>
        <div class="thumbs">${d.thumbs.map((t) => `<img loading="lazy" src="${esc(t)}" alt="">`).join("")}</div></button>
        <button type="button" class="dataset-add" data-add="${esc(d.name)}"></button></div>`).join("");
    $("mix-help").hidden = datasets.length < 2;
    paintCards();
  }

  // Which cards are picked; "+ Add" trains on a dataset too, "Remove" no longer (shown once there are several).
  function paintCards() {
    const several = mix.picks.length > 1;
    document.querySelectorAll(".dataset-pick").forEach((pick) => {
      const name = pick.querySelector(".dataset-card").dataset.dataset, picked = mix.has(name);
      pick.querySelector(".dataset-card").classList.toggle("selected", picked);
      pick.querySelector(".dataset-card").setAttribute("aria-pressed", String(picked));  // said, not only drawn
      const add = pick.querySelector(".dataset-add");
      add.textContent = picked ? "Remove" : "+ Add";
      add.title = picked ? "Train without this dataset" : "Train on this dataset too, beside the one picked";
      add.hidden = picked ? !several : !mix.picks.length;
    });
  }

  // A new first dataset fills in its trigger word and a LoRA name; any other change of picks only re-checks.
  function followPrimary() {
    if (mix.primary === shownPrimary) { changed(); return; }
    shownPrimary = mix.primary;
    applyDatasetDefaults();
  }

  function selectDataset(card) {
    mix.only(card.dataset.dataset);
    paintCards(); followPrimary();
  }

  // The form follows the chosen dataset: its trigger word (so "[trigger]" in the sample prompts tests the
  // concept) and a LoRA name derived from it that no job or library file uses yet. A field the user has
  // typed into keeps what they typed.
  async function applyDatasetDefaults() {
    shownPrimary = mix.primary;
    const d = state.datasets.find((x) => x.name === mix.primary);
    if (!d) { changed(); return; }
    const c = state.config;
    if (!c.trigger_word || c.trigger_word === state.auto.trigger) {
      c.trigger_word = d.trigger_word || ""; state.auto.trigger = c.trigger_word;
    }
    syncFormFromConfig();
    if (c.name === state.recipe.defaults.name || c.name === state.auto.name) await suggestName(d.name);
    changed();
  }

  // Asks the trainer for a free LoRA name derived from `base` (my-cat, my-cat-2, ...) and uses it unless
  // the user changed the name meanwhile.
  async function suggestName(base) {
    const seq = ++nameSeq, before = state.config.name;
    try {
      const data = await studio.api(`/api/lora-names?for=${encodeURIComponent(base)}`);
      state.taken = new Set(data.taken);
      if (seq !== nameSeq || state.config.name !== before) return;
      state.config.name = data.suggested; state.auto.name = data.suggested;
      syncFormFromConfig();
    } catch (e) { /* the name stays as it is; validation still checks it */ }
  }

  function payload() {
    const body = { recipe: state.recipe.name, ...mix.payload(), config: state.config };
    const name = $("f-job-name").value.trim(), hook = $("f-webhook").value.trim();
    if (name) body.name = name;
    if (hook) body.webhook_url = hook;
    else if (state.webhookFrom) body.webhook_from = state.webhookFrom;  // the copied job's (its token not shown)
    return body;
  }

  // The filled form is kept in this tab as it changes (new_job_draft.js); starting the job ends it
  const draftStore = trainer.formDraft(`new-job-draft:${location.pathname}${location.search}`);
  function saveDraft() {
    if (!state.recipe || state.restoring) return;
    draftStore.save({ recipe: state.recipe.name, config: state.config, picks: mix.picks, name: $("f-job-name").value,
      webhook: $("f-webhook").value, webhookFrom: state.webhookFrom || null, auto: state.auto });
  }
  function restoreDraft(draft) {
    state.config = { ...state.config, ...keptSettings(draft.config, "Your earlier settings") };
    state.auto = draft.auto || state.auto;
    if (draft.picks && draft.picks.length) { mix.set(draft.picks); shownPrimary = mix.primary; }
    $("f-job-name").value = draft.name || "";
    $("f-webhook").value = draft.webhook || "";
    if (state.webhookFrom && !draft.webhookFrom && $("f-webhook-drop")) $("f-webhook-drop").click();
    syncFormFromConfig(); paintCards(); renderText(true); changed();
  }

  // A draft or a copied job from before the studio was updated may hold a setting the recipe no longer has: left out
  // and said, instead of an error the form could not clear.
  function keptSettings(config, whose) {
    const { kept, left } = known(config);
    if (left.length) {
      studio.toast(`${whose} had ${left.length === 1 ? "a setting" : "settings"} this trainer no longer has, left out: ` +
        `${left.slice(0, 5).join(", ")}${left.length > 5 ? ", …" : ""}.`, "info", 10000);
    }
    return kept;
  }

  // The text view's settings go over the form's: an ai-toolkit config states some of them, and a setting left out of
  // the studio's own text keeps the form's value (the text shows it again once you leave it). While the text does
  // not read, Start waits: it would start the form's settings, not the ones typed.
  function applyText() {
    clearTimeout(textTimer); textTimer = null;
    state.applying = readText($("config-text").value);
    return state.applying;
  }
  async function readText(text) {
    try {
      const answer = await trainer.configText.read(text, state.format);
      const partial = state.recipe.fields.some((f) => f.name in state.config && !(f.name in answer.config));
      // a setting the recipe does not have (a misspelt key) stays only while the text states it: taken out of the
      // text, it is gone, and the form can start again
      state.config = { ...known(state.config).kept, ...answer.config };
      setTextProblem("");
      trainer.configText.show(answer);
      syncFormFromConfig(); scheduleValidate();
      if (answer.from) { renderText(true); markPreset(); renderMix(); } else if (partial) renderText();
    } catch (e) { setTextProblem(e.message); }
  }
  function setTextProblem(message) {
    $("config-text-error").textContent = message;
    state.textProblem = message;
    $("start").disabled = state.submitting || state.reportErrors || !!message;
    $("start-note").textContent = message ? "The text view does not read: fix it (or undo the change) to start." : "";
  }
  document.addEventListener("config:file", (e) => {  // a config file opened into the text view
    state.format = e.detail.format;
    document.querySelectorAll("[data-format]").forEach((b) => b.classList.toggle("active", b.dataset.format === state.format));
    applyText();
  });

  // the same Idempotency-Key goes with the next press: a job the trainer queued before its answer was lost is not
  // queued a second time
  const UNSURE = (what) => `${what}, so the job may or may not be queued. Press Start again: it is not queued twice.`;
  async function submit(e) {
    e.preventDefault();
    if (state.submitting) return;
    // what was just typed in the text view counts (its blur may be reading it now)
    await (textTimer || document.activeElement === $("config-text") ? applyText() : state.applying);
    if (state.textProblem) { $("config-text").focus(); return; }
    state.submitting = true; $("start").disabled = true; $("start-note").textContent = "Checking…";
    try {
      let res, data = null;
      try {
        res = await fetch("/api/jobs", { method: "POST", headers: { "Content-Type": "application/json",
          "Idempotency-Key": state.idemKey }, body: JSON.stringify(payload()) });
      } catch (e) { throw new Error(UNSURE("The trainer did not answer")); }
      try { data = await res.json(); } catch (e) { /* a proxy's error page (502, 524), not the trainer's answer */ }
      if (!res.ok || !data) {
        if (data && data.details) showReport({ errors: data.details, warnings: [] });
        throw new Error(data && data.error ? data.error : UNSURE(`The trainer answered ${res.status}`));
      }
      $("start-note").textContent = data.created ? "Queued. Opening the job…" : "Already queued. Opening the job…";
      state.idemKey = crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2); // next job is new
      draftStore.drop();
      location.href = `/jobs/${data.job.id}${data.created ? "" : "?again=1"}`;  // its page says no second one was made
    } catch (err) {
      studio.toast(err.message, "error", 7000); $("start-note").textContent = "";
      state.submitting = false; $("start").disabled = false;
    }
  }

  // the copied job's webhook is kept unless another is typed, or this button leaves it out (then, as for any job
  // with the field empty, the pod's WEBHOOK_URL is told, when it has one)
  function dropCopiedWebhook(emptyPlaceholder) {
    const drop = document.createElement("button");
    drop.type = "button";
    drop.id = "f-webhook-drop";
    drop.className = "small";
    drop.textContent = "Don't send to it";
    drop.onclick = () => {
      state.webhookFrom = null;
      $("f-webhook").placeholder = emptyPlaceholder;
      drop.remove();
      scheduleValidate();
    };
    $("f-webhook").after(drop);
  }

  async function init() {
    const draft = draftStore.read();  // before the form's own defaults are kept as the draft
    state.restoring = true;
    const { recipes, default: def } = await studio.api("/api/recipes");
    state.recipe = recipes.find((r) => r.name === (params.get("recipe") || def)) || recipes[0];
    // the form's field order, so the JSON/YAML view reads like the form
    state.config = {};
    for (const f of state.recipe.fields) state.config[f.name] = JSON.parse(JSON.stringify(state.recipe.defaults[f.name]));
    $("recipe-title").textContent = `${state.recipe.title}: ${state.recipe.description}`;
    const from = params.get("from");
    if (from) {
      try {
        const { job } = await studio.api(`/api/jobs/${encodeURIComponent(from)}`);
        Object.assign(state.config, keptSettings(job.config, "The copied job"));
        mix.fromJob(job); shownPrimary = mix.primary;
        $("f-job-name").value = `${job.name} (copy)`;
        if (job.webhook_set) {  // its address holds a token the page is not shown: left empty, the copy keeps it
          state.webhookFrom = job.id;
          dropCopiedWebhook($("f-webhook").placeholder);
          $("f-webhook").placeholder = `${job.webhook_url} (the copied job's; type another to change it)`;
        }
      } catch (err) { studio.toast(`Could not copy that job: ${err.message}`, "error"); }
    }
    // the library's "Train further": a new job that goes on from that LoRA
    if (params.get("start")) state.config.init_lora = params.get("start");
    // Express's "Train again keeping other people": the same job with preserve_class
    if (params.get("preserve_class")) state.config.preserve_class = params.get("preserve_class");
    renderPresets(); renderFields(); markPreset(); showApplicable();
    if (state.config.init_lora || params.get("preserve_class")) $("advanced").open = true;
    trainer.startLora(() => state.config, () => { syncFormFromConfig(); changed(); });
    trainer.variants({ recipe: state.recipe, config: () => state.config, payload });
    await loadDatasets();
    if (from) await suggestName(state.config.name);  // a copy needs a LoRA name of its own
    else await applyDatasetDefaults();  // the dataset from ?dataset=, or the only one
    state.restoring = false;
    renderText(); renderMix(); runValidate();
    if (draft && state.recipe && draft.recipe === state.recipe.name) draftStore.offer(draft, restoreDraft);
  }

  document.addEventListener("input", (e) => {
    const el = e.target;
    if (el.id === "config-text") { clearTimeout(textTimer); textTimer = setTimeout(applyText, 500); return; }
    if (el.id === "f-job-name" || el.id === "f-webhook") { scheduleValidate(); return; }
    const name = el.name && state.recipe && state.recipe.fields.find((f) => f.name === el.name);
    if (!name) return;
    const before = state.config[name.name];
    state.config[name.name] = readField(name, el);
    if (name.type === "boolean") el.nextElementSibling.textContent = el.checked ? "on" : "off";
    if (name.name === "optimizer") followOptimizer(before, state.config.optimizer);
    changed();
  });

  // Prodigy's learning rate multiplies the step size it finds (1), AdamW's is the step size (1e-4): switching
  // between them takes the other's usual rate along, unless the rate was changed by hand.
  function followOptimizer(before, after) {
    const rate = state.recipe.fields.find((f) => f.name === "learning_rate").default;
    const usual = (opt) => (opt === "prodigy" ? 1 : rate);
    if ((before === "prodigy") === (after === "prodigy") || state.config.learning_rate !== usual(before)) return;
    state.config.learning_rate = usual(after);
    syncFormFromConfig();
    studio.toast(`Learning rate set to ${usual(after)}, the usual one for ${after === "prodigy" ? "Prodigy" : "AdamW"}.`,
      "ok", 3000);
  }
  document.addEventListener("click", (e) => {
    const card = e.target.closest(".dataset-card");
    if (card) { selectDataset(card); return; }
    const add = e.target.closest("[data-add]");
    if (add) { mix.toggle(add.dataset.add); paintCards(); followPrimary(); return; }
    if (e.target.id === "use-steps") {
      state.config.steps = Number(e.target.dataset.steps); syncFormFromConfig(); changed(); return;
    }
    const useName = e.target.closest("[data-use-name]");
    if (useName) { state.config.name = useName.dataset.useName; syncFormFromConfig(); changed(); return; }
    const preset = e.target.closest("[data-preset]");
    if (preset) {
      Object.assign(state.config, JSON.parse(JSON.stringify(state.recipe.presets[preset.dataset.preset])));
      syncFormFromConfig(); changed(); studio.toast(`Applied the ${preset.textContent} preset.`, "ok", 2000); return;
    }
    const tab = e.target.closest("[data-format]");
    if (tab) {
      state.format = tab.dataset.format; setTextProblem("");
      document.querySelectorAll("[data-format]").forEach((b) => b.classList.toggle("active", b === tab));
      renderText();
    }
  });
  $("config-text").addEventListener("blur", () => applyText());
  $("job-form").addEventListener("submit", submit);
  document.addEventListener("keydown", (e) => {  // Ctrl/Cmd+Enter starts from anywhere in the form
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && !$("start").disabled) $("job-form").requestSubmit();
  });
  init().catch((e) => studio.toast(e.message, "error", 8000));
})();
