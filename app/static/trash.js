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

  async function refresh() {
    try {
      const data = await studio.api(`${ds.base}/trash`);
      const count = data.batches.reduce((n, b) => n + b.images.length, 0);
      $("btn-trash").hidden = !count;
      $("btn-trash").textContent = `Recently deleted (${count})`;
      $("trash-note").textContent = `Deleted images and their captions are kept ${data.keep_days} days, then removed.`;
      $("trash-list").innerHTML = data.batches.map((b) => {
        const when = new Date(b.deleted_at * 1000).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
        return `<div class="trash-batch"><div><b>${plural(b.images.length, "image")}</b>
          <span class="muted">· deleted ${esc(when)} · ${formatBytes(b.bytes)}</span>
          <div class="trash-thumbs">${b.images.slice(0, 8).map((n) => `<img loading="lazy" alt="${esc(n)}" title="${esc(n)}"
            src="${ds.base}/trash/${encodeURIComponent(b.id)}/thumbs/${encodeURIComponent(n)}">`).join("")}</div>
          <div class="muted trash-names">${esc(names(b.images))}</div></div>
          <button type="button" data-restore="${esc(b.id)}">Restore</button></div>`;
      }).join("") || `<p class="muted">Nothing was deleted.</p>`;
      $("trash-empty").hidden = !count;
    } catch (e) { /* the button stays as it was; the next delete refreshes it */ }
  }

  async function restore(batch) {
    const r = await studio.api(`${ds.base}/trash/${encodeURIComponent(batch)}/restore`, { method: "POST" });
    const renamed = Object.entries(r.renamed).map(([was, now]) => `${was} came back as ${now}`);
    studio.toast(`Restored ${plural(r.restored.length, "image")}` +
      (renamed.length ? ` (${renamed.join(", ")}: the name was taken).` : "."), "ok");
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
    if (!(await ds.confirmDialog("Empty Recently deleted?", "Its images and captions are removed for good."))) return;
    try {
      const r = await studio.api(`${ds.base}/trash`, { method: "DELETE" });
      studio.toast(`Removed ${plural(r.removed, "image")} for good.`, "ok");
      refresh();
    } catch (e) { studio.toast(e.message, "error"); }
  };
  refresh();
})();
