// Import from a link: the button, a link dropped on the page (from another tab), or one pasted outside a text field
// opens the link dialog; the import then reports in the uploads panel (upload.js) like an upload's.
(function () {
  const { api } = window.studio;
  const ds = window.ds;
  const $ = (id) => document.getElementById(id);

  // a direct link to a video, or a Hugging Face dataset with videos: the frames to take from them
  let linkFrames = null;
  const showLinkFrames = (held) => {
    linkFrames = window.frameChoice.showForLink($("link-frames"), $("link-url").value, held);
  };
  const linkChecker = window.linkCheck($("link-url"), $("link-check"), $("link-limit"), showLinkFrames);
  function openLink(url) {
    $("link-url").value = url || "";
    $("link-limit").value = "";
    $("link-spread").value = "";
    $("link-error").textContent = "";
    linkChecker.reset();
    if (url) linkChecker.check();
    $("link-dialog").showModal();
  }
  $("btn-link").onclick = () => openLink("");
  $("btn-link-empty").onclick = () => openLink("");
  $("link-form").onsubmit = async (ev) => {
    ev.preventDefault();
    $("link-start").disabled = true;
    try {
      const limit = $("link-limit").value.trim();
      const job = await api(`${ds.base}/import-url`, {
        method: "POST", json: { url: $("link-url").value, limit: limit ? Number(limit) : null,
          spread: Boolean(limit && $("link-spread").value), ...(linkFrames ? linkFrames(false) : {}) } });
      $("link-dialog").close();
      ds.followImportInPanel("Importing from a link", job.id);
    } catch (e) {
      $("link-error").textContent = e.message;
    } finally {
      $("link-start").disabled = false;
    }
  };
  const isLink = (text) => /^https?:\/\/\S+$/i.test((text || "").trim());
  document.addEventListener("paste", (ev) => {
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
    const text = ev.clipboardData && ev.clipboardData.getData("text/plain");
    if (!typing && !document.querySelector("dialog[open]") && isLink(text)) { ev.preventDefault(); openLink(text.trim()); }
  });

  window.addEventListener("dragover", (ev) => {
    if (ev.dataTransfer && [...ev.dataTransfer.types].includes("text/uri-list")) ev.preventDefault();
  });
  window.addEventListener("drop", (ev) => {  // files dropped with a link are upload.js's
    const link = ev.dataTransfer && (ev.dataTransfer.getData("text/uri-list") || "").split(/\r?\n/).find(isLink);
    if (ev.dataTransfer && !ev.dataTransfer.files.length && link) {
      ev.preventDefault();
      openLink(link.trim());
    }
  });
})();
