// "Stop the pod when ... is done": on a RunPod pod, stop it by itself a minute after the last job ends (the
// trainer's worker does it), so a long run can be left overnight. One choice for the whole pod, kept in the
// workspace: the dashboard, a job's page and an Express run show the same one. While the choice is on, the page
// asks again every few seconds, and once the stop is near (the state's stops_in_s) it counts down beside the choice:
// someone still at the page (downloading the LoRA) sees it coming, and unticking it keeps the pod running.
(function () {
  const ASK_EVERY_MS = 10_000;
  // `label` holds the `box` checkbox; `paths`: {get, put} of the service the page talks to (the GET answers
  // {on_runpod, auto_stop, stops_in_s?}, the PUT takes {on}). Returns load(state?): shows the choice (fetching it
  // unless given).
  window.studio.podChoice = function (label, box, paths, said) {
    const { api, toast } = window.studio;
    const note = document.createElement("span");
    note.className = "muted pod-stop-countdown";
    note.setAttribute("role", "status");
    note.hidden = true;
    label.after(note);
    let ticker = null, asking = null;

    function countdown(seconds) {
      clearInterval(ticker);
      ticker = null;
      if (seconds == null || !box.checked || label.hidden) { note.hidden = true; return; }
      const until = Date.now() + seconds * 1000;
      const tick = () => {
        const left = Math.max(0, Math.round((until - Date.now()) / 1000));
        note.textContent = left > 0 ? ` The pod stops in ${left} s: untick to keep it running.`
          : " The pod is stopping now: untick to keep it running.";
        if (!left) { clearInterval(ticker); ticker = null; }
      };
      note.hidden = false;
      tick();
      ticker = setInterval(tick, 1000);
    }
    function show(pod) {
      label.hidden = !pod.on_runpod;
      box.checked = !!pod.auto_stop;
      countdown(pod.stops_in_s);
      clearTimeout(asking);  // while it is on, ask again: the stop comes a minute after the last job, page or not
      asking = pod.on_runpod && pod.auto_stop ? setTimeout(() => load(), ASK_EVERY_MS) : null;
    }
    async function load(state) {
      try {
        show(state || await api(paths.get));
      } catch (e) {  // the choice stays as it was shown; while it is on, asked again (a moment without an answer)
        clearTimeout(asking);
        asking = box.checked && !label.hidden ? setTimeout(() => load(), ASK_EVERY_MS) : null;
      }
    }
    box.addEventListener("change", async () => {
      const on = box.checked;
      try {
        show(await api(paths.put, { method: "PUT", json: { on } }));
        toast(on ? said : "The pod keeps running when the work is done.", "ok");
      } catch (err) {
        box.checked = !on;
        toast(err.message, "error", 7000);
      }
    });
    return load;
  };
})();
