// Convert: a file copied into the library by hand in another trainer's layout (kohya's names, a LoHa, ...) rewritten
// in this studio's under its name, on its card or all of them at once (one after the other: each is a job of the
// import kind, followed as an import is: library_add.js). The file as it was goes to Recently deleted.
(function () {
  const $ = (id) => document.getElementById(id);

  // a file's Convert button as the cards are now (they are drawn again when the library changes)
  const buttonFor = (file) => [...document.querySelectorAll("#library button[data-convert]")]
    .find((b) => b.dataset.convert === file);
  const followed = new Set();  // the conversions followed: one on its way when the page (re)loaded too
  async function convert(button, into, jobId) {
    const file = button.dataset.convert;
    const again = () => { const now = buttonFor(file); if (now) now.disabled = false; };
    button.disabled = true;
    try {
      const job = jobId ? { id: jobId } : (await studio.api(
        `/api/library/files/${encodeURIComponent(file)}/convert`, { method: "POST" })).job;
      followed.add(job.id);
      const onCard = () => { const now = buttonFor(file); return now && now.closest(".lora-card").querySelector("[data-convert-state]"); };
      const ended = await libraryImports.follow(job.id, into || onCard);
      if (!ended || ended.status !== "completed") again();
      document.dispatchEvent(new CustomEvent("library:trash"));
      return ended && ended.status === "completed";
    } catch (e) {
      studio.toast(e.message, "error", 8000);
      again();
      return false;
    }
  }
  $("library").addEventListener("click", (ev) => {
    const button = ev.target.closest("button[data-convert]");
    if (button) convert(button);
  });

  // several files waiting: one button for them all
  let running = false;
  function offer() {
    for (const button of document.querySelectorAll("#library button[data-convert][data-converting]")) {
      if (followed.has(button.dataset.converting)) button.disabled = true;  // followed already (a card loaded again)
      else convert(button, null, button.dataset.converting);
    }
    if (running) return;
    const waiting = document.querySelectorAll("#library button[data-convert]").length;
    $("convert-all-row").hidden = waiting < 2;
    $("convert-all-count").textContent = `${waiting} files copied into the library are in another trainer's layout.`;
  }
  document.addEventListener("library:loaded", offer);
  offer();  // the cards may have loaded while this script was on its way
  $("convert-all").addEventListener("click", async () => {
    const files = [...document.querySelectorAll("#library button[data-convert]")].map((b) => b.dataset.convert);
    running = true;
    $("convert-all").disabled = true;
    let done = 0;
    try {
      for (const [index, file] of files.entries()) {
        const button = buttonFor(file);
        if (!button) continue;  // converted, renamed or deleted meanwhile
        $("convert-all-state").textContent = `${index + 1} of ${files.length}: ${file}`;
        if (await convert(button, $("convert-all-state"))) done += 1;
      }
      studio.toast(`Converted ${done} of ${files.length} files.`, done === files.length ? "ok" : "error", 8000);
    } finally {
      running = false;
      $("convert-all").disabled = false;
      $("convert-all-state").textContent = "";
      document.dispatchEvent(new CustomEvent("library:changed"));
    }
  });
})();
