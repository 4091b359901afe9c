// The replay page: the recording, its comments (docs/API.md, "Records"), the live session's
// danmaku flying over the picture at the moments they were sent, and the watch statistics.
// Everything from the server is shown with textContent, never as HTML.
"use strict";

(() => {
  const root = document.querySelector("[data-record-id]");
  if (!root) return;
  const recordId = Number(root.dataset.recordId);
  const viewerId = root.dataset.userId ? Number(root.dataset.userId) : null;
  const isHost = root.dataset.host === "true";
  const api = `/api/v1/records/${recordId}`;
  const $ = (id) => document.getElementById(id);
  const player = $("player");
  const overlay = new window.DanmakuOverlay($("overlay"));
  const notice = (text) => { $("notice").textContent = text; };
  // The page's words in the reader's language, from #record-text's data-t-* attributes (the
  // catalogue's js.record section); `{name}` placeholders are filled from `values`.
  const words = $("record-text").dataset;
  const t = (name, values = {}) =>
    (words[name] || "").replace(/\{(\w+)\}/g, (all, key) => (key in values ? values[key] : all));

  // The header tells the server this is the site's own script, not another site's form
  // (docs/SECURITY.md); a JSON body would too, but DELETE has none.
  async function call(method, path, body) {
    const headers = { "X-RM-CSRF": "1" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = res.status === 204 ? null : await res.json().catch(() => null);
    if (!res.ok) {
      const message = data && data.error ? data.error.message : t("tServerAnswered", { status: res.status });
      throw new Error(message);
    }
    return data;
  }

  // h:mm:ss, or m:ss under an hour, as the catalogue shows durations.
  function clock(ms) {
    const total = Math.max(0, Math.floor(ms / 1000));
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = String(total % 60).padStart(2, "0");
    return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
  }

  function durationMs() {
    return Number.isFinite(player.duration) && player.duration > 0
      ? player.duration * 1000
      : Number(root.dataset.durationMs);
  }

  function seek(ms) {
    player.currentTime = ms / 1000;
    player.play().catch(() => {});
  }

  // ---- danmaku replay ----

  const DANMAKU_KEY = "rm.replay.danmaku";
  let danmaku = [];
  let next = 0;

  // The first danmaku at or after `ms`: after a seek the replay resumes there, without a burst
  // of everything in between.
  function firstAtOrAfter(ms) {
    let lo = 0;
    let hi = danmaku.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (danmaku[mid].offset_ms < ms) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  function resync() {
    overlay.clear();
    next = firstAtOrAfter(player.currentTime * 1000);
  }

  // A danmaku whose moment passed more than this long ago is skipped (the tab was in the
  // background, or the video stalled), not sent in a burst.
  const LATE_MS = 1000;

  // The overlay's clock is the video's, so rows free up as the picture moves, not the wall clock.
  function tick() {
    const now = player.currentTime * 1000;
    while (next < danmaku.length && danmaku[next].offset_ms <= now) {
      const d = danmaku[next];
      next += 1;
      if (now - d.offset_ms <= LATE_MS) overlay.fly(d.text, now, { title: d.nickname });
    }
    if (!player.paused) requestAnimationFrame(tick);
  }

  player.addEventListener("play", () => {
    overlay.element.classList.remove("paused");
    requestAnimationFrame(tick);
  });
  player.addEventListener("pause", () => overlay.element.classList.add("paused"));
  player.addEventListener("seeking", resync);
  overlay.bindToggle($("danmaku-toggle"), DANMAKU_KEY);

  // The danmaku come a page at a time (a long session may have very many); each page joins
  // the replay as soon as it arrives.
  async function loadDanmaku() {
    let after = null;
    for (;;) {
      const url = after === null ? `${api}/danmaku` : `${api}/danmaku?after=${after}`;
      const res = await fetch(url, { credentials: "same-origin" });
      if (!res.ok) throw new Error(`danmaku: ${res.status}`);
      const data = await res.json();
      danmaku = danmaku.concat(data.danmaku).sort((a, b) => a.offset_ms - b.offset_ms);
      next = firstAtOrAfter(player.currentTime * 1000);
      player.dataset.danmaku = String(danmaku.length);
      if (data.next === null || data.next === undefined) return;
      after = data.next;
    }
  }
  loadDanmaku().catch(() => notice(t("tLoadingDanmaku")));

  // ---- comments ----

  const PER_PAGE = 20;
  const list = $("comments");
  const timeline = $("timeline");
  const shown = new Set();
  let loadedPages = 0;
  let total = Number($("comments-total").textContent) || 0;

  function setTotal(n) {
    total = n;
    $("comments-total").textContent = String(n);
  }

  function timeLink(ms) {
    const link = document.createElement("a");
    link.className = "at";
    link.href = `#t=${Math.floor(ms / 1000)}`;
    link.dataset.ms = String(ms);
    link.textContent = clock(ms);
    link.addEventListener("click", (event) => {
      event.preventDefault();
      seek(ms);
    });
    return link;
  }

  function mark(c) {
    const dot = document.createElement("button");
    dot.type = "button";
    dot.className = "mark";
    dot.dataset.comment = String(c.id);
    dot.title = `${clock(c.position_ms)} ${c.author.nickname}: ${c.text}`;
    dot.setAttribute("aria-label", dot.title);
    dot.style.left = `${Math.min(100, (c.position_ms * 100) / Math.max(durationMs(), 1))}%`;
    dot.addEventListener("click", () => seek(c.position_ms));
    timeline.append(dot);
  }

  function render(c) {
    const item = document.createElement("li");
    item.dataset.comment = String(c.id);
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = c.author.nickname;
    item.append(who);
    if (c.position_ms !== null && c.position_ms !== undefined) {
      item.append(timeLink(c.position_ms), document.createTextNode(" "));
    }
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = c.text;
    item.append(text);
    if (viewerId !== null && (isHost || c.author.user_id === viewerId)) {
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "link delete-comment";
      remove.textContent = t("tDelete");
      remove.addEventListener("click", () => removeComment(c, item));
      item.append(document.createTextNode(" "), remove);
    }
    return item;
  }

  function addComments(comments, atTop) {
    const fresh = comments.filter((c) => !shown.has(c.id));
    for (const c of fresh) {
      shown.add(c.id);
      if (c.position_ms !== null && c.position_ms !== undefined) mark(c);
    }
    const items = fresh.map(render);
    if (atTop) list.prepend(...items); else list.append(...items);
  }

  async function loadMore() {
    try {
      const data = await call("GET", `${api}/comments?page=${loadedPages + 1}&per_page=${PER_PAGE}`);
      loadedPages += 1;
      addComments(data.comments, false);
      setTotal(data.total);
      $("more").hidden = loadedPages * PER_PAGE >= data.total;
    } catch (e) {
      notice(t("tCommentsFailed", { reason: e.message }));
    }
  }

  async function removeComment(c, item) {
    if (!confirm(t("tConfirmComment"))) return;
    try {
      await call("DELETE", `${api}/comments/${c.id}`);
      item.remove();
      for (const dot of timeline.querySelectorAll(`[data-comment="${c.id}"]`)) dot.remove();
      setTotal(Math.max(0, total - 1));
    } catch (e) {
      notice(e.message);
    }
  }

  $("more").addEventListener("click", loadMore);
  // The marks were placed before the video knew its length; place them again now it does.
  player.addEventListener("loadedmetadata", () => {
    for (const dot of timeline.querySelectorAll(".mark")) {
      const item = list.querySelector(`li[data-comment="${dot.dataset.comment}"] .at`);
      if (item) dot.style.left = `${Math.min(100, (Number(item.dataset.ms) * 100) / durationMs())}%`;
    }
  });

  const form = $("comment-form");
  if (form) {
    const at = $("comment-at");
    const atTime = $("comment-at-time");
    player.addEventListener("timeupdate", () => {
      atTime.textContent = clock(player.currentTime * 1000);
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const input = $("comment-text");
      const text = input.value.trim();
      if (!text) return;
      const body = { text };
      if (at.checked) body.position_ms = Math.round(player.currentTime * 1000);
      try {
        const comment = await call("POST", `${api}/comments`, body);
        addComments([comment], true);
        setTotal(total + 1);
        input.value = "";
        notice("");
      } catch (e) {
        notice(e.message);
      }
    });
  }

  // ---- the host's rename and delete ----

  if (isHost) {
    const renameForm = $("rename-form");
    $("rename").addEventListener("click", () => { renameForm.hidden = false; $("rename-title").focus(); });
    $("rename-cancel").addEventListener("click", () => { renameForm.hidden = true; });
    renameForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const record = await call("PATCH", api, { title: $("rename-title").value });
        $("record-title").textContent = record.title;
        document.title = `${record.title} · RoomManager`;
        renameForm.hidden = true;
      } catch (e) {
        notice(e.message);
      }
    });
    $("delete").addEventListener("click", async () => {
      if (!confirm(t("tConfirmRecord"))) return;
      try {
        await call("DELETE", api);
        location.assign($("record-host").getAttribute("href"));
      } catch (e) {
        notice(e.message);
      }
    });
  }

  // ---- watch statistics ----

  // A view starts at the first play; heartbeats report the position every HEARTBEAT_MS while
  // playing, at a pause, and as a beacon when the page goes away (a fetch could be cut off).
  const HEARTBEAT_MS = 15000;
  let view = null;
  let viewId = null;
  let beat = null;
  let lastSent = null;

  function position() {
    lastSent = Math.round(player.currentTime * 1000);
    return { position_ms: lastSent };
  }

  function heartbeat() {
    if (viewId) call("POST", `${api}/watch/${viewId}`, position()).catch(() => {});
  }

  // A view is counted per viewer, so a visitor without a session gets a guest one first, as
  // the live room does; 409 means a session started meanwhile (another tab), which is as good.
  function session() {
    if (viewerId !== null) return Promise.resolve();
    return fetch("/api/v1/guest", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-RM-CSRF": "1" },
    }).then((res) => {
      if (!res.ok && res.status !== 409) throw new Error(`guest session: ${res.status}`);
    });
  }

  player.addEventListener("play", () => {
    if (!view) {
      view = session()
        .then(() => call("POST", `${api}/watch`, {}))
        .then((data) => { viewId = data.view_id; }, () => {});
    }
    clearInterval(beat);
    beat = setInterval(heartbeat, HEARTBEAT_MS);
  });
  player.addEventListener("pause", () => {
    clearInterval(beat);
    heartbeat();
  });
  // Hiding the page (closing it, switching tabs) may be the last chance to report: a beacon
  // outlives the page, a fetch may not. A JSON Blob gives it `Content-Type: application/json`,
  // which the API's CSRF rule takes as the site's own request (a beacon cannot set X-RM-CSRF).
  function farewell() {
    const now = Math.round(player.currentTime * 1000);
    if (!viewId || (player.paused && now === lastSent)) return;
    const body = new Blob([JSON.stringify(position())], { type: "application/json" });
    navigator.sendBeacon(`${api}/watch/${viewId}`, body);
  }
  window.addEventListener("pagehide", farewell);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") farewell();
  });

  // Comments are loaded by the script, so the first page and "load more" are the same code.
  loadMore();
  const start = /^#t=(\d+)$/.exec(location.hash);
  if (start) player.currentTime = Number(start[1]);
})();
