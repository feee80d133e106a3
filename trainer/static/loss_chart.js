// Loss chart on a <canvas>: raw loss faint, exponentially smoothed loss bold, the evaluation loss (fixed
// images and noise) and the held-out images' loss as lines with dots, the learning rate faint on its own scale
// (or, to compare runs, one line per run in its colour); wheel zooms around the cursor, drag pans (a finger too; a
// tap shows the tooltip), double-click resets, range buttons show the last N steps. No libraries.
(function () {
  // the smallest and largest of many numbers: a long run has more points than Math.min(...points) may take as
  // arguments (about 100,000 in Chrome, a RangeError past it)
  const lowest = (values) => values.reduce((m, v) => (v < m ? v : m), Infinity);
  const highest = (values) => values.reduce((m, v) => (v > m ? v : m), -Infinity);

  class LossChart {
    constructor(canvas, tip) {
      this.canvas = canvas; this.tip = tip; this.points = []; this.smoothing = 0.9; this.evals = [];
      this.view = null; // [minStep, maxStep] or null for all
      this.drag = null;
      canvas.addEventListener("wheel", (e) => this.onWheel(e), { passive: false });
      // pointer events: a mouse, a pen and a finger alike. On a phone a tap shows the tooltip and a sideways drag
      // pans (an up-and-down one still scrolls the page); the range buttons zoom.
      canvas.style.touchAction = "pan-y";
      canvas.addEventListener("pointerdown", (e) => {
        if (e.pointerType !== "mouse") this.onMove(e);  // no hover on a touch screen: the tap is the hover
        this.drag = { x: e.offsetX, view: this.currentView() };
      });
      window.addEventListener("pointerup", () => { this.drag = null; });
      window.addEventListener("pointercancel", () => { this.drag = null; });  // the page scrolled instead
      canvas.addEventListener("pointermove", (e) => this.onMove(e));
      canvas.addEventListener("pointerleave", (e) => { if (e.pointerType === "mouse") this.tip.style.display = "none"; });
      canvas.addEventListener("dblclick", () => { this.view = null; this.draw(); });
      new ResizeObserver(() => this.draw()).observe(canvas);
    }
    add(points) {
      const seen = new Set(this.points.map((p) => p.step));
      for (const p of points) if (p.loss != null && !seen.has(p.step)) this.points.push({ step: p.step, loss: p.loss, lr: p.lr });
      this.points.sort((a, b) => a.step - b.step);
      this.draw();
    }
    // A run resumed from a checkpoint behind the step it had reached trains those steps again: their old points go.
    dropAfter(step) {
      this.points = this.points.filter((p) => p.step <= step);
      this.evals = this.evals.filter((e) => e.step <= step);
      this.draw();
    }
    setSmoothing(v) { this.smoothing = v; this.draw(); }
    // The job's evaluations: [{step, eval_loss, holdout_loss?}], each a measurement (drawn as it is, not smoothed).
    setEvals(evals) {
      this.evals = (evals || []).filter((e) => Number.isFinite(e.eval_loss)).sort((a, b) => a.step - b.step);
      this.bestHeld = LossChart.lowestHeld(this.evals);
      this.draw();
    }
    setRange(lastN) {
      if (!lastN || !this.points.length) { this.view = null; } else {
        const max = this.points[this.points.length - 1].step;
        this.view = [Math.max(0, max - lastN), max];
      }
      this.draw();
    }
    // Several runs in one chart (the compare page): [{name, color, points}], each drawn smoothed, or as measured
    // with `raw` (evaluations: points with dots).
    setSeries(series, raw = false) {
      this.raw = raw;
      this.series = series.map((one) => ({ ...one, points: one.points.filter((p) => p.loss != null)
        .map((p) => ({ step: p.step, loss: p.loss })).sort((a, b) => a.step - b.step) }));
      this.points = [].concat(...this.series.map((one) => one.points)).sort((a, b) => a.step - b.step);
      this.draw();
    }
    smoothed(points = this.points) {
      // exponential moving average, de-biased like TensorBoard so the line starts at the data
      const a = this.smoothing; let s = 0;
      return points.map((p, i) => {
        s = a * s + (1 - a) * p.loss;
        const debias = 1 - Math.pow(a, i + 1);
        return { step: p.step, loss: debias > 0 ? s / debias : p.loss };
      });
    }
    currentView() {
      if (this.view) return this.view;
      const steps = this.points.map((p) => p.step).concat(this.series ? [] : this.evals.map((e) => e.step));
      if (!steps.length) return [0, 1];
      const first = lowest(steps), last = highest(steps);
      return [first, Math.max(last, first + 1)];
    }
    // The evaluation nearest `step` in the view, for the tooltip.
    nearestEval(step, a, b) {
      const shown = this.evals.filter((e) => e.step >= a && e.step <= b);
      return shown.reduce((best, e) => (!best || Math.abs(e.step - step) < Math.abs(best.step - step) ? e : best), null);
    }
    geometry() {
      const r = this.canvas.getBoundingClientRect();
      return { w: r.width, h: r.height, left: 52, right: 12, top: 12, bottom: 26 };
    }
    onWheel(e) {
      if (!this.points.length) return;
      e.preventDefault();
      const g = this.geometry(); const [a, b] = this.currentView();
      const frac = Math.min(1, Math.max(0, (e.offsetX - g.left) / (g.w - g.left - g.right)));
      const at = a + frac * (b - a);
      const k = e.deltaY < 0 ? 0.8 : 1.25;
      let na = at - (at - a) * k, nb = at + (b - at) * k;
      const full = [this.points[0].step, this.points[this.points.length - 1].step];
      if (nb - na < 4) return;
      if (na <= full[0] && nb >= full[1]) { this.view = null; } else { this.view = [Math.max(full[0], na), Math.min(full[1], nb)]; }
      this.draw();
    }
    onMove(e) {
      const g = this.geometry();
      // a drag pans once it has gone a few pixels: a tap's jitter must not pin the view (which follows new steps)
      if (this.drag && this.points.length && (this.drag.moved || Math.abs(e.offsetX - this.drag.x) > 4)) {
        this.drag.moved = true;
        const [a, b] = this.drag.view; const span = b - a;
        const shift = -(e.offsetX - this.drag.x) / (g.w - g.left - g.right) * span;
        const full = [this.points[0].step, this.points[this.points.length - 1].step];
        let na = a + shift; na = Math.max(full[0], Math.min(na, full[1] - span));
        this.view = [na, na + span]; this.draw(); return;
      }
      if (!this.last || (!this.last.length && !this.evals.length)) return;
      const [a, b] = this.currentView();
      const step = a + (e.offsetX - g.left) / (g.w - g.left - g.right) * (b - a);
      const nearest = (pts) => pts.reduce((best, p) => (!best || Math.abs(p.step - step) < Math.abs(best.step - step) ? p : best), null);
      const best = nearest(this.last) || { step, loss: NaN };
      this.tip.style.display = "block";
      this.tip.style.left = `${Math.min(e.offsetX + 12, g.w - 150)}px`;
      this.tip.style.top = `${e.offsetY + 10}px`;
      if (this.series) {
        this.tip.textContent = `step ${best.step} · ` + this.series.map((one) => {
          const p = nearest(one.smooth || []);
          return `${one.name} ${p ? p.loss.toFixed(4) : "–"}`;
        }).join(" · ");
        return;
      }
      const raw = this.points.find((p) => p.step === best.step);
      const ev = this.nearestEval(step, a, b);
      const near = ev && Math.abs(ev.step - step) <= Math.abs(best.step - step) + (b - a) / 50;
      if (!near && !Number.isFinite(best.loss)) { this.tip.style.display = "none"; return; }
      this.tip.textContent = near
        ? `step ${ev.step} · evaluation ${ev.eval_loss.toFixed(4)}` +
          (Number.isFinite(ev.holdout_loss) ? ` · held-out ${ev.holdout_loss.toFixed(4)}` : "")
        : `step ${best.step} · loss ${raw ? raw.loss.toFixed(4) : "–"} · smooth ${best.loss.toFixed(4)}`;
    }
    draw() {
      const c = this.canvas, g = this.geometry(), dpr = window.devicePixelRatio || 1;
      if (!g.w) return;
      c.width = Math.round(g.w * dpr); c.height = Math.round(g.h * dpr);
      const ctx = c.getContext("2d"); ctx.setTransform(dpr, 0, 0, dpr, 0, 0); ctx.clearRect(0, 0, g.w, g.h);
      const css = getComputedStyle(document.documentElement);
      const muted = css.getPropertyValue("--muted").trim() || "#999", accent = css.getPropertyValue("--accent").trim() || "#68f";
      ctx.font = "11px system-ui, sans-serif"; ctx.fillStyle = muted;
      const evals = this.series ? [] : this.evals;
      if (!this.points.length && !evals.length) {
        ctx.textAlign = "center"; ctx.fillText("The loss appears here once training steps run.", g.w / 2, g.h / 2);
        this.canvas.dataset.points = "0"; return;
      }
      const [a, b] = this.currentView();
      const inView = (pts) => pts.filter((p) => p.step >= a && p.step <= b);
      const visible = inView(this.points);
      let smooth = inView(this.smoothed());
      if (this.series) {  // the smoothed lines only, and the axis fits them rather than the noise
        this.series.forEach((one) => { one.smooth = inView(this.raw ? one.points : this.smoothed(one.points)); });
        smooth = [].concat(...this.series.map((one) => one.smooth)).sort((p, q) => p.step - q.step);
      }
      this.last = smooth;
      const shownEvals = inView(evals);
      const values = (this.series ? smooth : visible).map((p) => p.loss)
        .concat(shownEvals.flatMap((e) => [e.eval_loss, e.holdout_loss])).filter(Number.isFinite);
      let lo = lowest(values), hi = highest(values);
      if (!(hi > lo)) { hi = lo + 1e-3; lo -= 1e-3; }
      const pad = (hi - lo) * 0.06; lo = lo >= 0 ? Math.max(0, lo - pad) : lo - pad; hi += pad;
      const x = (s) => g.left + (s - a) / ((b - a) || 1) * (g.w - g.left - g.right);
      const y = (v) => g.top + (1 - (v - lo) / (hi - lo)) * (g.h - g.top - g.bottom);
      ctx.strokeStyle = "#2c3240"; ctx.lineWidth = 1; ctx.textAlign = "right";
      for (let i = 0; i <= 4; i++) {
        const v = lo + (hi - lo) * i / 4, yy = y(v);
        ctx.beginPath(); ctx.moveTo(g.left, yy); ctx.lineTo(g.w - g.right, yy); ctx.stroke();
        ctx.fillText(v.toPrecision(3), g.left - 6, yy + 4);
      }
      ctx.textAlign = "center";
      for (let i = 0; i <= 5; i++) {
        const s = a + (b - a) * i / 5;
        ctx.fillText(String(Math.round(s)), x(s), g.h - 8);
      }
      const line = (pts, color, width) => {
        ctx.strokeStyle = color; ctx.lineWidth = width; ctx.beginPath();
        pts.forEach((p, i) => (i ? ctx.lineTo(x(p.step), y(p.loss)) : ctx.moveTo(x(p.step), y(p.loss))));
        ctx.stroke();
      };
      const dots = (pts, color) => {
        ctx.fillStyle = color;
        pts.forEach((p) => { ctx.beginPath(); ctx.arc(x(p.step), y(p.loss), 2.5, 0, 7); ctx.fill(); });
      };
      if (this.series) {
        this.series.forEach((one) => { line(one.smooth, one.color, 2); if (this.raw) dots(one.smooth, one.color); });
        this.canvas.dataset.series = String(this.series.filter((one) => one.points.length).length);
        this.canvas.dataset.points = String(this.points.length);
        return;
      }
      ctx.globalAlpha = 0.35; line(visible, accent, 1); ctx.globalAlpha = 1;
      line(smooth, "#4cc38a", 2);
      if (visible.length === 1) { ctx.fillStyle = accent; ctx.beginPath(); ctx.arc(x(visible[0].step), y(visible[0].loss), 3, 0, 7); ctx.fill(); }
      const measured = shownEvals.map((e) => ({ step: e.step, loss: e.eval_loss }));
      const held = shownEvals.filter((e) => Number.isFinite(e.holdout_loss)).map((e) => ({ step: e.step, loss: e.holdout_loss }));
      if (this.bestHeld && this.bestHeld.step >= a && this.bestHeld.step <= b) {  // where the held-out loss was lowest
        ctx.strokeStyle = EVAL_COLORS.held; ctx.globalAlpha = 0.5; ctx.setLineDash([2, 3]); ctx.lineWidth = 1;
        ctx.beginPath(); ctx.moveTo(x(this.bestHeld.step), g.top); ctx.lineTo(x(this.bestHeld.step), g.h - g.bottom); ctx.stroke();
        ctx.setLineDash([]); ctx.globalAlpha = 1;
      }
      this.drawRate(ctx, visible, x, g);
      line(measured, EVAL_COLORS.eval, 2); dots(measured, EVAL_COLORS.eval);
      ctx.setLineDash([5, 3]); line(held, EVAL_COLORS.held, 2); ctx.setLineDash([]); dots(held, EVAL_COLORS.held);
      this.canvas.dataset.points = String(this.points.length);
      this.canvas.dataset.evals = String(evals.length);
    }
    // The learning rate (warm-up, cosine, Prodigy's step size) as a faint line on its own scale, from 0 at the
    // bottom to its largest value in view at the top (said at the top right); a rate that never changes is left out.
    drawRate(ctx, visible, x, g) {
      const rated = visible.filter((p) => Number.isFinite(p.lr));
      const top = highest(rated.map((p) => p.lr)), bottom = lowest(rated.map((p) => p.lr));
      this.canvas.dataset.lr = rated.length > 1 && top > bottom * 1.0001 ? "1" : "0";
      if (this.canvas.dataset.lr !== "1") return;
      const y = (v) => g.top + (1 - v / top) * (g.h - g.top - g.bottom);
      ctx.strokeStyle = RATE_COLOR; ctx.globalAlpha = 0.7; ctx.lineWidth = 1.5; ctx.setLineDash([1, 3]); ctx.beginPath();
      rated.forEach((p, i) => (i ? ctx.lineTo(x(p.step), y(p.lr)) : ctx.moveTo(x(p.step), y(p.lr))));
      ctx.stroke(); ctx.setLineDash([]); ctx.globalAlpha = 1;
      ctx.fillStyle = RATE_COLOR; ctx.textAlign = "right";
      ctx.fillText(`lr ${Number(top.toPrecision(2))}`, g.w - g.right - 2, g.top + 10);
    }
  }
  const EVAL_COLORS = { eval: "#f0a34a", held: "#e06ad0" };
  const RATE_COLOR = "#8fa8ff";
  // The evaluation where the held-out images' loss was lowest, or null without held-out images.
  LossChart.lowestHeld = (evals) => {
    const held = (evals || []).filter((e) => Number.isFinite(e.holdout_loss));
    return held.length ? held.reduce((best, e) => (e.holdout_loss < best.holdout_loss ? e : best)) : null;
  };
  window.LossChart = LossChart;
})();
