// The gallery's tiles: a thumbnail, its badges and the start of its caption. gallery.js calls window.galleryTiles once
// with what it shares: base and state (images, selected, current); it returns tile, refreshTile and the badge texts
// the editor shows too.
// A big dataset scrolled to its end holds thousands of tiles: only those within a few screens of the window keep their
// picture, badges and caption; the others stay as empty tiles of the same size (their place, data-index, data-name and
// selected/current classes are all a click, a selection or a count needs) and are filled again from state.images
// when they come near.
// A function, not an IIFE, as caption_save.js: its body keeps gallery.js's indentation.
window.galleryTiles = function (deps) {
  const { esc } = window.studio;
  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;
  const { base, state } = deps;

  // `rev` changes with the file (crop, rotate, revert), so a browser never shows an edited image's old picture.
  const revQuery = (rev) => (rev ? `?v=${enc(rev)}` : "");
  const thumbUrl = (name, rev) => `${base}/thumbs/${enc(name)}${revQuery(rev)}`;
  const imageUrl = (name, rev) => `${base}/images/${enc(name)}${revQuery(rev)}`;

  // How small a flagged image is: "320×240, below 512 px" (older records flag `small: true` without sizes).
  function smallText(img) {
    const f = typeof img.flags.small === "object" ? img.flags.small : {};
    return `${f.width || img.width}×${f.height || img.height}, below ${f.min_side || 512} px`;
  }

  const SOFT_TEXT = "Looks out of focus, blurred or upscaled: a LoRA learns the softness too";

  // "Cropped and rotated; the original (1200×800) is kept: Revert brings it back"
  function editedText(img) {
    const done = img.edits.join(" and ");
    const size = img.original_size ? ` (${img.original_size[0]}×${img.original_size[1]})` : "";
    return `${done.charAt(0).toUpperCase()}${done.slice(1)}; the original${size} is kept: Revert brings it back`;
  }

  function badges(img) {
    const out = [];
    if (!img.caption.trim()) out.push('<span class="badge nocap">no caption</span>');
    if (img.flags.duplicate_of) out.push('<span class="badge err" title="Exact copy of ' + esc(img.flags.duplicate_of) + ': left out of exports">duplicate</span>');
    if (img.flags.similar_to) out.push('<span class="badge warn" title="Looks like ' + esc(img.flags.similar_to) + '">similar</span>');
    if (img.flags.soft) out.push(`<span class="badge warn" title="${esc(SOFT_TEXT)}">soft</span>`);
    if (img.edits && img.edits.length) out.push(`<span class="badge edited" title="${esc(editedText(img))}">edited</span>`);
    if (img.flags.small) out.push(`<span class="badge warn small-badge" title="Short side ${esc(smallText(img))}: trains with less detail">small: ${esc(smallText(img))}</span>`);
    return out.join("");
  }

  function fill(el, img) {
    el.innerHTML = `<img loading="lazy" decoding="async" src="${thumbUrl(img.name, img.rev)}" alt="${esc(img.name)}">
      <div class="badges">${badges(img)}</div><span class="check"></span>
      <div class="cap">${esc(img.caption.slice(0, 140))}</div>`;
    el.classList.remove("far");
  }

  // Far: out of the window by more than FAR_MARGIN; its contents go (the decoded thumbnail with them), the tile stays.
  const FAR_MARGIN = "2000px 0px";
  const far = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      const el = entry.target, img = state.images[Number(el.dataset.index)];
      if (!img || img.name !== el.dataset.name) continue;  // a tile of a grid that was just emptied
      if (entry.isIntersecting && el.classList.contains("far")) fill(el, img);
      else if (!entry.isIntersecting && !el.classList.contains("far")) { el.replaceChildren(); el.classList.add("far"); }
    }
  }, { rootMargin: FAR_MARGIN });

  // A tile, whole (`hollow`: empty until it comes near), watched from now on.
  function tile(img, index, hollow = false) {
    const el = document.createElement("div");
    el.className = "tile";
    el.dataset.index = index;
    el.dataset.name = img.name;
    el.title = img.name;
    if (hollow) el.classList.add("far"); else fill(el, img);
    if (state.selected.has(img.name)) el.classList.add("selected");
    if (index === state.current) el.classList.add("current");
    far.observe(el);
    return el;
  }

  function refreshTile(index) {
    const old = $("grid").querySelector(`.tile[data-index="${index}"]`);
    if (!old) return;
    const fresh = tile(state.images[index], index, old.classList.contains("far"));
    // the same picture stays as it is: no thumbnail fetched again, no flicker
    const picture = old.querySelector("img"), drawn = fresh.querySelector("img");
    if (picture && drawn && picture.getAttribute("src") === drawn.getAttribute("src")) drawn.replaceWith(picture);
    far.unobserve(old);
    old.replaceWith(fresh);
  }

  // The grid emptied (a reload): its tiles are watched no more.
  function forget() { far.disconnect(); }

  return { tile, refreshTile, forget, thumbUrl, imageUrl, smallText, SOFT_TEXT };
};
