// Shared page helpers: links between the tools (also behind RunPod's proxy), toasts, JSON fetch.
(function () {
  const body = document.body;
  const ports = { datasets: body.dataset.portDatasets, trainer: body.dataset.portTrainer, comfyui: body.dataset.portComfyui };
  function toolUrl(tool) {
    const port = ports[tool];
    const loc = window.location;
    // RunPod proxy: https://<pod>-<port>.proxy.runpod.net
    const proxied = loc.hostname.match(/^([a-z0-9]+)-(\d+)(\..*)$/i);
    if (proxied) return `${loc.protocol}//${proxied[1]}-${port}${proxied[3]}/`;
    return `${loc.protocol}//${loc.hostname}:${port}/`;
  }
  // A link to another tool goes to that tool's port; data-path picks a page there (e.g. "express").
  document.querySelectorAll(".tool-link").forEach((a) => {
    if (a.dataset.tool !== body.dataset.service) a.href = toolUrl(a.dataset.tool) + (a.dataset.path || "");
  });
  // Points the top bar's plain link to `tool` at one of its pages (e.g. the trainer's form for this dataset).
  function linkTool(tool, path, title) {
    document.querySelectorAll(`.tool-link[data-tool="${tool}"]:not([data-path])`).forEach((a) => {
      a.href = (tool === body.dataset.service ? "/" : toolUrl(tool)) + (path || "");
      if (title) a.title = title; else a.removeAttribute("title");
    });
  }
  const MAX_TOASTS = 3;
  const TOAST_MS = { error: 8000, info: 4000, ok: 3500 };  // the longest a toast of each level stays
  const ACTION_TOAST_MS = 10000;  // one with a button (Undo) stays until it can be reached

  window.studio = {
    toolUrl,
    linkTool,
    // "1 duplicate", "2 duplicates"; `many` for irregular words.
    plural(n, one, many) { return `${n} ${n === 1 ? one : many || one + "s"}`; },
    // The small preview of an image a training job made (?thumb=1 on the job's file routes): pages that show
    // many load a few KB each; the full file stays one click away.
    thumb(url) { return `${url}${url.includes("?") ? "&" : "?"}thumb=1`; },
    // What `seconds` of this machine cost in US dollars (price: {per_hour} from the API), null without a price;
    // perHour(price): "$2.49/h".
    dollars(seconds, price) {
      if (!price || seconds == null || !Number.isFinite(seconds)) return null;
      return (Math.max(0, seconds) / 3600) * price.per_hour;
    },
    perHour(price) { return `$${price.per_hour.toFixed(2)}/h`; },
    // Under a preview's base / LoRA / no-trigger triple: how much of the LoRA's change the picture keeps without
    // the trigger word (pair.leak, pair.leaks from trainer.leak); "" when it was not measured.
    leakLine(pair) {
      if (pair.leak == null) return "";
      const title = "How much the LoRA changes this picture without its trigger word, against with it: near 0% it "
        + "stays on its trigger word, near 100% it changes every prompt it is loaded for (it leaks; Preserve the "
        + "class lowers it).";
      return `<div class="leak${pair.leaks ? " leaks" : ""}" title="${title}">Without the trigger word: `
        + `${Math.round(pair.leak * 100)}% of the LoRA's change${pair.leaks ? " (it leaks)" : ""}</div>`;
    },
    // An API error said in `el`; when the server offers a free name (a name taken: details[].free), a
    // "Use <name>" button puts it in `input`. Returns that name, or null.
    showError(el, e, input) {
      el.textContent = e.message;
      const free = ((e.data && e.data.details) || []).map((d) => d.free).find(Boolean);
      if (!free) return null;
      const use = document.createElement("button");
      use.type = "button"; use.className = "link"; use.textContent = `Use ${free}`;
      use.onclick = () => { input.value = free; el.textContent = ""; input.focus(); };
      el.append(" ", use);
      return free;
    },
    // Text to match literally inside a regular expression.
    escapeRegex(text) { return String(text).replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); },
    // HTML-escape text for templates, quotes included so it is safe inside attributes too.
    esc(text) {
      return String(text == null ? "" : text).replace(/[&<>"']/g, (c) => (
        { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
    },
    // A short note in the corner. It never stays long over the page (capped per level, a click dismisses
    // it), a repeated message replaces its twin, and at most MAX_TOASTS show at once. `action`
    // ({label, run}) adds a button, e.g. Undo, and keeps the toast up long enough to reach it.
    toast(message, level = "info", ms, action) {
      const stack = document.getElementById("toasts");
      const limit = action ? ACTION_TOAST_MS : TOAST_MS[level] || TOAST_MS.info;
      ms = Math.min(ms || limit, limit);
      // the same words again replace the last ones (an action's button is not part of them)
      [...stack.children].filter((t) => t.dataset.message === String(message)).forEach((t) => t.remove());
      while (stack.children.length >= MAX_TOASTS) stack.firstElementChild.remove();
      const box = document.createElement("div");
      box.className = `toast toast-${level}`;
      box.setAttribute("role", level === "error" ? "alert" : "status");
      box.title = "Click to dismiss";
      box.textContent = message;
      box.dataset.message = String(message);
      const dismiss = () => { box.classList.add("leaving"); setTimeout(() => box.remove(), 250); };
      box.addEventListener("click", dismiss);
      if (action) {
        const button = document.createElement("button");
        button.type = "button"; button.className = "toast-action"; button.textContent = action.label;
        button.addEventListener("click", () => action.run());  // the click goes on to dismiss the toast
        box.appendChild(button);
      }
      stack.appendChild(box);
      setTimeout(dismiss, ms);
      return dismiss;  // a caller may take its words back (what they said is no longer so)
    },
    async api(path, options = {}) {
      const opts = Object.assign({ headers: {} }, options);
      if (opts.json !== undefined) {
        opts.body = JSON.stringify(opts.json);
        opts.headers["Content-Type"] = "application/json";
        delete opts.json;
      }
      const response = await fetch(path, opts);
      window.studio.heardClock(response.headers.get("Date"));
      let data = null;
      try { data = await response.json(); } catch (e) { data = null; }
      if (!response.ok) {
        const err = new Error((data && data.error) || `${response.status} ${response.statusText}`);
        err.status = response.status;
        err.data = data;
        throw err;
      }
      return data;
    },
    // The pod's clock, as its answers' Date header tells it: a laptop whose clock is minutes off would show the
    // time a job has run, its cost and its ETA off by as much (the server's times are the pod's). Only an offset
    // over a few seconds counts: the header is to the second.
    clockSkewMs: 0,
    heardClock(header) {
      const server = header ? Date.parse(header) : NaN;
      if (isNaN(server)) return;
      const skew = server - Date.now();
      window.studio.clockSkewMs = Math.abs(skew) > 5000 ? skew : 0;
    },
    now() { return Date.now() + window.studio.clockSkewMs; },  // the pod's time, in ms
    formatBytes(n) {
      if (n == null) return "";
      const units = ["B", "KB", "MB", "GB", "TB"];
      let i = 0;
      while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }  // as the server's messages and the hub count
      return `${n.toFixed(n < 10 && i ? 1 : 0)} ${units[i]}`;
    },
    formatDuration(s) {
      if (s == null || !isFinite(s)) return "–";
      s = Math.max(0, Math.round(s));
      const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
      return h ? `${h}h ${m}m` : m ? `${m}m ${sec}s` : `${sec}s`;
    },
  };
})();
