// "Train more steps" on a completed job: the same job goes on from its final checkpoint.
(function () {
  const root = document.getElementById("job-root");
  const button = document.getElementById("btn-continue");
  if (!root || !button) return;
  const jobId = root.dataset.job;
  async function refresh() {
    try {
      const { job } = await window.studio.api(`/api/jobs/${jobId}`);
      button.hidden = job.status !== "completed";
      button.dataset.step = job.step;
    } catch (e) { /* the job page shows the error */ }
  }
  button.addEventListener("click", async () => {
    const answer = window.prompt("How many more steps?", String(Math.max(100, Math.round((Number(button.dataset.step) || 1000) / 2))));
    if (answer === null) return;
    const more = parseInt(answer, 10);
    try {
      await window.studio.api(`/api/jobs/${jobId}/continue`, { method: "POST", json: { more_steps: more } });
      window.studio.toast(`Continuing for ${more} more steps.`, "ok");
      button.hidden = true;
    } catch (e) { window.studio.toast(e.message, "error", 7000); }
  });
  refresh();
  setInterval(() => { if (!document.hidden) refresh(); }, 5000);
})();
