// Dataset index: cards with cover, counts and size; create, rename and delete with confirmation; restore
// what was deleted in the last week.
(function () {
  const { api, toast, formatBytes } = window.studio;
  const $ = (id) => document.getElementById(id);
  let datasets = [];
  let target = null;

  const esc = window.studio.esc;

  function card(d) {
    const el = document.createElement("article");
    el.className = "card";
    el.dataset.id = d.id;
    const href = `/d/${encodeURIComponent(d.id)}`;
    // inside the CSS url('…'): encodeURIComponent leaves ' ( ) as they are, and a file may be named "Mia's (1).png"
    const cssPart = (text) => encodeURIComponent(text).replace(/['()]/g, (c) => `%${c.charCodeAt(0).toString(16)}`);
    const cover = d.cover
      ? `<a class="cover" href="${href}" style="background-image:url('/api/datasets/${cssPart(d.id)}/thumbs/${cssPart(d.cover)}${d.cover_rev ? `?v=${cssPart(d.cover_rev)}` : ""}')" aria-label="Open ${esc(d.name)}"></a>`
      : `<a class="cover none" href="${href}">No images yet</a>`;
    const pct = d.images ? Math.round((100 * d.captioned) / d.images) : 0;
    el.innerHTML = `${cover}
      <div class="body">
        <a class="title" href="${href}">${esc(d.name)}</a>
        <div class="meta">${d.images} image${d.images === 1 ? "" : "s"} · ${d.captioned} captioned · ${formatBytes(d.bytes)}</div>
        <div class="bar" title="${pct}% captioned"><div style="width:${pct}%"></div></div>
        <div class="meta">${d.trigger_word ? `<span class="chip">${esc(d.trigger_word)}</span>` : ""}
          ${d.flagged ? `<span class="chip" style="background:#4a3a14;color:#ffd98a">${d.flagged} flagged</span>` : ""}</div>
        <div class="actions">
          <a class="button" href="${href}">Open</a>
          <button data-act="rename">Rename</button>
          <button data-act="delete" class="danger">Delete</button>
        </div>
      </div>`;
    el.querySelector('[data-act="rename"]').onclick = () => openRename(d);
    el.querySelector('[data-act="delete"]').onclick = () => openDelete(d);
    return el;
  }

  async function load() {
    try {
      datasets = (await api("/api/datasets")).datasets;
    } catch (e) {
      toast(`Could not load datasets: ${e.message}`, "error");
      return;
    }
    const cards = $("cards");
    cards.replaceChildren(...datasets.map(card));
    $("empty").hidden = datasets.length > 0;
    loadDeleted();
    const images = datasets.reduce((n, d) => n + d.images, 0);
    const bytes = datasets.reduce((n, d) => n + d.bytes, 0);
    $("summary").textContent = datasets.length
      ? `${datasets.length} dataset${datasets.length === 1 ? "" : "s"} · ${images} image${images === 1 ? "" : "s"} · ${formatBytes(bytes)}` : "";
  }

  // Recently deleted datasets: kept a week, each with Restore; "Empty now" asks for a second click.
  let shownDeleted = [];
  async function loadDeleted() {
    try {
      const data = await api("/api/deleted-datasets");
      shownDeleted = data.datasets.map((d) => d.id);  // "Empty now" removes these, not one deleted since elsewhere
      $("deleted").hidden = !data.datasets.length;
      $("deleted-summary").textContent = `Recently deleted (${data.datasets.length})`;
      $("deleted-note").textContent = `Deleted datasets are kept ${data.keep_days} days, then removed.`;
      $("deleted-list").innerHTML = data.datasets.map((d) => {
        const when = new Date(d.deleted_at * 1000).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
        return `<div class="trash-batch"><div><b>${esc(d.name)}</b> <span class="muted">· ${studio.plural(d.images, "image")}
          · ${formatBytes(d.bytes)} · deleted ${esc(when)}</span></div>
          <button type="button" data-restore="${esc(d.id)}" data-name="${esc(d.name)}">Restore</button></div>`;
      }).join("");
    } catch (e) { /* the section stays as it was */ }
  }

  // `name`: the dataset's name when it was deleted
  async function restore(entry, name) {
    try {
      const r = await api(`/api/deleted-datasets/${encodeURIComponent(entry)}/restore`, { method: "POST" });
      const back = (await api(`/api/datasets/${encodeURIComponent(r.restored)}`)).name;
      // a dataset of its name was made since: it comes back beside that one, under a free name ("My cat 2")
      toast(back === name ? `Restored ${back}.` : `Restored ${name} as ${back}: a dataset named ${name} was made ` +
        "since.", "ok", back === name ? undefined : 9000);
    } catch (e) { toast(`Restore failed: ${e.message}`, "error"); }
    load();
  }

  $("deleted-list").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-restore]");
    if (b) { b.disabled = true; restore(b.dataset.restore, b.dataset.name); }
  });
  $("deleted-empty").onclick = async (ev) => {
    const b = ev.target;
    if (!b.dataset.armed) {
      b.dataset.armed = "1"; b.textContent = "Click again: remove them for good";
      setTimeout(() => { delete b.dataset.armed; b.textContent = "Empty now"; }, 4000);
      return;
    }
    try {
      const r = await api("/api/deleted-datasets", { method: "DELETE", json: { datasets: shownDeleted } });
      toast(`Removed ${studio.plural(r.removed, "dataset")} for good; ${formatBytes(r.bytes)} freed.`, "ok");
      if (r.left) toast(`${studio.plural(r.left, "dataset")} could not be removed: is the folder read-only?`, "error");
    } catch (e) { toast(e.message, "error"); }
    loadDeleted();
  };

  function openCreate() {
    $("create-form").reset();
    $("create-error").textContent = "";
    $("create-dialog").showModal();
    $("create-name").focus();
  }

  // A name another dataset has, said before anything is made, with a free one like it (as the server makes one
  // for a script: "My cat 2"); null when the name is free.
  function nameTaken(wanted) {
    // as the server keeps it: composed accents, no direction overrides (app/datasets.py clean_name)
    const kept = (text) => text.normalize("NFC").replace(/[\u202a-\u202e\u2066-\u2069\ufeff]/g, "");
    const name = kept(wanted).trim().split(/\s+/).join(" ");
    const taken = new Set(datasets.map((d) => kept(d.name).toLowerCase()));
    if (!name || !taken.has(name.toLowerCase())) return null;
    let n = 2;
    while (taken.has(`${name.slice(0, 79 - String(n).length).trimEnd()} ${n}`.toLowerCase())) n++;
    const free = `${name.slice(0, 79 - String(n).length).trimEnd()} ${n}`;
    return { message: `A dataset named '${name}' exists already: choose another name, such as '${free}'.`,
      data: { details: [{ field: "name", free }] } };
  }

  $("create-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const taken = nameTaken($("create-name").value);
    if (taken) { studio.showError($("create-error"), taken, $("create-name")); return; }
    $("create-submit").disabled = true;
    try {
      const d = await api("/api/datasets", { method: "POST", json: {
        name: $("create-name").value, trigger_word: $("create-trigger").value } });
      window.location.href = `/d/${encodeURIComponent(d.id)}`;
    } catch (e) {
      studio.showError($("create-error"), e, $("create-name"));  // a name taken: "Use My cat 2"
    } finally {
      $("create-submit").disabled = false;
    }
  });

  function openRename(d) {
    target = d;
    $("rename-name").value = d.name;
    $("rename-error").textContent = "";
    $("rename-dialog").showModal();
    $("rename-name").select();
  }

  $("rename-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api(`/api/datasets/${encodeURIComponent(target.id)}`, { method: "PATCH", json: { name: $("rename-name").value } });
      $("rename-dialog").close();
      toast("Renamed.", "ok");
      load();
    } catch (e) {
      if (e.status === 404) { gone(target, "rename-dialog"); return; }
      studio.showError($("rename-error"), e, $("rename-name"));
    }
  });

  // a dataset deleted since the page loaded (in another tab): its card goes, instead of a dialog that cannot succeed
  function gone(d, dialog) {
    $(dialog).close();
    toast(`${d.name} is no longer here: it was deleted, in another tab or window.`, "error", 8000);
    load();
  }

  const WORK = { import: "an import", "s3-import": "an import from a bucket", caption: "auto-captioning",
    export: "an export", "s3-push": "a push to a bucket", "hub-push": "a push to Hugging Face" };
  const listed = (items) => items.length < 2 ? items.join("") : `${items.slice(0, -1).join(", ")} and ${items.at(-1)}`;

  // the dialog says the count as it is now (an import may have added images since the page loaded) and what
  // deleting stops
  async function openDelete(d) {
    target = d;
    $("delete-name").textContent = d.name;
    $("delete-count").textContent = d.images;
    $("delete-error").textContent = "";
    $("delete-running").hidden = true;
    $("delete-dialog").showModal();
    let now;
    try {
      now = await api(`/api/datasets/${encodeURIComponent(d.id)}`);
    } catch (e) {
      if (e.status === 404 && target === d) gone(d, "delete-dialog");
      return;
    }
    if (target !== d) return;
    $("delete-count").textContent = now.images;
    const running = (now.running || []).map((kind) => WORK[kind] || "a job");
    if (running.length) {
      const what = listed(running);
      $("delete-running").textContent = `${what[0].toUpperCase()}${what.slice(1)} ${running.length > 1 ? "are" : "is"} ` +
        `running on it: deleting the dataset stops ${running.length > 1 ? "them" : "it"}.`;
      $("delete-running").hidden = false;
    }
  }

  $("delete-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const result = await api(`/api/datasets/${encodeURIComponent(target.id)}`, { method: "DELETE" });
      $("delete-dialog").close();
      const gone = target.name;  // the Undo may come after another dataset was picked
      toast(`Deleted ${gone}.`, "ok", null, { label: "Undo", run: () => restore(result.trash, gone) });
      load();
    } catch (e) {
      if (e.status === 404) { gone(target, "delete-dialog"); return; }
      $("delete-error").textContent = e.message;
    }
  });

  document.querySelectorAll("dialog [data-close]").forEach((b) => (b.onclick = () => b.closest("dialog").close()));
  $("new-dataset").onclick = openCreate;
  $("new-dataset-empty").onclick = openCreate;
  load();
})();
