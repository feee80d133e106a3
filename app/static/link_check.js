// What a link would import, shown under it as it is typed (POST /api/link-check): a Hugging Face dataset's
// images, captions, archives and size, and, over MAX_UPLOAD_MB, how many first images fit (offered as the limit).
(function () {
  const { api, formatBytes, plural } = window.studio;
  const HUB = /^https?:\/\/(www\.)?(huggingface\.co|hf\.co)\/datasets\/[^/\s]+\/[^/\s]+/i;
  const count = (n, one) => plural(n, one).replace(/^\d+/, (d) => Number(d).toLocaleString());

  function summary(found) {
    const parts = [];
    if (found.images) parts.push(count(found.images, "image"));
    if (found.captions) parts.push(count(found.captions, "caption file"));
    if (found.zips) parts.push(count(found.zips, "ZIP"));
    if (found.parquet) parts.push(count(found.parquet, "Parquet file"));
    if (found.videos) parts.push(count(found.videos, "video"));
    const more = found.partial ? " (and more: only the first files were listed)" : "";
    return `${found.label}: ${parts.join(", ")}, ${formatBytes(found.bytes)}${more}`;
  }

  // `input`: the link field; `out`: where the line goes; `limit`: the "take at most" field (filled when too large);
  // `onFound`: told what a dataset link holds (null for another link)
  window.linkCheck = function (input, out, limit, onFound) {
    const tell = (what) => { if (onFound) onFound(what); };
    let timer = null;
    let asked = "";
    const show = (text, kind) => { out.textContent = text; out.dataset.kind = kind || ""; };
    async function check() {
      const url = input.value.trim();
      if (url === asked) return;
      asked = url;
      if (!HUB.test(url)) { show(""); tell(null); return; }
      show("Looking at the dataset on Hugging Face…", "busy");
      try {
        const held = await api("/api/link-check", { method: "POST", json: { url } });
        if (asked !== url) return;  // a newer link was typed meanwhile
        tell(held);
        if (!held.too_large) { show(summary(held), "ok"); return; }
        const fits = held.fits_images;
        const advice = fits ? `Its first ${count(fits, "image")} fit: take at most that many, or link one folder or split of it.`
          : fits === 0 ? "Not even its first image fits: link one folder or split of it, or raise MAX_UPLOAD_MB."
            : "Take at most a number of images (only the files that hold them download), or link one folder or split of it.";
        show(`${summary(held)}: more than the ${formatBytes(held.max_bytes)} the pod downloads at once ` +
          `(MAX_UPLOAD_MB). ${advice}`, "warn");
        if (fits && limit && !limit.value) limit.value = fits;
      } catch (e) {
        if (asked === url) { show(e.message, "error"); tell(null); }
      }
    }
    input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(check, 500); });
    return { check, reset() { asked = ""; clearTimeout(timer); show(""); tell(null); } };
  };
})();
