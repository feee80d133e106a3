// Crop, rotate and mirror the image in the editor. Rotate and mirror apply at once; Crop puts a box over the
// picture (drag to draw it, drag inside it to move it, a corner to resize it; a shape keeps its
// proportions) and applies on Crop or Enter. The server makes every edit from the original, which
// "Revert to original" brings back.
(function () {
  const { api, toast } = window.studio;
  const ds = window.ds;
  const $ = (id) => document.getElementById(id);
  const MIN_SIDE = 64;  // the server refuses smaller crops
  const SMALL_SIDE = 512;  // below this the gallery flags an image as small
  let busy = false;
  let crop = null;  // {name, box: {x, y, w, h} in the image's pixels, drag}

  const current = () => ds.state.images[ds.state.current];

  function setBusy(on) {
    busy = on;
    document.querySelectorAll("#edit-tools button, #crop-bar button").forEach((b) => { b.disabled = on; });
    if (!on && crop) showSize();
  }

  async function send(body, done) {
    const img = current();
    if (!img || busy) return false;
    setBusy(true);
    try {
      const row = await api(`${ds.base}/images/${encodeURIComponent(img.name)}/edit`,
        { method: "POST", json: { ...body, rev: img.rev } });
      ds.updateImage(row);
      ds.refreshStats();  // the small and similar flags follow the new picture
      toast(done(row), "ok", 3000);
      return true;
    } catch (e) {
      if (e.status === 409 && e.data && e.data.current) ds.updateImage(e.data.current);
      toast(e.message, "error");
      return false;
    } finally {
      setBusy(false);
    }
  }

  const kept = " Revert to original brings it back.";
  $("ed-rotl").onclick = () => send({ op: "rotate", degrees: -90 }, () => "Rotated left." + kept);
  $("ed-rotr").onclick = () => send({ op: "rotate", degrees: 90 }, () => "Rotated right." + kept);
  $("ed-mirror").onclick = () => send({ op: "flip", axis: "horizontal" }, () => "Mirrored." + kept);
  $("ed-revert").onclick = async () => {
    const img = current();
    if (!img) return;
    const ok = await ds.confirmDialog(`Revert ${img.name} to the original?`,
      `The picture goes back as it was uploaded (${img.edits.join(", ")} undone); its caption stays.`, "Revert");
    if (ok) send({ op: "revert" }, (row) => `Back to the original, ${row.width}×${row.height}.`);
  };

  // A click on the picture shows it at full size (to judge focus and detail), centred where it was clicked;
  // another click, another picture or Crop shows it whole again. From the keyboard: Z (or Enter / Space on the
  // picture) does the same from its centre, the arrows move around it and Esc shows it whole.
  const preview = $("preview"), picture = $("preview-img");
  const zoomed = () => preview.classList.contains("zoomed");
  function zoom(on, ev) {
    picture.setAttribute("aria-pressed", String(Boolean(on)));
    if (!on) { preview.classList.remove("zoomed"); return; }
    const img = current(), s = shown(), rect = preview.getBoundingClientRect();
    const fx = ev ? (ev.clientX - rect.left - s.left) / s.w : 0.5, fy = ev ? (ev.clientY - rect.top - s.top) / s.h : 0.5;
    preview.classList.add("zoomed");
    preview.scrollLeft = fx * img.width - preview.clientWidth / 2;
    preview.scrollTop = fy * img.height - preview.clientHeight / 2;
  }
  picture.title = "Click (or Z) to see it at full size";
  Object.assign(picture, { tabIndex: 0 });
  picture.setAttribute("role", "button");
  picture.setAttribute("aria-label", "The picture: show it at full size, or whole again");
  picture.setAttribute("aria-pressed", "false");
  picture.addEventListener("click", (ev) => { if (!crop && current()) zoom(!zoomed(), ev.detail ? ev : null); });
  const PAN = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  function zoomKeys(ev) {  // true when the key was the zoom's
    if (crop || !current()) return false;
    const onPicture = document.activeElement === picture;
    if ((ev.key === "z" || ev.key === "Z") || (onPicture && (ev.key === "Enter" || ev.key === " "))) {
      zoom(!zoomed());
      return true;
    }
    if (!zoomed()) return false;
    if (ev.key === "Escape") { zoom(false); return true; }
    const step = PAN[ev.key];
    if (!step || !onPicture) return false;  // elsewhere the arrows go on choosing the image
    preview.scrollBy(step[0] * preview.clientWidth / 4, step[1] * preview.clientHeight / 4);
    return true;
  }

  // Held down, "original" shows the upload in place of the edited picture, to compare.
  let comparing = false;
  const showOriginal = (on) => {
    const img = current();
    if (!img || !img.edits || !img.edits.length || on === comparing) return;
    comparing = on;
    picture.src = on ? `${ds.base}/images/${encodeURIComponent(img.name)}/original` : ds.imageUrl(img.name, img.rev);
  };
  $("ed-original").addEventListener("pointerdown", () => showOriginal(true));
  for (const type of ["pointerup", "pointerleave", "pointercancel"]) {
    $("ed-original").addEventListener(type, () => showOriginal(false));
  }

  // Called by the gallery whenever the editor shows a picture (another image, or this one after an edit).
  ds.onPicture = (img) => {
    zoom(false);
    comparing = false;
    const edited = img.edits && img.edits.length;
    $("ed-revert").hidden = !edited;
    $("ed-original").hidden = !edited;
    $("ed-revert").title = edited ? `Put the image back as it was uploaded${img.original_size ? ` (${img.original_size.join("×")})` : ""}` : "";
    if (crop && crop.name !== img.name) stopCrop();
    // the same picture shown again (a reload while an upload imports, a flag that changed) keeps the box drawn
    else if (crop && crop.rev !== img.rev) { crop.rev = img.rev; crop.box = fullBox(); layout(); }
    else if (crop) layout();
  };

  // ---- crop box
  const layer = $("crop-layer"), box = $("crop-box");
  const ratio = () => Number($("crop-aspect").value) || 0;  // width / height; 0 is free

  // Where the picture shows inside the preview (object-fit: contain), and its scale.
  function shown() {
    const el = $("preview-img"), img = current();
    const scale = Math.min(el.clientWidth / img.width, el.clientHeight / img.height);
    const w = img.width * scale, h = img.height * scale;
    return { left: el.offsetLeft + (el.clientWidth - w) / 2, top: el.offsetTop + (el.clientHeight - h) / 2, w, h, scale };
  }

  // The largest box of the chosen shape, centred; a free box starts a little inside the edges.
  function fullBox() {
    const img = current(), r = ratio();
    let w = img.width, h = img.height;
    if (!r) { w = Math.round(w * 0.9); h = Math.round(h * 0.9); }
    else if (w / h > r) w = Math.round(h * r);
    else h = Math.round(w / r);
    return { x: Math.floor((img.width - w) / 2), y: Math.floor((img.height - h) / 2), w, h };
  }

  function layout() {
    if (!crop || !current()) return;  // the gallery reloading its rows: the box waits for the picture
    const s = shown(), b = crop.box;
    Object.assign(layer.style, { left: `${s.left}px`, top: `${s.top}px`, width: `${s.w}px`, height: `${s.h}px` });
    Object.assign(box.style, { left: `${b.x * s.scale}px`, top: `${b.y * s.scale}px`, width: `${b.w * s.scale}px`,
      height: `${b.h * s.scale}px` });
    showSize();
  }

  function showSize() {
    const b = crop.box, short = Math.min(b.w, b.h);
    const el = $("crop-size");
    const tooSmall = b.w < MIN_SIDE || b.h < MIN_SIDE;
    el.textContent = `${Math.round(b.w)}×${Math.round(b.h)} px` + (tooSmall ? ` · at least ${MIN_SIDE}×${MIN_SIDE}`
      : short < SMALL_SIDE ? ` · short side below ${SMALL_SIDE} px: trains with less detail` : "");
    el.classList.toggle("low", short < SMALL_SIDE);
    $("crop-apply").disabled = busy || tooSmall;
  }

  function startCrop() {
    const img = current();
    if (!img || busy) return;
    zoom(false);
    crop = { name: img.name, rev: img.rev, box: null, drag: null };
    crop.box = fullBox();
    $("edit-tools").hidden = true;
    $("crop-bar").hidden = false;
    layer.hidden = false;
    layout();
  }

  function stopCrop() {
    crop = null;
    layer.hidden = true;
    $("crop-bar").hidden = true;
    $("edit-tools").hidden = false;
  }

  async function applyCrop() {
    if (!crop || busy || !current()) return;
    const img = current(), b = crop.box;
    const x = Math.max(0, Math.floor(b.x)), y = Math.max(0, Math.floor(b.y));
    const w = Math.min(Math.round(b.w), img.width - x), h = Math.min(Math.round(b.h), img.height - y);
    if (await send({ op: "crop", box: [x, y, w, h] }, (row) => `Cropped to ${row.width}×${row.height}.` + kept)) stopCrop();
  }

  $("ed-crop").onclick = startCrop;
  $("crop-cancel").onclick = stopCrop;
  $("crop-apply").onclick = applyCrop;
  $("crop-aspect").onchange = () => { if (crop) { crop.box = fullBox(); layout(); } };
  window.addEventListener("resize", layout);

  function point(ev) {  // the pointer in the image's pixels, kept on the picture
    const rect = layer.getBoundingClientRect(), img = current(), s = shown();
    const clamp = (v, high) => Math.min(Math.max(v, 0), high);
    return { x: clamp((ev.clientX - rect.left) / s.scale, img.width), y: clamp((ev.clientY - rect.top) / s.scale, img.height) };
  }

  // A box from the anchor towards the pointer, as large as the pointer asks and the picture allows.
  function drawn(ax, ay, p) {
    const img = current(), r = ratio();
    const sx = p.x >= ax ? 1 : -1, sy = p.y >= ay ? 1 : -1;
    const roomW = sx > 0 ? img.width - ax : ax, roomH = sy > 0 ? img.height - ay : ay;
    let w = Math.min(Math.abs(p.x - ax), roomW), h = Math.min(Math.abs(p.y - ay), roomH);
    if (r) { w = Math.min(Math.max(w, h * r), roomW, roomH * r); h = w / r; }
    return { x: sx > 0 ? ax : ax - w, y: sy > 0 ? ay : ay - h, w, h };
  }

  layer.addEventListener("pointerdown", (ev) => {
    if (!crop || busy || !current()) return;
    ev.preventDefault();
    layer.setPointerCapture(ev.pointerId);
    const p = point(ev), b = crop.box;
    const inside = p.x >= b.x && p.x <= b.x + b.w && p.y >= b.y && p.y <= b.y + b.h;
    const corner = ev.target.dataset.corner;  // a corner resizes, the opposite one staying put
    if (corner) crop.drag = { mode: "resize", ax: corner.includes("w") ? b.x + b.w : b.x, ay: corner[0] === "n" ? b.y + b.h : b.y, before: b };
    else if (inside) crop.drag = { mode: "move", from: p, before: b };
    else crop.drag = { mode: "draw", ax: p.x, ay: p.y, before: b };
  });
  layer.addEventListener("pointermove", (ev) => {
    if (!crop || !crop.drag || !current()) return;
    const d = crop.drag, p = point(ev), img = current();
    if (d.mode === "move") {
      const b = d.before;
      crop.box = { ...b, x: Math.min(Math.max(b.x + p.x - d.from.x, 0), img.width - b.w),
        y: Math.min(Math.max(b.y + p.y - d.from.y, 0), img.height - b.h) };
    } else {
      crop.box = drawn(d.ax, d.ay, p);
    }
    layout();
  });
  const endDrag = () => {
    if (!crop || !crop.drag) return;
    const b = crop.box;
    if (crop.drag.mode === "draw" && (b.w < 4 || b.h < 4)) crop.box = crop.drag.before;  // a click, not a drag
    crop.drag = null;
    layout();
  };
  layer.addEventListener("pointerup", endDrag);
  layer.addEventListener("pointercancel", endDrag);

  // Enter crops and Escape cancels while the box shows; C starts it, R / Shift+R rotate, M mirrors, Z zooms (when
  // not typing).
  document.addEventListener("keydown", (ev) => {
    if (document.querySelector("dialog[open]")) return;
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
    if (crop && (ev.key === "Enter" || ev.key === "Escape") && document.activeElement.tagName !== "TEXTAREA") {
      ev.preventDefault();
      ev.stopImmediatePropagation();
      if (ev.key === "Enter") applyCrop(); else stopCrop();
    } else if (!crop && !typing && !ev.ctrlKey && !ev.metaKey && !ev.altKey && !$("editor").hidden) {
      if (zoomKeys(ev)) { ev.preventDefault(); ev.stopImmediatePropagation(); return; }
      const key = ev.key.toLowerCase();
      const button = { c: "ed-crop", r: ev.shiftKey ? "ed-rotl" : "ed-rotr", m: "ed-mirror" }[key];
      if (!button) return;
      ev.preventDefault();
      $(button).click();  // a busy editor's buttons are disabled: a key does nothing then either
    }
  }, true);
})();
