// "Train more steps" on a completed job: the same job goes on from its final checkpoint, asked in a dialog
// that says where it goes and about how long that takes at the job's last measured speed.
(function () {
  const $ = (id) => document.getElementById(id);
  const root = $("job-root");
  const button = $("btn-continue");
  const dialog = $("continue-dialog");
  if (!root || !button || !dialog) return;
  const jobId = root.dataset.job;
  let job = null;

  // the job as it is now (the job page shows or hides the button with each update it gets)
  async function refresh() {
    try {
      job = (await window.studio.api(`/api/jobs/${jobId}`)).job;
    } catch (e) { /* the job page shows the error */ }
  }

  function more() {
    const value = Number($("continue-steps").value);
    return Number.isInteger(value) && value >= 1 && value <= 1000000 ? value : null;
  }

  function plan() {
    const steps = more();
    $("continue-start").disabled = steps === null;
    if (steps === null) { $("continue-plan").textContent = "A whole number of steps, 1 or more."; return; }
    const to = `From step ${job.step} to ${job.step + steps}`;
    $("continue-plan").textContent = job.it_per_s
      ? `${to}: about ${window.studio.formatDuration(steps / job.it_per_s)} of training at its last speed ` +
        `(${job.it_per_s.toFixed(2)} it/s), plus previews and checkpoints.`
      : `${to}.`;
  }

  button.addEventListener("click", async () => {
    await refresh();
    if (!job || job.status !== "completed") return;
    $("continue-from").textContent = job.step;
    $("continue-steps").value = String(Math.max(100, Math.round((job.step || 1000) / 2 / 50) * 50));
    $("continue-error").textContent = "";
    plan();
    dialog.showModal();
    $("continue-steps").select();
  });
  $("continue-steps").addEventListener("input", plan);
  dialog.querySelector("[data-close]").addEventListener("click", () => dialog.close());
  $("continue-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const steps = more();
    if (steps === null) return;
    $("continue-start").disabled = true;
    try {
      await window.studio.api(`/api/jobs/${jobId}/continue`, { method: "POST", json: { more_steps: steps } });
      dialog.close();
      window.studio.toast(`Training ${steps} more steps.`, "ok");
      button.hidden = true;
    } catch (e) {
      $("continue-error").textContent = e.message;
    } finally {
      $("continue-start").disabled = false;
    }
  });
})();
