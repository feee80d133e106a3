// The new job form's check, shown: the server's errors next to their fields and listed with the form's labels,
// its warnings (a LoRA name taken, with a free one to use), and the estimates of time, cost, memory and disk.
// new_job.js calls trainer.jobCheck once with its state (recipe, config, taken, submitting, textProblem), the form's
// request (`payload()`) and what to do on every change (`changing()`: keep the draft).
trainer.jobCheck = function (state, payload, changing) {
  const { esc } = trainer;
  const $ = (id) => document.getElementById(id);
  let validateTimer = null, validateSeq = 0;

  function freeName(base) {
    for (let n = 2; ; n++) {
      const candidate = `${base.slice(0, 79 - String(n).length)}-${n}`;
      if (!state.taken.has(candidate.toLowerCase())) return candidate;
    }
  }

  // What the estimate is based on, said next to it: a CPU or demo-model guess is not a GPU pod's time.
  function showEstimate(report) {
    const kind = { cpu: "CPU", demo: "demo" }[report.estimate_device];
    // and what that time costs on this machine (not for the demo model's guess)
    const price = report.estimate_device === "demo" ? null : trainer.jobCost(report.estimated_duration_s, report.price);
    $("est-time").innerHTML = report.estimated_duration_s == null ? "–"
      : `≈ ${esc(studio.formatDuration(report.estimated_duration_s))}${kind ? ` <span class="chip est-kind">${kind}</span>` : ""}` +
        (price ? ` <span class="est-cost" title="At ${esc(trainer.perHour(report.price))}">≈ ${esc(price)}</span>` : "");
    $("est-device").textContent = report.estimated_duration_s == null
      ? ((report.errors || []).length ? "No estimate while a setting above is invalid." : "")
      : report.estimate_device === "demo"
      ? "Demo estimate: the tiny demo model on this machine's CPU, not the real model on a GPU pod."
      : report.estimate_device === "cpu"
        ? "CPU estimate: no GPU was found, so this is the CPU's time; a GPU pod takes a small fraction of it."
        : report.device ? `Estimates for ${report.device}; rough, for planning.` : "";
    if (report.estimated_disk_gb) {  // the kept checkpoints dominate: keep_last x (LoRA + optimizer state)
      $("est-device").textContent += ` On disk it takes up to ${studio.formatBytes(report.estimated_disk_gb * 1e9)} ` +
        "(kept checkpoints, the LoRA, previews).";
    }
    const steps = report.suggested_steps;
    const offer = steps && report.images && steps !== state.config.steps;
    $("steps-hint").hidden = !offer;
    if (!offer) return;
    $("steps-hint-text").textContent = `For ${studio.plural(report.images, "image")} the recipe suggests ${steps} steps.`;
    $("use-steps").textContent = `Use ${steps} steps`;
    $("use-steps").dataset.steps = steps;
  }

  function showReport(report) {
    // the fields' own slots only: the variants' note says its server's answer until its values change
    document.querySelectorAll(".field-error[id^='err-']").forEach((el) => { el.textContent = ""; });
    document.querySelectorAll(".field.invalid").forEach((el) => el.classList.remove("invalid"));
    const general = [];
    for (const err of report.errors || []) {
      const slot = $(`err-${err.field}`);
      if (slot) {
        slot.textContent = slot.textContent ? `${slot.textContent} ${err.message}` : err.message;
        const field = slot.closest(".field"); if (field) field.classList.add("invalid");
        if (field && field.closest("#advanced")) $("advanced").open = true;
      }
      // the field as the form labels it ("Learning rate"), its key for one the form does not show
      const known = err.field && state.recipe && state.recipe.fields.find((f) => f.name === err.field);
      const label = known ? known.label || known.name : { dataset: "Dataset", datasets: "Datasets", name: "Name", job_name: "Job name",
        webhook_url: "Webhook URL", init_lora: "Start from LoRA", model: "Model" }[err.field] || err.field;
      general.push(`<li class="err">${err.field ? `<strong>${esc(label)}</strong>: ` : ""}${esc(err.message)}</li>`);
    }
    const lora = String(state.config.name || "");
    const nameTaken = lora && state.taken.has(lora.toLowerCase());  // said below, with a button for a free name
    for (const w of report.warnings || []) {
      if (!(nameTaken && w.field === "name")) general.push(`<li class="warn">${esc(w.message)}</li>`);
    }
    if (nameTaken) {
      const free = freeName(lora);
      general.push(`<li class="warn" id="name-taken">A LoRA named ${esc(lora)} exists already, so this one would be saved
        as ${esc(lora)}-&lt;job id&gt;.safetensors.<button type="button" data-use-name="${esc(free)}">Use ${esc(free)}</button></li>`);
    }
    $("problems").innerHTML = general.join("");
    showEstimate(report);
    $("est-mem").textContent = report.estimated_memory_gb != null ? `≈ ${report.estimated_memory_gb} GB` : "–";
    $("est-images").textContent = report.images || "–";
    state.reportErrors = (report.errors || []).length > 0;
    $("start").disabled = state.submitting || state.reportErrors || !!state.textProblem;
  }

  // ?report=1 asks for the check as a report (200 with ok false when a setting is invalid): a form being filled in
  // is not a run of failed requests in the console. A server that answers 422 instead is read the same way.
  // A check that got no report (the trainer restarting, the proxy's 502 or 524) blocks nothing: it is said, tried
  // again shortly, and Start still has the server check the settings.
  async function runValidate() {
    const seq = ++validateSeq;
    let report;
    clearTimeout(state.recheckTimer);
    try { report = await studio.api("/api/jobs/validate?report=1", { method: "POST", json: payload() }); }
    catch (e) {
      if (e.data && e.data.errors) report = e.data;
      else {
        if (seq !== validateSeq) return null;
        delete $("job-form").dataset.checking;
        if (refused(e)) { showRefused(e); return null; }  // the same request would be refused again
        showUnchecked(e);
        state.recheckTimer = setTimeout(runValidate, 5000);
        return null;
      }
    }
    if (seq === validateSeq) { showReport(report); delete $("job-form").dataset.checking; }
    return report;
  }
  // a 4xx with a sentence (413: the settings text is too large) is about the request itself: said, not retried
  function refused(err) {
    return err.status >= 400 && err.status < 500 && ![401, 408, 429].includes(err.status) && !!(err.data && err.data.error);
  }
  function showRefused(err) {
    $("problems").innerHTML = `<li class="err" id="check-refused">${esc(err.data.error)}</li>`;
    state.reportErrors = true;
    $("start").disabled = true;
  }
  function showUnchecked(err) {
    const why = err.data && err.data.error ? err.data.error
      : err.status ? `the trainer answered ${err.status}` : "the trainer did not answer";
    $("problems").innerHTML = `<li class="warn" id="check-unreached">Could not check these settings (${esc(why)}); trying
      again. Start still checks them before anything is queued.</li>`;
    state.reportErrors = false;
    $("start").disabled = state.submitting || !!state.textProblem;
  }

  // while a change waits for the server's answer, the estimate is marked as not yet up to date
  function scheduleValidate() {
    changing();
    $("job-form").dataset.checking = "1";
    clearTimeout(validateTimer); validateTimer = setTimeout(runValidate, 350);
  }

  return { showReport, runValidate, scheduleValidate };
};
