// The dataset page's header: name (rename), trigger word, the counts and tabs, and the Remove buttons of flagged
// images. gallery.js calls window.datasetHeader once with what it shares: base, state (meta, filter), reload and
// confirmDialog; it returns refreshStats, which reads the dataset again and redraws all of it.
// A function, not an IIFE, as caption_save.js: its body keeps gallery.js's indentation.
window.datasetHeader = function (deps) {
  const { api, toast, formatBytes, plural } = window.studio;
  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;
  const { base, state, reload, confirmDialog } = deps;

  async function refreshStats() {
    try {
      const d = await api(base);
      state.meta = d;
      $("ds-name").textContent = d.name;
      document.title = `${d.name} · Z-Image Studio`;
      const chip = $("trigger-chip");
      chip.textContent = d.trigger_word || "+ trigger word";
      chip.classList.toggle("unset", !d.trigger_word);
      $("tab-long").hidden = !d.long_captions && state.filter !== "long";
      $("count-long").textContent = d.long_captions || "";
      $("ds-stats").innerHTML = `<b>${d.images}</b> images · <b>${d.captioned}</b> captioned · ${formatBytes(d.bytes)}`;
      // the tabs' counts follow a caption saved or an image cropped or reverted (the grid's load sets them too)
      const counts = { all: d.images, uncaptioned: d.images - d.captioned, flagged: d.flagged };
      for (const [key, n] of Object.entries(counts)) if (n != null) $(`count-${key}`).textContent = n;
      const labels = { duplicates: "duplicate", similar: "near-duplicate", small: "small image", soft: "soft image" };
      $("flag-actions").innerHTML = Object.entries(d.flag_counts || {}).filter(([, n]) => n > 0)
        .map(([kind, n]) => `<button data-remove="${kind}" title="Remove ${plural(n, labels[kind])} in one click">Remove ${plural(n, labels[kind])}</button>`).join(" ");
      // The top bar's Trainer link opens a new job on this dataset's latest export.
      const last = d.last_export;
      if (last) window.studio.linkTool("trainer", `new?dataset=${enc(last.name)}`, `Train a LoRA on ${last.name}`);
      window.ds.onStats && window.ds.onStats(d);
    } catch (e) {
      toast(`Could not load the dataset: ${e.message}`, "error");
    }
  }
  $("flag-actions").addEventListener("click", async (ev) => {
    const b = ev.target.closest("button[data-remove]");
    if (!b) return;
    const labels = { duplicates: "exact duplicates", similar: "near-duplicates", small: "images smaller than 512 px",
      soft: "soft images" };
    const kept = {
      small: "Each image with a short side below 512 px is removed with its caption.",
      soft: "Each image that looks out of focus, blurred or upscaled is removed with its caption: look at them first (Flagged).",
    }[b.dataset.remove] || "The first image of each group is kept.";
    const meta = state.meta || {};
    const every = b.dataset.remove === "small" && meta.images > 0 && (meta.flag_counts || {}).small >= meta.images
      ? ` That is every image in this dataset: a small image still trains, with less detail.` : "";
    if (!(await confirmDialog(`Remove ${labels[b.dataset.remove]}?`, `${kept} They stay in Recently deleted for a week.${every}`))) return;
    try {
      const r = await api(`${base}/images/remove-flagged`, { method: "POST", json: { kind: b.dataset.remove } });
      window.ds.offerUndo(r, `Removed ${plural(r.deleted.length, "image")}.`);
      reload();
    } catch (e) { toast(e.message, "error"); }
  });

  $("ds-name").onclick = () => { $("rename-input").value = state.meta ? state.meta.name : ""; $("rename-error").textContent = ""; $("rename-dialog").showModal(); };
  $("rename-form").onsubmit = async (ev) => {
    ev.preventDefault();
    try { await api(base, { method: "PATCH", json: { name: $("rename-input").value } }); $("rename-dialog").close(); refreshStats(); }
    catch (e) { window.studio.showError($("rename-error"), e, $("rename-input")); }
  };
  $("trigger-chip").onclick = () => { $("trigger-input").value = state.meta ? state.meta.trigger_word : ""; $("trigger-error").textContent = ""; $("trigger-dialog").showModal(); };
  $("trigger-form").onsubmit = async (ev) => {
    ev.preventDefault();
    try { await api(base, { method: "PATCH", json: { trigger_word: $("trigger-input").value } }); $("trigger-dialog").close(); refreshStats(); toast("Trigger word saved.", "ok"); }
    catch (e) { $("trigger-error").textContent = e.message; }
  };
  return { refreshStats };
};
