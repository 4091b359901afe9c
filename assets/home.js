// The home page: the live rooms, fetched again every 10 s so the list stays current without a
// reload (the page as served works without this script). The words come from the page, in the
// reader's language (#room-card-text's data-t-* attributes).
"use strict";

(() => {
  const list = document.getElementById("live-rooms");
  const words = document.getElementById("room-card-text");
  if (!list || !words) return;
  const EVERY_MS = 10000;
  const t = (name, values = {}) =>
    (words.dataset[name] || "").replace(/\{(\w+)\}/g, (all, key) => (key in values ? values[key] : all));

  function card(room) {
    const link = document.createElement("a");
    link.className = "room-card";
    link.href = `/room/${Number(room.room_id)}`;
    if (room.cover_url) {
      const img = document.createElement("img");
      img.src = room.cover_url;
      img.alt = "";
      img.loading = "lazy";
      link.append(img);
    } else {
      const cover = document.createElement("div");
      cover.className = "cover-placeholder";
      cover.setAttribute("aria-hidden", "true");
      cover.textContent = "▶";
      link.append(cover);
    }
    const meta = document.createElement("div");
    meta.className = "room-meta";
    const title = document.createElement("strong");
    title.textContent = room.title || room.name;
    const line = document.createElement("span");
    let text = `${room.host.nickname} · ${t("tWatching", { n: Number(room.audience).toLocaleString("en") })}`;
    if (room.state === "co_streaming") text += ` · ${t("tCoStreaming")}`;
    line.textContent = text;
    meta.append(title, line);
    link.append(meta);
    return link;
  }

  function render(rooms) {
    if (rooms.length === 0) {
      const empty = document.createElement("p");
      empty.className = "empty";
      empty.textContent = t("tEmpty");
      list.replaceChildren(empty);
      return;
    }
    list.replaceChildren(...rooms.map(card));
  }

  // A failed fetch keeps the list as it is; the next round tries again.
  function refresh() {
    fetch("/api/v1/rooms", { credentials: "same-origin" })
      .then((res) => (res.ok ? res.json() : null))
      .then((body) => { if (body && Array.isArray(body.rooms)) render(body.rooms); }, () => {})
      .finally(() => setTimeout(refresh, EVERY_MS));
  }
  setTimeout(refresh, EVERY_MS);
})();
