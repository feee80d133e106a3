// The datasets a new job trains on: one, or a mix of several, each with its repeats (an image of a
// dataset with repeats 3 is trained on three times an epoch). The new job form owns the cards; this owns
// the list of picks, the mix panel under the cards (repeats, remove, what an epoch holds) and what the
// request sends: {dataset} for one dataset, {datasets: [{name, repeats}]} for a mix.
(function () {
  const { esc } = trainer;
  const MAX = 8, MAX_REPEATS = 100;

  trainer.datasetMix = function (box, onChange, onPrompt) {
    let picks = [];  // [{name, repeats}], the first one is the primary (its trigger word and name fill the form)
    let known = [];  // the exported datasets, as /api/datasets lists them

    const find = (name) => known.find((d) => d.name === name);
    const has = (name) => picks.some((p) => p.name === name);

    function set(list) {
      picks = list.filter((p) => p && p.name).slice(0, MAX)
        .map((p) => ({ name: p.name, repeats: Math.min(MAX_REPEATS, Math.max(1, Number(p.repeats) || 1)) }));
    }

    // A card's own click: this dataset alone. Its "+ Add" button: this one too (or no longer).
    function only(name) { set([{ name, repeats: 1 }]); }
    function toggle(name) {
      if (has(name)) set(picks.filter((p) => p.name !== name));
      else if (picks.length < MAX) set([...picks, { name, repeats: 1 }]);
      else studio.toast(`A job trains on at most ${MAX} datasets.`, "error");
    }

    function payload() {
      if (picks.length > 1 || (picks[0] && picks[0].repeats !== 1)) {
        return { datasets: picks.map(({ name, repeats }) => ({ name, repeats })) };
      }
      return { dataset: picks[0] ? picks[0].name : "" };
    }

    // The panel under the cards, for a mix: each dataset's repeats and what an epoch holds; a concept of its
    // own (a further dataset's trigger word) that no preview prompt names can get one in a click.
    function render(trigger, prompts = []) {
      box.hidden = picks.length < 2;
      if (box.hidden) { box.innerHTML = ""; return; }
      const rows = picks.map((p, i) => {
        const d = find(p.name) || { images: 0 };
        return `<tr data-mix="${esc(p.name)}"><td><strong>${esc(p.name)}</strong>${i === 0 ? ' <span class="chip">first</span>' : ""}</td>
          <td class="muted">${studio.plural(d.images, "image")}</td>
          <td><label class="repeats">× <input type="number" min="1" max="${MAX_REPEATS}" step="1" value="${p.repeats}"
            data-repeats="${esc(p.name)}" aria-label="Repeats of ${esc(p.name)}"></label></td>
          <td class="muted narrow-hide" data-epoch="${esc(p.name)}">${d.images * p.repeats} an epoch</td>
          <td><button type="button" data-unmix="${esc(p.name)}" title="Train without this dataset">Remove</button></td></tr>`;
      }).join("");
      // the first dataset takes the job's trigger word; each other one keeps its own (several concepts), or
      // takes the job's when it has none (the engine's rule: trainer/engine/data.source_triggers)
      const chip = (word) => `<span class="chip">${esc(word)}</span>`;
      const further = picks.slice(1).map((p) => find(p.name)).filter(Boolean);
      const own = further.filter((d) => d.trigger_word && d.trigger_word !== trigger);
      const none = further.filter((d) => !d.trigger_word);
      const note = [
        own.length ? `${own.map((d) => esc(d.name)).join(", ")} ${own.length === 1 ? "keeps its own trigger word" : "keep their own trigger words"}
          ${own.map((d) => chip(d.trigger_word)).join(", ")}: one LoRA that learns ${trigger ? chip(trigger) : "the first dataset"} and ${own.length === 1 ? "it" : "them"}.` : "",
        none.length && trigger ? `${none.map((d) => esc(d.name)).join(", ")} ${none.length === 1 ? "has" : "have"} no trigger word of
          ${none.length === 1 ? "its" : "their"} own: the captions get ${chip(trigger)}.` : "",
      ].filter(Boolean).map((text) => `<div class="help">${text}</div>`).join("");
      const named = (word) => prompts.some((text) => new RegExp(`(^|[^\\w])${studio.escapeRegex(word)}($|[^\\w])`, "i").test(text));
      const unpreviewed = [...new Set(own.map((d) => d.trigger_word))].filter((word) => !named(word));
      const buttons = unpreviewed.map((word) => `<button type="button" data-prompt-for="${esc(word)}"
        title="Add a preview prompt with ${esc(word)}, so the previews and the proof grid show that concept too">Preview ${esc(word)} too</button>`).join(" ");
      box.innerHTML = `<table class="mix-table"><tbody>${rows}</tbody></table>
        <div class="help"><span id="mix-epoch"></span>: raise a dataset's repeats to give its images more weight (a few
          close-ups beside many wide shots, say).</div>${note}${buttons ? `<div class="mix-prompts">${buttons}</div>` : ""}`;
      counts();
    }

    // What an epoch holds, per dataset and in all (updated in place while a repeats field is typed in).
    function counts() {
      let epoch = 0;
      for (const p of picks) {
        const n = (find(p.name) || { images: 0 }).images * p.repeats;
        epoch += n;
        const cell = box.querySelector(`[data-epoch="${CSS.escape(p.name)}"]`);
        if (cell) cell.textContent = `${n} an epoch`;
      }
      const total = box.querySelector("#mix-epoch");
      if (total) total.textContent = `Each epoch trains on ${studio.plural(epoch, "image")}`;
    }

    box.addEventListener("input", (e) => {
      const name = e.target.dataset.repeats;
      if (!name || e.target.value === "") return;
      const pick = picks.find((p) => p.name === name);
      if (pick) pick.repeats = Math.min(MAX_REPEATS, Math.max(1, Math.round(Number(e.target.value)) || 1));
      counts();
      onChange(false);
    });
    box.addEventListener("click", (e) => {
      const name = e.target.dataset.unmix;
      if (name) { toggle(name); onChange(true); }
      const word = e.target.dataset.promptFor;
      if (word && onPrompt) onPrompt(word);
    });

    return {
      get picks() { return picks; },
      get primary() { return picks[0] ? picks[0].name : ""; },
      set, only, toggle, has, payload, render,
      setKnown(list) { known = list; },
      fromJob(job) { set(job.datasets && job.datasets.length ? job.datasets : [{ name: job.dataset, repeats: 1 }]); },
    };
  };
})();
