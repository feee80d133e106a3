// The job log as a person reads it: whole lines, each progress bar at its last state, no terminal codes.
// Libraries draw tqdm bars that redraw one line with carriage returns ("\r"); shown raw, every redraw
// would be glued into one long line of bar characters.
(function () {
  const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;
  // "Writing model shards: 100%|█████| 3/3 [00:01<00:00, 2.10it/s]" -> "Writing model shards: 100% (3/3, 00:01)"
  const TQDM = /^(.*?)\s*(\d{1,3})%\|[^|]*\|\s*([\d.]+[kMG]?\/[\d.]+[kMG]?)?\s*(?:\[([^\]<]*)(?:<[^\]]*)?\])?\s*$/;
  const MAX_LINES = 5000;
  const MAX_NODES = 200;  // text nodes appended before the log is drawn as one again

  // What a terminal shows at the end of a line that was redrawn with "\r": its last non-empty state.
  function lastState(raw) {
    const states = raw.split("\r").filter((part) => part.trim() !== "");
    return states.length ? states[states.length - 1] : "";
  }

  // A progress bar as one short line of text; null when the line is not a progress bar.
  function progressLine(line) {
    const m = line.match(TQDM);
    if (!m) return null;
    const [, label, pct, count, elapsed] = m;
    const extra = [count, elapsed && elapsed.trim()].filter(Boolean).join(", ");
    const name = label.trim().replace(/:$/, "");
    return { label: name, text: `${name ? name + ": " : ""}${pct}%${extra ? ` (${extra})` : ""}` };
  }

  class LogView {
    constructor(box) { this.box = box; this.reset(); }

    reset() { this.lines = []; this.bars = []; this.partial = ""; this.shown = ""; }

    append(text) {
      const parts = (this.partial + text.replace(ANSI, "")).split("\n");
      this.partial = parts.pop();  // the line being written: shown, but finished by the next chunk
      for (const raw of parts) this.push(lastState(raw));
      if (this.lines.length > MAX_LINES) {
        this.lines.splice(0, this.lines.length - MAX_LINES);
        this.bars.splice(0, this.bars.length - MAX_LINES);
      }
    }

    push(line) {
      const bar = progressLine(line);
      const last = this.lines.length - 1;
      // a bar printed on fresh lines at each update (no terminal) still takes one line: its latest state
      if (bar && last >= 0 && this.bars[last] === bar.label) { this.lines[last] = bar.text; return; }
      this.lines.push(bar ? bar.text : line);
      this.bars.push(bar ? bar.label : null);
    }

    text() {
      const tail = lastState(this.partial);
      const bar = tail && progressLine(tail);
      const lines = this.lines.slice();
      if (bar && this.bars[lines.length - 1] === bar.label) lines[lines.length - 1] = bar.text;
      else if (tail) lines.push(bar ? bar.text : tail);
      return lines.join("\n");
    }

    // `placeholder` (e.g. "Waiting for the worker…") shows only while the log is empty, never inside it.
    // New lines are added after the ones shown, which stay as they are: text selected to copy (a traceback) stays
    // selected while the log grows. Anything else (the first lines, a redrawn bar, lines dropped) draws it anew.
    render(placeholder) {
      const text = this.text();
      const shown = this.shown;
      if (text && shown && text.startsWith(shown) && this.box.childNodes.length < MAX_NODES) {
        if (text.length > shown.length) this.box.appendChild(document.createTextNode(text.slice(shown.length)));
      } else if (text !== shown || !text) {
        this.box.textContent = text || placeholder || "";
      }
      this.shown = text;
      this.box.classList.toggle("log-placeholder", !text && !!placeholder);
      return text;
    }
  }

  window.LogView = LogView;
})();
