// "Before you train" in the export dialog: what in this dataset trains poorly (no captions, no trigger word,
// soft, small or near-duplicate images, captions the text encoder cuts short, too few images), each with a
// button that shows those images. Advice only: the export runs either way.
(function () {
  const { plural } = window.studio;
  const ds = window.ds;
  const $ = (id) => document.getElementById(id);
  const FEW = 10;  // as the trainer's check says

  function checks(meta) {
    const flags = meta.flag_counts || {};
    const images = meta.images || 0;
    const out = [];
    const uncaptioned = images - (meta.captioned || 0);
    if (uncaptioned) out.push([`${uncaptioned} of ${plural(images, "image")} ${uncaptioned === 1 ? "has" : "have"} no caption: ${uncaptioned === 1 ? "it trains" : "they train"} ${meta.trigger_word ? "on the trigger word alone" : "with an empty caption"}.`, "uncaptioned"]);
    if (!meta.trigger_word) out.push(["No trigger word: a rare word (like ohwx) lets you call the LoRA up in a prompt; without one it changes every picture.", "trigger"]);
    if (flags.soft) out.push([`${plural(flags.soft, "image")} ${flags.soft === 1 ? "looks" : "look"} soft (out of focus, blurred or upscaled): a LoRA learns softness too.`, "flagged"]);
    if (flags.small) out.push([`${plural(flags.small, "image")} ${flags.small === 1 ? "is" : "are"} below 512 px on the short side: less detail to learn.`, "flagged"]);
    if (flags.similar) out.push([`${plural(flags.similar, "near-duplicate")}: those pictures weigh twice as much.`, "flagged"]);
    if (meta.long_captions) out.push([`${plural(meta.long_captions, "caption")} ${meta.long_captions === 1 ? "is" : "are"} longer than the text encoder reads: the end is cut off.`, "long"]);
    if (images && images < FEW) out.push([`Only ${plural(images, "image")}: 10-30 varied images usually give a better LoRA.`, null]);
    return out;
  }

  ds.exportChecks = (meta) => {
    if (meta.images == null) return "";  // the figures have not arrived yet: filled again when they do
    if (!meta.images) return `<p class="title">No images to export yet: upload some first.</p>`;
    const found = checks(meta);
    if (!found.length) return `<p class="ready">✓ Ready to train: every image has a caption and nothing is flagged.</p>`;
    const label = { uncaptioned: "Show", flagged: "Show", long: "Show", trigger: "Set one" };
    return `<p class="title">Before you train <span class="muted">(advice: it exports either way)</span></p><ul>` +
      found.map(([text, action]) => `<li>${ds.esc(text)}${action
        ? ` <button type="button" data-check="${action}">${label[action]}</button>` : ""}</li>`).join("") + "</ul>";
  };

  $("export-checks").addEventListener("click", (ev) => {
    const action = ev.target.dataset && ev.target.dataset.check;
    if (!action) return;
    $("export-dialog").close();
    if (action === "trigger") $("trigger-chip").click();
    else document.querySelector(`#filters button[data-filter="${action}"]`).click();
  });
})();
