// The "Events" tab: the shared event log (every camera's finished tracks), filtered, and a
// live feed of new ones read from /api/events/stream with fetch (EventSource cannot send the
// API key header). A track of a watch-list identity is an alert: highlighted, counted on the
// tab until the tab is opened. Uses api(), esc() and keyInput from the page's script.
"use strict";
(() => {
  const list = document.getElementById("events-list");
  const badge = document.getElementById("events-badge");
  let unseen = 0;

  function when(t) { return new Date(t * 1000).toLocaleString(); }
  function row(e) {
    const known = e.identity !== null;
    const img = e.thumbnail ? `<img data-event="${e.id}" alt="track ${e.id}">` :
      `<div class="noimg"></div>`;
    const score = e.score === null ? "" : ` · score ${e.score.toFixed(3)}`;
    const threshold = e.threshold === null ? "" : ` (threshold ${e.threshold.toFixed(3)})`;
    return `<div class="person event ${known ? "alert" : ""}">${img}<div class="who">
      <div class="name">${known ? esc(e.identity) : "unknown"}</div>
      <div class="count">${esc(e.camera)} · ${when(e.time)}${score}${threshold}</div></div></div>`;
  }
  async function fillThumbs(root) {
    for (const img of root.querySelectorAll("img[data-event]")) {
      try {
        const blob = await api(`/api/events/${img.dataset.event}/thumbnail`);
        img.src = URL.createObjectURL(blob);
      } catch (e) { img.replaceWith(Object.assign(document.createElement("div"), {className: "noimg"})); }
      img.removeAttribute("data-event");
    }
  }
  function filters() {
    const params = new URLSearchParams();
    for (const name of ["camera", "identity", "since", "until"]) {
      const value = document.getElementById(`events-${name}`).value.trim();
      if (value) params.set(name, value);
    }
    return params;
  }
  async function load() {
    try {
      const events = (await api(`/api/events?${filters()}`)).events;
      list.innerHTML = events.length ? events.map(row).join("") :
        `<div class="empty">No event matches.</div>`;
      fillThumbs(list);
    } catch (e) { list.innerHTML = `<div class="empty">${esc(e.message)}</div>`; }
  }
  function matches(e) {
    const f = filters();
    if (f.get("camera") && f.get("camera") !== e.camera) return false;
    const who = f.get("identity");
    return !who || who === (e.identity === null ? "unknown" : e.identity);
  }
  function arrived(e) {
    if (e.identity !== null && !document.getElementById("events").classList.contains("active")) {
      unseen += 1; badge.textContent = ` (${unseen})`;
    }
    if (!matches(e)) return;
    list.querySelector(".empty")?.remove();
    list.insertAdjacentHTML("afterbegin", row(e));
    fillThumbs(list);
  }
  async function follow() {
    let last = null;
    for (;;) {
      try {
        const headers = {};
        if (keyInput.value.trim()) headers["X-API-Key"] = keyInput.value.trim();
        if (last !== null) headers["Last-Event-ID"] = String(last);
        const response = await fetch("/api/events/stream", {headers});
        if (!response.ok) throw new Error(String(response.status));
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const message = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
            const data = message.split("\n").filter((l) => l.startsWith("data: "));
            const id = message.split("\n").find((l) => l.startsWith("id: "));
            if (id) last = Number(id.slice(4));
            if (data.length) arrived(JSON.parse(data.map((l) => l.slice(6)).join("\n")));
          }
        }
      } catch (e) { /* server restarting or key missing: try again */ }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
  document.getElementById("events-apply").addEventListener("click", load);
  document.getElementById("tab-events").addEventListener("click", () => {
    unseen = 0; badge.textContent = ""; load();
  });
  follow();
})();
