// "Publish to Hugging Face" on a finished job: a model repo with the LoRA, its model card, the proof grid, the
// workflow and the last previews, uploaded by the pod with its HF_TOKEN; the line under the LoRA follows it.
(function () {
  const $ = (id) => document.getElementById(id);
  const root = $("job-root");
  const button = $("btn-publish");
  const dialog = $("publish-dialog");
  if (!root || !button || !dialog) return;
  const jobId = root.dataset.job;
  const esc = window.trainer.esc;
  let job = null, timer = null;
  // a LoRA's name as a repo name the hub takes (hub_publish.hub_name): no "--" or "..", no '-' or '.' at its ends
  const hubName = (name) => String(name || "").replace(/[^A-Za-z0-9._-]+/g, "-")
    .replace(/[-.]{2,}/g, (run) => (/^\.+$/.test(run) ? "." : "-")).slice(0, 96).replace(/^[-.]+|[-.]+$/g, "") || "lora";

  function show(publish, token) {
    button.disabled = !token;
    button.title = token ? "Upload the LoRA, its model card, the grid, the workflow and the last previews to a model repo"
      : "Set HF_TOKEN (a Hugging Face token with write access) in the pod's environment and restart it to publish";
    const line = $("publish-status");
    line.hidden = !publish;
    if (!publish) return;
    line.className = publish.status === "failed" ? "error-box" : "note-box";
    if (publish.status === "running" && publish.stoppable === false) {  // committing: it can no longer be stopped
      line.textContent = `Publishing to ${publish.repo}: ${publish.message}…`;
    } else if (publish.status === "running") {
      line.textContent = `Publishing to ${publish.repo}: ${publish.message}… `;
      const stop = document.createElement("button");  // nothing is committed until every file is up
      stop.type = "button"; stop.id = "publish-stop"; stop.className = "small"; stop.textContent = "Stop";
      stop.title = "Stop before the next file: nothing is committed, the repo stays as it was";
      stop.onclick = async () => {
        stop.disabled = true;
        try { await window.studio.api(`/api/jobs/${jobId}/publish-hub`, { method: "DELETE" }); refresh(); }
        catch (e) { window.studio.toast(e.message, "error", 6000); }
      };
      line.appendChild(stop);
    } else if (publish.status === "failed") line.textContent = `Publishing to ${publish.repo} failed: ${publish.message}`;
    else if (publish.status === "stopped") line.textContent = `Publishing to ${publish.repo} was stopped: ${publish.message}`;
    else line.innerHTML = `Published to <a href="${esc(publish.url)}" target="_blank" rel="noopener" id="publish-link">` +
      `${esc(publish.repo)}</a>${publish.private ? " (private)" : ""}.` +
      (publish.visibility ? ` <span class="muted">${esc(publish.visibility)}.</span>` : "");
    clearTimeout(timer);
    if (publish.status === "running") timer = setTimeout(refresh, 1500);
  }

  async function refresh() {
    try {
      job = (await window.studio.api(`/api/jobs/${jobId}`)).job;
      button.hidden = job.status !== "completed";
      const state = await window.studio.api(`/api/jobs/${jobId}/publish-hub`);
      show(state.publish, state.token);
    } catch (e) { /* the job page shows the error */ }
  }

  button.addEventListener("click", () => {
    if (!job) return;
    const last = (($("publish-status").hidden ? null : $("publish-link")) || {}).textContent;
    $("publish-repo").value = last || hubName((job.config && job.config.name) || job.id);
    $("publish-error").textContent = "";
    dialog.showModal();
    $("publish-repo").select();
  });
  dialog.querySelector("[data-close]").addEventListener("click", () => dialog.close());
  $("publish-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("publish-start").disabled = true;
    try {
      const body = { repo: $("publish-repo").value.trim(), private: $("publish-private").checked };
      const state = await window.studio.api(`/api/jobs/${jobId}/publish-hub`, { method: "POST", json: body });
      dialog.close();
      show(state.publish, true);
    } catch (e) {
      $("publish-error").textContent = e.message;
    } finally {
      $("publish-start").disabled = false;
    }
  });
  document.addEventListener("trainer:checkpoints", refresh);  // job.js: the run ended (or saved a checkpoint)
  refresh();
})();
