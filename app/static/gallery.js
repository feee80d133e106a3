// Gallery: paged grid (its tiles in gallery_tiles.js), preview + caption editor (its saving in caption_save.js), filters,
// keys; the selection and deleting in gallery_selection.js.
(function () {
  const { api, toast, formatBytes } = window.studio;
  const $ = (id) => document.getElementById(id);
  const page = JSON.parse($("page-data").textContent);
  const base = `/api/datasets/${encodeURIComponent(page.id)}`;
  const PAGE_SIZE = 150;

  const state = {
    filter: "all", q: "", sort: "name", images: [], total: 0, loading: false, gen: 0,
    current: -1, selecting: false, selected: new Set(), dirty: false, saving: null, saveTimer: null,
    meta: null,
  };

  const esc = window.studio.esc;
  const CAPTION_MAX = 10000;  // as app/captions.py CAPTION_MAX: the server refuses a longer caption

  // The tiles (a far one keeps no picture until it comes near again): gallery_tiles.js.
  const { tile, refreshTile, forget, thumbUrl, imageUrl, smallText, SOFT_TEXT } = window.galleryTiles({ base, state });
  const indexOf = (name) => state.images.findIndex((img) => img.name === name);
  const showing = (name) => (state.images[state.current] || {}).name === name;

  async function loadMore() {
    if (state.loading || (state.images.length >= state.total && state.images.length)) return;
    state.loading = true;
    const gen = state.gen;
    $("more").textContent = "Loading…";
    try {
      const params = new URLSearchParams({ offset: state.images.length, limit: PAGE_SIZE, filter: state.filter, q: state.q,
        sort: state.sort });
      const data = await api(`${base}/images?${params}`);
      if (gen !== state.gen) return;
      const start = state.images.length;
      state.images.push(...data.images);
      state.total = data.total;
      updateSelection();  // "Select all N" follows a delete, a filter or a search
      const frag = document.createDocumentFragment();
      data.images.forEach((img, i) => frag.appendChild(tile(img, start + i)));
      $("grid").appendChild(frag);
      for (const key of ["all", "uncaptioned", "flagged"]) $(`count-${key}`).textContent = data.counts[key];
      $("empty").hidden = !(data.counts.all === 0);
      if (!state.images.length) showEditor(false);
    } catch (e) {
      toast(`Could not load images: ${e.message}`, "error");
    } finally {
      if (gen === state.gen) {
        state.loading = false;
        const left = state.total - state.images.length;
        $("more").textContent = left > 0 ? `${left} more…` : state.total ? `${state.total} image${state.total === 1 ? "" : "s"}` : (state.filter !== "all" || state.q ? "Nothing matches." : "");
        if (left > 0 && isVisible($("sentinel"))) loadMore();
      }
    }
  }

  function isVisible(el) {
    const r = el.getBoundingClientRect();
    return r.top < window.innerHeight + 600;
  }

  async function reload(keepName) {
    await flushSave();
    const name = keepName || (state.images[state.current] || {}).name;
    const gen = ++state.gen;
    state.images = [];
    state.total = 0;
    state.loading = false;
    state.current = -1;
    forget();
    $("grid").replaceChildren();
    refreshStats();  // beside the first page of images, not after it: one round trip less before the page is whole
    await loadMore();
    if (gen !== state.gen) return;
    if (state.images.length) select(Math.max(0, name ? indexOf(name) : 0), false);
  }

  // Fresh rows for the images on show, written in place: the grid keeps its order, scroll position and selection,
  // and the caption box what is being typed (an auto-caption run calls this every few images).
  async function refresh() {
    const gen = state.gen;
    const left = new Map(state.images.map((img, i) => [img.name, i]));
    try {
      // every image, in the gallery's order: a filtered view's images may no longer match its filter
      // unfiltered, the images on show are the first rows: only as many are asked for (150 rows, not 500)
      const limit = state.filter === "all" && !state.q ? Math.min(500, Math.max(1, left.size)) : 500;
      for (let offset = 0; left.size;) {
        const data = await api(`${base}/images?${new URLSearchParams({ offset, limit, sort: state.sort })}`);
        if (gen !== state.gen) return;
        for (const row of data.images) {
          if (left.has(row.name)) { updateRow(left.get(row.name), row); left.delete(row.name); }
        }
        for (const key of ["all", "uncaptioned", "flagged"]) $(`count-${key}`).textContent = data.counts[key];
        offset += data.images.length;
        if (!data.images.length || offset >= data.total) break;
      }
    } catch (e) {
      toast(`Could not refresh the images: ${e.message}`, "error");
    }
    await refreshStats();  // so a caller that waits has the counts too
  }

  const PICTURE_KEYS = ["width", "height", "bytes", "flags", "rev", "edits", "original_size"];
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  function updateRow(index, row) {
    const img = state.images[index];
    const current = index === state.current;
    // a caption being typed or saved keeps its text and the version it started from: a save meets a change
    // made meanwhile as a conflict, never overwrites it unseen
    const typing = current && (state.dirty || state.saving || document.activeElement === $("caption"));
    const keys = Object.keys(row).filter((key) => !(typing && ["caption", "has_caption", "version"].includes(key)));
    const changed = keys.filter((key) => !same(img[key], row[key]));
    if (!changed.length) return;
    for (const key of changed) img[key] = row[key];
    refreshTile(index);
    if (!current) return;
    if (changed.some((key) => PICTURE_KEYS.includes(key))) showPicture(img);
    if (!typing && !hasDraft(img.name) && changed.includes("caption")) {
      $("caption").value = img.caption;
      showCount(img.caption);
      setSaveState("saved", img.caption ? "Saved" : "");
    }
  }

  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) loadMore();
  }, { rootMargin: "600px" }).observe($("sentinel"));
  // The observer tells only a change: a page drawn and the window sent to the new end before it looked (End, a fling)
  // leaves the sentinel in view as it was, and no more pages came. A scroll that ends near it asks too.
  window.addEventListener("scroll", () => {
    if (!state.loading && state.images.length < state.total && isVisible($("sentinel"))) loadMore();
  }, { passive: true });

  // ---- editor
  // On a phone the editor sits below a long grid: a tap opens it as a full-screen sheet instead, and
  // closing the sheet returns to the same place in the grid.
  const narrow = window.matchMedia("(max-width: 900px)");
  function showEditor(show) {
    if (!show) openSheet(false);
    $("editor").hidden = !show;
  }
  function openSheet(open) {
    // the keyboard leaves the editor's controls as they go out of sight: back to the grid, not the page's start
    if (!open && $("editor").contains(document.activeElement)) $("grid").focus({ preventScroll: true });
    document.body.classList.toggle("editor-open", open && narrow.matches);
    if (open && narrow.matches) $("editor").scrollTop = 0;
  }
  $("ed-close").onclick = () => { flushSave(); openSheet(false); };
  narrow.addEventListener("change", () => { if (!narrow.matches) openSheet(false); });

  // Words and estimated tokens (as the trainer's check counts them); over what the text encoder reads, it says so.
  const CAPTION_TOKENS = 512;
  function showCount(text) {
    const words = (text.match(/\S+/g) || []).length;
    const tokens = Math.ceil((text.match(/\w+|[^\w\s]/g) || []).length * 1.25);
    const over = tokens > CAPTION_TOKENS - 12;
    const el = $("ed-count");
    // near the limit the box stops taking more (maxlength): the count says why
    const full = text.length > CAPTION_MAX * 0.9;
    el.textContent = `${words} word${words === 1 ? "" : "s"} · ~${tokens} tokens` + (over ? ` · over the ${CAPTION_TOKENS} the text encoder reads: the end is cut off` : "")
      + (full ? ` · ${text.length.toLocaleString("en")} of ${CAPTION_MAX.toLocaleString("en")} characters` : "");
    el.classList.toggle("over", over || text.length > CAPTION_MAX);
  }

  function setSaveState(kind, text) {
    const el = $("save-state");
    el.className = `save-state ${kind}`;
    if (el.textContent !== text) el.textContent = text;  // a live region: each keystroke's "Editing…" is said once
  }

  // The picture and what is known of it (size, edits, flags): on select, and again after an edit.
  function showPicture(img) {
    $("preview-img").src = imageUrl(img.name, img.rev);
    $("preview-img").alt = img.name;
    $("ed-name").textContent = img.name;
    $("ed-size").textContent = `${img.width}×${img.height} · ${formatBytes(img.bytes)}${img.edits && img.edits.length ? ` · ${img.edits.join(", ")}` : ""}`;
    const flags = [];
    if (img.flags.duplicate_of) flags.push(`Exact duplicate of ${esc(img.flags.duplicate_of)}`);
    if (img.flags.similar_to) flags.push(`Looks like ${esc(img.flags.similar_to)}`);
    if (img.flags.small) flags.push(`Small: ${esc(smallText(img))} on the short side; a larger image trains better`);
    if (img.flags.soft) flags.push(`${SOFT_TEXT} (sharpness ${img.flags.soft.sharpness}, below ${img.flags.soft.below}); a crop of its sharpest part may do`);
    $("ed-flags").innerHTML = flags.map((f) => `<span class="chip" style="background:#4a3a14;color:#ffd98a">${f}</span>`).join(" ");
    if (window.ds.onPicture) window.ds.onPicture(img);
  }

  function select(index, scroll = true) {
    if (index < 0 || index >= state.images.length) return;
    const img = state.images[index];
    // the same image again (a reload): what is being typed stays, and its autosave is still on its way
    const keepText = img.name === state.editing && state.dirty;
    if (!keepText) flushSave();
    const grid = $("grid");
    grid.querySelectorAll(".tile.current").forEach((t) => t.classList.remove("current"));
    state.current = index;
    const el = grid.querySelector(`.tile[data-index="${index}"]`);
    if (el) {
      el.classList.add("current");
      if (scroll) el.scrollIntoView({ block: "nearest", behavior: "smooth" });
    }
    showEditor(true);
    showPicture(img);
    $("ed-pos").textContent = `${index + 1} / ${state.total}`;
    if (!keepText) {
      const draft = draftOf(img.name);
      state.editing = img.name;
      $("ed-conflict").hidden = true;
      $("caption").value = draft ? draft.text : img.caption;
      showCount($("caption").value);
      setSaveState("saved", img.caption ? "Saved" : "");
      state.dirty = false;
      if (draft) showDraft(img);
    }
    if (!narrow.matches) keepCaptionInView();
    if (index >= state.images.length - 5) loadMore();
  }

  // An image the server changed (an edit, or what another tab did): its tile, and the editor when it shows it.
  // Only the picture's fields: its caption may have an edit on its way.
  function updateImage(row) {
    const index = state.images.findIndex((img) => img.name === row.name);
    if (index < 0) return;
    const img = state.images[index];
    for (const key of ["width", "height", "bytes", "flags", "rev", "edits", "original_size"]) img[key] = row[key];
    refreshTile(index);
    if (index === state.current) showPicture(img);
  }

  // On a short screen (or under a banner) the editor can start too low for its caption box to show:
  // scroll the page just enough to bring the box in, never its top out of view.
  function keepCaptionInView() {
    const box = $("caption").getBoundingClientRect();
    const by = Math.min(box.bottom + 12 - window.innerHeight, box.top - 60);
    if (by > 0) window.scrollBy({ top: by, behavior: "instant" });
  }

  // The header (name, trigger word, counts, the flagged images' Remove buttons): dataset_header.js.
  const { refreshStats } = window.datasetHeader({ base, state, reload, confirmDialog });

  // Saving the caption box (autosave, one save at a time) and the drafts a failed save leaves: caption_save.js.
  const { save, flushSave, showDraft, hasDraft, draftOf, dropDraft } = window.captionSave({ page, base, state,
    setSaveState, showCount, indexOf, showing, refreshTile, refreshStats, select, openSheet });

  // Clicks on tiles, Select all, deleting what is picked: gallery_selection.js.
  const { updateSelection, deleteNames } = window.gallerySelection({ base, state, select, openSheet, reload, confirmDialog,
    dropDraft });

  document.addEventListener("keydown", (ev) => {
    if (document.querySelector("dialog[open]")) return;
    if (ev.key === "Escape" && document.body.classList.contains("editor-open")) { flushSave(); openSheet(false); return; }
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
    if ((ev.ctrlKey || ev.metaKey) && ev.key === "Enter") {
      ev.preventDefault();
      save(true).then((saved) => saved && toast("Caption saved.", "ok", 1500));
      return;
    }
    if (typing && !ev.altKey) return;
    if (ev.key === "?" && !typing) { ev.preventDefault(); $("keys-dialog").showModal(); return; }
    // Enter on the grid: the open image's caption, in its sheet on a phone (the tiles themselves take no focus)
    if (ev.key === "Enter" && ev.target === $("grid") && state.current >= 0) {
      ev.preventDefault(); openSheet(true); $("caption").focus(); return;
    }
    if (ev.key === "ArrowRight" || ev.key === "ArrowDown") { ev.preventDefault(); select(state.current + 1); }
    else if (ev.key === "ArrowLeft" || ev.key === "ArrowUp") { ev.preventDefault(); select(state.current - 1); }
    else if (ev.key === "Delete" && state.current >= 0 && !typing) { ev.preventDefault(); deleteNames([state.images[state.current].name]); }
  });
  $("btn-keys").onclick = () => $("keys-dialog").showModal();
  $("ed-prev").onclick = () => select(state.current - 1);
  $("ed-next").onclick = () => select(state.current + 1);
  $("ed-delete").onclick = () => state.current >= 0 && deleteNames([state.images[state.current].name]);

  function confirmDialog(title, text, ok = "Delete") {
    return new Promise((resolve) => {
      $("confirm-title").textContent = title;
      $("confirm-text").textContent = text;
      $("confirm-ok").textContent = ok;
      const dlg = $("confirm-dialog");
      dlg.returnValue = "";
      dlg.onclose = () => resolve(dlg.returnValue === "ok");
      $("confirm-form").onsubmit = (ev) => { ev.preventDefault(); dlg.close("ok"); };
      dlg.showModal();
    });
  }

  // ---- filters and search
  $("filters").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-filter]");
    if (!b) return;
    $("filters").querySelectorAll("button").forEach((x) => {
      x.classList.toggle("active", x === b);
      x.setAttribute("aria-pressed", String(x === b));
    });
    state.filter = b.dataset.filter;
    reload();
  });
  $("sort").addEventListener("change", () => { state.sort = $("sort").value; reload(); });
  let searchTimer = null;
  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { state.q = $("search").value.trim(); reload(); }, 250);
  });

  document.querySelectorAll("dialog [data-close]").forEach((b) => (b.onclick = () => b.closest("dialog").close()));
  $("caption").maxLength = CAPTION_MAX;
  $("caption").addEventListener("paste", (ev) => {  // the box takes what fits; the rest would go without a word
    const box = ev.target, pasted = (ev.clipboardData || window.clipboardData).getData("text") || "";
    const room = CAPTION_MAX - (box.value.length - (box.selectionEnd - box.selectionStart));
    if (pasted.length > room) {
      toast(`A caption holds at most ${CAPTION_MAX.toLocaleString("en")} characters: the last ` +
        `${(pasted.length - room).toLocaleString("en")} of what you pasted were left out.`, "error", 8000);
    }
  });
  window.ds = { page, base, state, reload, refresh, refreshStats, confirmDialog, esc, thumbUrl, imageUrl, updateImage, flushSave };
  reload();
})();
