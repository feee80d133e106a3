// "Try several values of one setting" in the new job form: the job queued two to four times with one
// setting changed (same data, same seed), then the compare page opens on the runs. The server checks every
// variant first and queues all of them or none (POST /api/jobs/variants).
(function () {
  const { esc } = trainer;
  const MAX = 4;
  const NONE = "(none)";  // a text setting left empty, e.g. preserve_class off

  trainer.variants = function ({ recipe, config, payload }) {
    const $ = (id) => document.getElementById(id);
    const fields = recipe.fields.filter((f) => (recipe.variant_fields || []).includes(f.name));
    if (!$("vary-field") || !fields.length) return;
    const idemKey = () => (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2));
    let key = idemKey();
    $("vary-field").innerHTML = fields.map((f) => `<option value="${esc(f.name)}">${esc(f.label || f.name)}</option>`).join("");

    const field = () => fields.find((f) => f.name === $("vary-field").value);
    const show = (v) => (Array.isArray(v) ? v.join(", ") : String(v));

    // Values to start from: half, as is and double for a rate, a rank or the steps, three seeds, every choice.
    function suggest() {
      const f = field(), now = config()[f.name];
      let values;
      if (f.choices) values = f.choices.slice(0, MAX);
      else if (f.type === "boolean") values = [false, true];
      else if (["learning_rate", "rank", "steps"].includes(f.name)) {
        values = [now / 2, now, now * 2].map((v) => (f.type === "integer" ? Math.max(1, Math.round(v)) : Number(v.toPrecision(3))));
      } else if (f.name === "seed") values = [now, now + 1, now + 2];  // the same run three times: how much is luck?
      else if (f.name === "preserve_class") values = [NONE, now || "person"];  // does keeping the class pay?
      else values = [now === "" ? NONE : now];
      $("vary-values").value = values.map(show).join(f.type === "array" ? "; " : ", ");
      $("vary-help").textContent = f.type === "array" ? "Variants separated by ; (each a list, e.g. 512; 512, 768)."
        : f.choices ? `Any of: ${f.choices.join(", ")}.` : f.type === "string" ? `Separated by commas; ${NONE} for empty (off).`
        : "Separated by commas.";
      count();
    }

    function parse() {
      const f = field(), raw = $("vary-values").value.trim();
      if (!raw) return [];
      const one = (text) => {
        const t = text.trim();
        if (f.type === "boolean") return t === "true" || t === "on";
        if (f.type === "integer" || f.type === "number") return t === "" ? null : Number(t);
        return t === NONE ? "" : t;
      };
      if (f.type === "array") {
        return raw.split(";").map((part) => part.split(/[,\s]+/).filter(Boolean).map((t) => (f.items === "string" ? t : Number(t))));
      }
      return raw.split(f.type === "string" && !f.choices ? /\s*,\s*/ : /[,\s]+/).filter(Boolean).map(one);
    }

    // the words typed where a number belongs ("abc" would go as nothing and come back as "a value is required"),
    // written decimals only: Number() also reads 0x10, and "0,0001" is a decimal comma, not the values 0 and 1
    const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;
    function notNumbers() {
      const f = field();
      const numeric = f.type === "integer" || f.type === "number" || (f.type === "array" && f.items !== "string");
      if (!numeric) return [];
      const raw = $("vary-values").value;
      const commas = raw.match(/\d,\d/) && raw.split(/[;\s]+/).some((t) => /^\d+,0\d|^0,\d/.test(t));
      return raw.split(/[,;\s]+/).filter((t) => t && !DECIMAL.test(t)).concat(commas ? ["0,… (write decimals with a dot)"] : []);
    }

    function count() {
      const values = parse(), bad = notNumbers();
      const ok = values.length >= 2 && values.length <= MAX && !bad.length;
      $("vary-start").disabled = !ok;
      $("vary-start").textContent = ok ? `Queue ${values.length} variants` : "Queue variants";
      $("vary-note").classList.toggle("field-error", bad.length > 0);
      $("vary-note").textContent = bad.length ? `Not a number: ${bad.slice(0, 3).join(", ")}.`
        : values.length > MAX ? `At most ${MAX} (the compare page shows ${MAX} runs).`
        : values.length < 2 ? "Give two to four values." : "Same data and seed; only this setting differs.";
    }

    async function start() {
      $("vary-start").disabled = true;
      try {
        const res = await fetch("/api/jobs/variants", { method: "POST", headers: { "Content-Type": "application/json",
          "Idempotency-Key": key }, body: JSON.stringify({ ...payload(), vary: { field: field().name, values: parse() } }) });
        let data = null;
        try { data = await res.json(); } catch (e) { /* a proxy's error page (502, 524), not the trainer's answer */ }
        if (!res.ok || !data) {
          throw new Error(data && data.error ? data.error : `The trainer answered ${res.status}, so the variants may or `
            + "may not be queued. Press Queue again: none is queued twice.");
        }
        key = idemKey();
        location.href = data.compare_url;
      } catch (err) {  // said here, beside the values: the job in the form itself may be fine
        count();
        $("vary-note").textContent = err instanceof TypeError ? "The trainer did not answer, so the variants may or may "
          + "not be queued. Press Queue again: none is queued twice." : err.message;
        $("vary-note").classList.add("field-error");
      }
    }

    $("vary-field").addEventListener("change", suggest);
    $("vary-values").addEventListener("input", count);
    $("vary-start").addEventListener("click", start);
    suggest();
  };
})();
