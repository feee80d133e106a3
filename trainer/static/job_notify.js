// "Notify me" on the job page: a desktop notification when the job ends (completed, failed, stopped or
// interrupted), so a run can be left alone in a background tab. Asked per job and kept in this browser;
// only where the browser allows notifications (a secure page: https, or localhost).
(function () {
  const button = document.getElementById("btn-notify");
  const root = document.getElementById("job-root");
  if (!button || !root) return;
  const jobId = root.dataset.job;
  const KEY = `notify:${jobId}`;
  const ENDED = new Set(["completed", "failed", "stopped", "interrupted"]);
  const usable = "Notification" in window && window.isSecureContext;
  let last = null;

  const wanted = () => { try { return localStorage.getItem(KEY) === "1"; } catch (e) { return false; } };
  const remember = (on) => { try { if (on) localStorage.setItem(KEY, "1"); else localStorage.removeItem(KEY); } catch (e) { /* private mode */ } };

  function draw(job) {
    const active = job && !ENDED.has(job.status);
    button.hidden = !usable || !active;
    const on = wanted() && Notification.permission === "granted";
    button.classList.toggle("active", on);
    button.setAttribute("aria-pressed", String(on));
    button.textContent = on ? "Notifying ✓" : "Notify me";
    button.title = on ? "A desktop notification comes when this job ends; click to turn it off"
      : "Get a desktop notification when this job ends, even with this tab in the background";
  }

  // Called by job.js with every update of the job.
  window.jobNotify = function (job) {
    if (usable && last && !ENDED.has(last) && ENDED.has(job.status) && wanted() && Notification.permission === "granted") {
      const mark = { completed: "✓", failed: "✗" }[job.status] || "■";
      const note = new Notification(`${mark} ${job.name}: ${job.status}`, {
        body: job.error || job.message || "", tag: `job-${jobId}`, icon: "/favicon.ico" });
      note.onclick = () => { window.focus(); note.close(); };
      remember(false);
    }
    last = job.status;
    draw(job);
  };

  button.addEventListener("click", async () => {
    if (wanted() && Notification.permission === "granted") { remember(false); draw({ status: last }); return; }
    const answer = Notification.permission === "granted" ? "granted" : await Notification.requestPermission();
    if (answer === "granted") {
      remember(true);
      window.studio.toast("You will get a notification when this job ends (keep this tab open).", "ok", 5000);
    } else {
      window.studio.toast("The browser blocks notifications for this page; the tab's title shows the progress.", "info", 7000);
    }
    draw({ status: last });
  });
})();
