// Caption saving for the gallery's editor: the caption box's autosave, one PUT at a time with the version its text
// was typed on, and the drafts a failed or conflicting save leaves. gallery.js calls window.captionSave once, with
// what it shares: page, base, state (dirty, saving, saveTimer, editing, images, current) and its functions
// setSaveState, showCount, indexOf, showing, refreshTile, refreshStats, select and openSheet.
// A function, not an IIFE: its body keeps gallery.js's indentation, so the notes' HTML is the same text as before.
window.captionSave = function (deps) {
  const { api, toast, esc } = window.studio;
  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;
  const { page, base, state, setSaveState, showCount, indexOf, showing, refreshTile, refreshStats, select,
    openSheet } = deps;

  // Captions typed but not saved (the save failed, or met a caption changed elsewhere), by image name:
  // {text, base (the version it was typed on), theirs (the server's {caption, version} in a conflict), error, login,
  // retry (the same text may go through later: a lost login, a server or network failure; not a refused text)}.
  // Shown again when the image is opened; kept in this tab's sessionStorage so a reload or logging in again keeps them.
  const DRAFTS_KEY = `caption-drafts:${page.id}`;
  const drafts = new Map(readDrafts());
  function readDrafts() {
    try { return Object.entries(JSON.parse(sessionStorage.getItem(DRAFTS_KEY)) || {}); } catch (e) { return []; }
  }
  function storeDrafts() {
    try {
      if (drafts.size) sessionStorage.setItem(DRAFTS_KEY, JSON.stringify(Object.fromEntries(drafts)));
      else sessionStorage.removeItem(DRAFTS_KEY);
    } catch (e) { /* storage off or full: the drafts last as long as the page */ }
  }
  function keepDraft(name, draft) { drafts.set(name, draft); storeDrafts(); }
  const notSaved = new Map();  // image name -> takes back its "is not saved" toast, once its caption is saved
  function dropDraft(name) {
    if (drafts.delete(name)) storeDrafts();
    const takeBack = notSaved.get(name);
    if (takeBack) { notSaved.delete(name); takeBack(); }
  }

  // Saves the text in the box for the image it shows; true when it is saved.
  async function save(force = false) {
    const img = state.images[state.current];
    if (!img || (!state.dirty && !force)) return false;
    clearTimeout(state.saveTimer);
    const text = $("caption").value;
    state.dirty = false;
    const draft = drafts.get(img.name);
    if (draft && draft.theirs) {
      // a conflict is settled by Keep mine or Use current: until then the text waits with it
      keepDraft(img.name, { ...draft, text });
      setSaveState("error", "Conflict: keep yours or use the current caption");
      return false;
    }
    setSaveState("saving", "Saving…");
    return putCaption(img.name, text);
  }

  // One save at a time, so each one carries the version the previous one produced; a draft carries its own.
  // A loop, not one wait: saves queued behind the same slow one (typing on, over a slow connection) go one after
  // the other, never together with one version, where the second would meet the first as a change made elsewhere.
  const queued = new Map();  // image name -> its saves on their way or waiting: "Saved" only once the last is done
  async function putCaption(name, text) {
    queued.set(name, (queued.get(name) || 0) + 1);
    while (state.saving) { try { await state.saving; } catch (e) { /* reported by that save */ } }
    const draft = drafts.get(name);
    const version = draft ? draft.base : (state.images[indexOf(name)] || {}).version;
    const request = api(`${base}/captions/${enc(name)}`, { method: "PUT", json: { caption: text, base_version: version } });
    state.saving = request;
    try {
      const result = await request;
      dropDraft(name);
      const index = indexOf(name);
      const img = state.images[index];
      if (img) {
        const emptied = !img.caption !== !result.caption;  // captioned or not changed: the counts say so
        img.caption = result.caption;
        img.version = result.version;
        refreshTile(index);
        if (emptied) refreshStats();
      }
      if (showing(name)) {
        $("ed-conflict").hidden = true;
        if (!state.dirty && queued.get(name) === 1) setSaveState("saved", "Saved ✓");
      }
      return true;
    } catch (e) {
      saveFailed(name, text, version, e);
      return false;
    } finally {
      if (state.saving === request) state.saving = null;
      if (queued.get(name) > 1) queued.set(name, queued.get(name) - 1); else queued.delete(name);
    }
  }

  // A failed save keeps the text as a draft of its image: shown there now, or, when another image is open by the
  // time the answer comes, when that one is opened again (a note says so).
  function saveFailed(name, text, version, e) {
    if (e.status === 404) return imageGone(name, text);
    const conflict = e.status === 409 && e.data && e.data.current;
    keepDraft(name, { text, base: version, theirs: conflict ? e.data.current : null, error: conflict ? null : e.message,
      login: e.status === 401, retry: !e.status || e.status >= 500 || [401, 429].includes(e.status) });
    const index = indexOf(name);
    if (conflict && index >= 0) {  // the server's caption, as the tile shows it
      Object.assign(state.images[index], { caption: e.data.current.caption, version: e.data.current.version });
      refreshTile(index);
    }
    if (showing(name)) {
      if (!state.dirty) $("caption").value = text;  // opened again before the answer came
      showDraft(state.images[index]);
      return;
    }
    const why = conflict ? "it was changed elsewhere meanwhile" : e.status === 401 ? "you are logged out" : e.message.replace(/\.$/, "");
    notSaved.set(name, toast(`The caption of “${name}” is not saved: ${why}. Your text is kept: open the image to ` +
      "finish.", "error", 0, index >= 0 ? { label: "Open", run: () => { select(indexOf(name)); openSheet(true); } }
      : undefined));
  }

  // The image was deleted (in another tab, by a script) before its caption was saved: there is nothing to keep a
  // draft for (one would be asked about on every leaving of the page); the text can still be copied.
  function imageGone(name, text) {
    dropDraft(name);
    if (showing(name)) setSaveState("error", "Not saved: this image was deleted");
    toast(`“${name}” was deleted meanwhile: its caption was not saved.`, "error", 0,
      text.trim() ? { label: "Copy the text", run: () => navigator.clipboard && navigator.clipboard.writeText(text) } : undefined);
  }

  // The editor on an image with a draft: its text is in the box; this shows what stopped it and how to go on.
  function showDraft(img) {
    const draft = drafts.get(img.name);
    if (draft.base !== img.version && !(draft.theirs && draft.theirs.version === img.version)) {
      // the caption changed since the text was typed (seen by a refresh or a reload): a conflict, never overwritten
      draft.theirs = { caption: img.caption, version: img.version };
      storeDrafts();
    }
    if (draft.theirs) {
      showConflict(img.name, draft.theirs);
      return;
    }
    state.dirty = draft.retry;  // the next save (leaving the image, Ctrl+Enter) tries again; a refused text waits for an edit
    if (draft.login) {
      const login = `/login?next=${enc(location.pathname + location.search)}`;
      showNote(`login:${img.name}`, `You are logged out (in another tab, or the password changed): this caption is not
        saved. <a href="${esc(login)}" target="_blank" rel="noopener" id="relogin">Log in again</a> in a new tab, then
        come back: your text is kept here and is saved then.`);
      setSaveState("error", "Not saved: logged out");
    } else {
      $("ed-conflict").hidden = true;
      setSaveState("error", `Not saved: ${draft.error}`);
    }
  }

  // The note above the caption box. Written again only when it says something new: a save on blur can answer
  // while the mouse is still down on its link or button, and a click on a replaced element is lost.
  function showNote(key, html) {
    const box = $("ed-conflict");
    box.hidden = false;
    if (box.dataset.key === key) return false;
    box.dataset.key = key;
    box.innerHTML = html;
    return true;
  }

  // The conflict box of one image: both buttons settle that image's caption, whatever is open by the time.
  function showConflict(name, theirs) {
    const box = $("ed-conflict");
    setSaveState("error", "Conflict");
    if (!showNote(`conflict:${name}:${theirs.version}`, `This caption changed elsewhere (e.g. by auto-caption or in another tab).
      <div style="margin:.3rem 0" class="muted">Current: “${esc(theirs.caption.slice(0, 200))}”</div>
      <button type="button" id="keep-mine">Keep mine</button> <button type="button" id="take-theirs">Use current</button>`)) return;
    $("keep-mine").onclick = () => {
      const draft = drafts.get(name);
      if (!draft || !draft.theirs) return;
      const mine = showing(name) ? $("caption").value : draft.text;
      if (showing(name)) { clearTimeout(state.saveTimer); state.dirty = false; box.hidden = true; setSaveState("saving", "Saving…"); }
      // written over the current caption, knowingly: its version is the base
      keepDraft(name, { text: mine, base: draft.theirs.version, theirs: null, error: "sent, no answer yet", login: false,
        retry: true });
      putCaption(name, mine);
    };
    $("take-theirs").onclick = () => {
      const draft = drafts.get(name);
      if (!draft || !draft.theirs) return;
      dropDraft(name);
      const index = indexOf(name);
      const img = state.images[index];
      if (img) { img.caption = draft.theirs.caption; img.version = draft.theirs.version; refreshTile(index); }
      if (showing(name)) {
        clearTimeout(state.saveTimer);
        state.dirty = false;
        box.hidden = true;
        $("caption").value = draft.theirs.caption;
        showCount(draft.theirs.caption);
        setSaveState("saved", "Saved");
      }
    };
  }

  async function flushSave() {
    if (state.dirty) await save();
    else if (state.saving) { try { await state.saving; } catch (e) { /* shown in the editor */ } }
  }

  $("caption").addEventListener("input", () => {
    state.dirty = true;
    showCount($("caption").value);
    setSaveState("saving", "Editing…");
    clearTimeout(state.saveTimer);
    state.saveTimer = setTimeout(() => save(), 900);
  });
  $("caption").addEventListener("blur", () => { if (state.dirty) save(); });

  window.addEventListener("beforeunload", (ev) => {
    const unsaved = state.dirty || drafts.size || queued.size;  // a save still on its way may be cut off
    if (state.dirty) save();
    if (unsaved) ev.preventDefault();  // the browser asks first
  });
  // Back on this tab (e.g. after logging in again in another): captions a lost login stopped are saved now.
  window.addEventListener("focus", () => {
    for (const [name, draft] of drafts) {
      if (!draft.login) continue;
      if (showing(name)) { if (state.dirty) save(); } else putCaption(name, draft.text);
    }
  });

  const hasDraft = (name) => drafts.has(name);
  const draftOf = (name) => drafts.get(name);
  return { save, flushSave, showDraft, hasDraft, draftOf, dropDraft };
};
