// Chunked, resumable upload of one file (RunPod's proxy cuts requests over ~100 MB or ~100 s; the server side is
// studio/chunked.py): each chunk is retried on failure, and the server is asked which chunks it really has after a
// dropped connection. Used by the dataset page, the express page and the trainer's LoRA library.
(function () {
  const { api, formatBytes } = window.studio;
  const MAX_TRIES = 8;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  // what an upload cancelled on purpose ends with (callers tell it from a failure by `cancelled`)
  const cancelled = () => Object.assign(new Error("cancelled"), { cancelled: true });

  function putChunk(url, blob, onProgress, signal) {
    return new Promise((resolve, reject) => {
      if (signal && signal.aborted) return reject(cancelled());
      const xhr = new XMLHttpRequest();
      if (signal) signal.addEventListener("abort", () => xhr.abort(), { once: true });
      xhr.onabort = () => reject(cancelled());
      xhr.open("PUT", url);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.onprogress = (ev) => ev.lengthComputable && onProgress(ev.loaded);
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) return resolve();
        let message = `HTTP ${xhr.status}`;
        try { message = JSON.parse(xhr.responseText).error || message; } catch (e) { /* not JSON */ }
        const err = new Error(message);
        err.status = xhr.status;
        reject(err);
      };
      xhr.onerror = () => reject(new Error("connection lost"));
      xhr.ontimeout = () => reject(new Error("timed out"));
      xhr.timeout = 90000;
      xhr.send(blob);
    });
  }

  // base: "/api/datasets/<id>" or "/api/library"; ui.set(fraction, text) shows progress. Resolves to the upload
  // session id. An AbortSignal `signal` cancels it: the request in flight is cut, the pieces the server holds are
  // deleted, and it rejects with an error whose `cancelled` is true.
  // The same file sent again after the page was closed or reloaded mid-upload (same place, name, size and
  // content at both ends) goes on from the pieces the pod kept (the server keeps an unfinished upload two days).
  async function uploadFile(base, file, ui, signal) {
    const key = `chunked-upload:${base}:${file.name}:${file.size}:${await fingerprint(file)}`;
    const session = await unfinished(base, key, file) ||
      await api(`${base}/uploads`, { method: "POST", json: { filename: file.name, size: file.size } });
    sending.add(session.id);
    remember(key, session.id);
    const url = `${base}/uploads/${session.id}`;
    try {
      const sid = await whileHeld(session.id, () => sendChunks(url, session, file, ui, signal));
      remember(key, null);
      return sid;
    } catch (e) {
      if (e.cancelled) { remember(key, null); await discard(url); }
      throw e;
    } finally {
      sending.delete(session.id);
    }
  }

  // the sessions this page is sending now: the same file dropped again meanwhile gets a session of its own (two
  // uploads of one session would import it twice, and the first import deletes it under the second)
  const sending = new Set();

  // SHA-256 of the file's first and last 256 KB (where the page is not a secure context, its date instead)
  const ENDS = 256 * 1024;
  async function fingerprint(file) {
    const ends = await new Blob([file.slice(0, ENDS), file.slice(Math.max(ENDS, file.size - ENDS))]).arrayBuffer();
    if (!(window.crypto && crypto.subtle)) return `${file.lastModified}-${plainHash(new Uint8Array(ends))}`;
    const digest = await crypto.subtle.digest("SHA-256", ends);
    return [...new Uint8Array(digest)].slice(0, 12).map((b) => b.toString(16).padStart(2, "0")).join("");
  }
  // outside a secure context (plain http to a LAN address) there is no crypto.subtle: two 32-bit FNV-1a hashes of
  // the ends, so a file of the same name, size and date but other content is still told apart
  function plainHash(bytes) {
    let a = 0x811c9dc5, b = 0x01000193 ^ bytes.length;
    for (let i = 0; i < bytes.length; i++) {
      a = Math.imul(a ^ bytes[i], 0x01000193);
      b = Math.imul(b ^ bytes[bytes.length - 1 - i], 0x01000193);
    }
    return (a >>> 0).toString(16).padStart(8, "0") + (b >>> 0).toString(16).padStart(8, "0");
  }

  function remember(key, sid) {
    try { if (sid) localStorage.setItem(key, sid); else localStorage.removeItem(key); } catch (e) { /* private mode */ }
  }

  // the session this file was going up in, when the pod still has it unfinished; null otherwise
  async function unfinished(base, key, file) {
    let sid = null;
    try { sid = localStorage.getItem(key); } catch (e) { return null; }
    if (!sid || sending.has(sid) || await heldElsewhere(sid)) return null;
    try {
      const session = await api(`${base}/uploads/${encodeURIComponent(sid)}`);
      if (!session.complete && session.filename === file.name && session.size === file.size) return session;
    } catch (e) { /* imported, cancelled or swept since: a new upload */ }
    remember(key, null);
    return null;
  }

  // Another tab (or window) of this browser sending the same file holds its session's lock: the file dropped here
  // too gets a session of its own. A lock goes with its tab, so a tab closed mid-upload leaves it free to resume.
  // (Web Locks need a secure context: elsewhere only this page's own uploads are known.)
  const lockName = (sid) => `chunked-upload:${sid}`;
  const whileHeld = (sid, work) => (navigator.locks ? navigator.locks.request(lockName(sid), work) : work());
  async function heldElsewhere(sid) {
    if (!navigator.locks) return false;
    try { return (await navigator.locks.query()).held.some((lock) => lock.name === lockName(sid)); } catch (e) { return false; }
  }

  // the server forgets an upload session and its pieces (a cancelled upload, or one finished but not imported)
  async function discard(url) {
    try { await api(url, { method: "DELETE" }); } catch (e) { /* gone already, or swept later */ }
  }

  async function sendChunks(url, session, file, ui, signal) {
    const size = session.chunk_size;
    let missing = session.missing;
    // what the pod has already (an upload resumed after a reload): progress starts there, the speed counts what is sent
    const kept = (session.received || []).reduce((n, i) => n + Math.min(size, file.size - i * size), 0);
    let sent = kept;
    if (kept) ui.set(kept / file.size, `resuming: ${formatBytes(kept)} already on the pod`);
    const started = performance.now();
    for (let round = 0; missing.length; round++) {
      for (const n of missing) {
        const blob = file.slice(n * size, Math.min(file.size, (n + 1) * size));
        for (let attempt = 1; ; attempt++) {
          try {
            await putChunk(`${url}/chunks/${n}`, blob, (loaded) => {
              const done = sent + loaded;
              const rate = (done - kept) / ((performance.now() - started) / 1000);
              ui.set(done / file.size, `${Math.round((100 * done) / file.size)}% · ${formatBytes(rate)}/s`);
            }, signal);
            sent += blob.size;
            break;
          } catch (e) {
            if (e.cancelled) throw e;
            if (e.status && e.status < 500 && e.status !== 408 && e.status !== 429) throw e;
            if (attempt >= MAX_TRIES) throw new Error(`${e.message}; gave up after ${MAX_TRIES} tries`);
            ui.set(sent / file.size, `${e.message}: retrying…`);
            await sleep(Math.min(15000, 500 * 2 ** attempt));
            if (signal && signal.aborted) throw cancelled();
          }
        }
      }
      // ask the server what it really has: a chunk may have been lost with a dropped connection
      const status = await api(url);
      missing = status.missing;
      if (round > 3 && missing.length) throw new Error("the server keeps missing chunks");
    }
    ui.set(1, "uploaded");
    return session.id;
  }

  // The files of a drop (a Promise). A dropped folder is read through, subfolders too: each of its files is named by
  // its path in it ("holiday/beach/1.jpg"), so a caption pairs with the image beside it and the "1.jpg" of two
  // folders both go up; what systems leave in folders (.DS_Store, Thumbs.db, "._" and other hidden files) is left
  // out. Call it while the drop event is handled: its entries are gone after.
  function droppedFiles(dataTransfer) {
    const files = [...dataTransfer.files];
    const entries = [...dataTransfer.items].filter((item) => item.kind === "file")
      .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
    if (entries.length !== files.length || !entries.some((entry) => entry && entry.isDirectory)) {
      return Promise.resolve(files);
    }
    return (async () => {
      const found = [];
      for (const [i, entry] of entries.entries()) {
        if (entry) await readEntry(entry, "", found);
        else found.push(files[i]);
      }
      return found;
    })();
  }
  const JUNK = new Set(["thumbs.db", "desktop.ini", "__macosx"]);
  const isJunk = (name) => name.startsWith(".") || JUNK.has(name.toLowerCase());
  async function readEntry(entry, folder, found) {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      found.push(folder ? new File([file], folder + file.name, { type: file.type, lastModified: file.lastModified })
        : file);
      return;
    }
    const reader = entry.createReader();
    for (;;) {  // a folder gives its entries a hundred or so at a time, then none
      const some = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (!some.length) return;
      for (const child of some) {
        if (!isJunk(child.name)) await readEntry(child, `${folder}${entry.name}/`, found);
      }
    }
  }

  // The files of a folder chosen with a folder picker (<input webkitdirectory>), each named by its path in it as a
  // dropped folder's are ("holiday/beach/1.png"), what a system leaves in folders left out.
  function pickedFolder(fileList) {
    return [...fileList].filter((file) => !(file.webkitRelativePath || file.name).split("/").some(isJunk))
      .map((file) => (file.webkitRelativePath ? new File([file], file.webkitRelativePath,
        { type: file.type, lastModified: file.lastModified }) : file));
  }
  window.chunkedUpload = { uploadFile, discard, fingerprint, droppedFiles, pickedFolder };
})();
