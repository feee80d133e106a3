// A form kept in its tab as it changes (sessionStorage, one per address): Back from another page or a reload brings it
// back instead of the defaults, and opening the same address again offers it. The page drops it once its work is
// started, so Back from the job's page does not offer to queue the same settings twice.
trainer.formDraft = function (key) {
  function drop() { try { sessionStorage.removeItem(key); } catch (e) { /* never kept */ } }
  return {
    save(draft) {
      try { sessionStorage.setItem(key, JSON.stringify(draft)); } catch (e) { /* private mode, full: not kept */ }
    },
    drop,
    read() {
      try { return JSON.parse(sessionStorage.getItem(key)); } catch (e) { return null; }
    },
    // after Back or a reload the draft comes back at once (with "Start over"); a fresh visit is offered it
    offer(draft, restore) {
      const nav = (performance.getEntriesByType("navigation")[0] || {}).type;
      if (nav === "back_forward" || nav === "reload") {
        restore(draft);
        studio.toast("Your settings are back as you left them.", "ok", 8000, {
          label: "Start over", run: () => { drop(); location.replace(location.href); } });
      } else {
        studio.toast("This form has settings you filled in earlier and did not start.", "info", 12000, {
          label: "Bring them back", run: () => restore(draft) });
      }
    },
  };
};
