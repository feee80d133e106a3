// Shared page helpers: links between the tools (also behind RunPod's proxy), toasts, JSON fetch.
(function () {
  const body = document.body;
  const ports = { datasets: body.dataset.portDatasets, trainer: body.dataset.portTrainer };
  function toolUrl(tool) {
    const port = ports[tool];
    const loc = window.location;
    // RunPod proxy: https://<pod>-<port>.proxy.runpod.net
    const proxied = loc.hostname.match(/^([a-z0-9]+)-(\d+)(\..*)$/i);
    if (proxied) return `${loc.protocol}//${proxied[1]}-${port}${proxied[3]}/`;
    return `${loc.protocol}//${loc.hostname}:${port}/`;
  }
  document.querySelectorAll(".tool-link").forEach((a) => {
    if (a.dataset.tool !== body.dataset.service) a.href = toolUrl(a.dataset.tool);
  });

  window.studio = {
    toolUrl,
    // HTML-escape text for templates, quotes included so it is safe inside attributes too.
    esc(text) {
      return String(text == null ? "" : text).replace(/[&<>"']/g, (c) => (
        { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
    },
    toast(message, level = "info", ms = 4000) {
      const box = document.createElement("div");
      box.className = `toast toast-${level}`;
      box.textContent = message;
      document.getElementById("toasts").appendChild(box);
      setTimeout(() => box.remove(), ms);
    },
    async api(path, options = {}) {
      const opts = Object.assign({ headers: {} }, options);
      if (opts.json !== undefined) {
        opts.body = JSON.stringify(opts.json);
        opts.headers["Content-Type"] = "application/json";
        delete opts.json;
      }
      const response = await fetch(path, opts);
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
    formatBytes(n) {
      if (n == null) return "";
      const units = ["B", "KB", "MB", "GB", "TB"];
      let i = 0;
      while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
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
