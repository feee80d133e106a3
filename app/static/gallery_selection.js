// The gallery's selection: clicks on tiles (open one, or pick several), Select all, and deleting what is picked.
// gallery.js calls window.gallerySelection once with what it shares: base, state (selecting, selected, images,
// current, total, filter, q, sort, gen) and its functions select, openSheet, reload, confirmDialog and dropDraft;
// it returns updateSelection and deleteNames.
// A function, not an IIFE, as caption_save.js: its body keeps gallery.js's indentation.
window.gallerySelection = function (deps) {
  const { api, toast, plural } = window.studio;
  const $ = (id) => document.getElementById(id);
  const { base, state, select, openSheet, reload, confirmDialog, dropDraft } = deps;

  // ---- grid clicks and selection
  $("grid").addEventListener("click", (ev) => {
    const el = ev.target.closest(".tile");
    if (!el) return;
    const index = Number(el.dataset.index);
    if (state.selecting || ev.shiftKey || ev.ctrlKey || ev.metaKey) {
      const name = el.dataset.name;
      if (state.selected.has(name)) state.selected.delete(name); else state.selected.add(name);
      el.classList.toggle("selected");
      updateSelection();
    } else {
      select(index, false);
      openSheet(true);
    }
  });

  function updateSelection() {
    const n = state.selected.size;
    $("btn-delete-selected").hidden = n === 0;
    $("btn-delete-selected").textContent = `Delete ${n} selected`;
    $("btn-caption-selected").hidden = n === 0;
    $("btn-caption-selected").textContent = `Caption ${n} selected`;
    $("btn-select-all").hidden = !state.selecting || !state.total;
    $("btn-select-all").textContent = `Select all ${state.total}`;
    $("btn-select").textContent = state.selecting ? "Done selecting" : "Select";
    $("grid").classList.toggle("selecting", state.selecting);
  }
  $("btn-select").onclick = () => {
    state.selecting = !state.selecting;
    if (!state.selecting) { state.selected.clear(); $("grid").querySelectorAll(".tile.selected").forEach((t) => t.classList.remove("selected")); }
    updateSelection();
  };
  $("btn-delete-selected").onclick = () => deleteNames([...state.selected]);
  // Every image the filter and search show, the pages not scrolled to yet included: their names come in one
  // request (the rows of 3,000 images came in 20, each drawn as tiles first); a tile drawn later shows as selected.
  $("btn-select-all").onclick = async () => {
    const gen = state.gen;
    let data;
    try {
      data = await api(`${base}/images?${new URLSearchParams({ names: 1, filter: state.filter, q: state.q, sort: state.sort })}`);
    } catch (e) {
      toast(`Could not select all: ${e.message}`, "error");
      return;
    }
    if (gen !== state.gen) return;
    data.names.forEach((name) => state.selected.add(name));
    $("grid").querySelectorAll(".tile").forEach((t) => t.classList.add("selected"));
    updateSelection();
  };

  async function deleteNames(names) {
    if (!names.length) return;
    const what = names.length === 1 ? `“${names[0]}”` : `${names.length} images`;
    if (!(await confirmDialog(`Delete ${what}?`, names.length === 1 ? "The image and its caption move to Recently deleted for a week."
      : "The images and their captions move to Recently deleted for a week."))) return;
    try {
      const result = await api(`${base}/images/delete`, { method: "POST", json: { names } });
      window.ds.offerUndo(result, `Deleted ${plural(result.deleted.length, "image")}.`);
      names.forEach(dropDraft);
      state.selected.clear();
      state.selecting = false;
      updateSelection();
      const next = state.images[state.current + 1];
      reload(next && !names.includes(next.name) ? next.name : null);
    } catch (e) {
      toast(`Delete failed: ${e.message}`, "error");
    }
  }

  return { updateSelection, deleteNames };
};
