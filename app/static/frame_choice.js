// Frames from videos: under the videos of an upload (or a link to one), how often a frame is taken and how many
// at most from one video, with what each video will give; the choice goes with the import (frame_seconds,
// max_frames) and is kept for the next time. While the videos upload there is time to change it.
// A page gives the box its starting point in data-frames: {videos: [".mp4", ...], frame_seconds, max_frames}.
(function () {
  const { esc, plural } = window.studio;
  const KEY = "frame-choice";
  const STEPS = [0.5, 1, 2, 3, 5, 10];
  const clock = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
  const defaults = (box) => JSON.parse(box.dataset.frames);
  const isVideo = (page, name) => page.videos.some((ext) => name.toLowerCase().endsWith(ext));

  function saved() {
    try { return JSON.parse(localStorage.getItem(KEY)) || {}; } catch (e) { return {}; }
  }

  function duration(file) {  // the browser reads the video's length from its header (not every codec: then none)
    return new Promise((resolve) => {
      const video = document.createElement("video");
      const url = URL.createObjectURL(file);
      const done = (value) => { URL.revokeObjectURL(url); video.removeAttribute("src"); resolve(value); };
      video.preload = "metadata";
      video.onloadedmetadata = () => done(Number.isFinite(video.duration) ? video.duration : null);
      video.onerror = () => done(null);
      video.src = url;
    });
  }

  // shows the choice in `box` for the videos among `files` (File objects, whose length the browser reads, or
  // {name} of a link), or for `count` videos not named (a Hugging Face dataset's); returns what to send with the
  // import (null: no video), locking the choice unless told not to
  function show(box, files, count) {
    const page = defaults(box);
    const videos = files.filter((file) => isVideo(page, file.name));
    const total = count || videos.length;
    box.replaceChildren();
    box.hidden = !total;
    if (!total) return null;
    const start = { frame_seconds: page.frame_seconds, max_frames: page.max_frames, ...saved() };
    const steps = [...new Set([...STEPS, start.frame_seconds])].sort((a, b) => a - b);
    box.innerHTML = `<div class="frames-line">Frames from ${plural(total, "video")}: one every
      <select class="frame-seconds" aria-label="Seconds between frames">${steps.map((s) => `<option value="${s}">${s} s</option>`).join("")}</select>,
      at most <input class="max-frames" type="number" min="1" max="1000" step="1" aria-label="Most frames from one video"> a video</div>
      <ul class="frames-estimate muted"></ul>`;
    const select = box.querySelector(".frame-seconds");
    const input = box.querySelector(".max-frames");
    select.value = String(start.frame_seconds);
    input.value = String(start.max_frames);
    const lengths = new Map();
    const chosen = () => ({
      frame_seconds: Number(select.value),
      max_frames: Math.min(1000, Math.max(1, Math.round(Number(input.value) || page.max_frames))),
    });
    function update() {
      const { frame_seconds: every, max_frames: most } = chosen();
      box.querySelector(".frames-estimate").innerHTML = videos.map((file) => {
        const seconds = lengths.get(file);
        const what = seconds == null ? "" : ` (${clock(seconds)}): up to ${plural(Math.min(most, Math.max(1, Math.round(seconds / every))), "frame")}`;
        return `<li>${esc(file.name)}${what}</li>`;
      }).join("");
    }
    select.onchange = input.oninput = () => { localStorage.setItem(KEY, JSON.stringify(chosen())); update(); };
    update();
    videos.filter((file) => file instanceof Blob).forEach((file) => duration(file).then((seconds) => {
      if (seconds != null) { lengths.set(file, seconds); update(); }
    }));
    return (lock = true) => {  // read when the import starts; the choice is then made
      if (lock) select.disabled = input.disabled = true;
      return chosen();
    };
  }

  // the same for a link: a direct link to a video, or a Hugging Face dataset whose link check (`held`) counts videos
  function showForLink(box, url, held) {
    if (held) return show(box, [], held.videos || 0);
    let name = "";
    try { name = decodeURIComponent(new URL(url.trim()).pathname.split("/").pop()); } catch (e) { name = ""; }
    return show(box, name ? [{ name }] : []);
  }

  window.frameChoice = { show, showForLink };
})();
