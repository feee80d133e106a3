// "Stop the pod when ... is done": on a RunPod pod, stop it by itself a minute after the last job ends (the
// trainer's worker does it), so a long run can be left overnight. One choice for the whole pod, kept in the
// workspace: the dashboard, a job's page and an Express run show the same one.
(function () {
  // `label` holds the `box` checkbox; `paths`: {get, put} of the service the page talks to (the GET answers
  // {on_runpod, auto_stop}, the PUT takes {on}). Returns load(state?): shows the choice (fetching it unless given).
  window.studio.podChoice = function (label, box, paths, said) {
    const { api, toast } = window.studio;
    async function load(state) {
      try {
        const pod = state || await api(paths.get);
        label.hidden = !pod.on_runpod;
        box.checked = !!pod.auto_stop;
      } catch (e) { /* the choice stays hidden */ }
    }
    box.addEventListener("change", async () => {
      const on = box.checked;
      try {
        await api(paths.put, { method: "PUT", json: { on } });
        toast(on ? said : "The pod keeps running when the work is done.", "ok");
      } catch (err) {
        box.checked = !on;
        toast(err.message, "error", 7000);
      }
    });
    return load;
  };
})();
