// "Merge LoRAs into one file" on the library page: two to four library LoRAs, each at its strength, written as one
// LoRA (POST /api/library/merge). A card's Merge button opens the panel with its file in the first row.
(function () {
  const { esc, fmtKept } = trainer;
  const $ = (id) => document.getElementById(id);
  const MAX = 4;
  let files = [];  // the library's LoRA and LoKr files

  // ?merge=cat:1&merge=style:0.6 (Try it's Merge… on a render with With): those files at those strengths, once
  const asked = new URLSearchParams(location.search).getAll("merge")
    .map((part) => { const at = part.lastIndexOf(":"); return [part.slice(0, at), Number(part.slice(at + 1))]; });

  async function loadFiles() {
    try { files = (await studio.api("/api/library/files")).files; } catch (e) { return; }
    $("merge").hidden = files.length < 2;
    const rows = $("merge-rows");
    if (!rows.children.length) {
      const wanted = asked.filter(([name]) => files.some((f) => f.name === name)).slice(0, MAX);
      if (wanted.length >= 2) {
        for (const [name, strength] of wanted) addRow(name, strength);
        $("merge").open = true;
        $("merge").scrollIntoView({ block: "start" });
      } else { addRow(files[0] && files[0].name); addRow(files[1] && files[1].name); }
    }
    for (const select of rows.querySelectorAll("select")) fill(select, select.value);
    lokrNeedsRank();
  }

  // a LoKr has no exact LoRA form: with one in the list the merge is at a rank (its largest directions join it)
  function lokrNeedsRank() {
    const names = [...$("merge-rows").querySelectorAll("select")].map((s) => s.value);
    const lokr = files.some((f) => f.lokr && names.includes(f.name));
    const exact = $("merge-rank").querySelector("option[value='']");
    exact.disabled = lokr;
    if (lokr && !$("merge-rank").value) $("merge-rank").value = "64";
    $("merge-rank").title = lokr ? "A LoKr joins a merge at a rank: its largest directions (the merge says how much it keeps)" : "";
  }
  $("merge-rows").addEventListener("change", lokrNeedsRank);

  function fill(select, chosen) {
    select.innerHTML = files.map((f) => `<option value="${esc(f.name)}" ${f.name === chosen ? "selected" : ""}>${esc(f.name)}${
      f.rank ? ` · rank ${f.rank}` : ""}${f.lokr ? " · LoKr" : ""}${f.trigger_word ? ` · ${esc(f.trigger_word)}` : ""}</option>`).join("");
  }

  function addRow(name, strength = 1) {
    const rows = $("merge-rows");
    if (rows.children.length >= MAX) return;
    const row = document.createElement("div");
    row.className = "merge-row";
    row.innerHTML = `<select aria-label="LoRA"></select>
      <label>strength <input type="number" step="0.1" min="-2" max="2" value="${Number.isFinite(strength) ? strength : 1}" aria-label="strength"></label>
      <button type="button" class="remove" title="Leave this one out" aria-label="Leave this one out">✕</button>`;
    rows.append(row);
    fill(row.querySelector("select"), name);
    $("merge-more").disabled = rows.children.length >= MAX;
    lokrNeedsRank();
  }

  $("merge-more").addEventListener("click", () => addRow(files[0] && files[0].name));
  $("merge-rows").addEventListener("click", (e) => {
    if (!e.target.closest("button.remove") || $("merge-rows").children.length <= 2) return;
    e.target.closest(".merge-row").remove();
    $("merge-more").disabled = false;
    lokrNeedsRank();
  });

  // a card's Merge button: the panel opens with that file first
  document.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-merge]");
    if (!button) return;
    const selects = [...$("merge-rows").querySelectorAll("select")];
    if (selects.length) {
      selects[0].value = button.dataset.merge.replace(/\.safetensors$/, "");
      for (const other of selects.slice(1)) {  // a row holding the same file moves to one not yet picked
        const used = new Set(selects.filter((s) => s !== other).map((s) => s.value));
        if (used.has(other.value)) other.value = (files.find((f) => !used.has(f.name)) || {}).name || other.value;
      }
    }
    lokrNeedsRank();
    $("merge").open = true;
    $("merge").scrollIntoView({ behavior: "smooth", block: "start" });
  });

  $("merge-go").addEventListener("click", async () => {
    const rows = [...$("merge-rows").querySelectorAll(".merge-row")];
    const body = { files: rows.map((row) => ({ file: `${row.querySelector("select").value}.safetensors`,
      strength: Number(row.querySelector("input").value) })) };
    if ($("merge-name").value.trim()) body.name = $("merge-name").value.trim();
    if ($("merge-rank").value) body.rank = Number($("merge-rank").value);
    $("merge-go").disabled = true;
    $("merge-state").textContent = "Merging…";
    try {
      const made = await studio.api("/api/library/merge", { method: "POST", json: body });
      $("merge-state").innerHTML = `${esc(made.file)}: rank ${made.rank}, ${studio.formatBytes(made.size)}, keeping ` +
        `${fmtKept(made.kept)} of the merged change. <a href="/library/try/${encodeURIComponent(made.file)}">Try it</a>`;
      studio.toast(`Merged into ${made.file}.`, "ok");
      $("merge-name").value = "";
      document.dispatchEvent(new CustomEvent("library:changed"));  // the cards load again, then this list
    } catch (e) {
      $("merge-state").textContent = e.message;
      studio.toast(e.message, "error", 8000);
    } finally { $("merge-go").disabled = false; }
  });

  document.addEventListener("library:loaded", loadFiles);  // the cards changed: so may the files to merge
  if ($("library").dataset.loaded) loadFiles();  // the cards loaded while this script was on its way
})();
