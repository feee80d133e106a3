// Recently deleted: a delete's toast offers Undo, and the "Recently deleted" dialog lists every batch the
// dataset's trash keeps (a week) with a Restore button each.
(function () {
  const ds = window.ds;
  const { esc } = ds;
  const $ = (id) => document.getElementById(id);
  const { plural, formatBytes } = window.studio;

  function names(list) {
    return list.length > 4 ? `${list.slice(0, 4).join(", ")} and ${list.length - 4} more` : list.join(", ");
  }

  const day = (t) => new Date(t * 1000).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
  let shown = { ids: [], images: 0, bytes: 0 };  // what the list shows: "Empty now" removes that, not a later delete

  async function refresh() {
    try {
      const data = await studio.api(`${ds.base}/trash`);
      const count = data.batches.reduce((n, b) => n + b.images.length, 0);
      const bytes = data.batches.reduce((n, b) => n + b.bytes, 0);
      shown = { ids: data.batches.map((b) => b.id), images: count, bytes };
      $("btn-trash").hidden = !count;
      $("btn-trash").textContent = `Recently deleted (${count})`;
      $("trash-note").textContent = `Deleted images and their captions are kept ${data.keep_days} days, then removed ` +
        "for good. Restore puts a batch back; a name taken since gets a number (cat_2.png).";
      $("trash-list").innerHTML = data.batches.map((b) => {
        return `<div class="trash-batch"><div><b>${plural(b.images.length, "image")}</b>
          <span class="muted">· deleted ${esc(day(b.deleted_at))} · ${formatBytes(b.bytes)} · removed for good
          ${esc(day(b.expires_at))}</span>
          <div class="trash-thumbs">${b.images.slice(0, 8).map((n) => `<img loading="lazy" alt="${esc(n)}" title="${esc(n)}"
            src="${ds.base}/trash/${encodeURIComponent(b.id)}/thumbs/${encodeURIComponent(n)}">`).join("")}</div>
          <div class="muted trash-names">${esc(names(b.images))}</div></div>
          <button type="button" data-restore="${esc(b.id)}">Restore</button></div>`;
      }).join("") || `<p class="muted">Nothing was deleted.</p>`;
      $("trash-empty").hidden = !count;
    } catch (e) { /* the button stays as it was; the next delete refreshes it */ }
  }

  async function restore(batch) {
    let r;
    try {
      r = await studio.api(`${ds.base}/trash/${encodeURIComponent(batch)}/restore`, { method: "POST" });
    } catch (e) {
      if (e.status === 404) { ds.reload(); refresh(); }  // restored in another tab, or emptied: show what is so
      throw e;
    }
    const renamed = names(Object.entries(r.renamed).map(([was, now]) => `${was} came back as ${now}`));
    studio.toast(`Restored ${plural(r.restored.length, "image")}` +
      (renamed ? ` (${renamed}: the name was taken since).` : "."), "ok", renamed ? 9000 : undefined);
    ds.reload();
    refresh();
  }

  // After a delete: the message with Undo, which puts that very batch back.
  ds.offerUndo = (result, message) => {
    refresh();
    if (!result.trash) { studio.toast(message, "ok"); return; }
    let undoing = false;  // a double click puts the batch back once, and says nothing failed
    studio.toast(message, "ok", null, { label: "Undo", run: () => {
      if (undoing) return;
      undoing = true;
      restore(result.trash).catch((e) => { undoing = false; studio.toast(`Undo failed: ${e.message}`, "error"); });
    } });
  };

  $("btn-trash").onclick = () => { refresh(); $("trash-dialog").showModal(); };
  $("trash-list").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-restore]");
    if (!b) return;
    b.disabled = true;
    restore(b.dataset.restore).catch((e) => { b.disabled = false; studio.toast(e.message, "error"); });
  });
  $("trash-empty").onclick = async () => {
    const what = { ...shown };
    if (!(await ds.confirmDialog("Empty Recently deleted?", `${plural(what.images, "image")} and their captions ` +
      `(${formatBytes(what.bytes)}) are removed for good: they cannot be restored after this.`))) return;
    try {
      const r = await studio.api(`${ds.base}/trash`, { method: "DELETE", json: { batches: what.ids } });
      studio.toast(`Removed ${plural(r.removed, "image")} for good; ${formatBytes(r.bytes)} freed` +
        (r.bytes < what.bytes ? " (an export keeps the rest of its files)." : "."), "ok");
      if (r.left) studio.toast(`${plural(r.left, "image")} could not be removed: is the folder read-only?`, "error");
      refresh();
    } catch (e) { studio.toast(e.message, "error"); }
  };
  refresh();
})();
