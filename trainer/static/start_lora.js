// "Start from LoRA" in the new job form: the library's LoRA files are offered as the field is typed in,
// and picking one sets the network, the LoRA rank or LoKr factor and the layers to the file's (a job can only go
// on from a file of its own shape), saying so in a toast.
(function () {
  trainer.startLora = async function (config, onChange) {
    const input = document.getElementById("f-init_lora");
    if (!input) return;
    let files = [];
    try { files = (await studio.api("/api/library/files")).files; } catch (e) { return; }  // the field still works
    files = files.filter((f) => !f.lokr || f.lokr_factor != null);  // a LoKr of a split this studio trains
    const list = document.createElement("datalist");
    list.id = "library-loras";
    list.innerHTML = files.map((f) => `<option value="${trainer.esc(f.name)}">${f.lokr ? `LoKr factor ${f.lokr_factor}`
      : f.rank ? `rank ${f.rank}` : ""}${
      f.trigger_word ? ` · ${trainer.esc(f.trigger_word)}` : ""}</option>`).join("");
    input.after(list);
    input.setAttribute("list", list.id);
    input.placeholder = files.length ? "a LoRA of the library (type to pick)" : "no LoRA in the library yet";

    // the file's rank and layers, when the config has others (the field set by hand, or by the page's URL)
    function match() {
      const file = files.find((f) => f.name === input.value.trim());
      if (!file) return;
      const c = config(), set = [], network = file.lokr ? "lokr" : "lora";
      const switched = (c.network || "lora") !== network;
      c.network = network;
      if (file.lokr && (switched || c.lokr_factor !== file.lokr_factor)) {
        c.lokr_factor = file.lokr_factor; set.push(`factor ${file.lokr_factor}`);
      }
      if (!file.lokr && file.rank && (switched || c.rank !== file.rank)) { c.rank = file.rank; set.push(`rank ${file.rank}`); }
      if (file.lora_targets && c.lora_targets !== file.lora_targets) {
        c.lora_targets = file.lora_targets; set.push(`layers ${file.lora_targets}`);
      }
      if (!set.length && !switched) return;
      onChange();
      studio.toast(`${file.lokr ? "LoKr" : "LoRA"}${set.length ? ` ${set.join(" and ")}` : ""}, as ${file.name} was trained.`, "ok", 4000);
    }
    input.addEventListener("change", match);
    if (input.value) match();
  };
})();
