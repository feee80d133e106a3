// "Notify me": a desktop notification when a long piece of work ends (a training job, an Express run),
// so its tab can stay in the background. Asked for per piece of work and kept in this browser; offered
// only where the browser allows notifications (a secure page: https, or localhost).
(function () {
  const usable = "Notification" in window && window.isSecureContext;

  // `button` toggles the wish, kept under `key`. Returns update({active, title, body}): call it with every
  // new state; when an active piece of work is no longer active, the notification comes (once).
  window.studio.notifier = function (button, key) {
    let wasActive = null;
    const granted = () => usable && Notification.permission === "granted";
    const wanted = () => { try { return localStorage.getItem(key) === "1"; } catch (e) { return false; } };
    const remember = (on) => {
      try { if (on) localStorage.setItem(key, "1"); else localStorage.removeItem(key); } catch (e) { /* private mode */ }
    };

    function draw() {
      button.hidden = !usable || !wasActive;
      const on = wanted() && granted();
      button.classList.toggle("active", on);
      button.setAttribute("aria-pressed", String(on));
      button.textContent = on ? "Notifying ✓" : "Notify me";
      button.title = on ? "A desktop notification comes when this ends; click to turn it off"
        : "Get a desktop notification when this ends, even with this tab in the background";
    }

    button.addEventListener("click", async () => {
      if (wanted() && granted()) { remember(false); draw(); return; }
      const answer = Notification.permission === "granted" ? "granted" : await Notification.requestPermission();
      if (answer === "granted") {
        remember(true);
        window.studio.toast("You will get a notification when this ends (keep this tab open).", "ok", 5000);
      } else {
        window.studio.toast("The browser blocks notifications for this page; the tab's title shows the progress.", "info", 7000);
      }
      draw();
    });

    return function update(state) {
      if (wasActive && !state.active && wanted() && granted()) {
        const note = new Notification(state.title, { body: state.body || "", tag: key, icon: "/favicon.ico" });
        note.onclick = () => { window.focus(); note.close(); };
        remember(false);
      }
      wasActive = !!state.active;
      draw();
    };
  };
})();
