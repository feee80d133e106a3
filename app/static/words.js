// Caption words: the words (and, for tag-style captions, the phrases) the captions use, each with the
// number of captions it is in. A word in nearly every caption is marked; a click shows its images (the
// gallery's search); Remove opens Find & replace with it filled in, to preview, apply and undo.
(function () {
  const { api, plural, toast, escapeRegex } = window.studio;
  const ds = window.ds;
  const $ = (id) => document.getElementById(id);
  const COMMON = 0.8;  // in at least this share of the captions (and three or more): marked
  let data = null, view = "words";

  function draw() {
    const rows = (data && data[view]) || [];
    const total = data ? data.captions : 0;
    $("words-list").innerHTML = rows.length ? rows.map((w) => {
      const share = total ? w.images / total : 0;
      const common = share >= COMMON && w.images >= 3;
      return `<div class="word-row${common ? " common" : ""}">
        <button type="button" class="word" data-search="${ds.esc(w.word)}" title="Show the images whose caption has it">${ds.esc(w.word)}</button>
        <span class="bar" aria-hidden="true"><span style="width:${Math.round(share * 100)}%"></span></span>
        <span class="n" title="${common ? "In almost every caption" : ""}">${w.images} of ${total}</span>
        <button type="button" data-remove="${ds.esc(w.word)}" title="Remove it from every caption: preview first, Undo after">Remove…</button></div>`;
    }).join("") : `<div class="empty">${view === "phrases" ? "No phrase is shared by several captions (tag-style captions have them)."
      : "No captions yet: caption the images first."}</div>`;
  }

  function summary() {
    if (!data.captions) {  // no caption to count words in, nor to hold the trigger word
      $("words-summary").textContent = data.images
        ? `No image is captioned yet (${plural(data.images, "image")} in this dataset): caption them first.`
        : "No images yet.";
      return;
    }
    const parts = [`${plural(data.captions, "captioned image")} of ${data.images}.`];
    const t = data.trigger;
    if (t && t.word) {
      const missing = data.captions - t.images;
      parts.push(missing ? `The trigger word ${t.word} is in ${t.images} of them; Export adds it to the other ${missing}.`
        : `The trigger word ${t.word} is in every one of them.`);
    }
    $("words-summary").textContent = parts.join(" ");
  }

  async function open() {
    $("words-dialog").showModal();
    $("words-list").innerHTML = `<div class="empty">Counting…</div>`;
    try {
      data = await api(`${ds.base}/captions/words`);
      summary(); draw();
    } catch (e) { $("words-list").innerHTML = ""; toast(e.message, "error"); }
  }

  $("btn-words").addEventListener("click", open);
  $("words-tabs").addEventListener("click", (e) => {
    const tab = e.target.closest("[data-words]");
    if (!tab) return;
    view = tab.dataset.words;
    document.querySelectorAll("#words-tabs button").forEach((b) => b.classList.toggle("active", b === tab));
    draw();
  });
  $("words-list").addEventListener("click", (e) => {
    const search = e.target.closest("[data-search]");
    const remove = e.target.closest("[data-remove]");
    if (search) {
      $("words-dialog").close();
      $("search").value = search.dataset.search;
      $("search").dispatchEvent(new Event("input"));
    } else if (remove) {
      $("words-dialog").close();
      // the word with the comma and space around it, so "a, red, b" becomes "a, b". Not \b at its ends: a phrase may
      // begin or end with a sign ("(red hair:1.2)", "in the rain."), where \b never matches; and the counted phrase
      // has its white space made single spaces, so any run of it matches one
      const text = escapeRegex(remove.dataset.remove).replace(/ /g, "\\s+");
      const word = `(?<!\\w)${text}(?!\\w)`;
      ds.openReplace(`${word}\\s*,\\s*|,?\\s*${word}(?!\\s*,)`, true);
    }
  });
})();
