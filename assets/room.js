// The live room page: one WebSocket to /ws, the protocol of docs/PROTOCOL.md (docs/WEB.md
// describes the page). Everything from the server is shown with textContent, never as HTML.
"use strict";

(() => {
  const root = document.querySelector("[data-room-id]");
  if (!root) return;

  // ---- the page's words, in the reader's language ----
  // From #room-text's data-t-* attributes (the catalogue's js.room section); `{name}`
  // placeholders are filled from `values`.
  const words = document.getElementById("room-text").dataset;
  const t = (name, values = {}) =>
    (words[name] || "").replace(/\{(\w+)\}/g, (all, key) => (key in values ? values[key] : all));
  const PHASES = {
    idle: t("tPhaseIdle"), starting: t("tPhaseStarting"), live: t("tPhaseLive"),
    co_streaming: t("tPhaseCoStreaming"), closing: t("tPhaseClosing"),
  };
  // An `error` in the reader's language by its code; the server's (English) message where the
  // catalogue has no entry. The English catalogue shows the server's message as it is.
  function errorText(m) {
    const name = "tError" + String(m.code).split("_").map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join("");
    return words[name] ? t(name, { detail: m.message }) : m.message;
  }

  const roomId = Number(root.dataset.roomId);
  const isHost = root.dataset.host === "true";
  const myId = root.dataset.userId ? Number(root.dataset.userId) : null;
  const $ = (id) => document.getElementById(id);
  const player = $("player");
  const overlay = new window.DanmakuOverlay($("overlay"));
  let socket = null;
  let closedForGood = false;
  let retryMs = 1000;

  const show = (el, visible) => { if (el) el.hidden = !visible; };
  const notice = (text) => { $("notice").textContent = text; };

  function setPhase(phase) {
    $("phase").textContent = PHASES[phase] || phase;
    const live = phase === "live" || phase === "co_streaming";
    if (isHost) {
      $("start").disabled = live || phase === "starting";
      $("stop").disabled = !live;
    }
    const offline = phase !== "live" && phase !== "co_streaming";
    show($("offline"), offline);
    $("status").textContent = offline
      ? (phase === "starting" ? t("tGoingLive") : t("tNotLive"))
      : "";
  }

  // hls.js (Media Source Extensions) plays nginx-rtmp's HLS everywhere MSE exists; native HLS
  // is the fallback (Safari on iOS).
  let hls = null;
  let playing = null;

  function setWatch(url) {
    if (!url) return;
    const link = $("stream-url");
    link.href = url;
    link.textContent = url;
    if (playing === url) return;
    playing = url;
    stopVideo();
    playing = url;
    // What the player shows, for people's tools and the tests (hls.js hides it behind a blob:).
    player.dataset.stream = url;
    if (window.Hls && window.Hls.isSupported()) {
      hls = new window.Hls({ liveSyncDurationCount: 2 });
      hls.on(window.Hls.Events.ERROR, (_event, data) => {
        if (data.fatal) {
          // A stream that is not there yet (the host is still connecting): try again shortly,
          // unless the room switched to another stream meanwhile.
          hls.destroy();
          hls = null;
          setTimeout(() => {
            if (playing === url) {
              playing = null;
              setWatch(url);
            }
          }, 2000);
        }
      });
      hls.loadSource(url);
      hls.attachMedia(player);
    } else {
      player.src = url;
    }
    player.play().catch(() => {});
  }

  function stopVideo() {
    playing = null;
    delete player.dataset.stream;
    if (hls) {
      hls.destroy();
      hls = null;
    }
    player.removeAttribute("src");
    player.load();
  }

  // `fromHost` comes from the server (`is_host`), never from the nickname, which anyone may copy.
  // A danmaku (`d`, with its `id`) gets the moderation buttons its viewer may use.
  function addLine(who, text, className, fromHost, d) {
    const list = $("danmaku");
    const item = document.createElement("li");
    if (className) item.className = className;
    if (fromHost) {
      item.classList.add("from-host");
      const badge = document.createElement("span");
      badge.className = "host-badge";
      badge.textContent = t("tHost");
      item.append(badge);
    }
    const name = document.createElement("span");
    name.className = "who";
    name.textContent = who;
    item.append(name, document.createTextNode(text));
    if (d) {
      item.dataset.danmakuId = d.id;
      moderationButtons(item, d);
    }
    list.append(item);
    while (list.children.length > 200) list.firstElementChild.remove();
    list.scrollTop = list.scrollHeight;
  }

  // Moderation: an admin signed in at /admin (learnt from /admin/session.json, since the admin
  // cookie only goes to /admin…) deletes and bans; the host deletes in their own room.
  let admin = null;

  function adminPost(path, body) {
    return fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-RM-CSRF": admin.csrf },
      body: JSON.stringify(body),
    }).then((res) => {
      if (res.ok) return;
      return res.json().then(
        (e) => { throw new Error(e.error ? e.error.message : t("tStatus", { status: res.status })); },
        () => { throw new Error(t("tStatus", { status: res.status })); });
    });
  }

  function smallButton(label, onClick) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary moderate";
    button.textContent = label;
    button.addEventListener("click", onClick);
    return button;
  }

  // The buttons (and a ban form) sit first in the line, floated to its end, so the line's
  // last node stays its text.
  function moderationButtons(item, d) {
    if (!admin && !isHost) return;
    const tools = document.createElement("span");
    tools.className = "moderation";
    if (admin) {
      tools.append(smallButton(t("tDelete"), () => {
        adminPost(`/admin/moderation/rooms/${roomId}/danmaku/${d.id}/delete`, {})
          .catch((e) => notice(t("tCannotDelete", { reason: e.message })));
      }), " ", smallButton(t("tBan"), () => banForm(tools, d)));
    } else {
      tools.append(smallButton(t("tDelete"), () => send({ type: "delete_danmaku", id: d.id })));
    }
    item.prepend(tools);
  }

  const banLengths = [
    [t("tBanHour"), 3600], [t("tBanDay"), 86400], [t("tBanWeek"), 604800], [t("tBanPermanent"), 0],
  ];

  function banForm(tools, d) {
    if (tools.querySelector("form")) return;
    const form = document.createElement("form");
    form.className = "ban-form inline-row";
    const reason = document.createElement("input");
    reason.name = "reason";
    reason.required = true;
    reason.maxLength = 500;
    reason.placeholder = t("tBanWhy", { nickname: d.nickname });
    reason.setAttribute("aria-label", t("tBanReason"));
    const length = document.createElement("select");
    length.name = "length";
    length.setAttribute("aria-label", t("tBanLength"));
    for (const [label, secs] of banLengths) {
      const option = document.createElement("option");
      option.value = secs;
      option.textContent = label;
      length.append(option);
    }
    const submit = document.createElement("button");
    submit.type = "submit";
    submit.textContent = t("tBanSubmit");
    form.append(reason, length, submit);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const secs = Number(length.value);
      const body = { scope: "chat", reason: reason.value.trim() };
      if (secs > 0) body.until = Math.floor(Date.now() / 1000) + secs;
      adminPost(`/admin/moderation/users/${d.user_id}/bans`, body).then(() => {
        form.remove();
        notice(t("tBanned", { nickname: d.nickname }));
      }, (e) => notice(t("tCannotBan", { reason: e.message })));
    });
    tools.append(form);
    reason.focus();
  }

  function removeLine(id) {
    const line = $("danmaku").querySelector(`[data-danmaku-id="${Number(id)}"]`);
    if (line) line.remove();
    overlay.remove(id);
  }

  // The page's gift names are in the reader's language; the message's name is the catalogue's
  // own, shown only for a gift the page does not know (the catalogue changed since it loaded).
  const giftNames = new Map(
    Array.from(document.querySelectorAll("#gift-names [data-gift-id]"), (li) => [li.dataset.giftId, li.textContent]),
  );
  function giftName(m) {
    return giftNames.get(m.gift) ?? m.name;
  }

  // A gift pops up over the picture for a moment (the CSS animation), besides its line.
  function showGift(m) {
    const stage = $("gift-show");
    const pop = document.createElement("div");
    pop.className = "gift-pop";
    const icon = document.createElement("span");
    icon.className = "gift-icon";
    icon.textContent = m.icon;
    const what = document.createElement("span");
    what.textContent = t("tGiftShow", { nickname: m.nickname, count: m.count, name: giftName(m) });
    pop.append(icon, what);
    pop.addEventListener("animationend", () => pop.remove());
    stage.append(pop);
    // A flood of gifts keeps only the latest few on the picture.
    while (stage.children.length > 4) stage.firstElementChild.remove();
  }

  function renderQueue(queue) {
    const list = $("queue");
    if (!list) return;
    list.replaceChildren();
    if (!queue || queue.length === 0) {
      const empty = document.createElement("li");
      empty.className = "hint";
      empty.textContent = t("tQueueEmpty");
      list.append(empty);
      return;
    }
    for (const person of queue) {
      const item = document.createElement("li");
      item.append(document.createTextNode(person.nickname + " "));
      for (const [label, accept] of [[t("tAccept"), true], [t("tRefuse"), false]]) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = accept ? "" : "secondary";
        button.textContent = label;
        button.addEventListener("click", () =>
          send({ type: "answer_connect", user_id: person.user_id, accept }));
        item.append(button, document.createTextNode(" "));
      }
      list.append(item);
    }
  }

  function showPush(pushUrl) {
    if (!pushUrl) return;
    const cut = pushUrl.lastIndexOf("/");
    $("push-server").textContent = pushUrl.slice(0, cut);
    $("push-key").textContent = pushUrl.slice(cut + 1);
    $("push-url").textContent = pushUrl;
    show($("push"), true);
  }

  function handle(m) {
    // The host console and the camera (publish.js) follow the room through this event.
    document.dispatchEvent(new CustomEvent("rm:message", { detail: m }));
    switch (m.type) {
      case "room_info":
        rejoined();
        $("room-title").textContent = m.title || m.name;
        $("description").textContent = m.description;
        $("audience").textContent = m.audience;
        setPhase(m.state);
        setWatch(m.watch_url);
        $("danmaku").replaceChildren();
        for (const d of m.recent_danmaku) addLine(d.nickname, d.text, null, d.is_host, d);
        if (m.connect_queue) renderQueue(m.connect_queue);
        showPush(m.push_url);
        show($("end-connect"), Boolean(m.co_stream));
        break;
      case "live_started":
        setPhase("live");
        setWatch(m.watch_url);
        if (m.title) $("room-title").textContent = m.title;
        showPush(m.push_url);
        break;
      case "live_stopped":
        setPhase("idle");
        stopVideo();
        break;
      case "room_closed":
        closedForGood = true;
        setPhase("closing");
        $("status").textContent = t("tClosed", { reason: m.reason });
        stopVideo();
        break;
      case "watch_url":
        setWatch(m.watch_url);
        break;
      case "danmaku":
        addLine(m.nickname, m.text, null, m.is_host, m);
        overlay.fly(m.text, performance.now(), {
          id: m.id, title: m.nickname, mine: myId !== null && m.user_id === myId,
        });
        break;
      case "danmaku_deleted":
        removeLine(m.id);
        break;
      case "gift":
        addLine(m.nickname, ` ${t("tGiftLine", { count: m.count, icon: m.icon, name: giftName(m) })}`, "gift-line");
        showGift(m);
        break;
      case "like":
        notice(t("tLiked", { count: m.count }));
        break;
      case "audience":
        $("audience").textContent = m.count;
        break;
      case "connect_request":
        renderQueue(m.queue);
        notice(t("tAsks", { nickname: m.nickname }));
        break;
      case "connect_queue":
        renderQueue(m.queue);
        break;
      case "connect_answer":
        notice(m.accept ? t("tAccepted") : t("tDeclined"));
        break;
      case "connect_started":
        setPhase("co_streaming");
        setWatch(m.watch_url);
        notice(t("tOnStage", { guest: m.guest.nickname, host: m.host.nickname }));
        show($("end-connect"), true);
        if (m.push_url) {
          $("guest-push-url").textContent = m.push_url;
          show($("guest-push"), true);
          show($("apply"), false);
        }
        break;
      case "connect_ended":
        setPhase("live");
        setWatch(m.watch_url);
        show($("end-connect"), false);
        show($("guest-push"), false);
        show($("apply"), true);
        notice(t("tCoStreamEnded"));
        break;
      case "room_updated":
        $("description").textContent = m.description;
        break;
      case "banned":
        notice(t("tYouAreBanned", { scope: m.scope, reason: m.reason }));
        break;
      case "error":
        notice(errorText(m));
        break;
      default:
        break;
    }
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(message));
    } else {
      notice(t("tNotConnected"));
    }
  }

  // ---- the connection: lost, it comes back after a growing wait, and the page says so ----

  let dropped = false;
  let countdown = null;

  function connectionNote(text) {
    $("connection").textContent = text || "";
    show($("connection"), Boolean(text));
  }

  // Back in the room after a drop (its room_info arrived): said for a moment.
  function rejoined() {
    if (!dropped) return;
    dropped = false;
    connectionNote(t("tReconnected"));
    setTimeout(() => {
      if (!dropped) connectionNote(null);
    }, 4000);
  }

  // Waits double each time up to 15 s; a random part spreads the reconnects of a whole audience
  // after a server restart.
  function reconnectLater() {
    dropped = true;
    const wait = Math.round(retryMs * (0.8 + 0.4 * Math.random()));
    retryMs = Math.min(retryMs * 2, 15000);
    const due = Date.now() + wait;
    const tell = () =>
      connectionNote(t("tReconnecting", { secs: Math.max(1, Math.ceil((due - Date.now()) / 1000)) }));
    tell();
    clearInterval(countdown);
    countdown = setInterval(tell, 500);
    setTimeout(() => {
      clearInterval(countdown);
      connectionNote(t("tConnecting"));
      connect();
    }, wait);
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws");
    socket.addEventListener("open", () => {
      retryMs = 1000;
      send({ type: "join_room", room_id: roomId });
    });
    socket.addEventListener("message", (event) => {
      const data = JSON.parse(event.data);
      for (const m of Array.isArray(data) ? data : [data]) handle(m);
    });
    socket.addEventListener("close", (event) => {
      // A stopping server closes the rooms too, but comes back: rejoin then.
      if (event.reason === "server_shutdown") closedForGood = false;
      if (closedForGood) return;
      if (event.code === 4001) {
        // The session ended (logged out, expired, or the guest was removed): a reconnect with
        // it would be refused, so stop here and say what to do.
        closedForGood = true;
        notice(t("tSessionEnded", { reason: event.reason }));
        return;
      }
      reconnectLater();
    });
  }

  $("danmaku-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("danmaku-text");
    const text = input.value.trim();
    if (!text) return;
    send({ type: "danmaku", text });
    input.value = "";
  });
  if ($("like")) $("like").addEventListener("click", () => send({ type: "like" }));
  // publish.js asks the room for things (start_live before a camera push) through this event.
  document.addEventListener("rm:send", (event) => send(event.detail));
  for (const button of document.querySelectorAll("[data-gift]")) {
    button.addEventListener("click", () => send({ type: "gift", gift: button.dataset.gift, count: 1 }));
  }
  if ($("apply")) $("apply").addEventListener("click", () => send({ type: "apply_connect" }));
  if ($("leave-stage")) $("leave-stage").addEventListener("click", () => send({ type: "end_connect" }));
  if (isHost) {
    $("start-form").addEventListener("submit", (event) => {
      event.preventDefault();
      closedForGood = false;
      send({ type: "start_live", title: $("live-title").value });
    });
    $("stop").addEventListener("click", () => send({ type: "stop_live" }));
    $("close").addEventListener("click", () => {
      if (confirm(t("tConfirmClose"))) {
        send({ type: "close_room" });
      }
    });
    $("end-connect").addEventListener("click", () => send({ type: "end_connect" }));
    $("layout").addEventListener("change", (event) =>
      send({ type: "update_room", layout: event.target.value }));
  }

  // ---- the player: danmaku settings, full screen ----

  overlay.bindToggle($("danmaku-toggle"), "rm.live.danmaku");
  overlay.bindOpacity($("danmaku-opacity"), "rm.live.danmaku-opacity");
  // The whole player box goes full screen (the video's own button is hidden), so the danmaku
  // and gifts stay over the picture. iPhones only put a bare <video> full screen.
  $("fullscreen").addEventListener("click", () => {
    const box = $("player-box");
    if (document.fullscreenElement) {
      document.exitFullscreen().catch(() => {});
    } else if (box.requestFullscreen) {
      box.requestFullscreen().catch(() => notice(t("tNoFullscreen")));
    } else if (player.webkitEnterFullscreen) {
      player.webkitEnterFullscreen();
    } else {
      notice(t("tNoFullscreen"));
    }
  });

  // Where the bare video still goes full screen (a double click, Firefox's own button), the box
  // takes over at once, so the danmaku come along.
  document.addEventListener("fullscreenchange", () => {
    if (document.fullscreenElement === player) $("player-box").requestFullscreen().catch(() => {});
  });

  // Leaving the page leaves the room, also when the browser keeps the page in its
  // back/forward cache; coming back to such a page joins again.
  window.addEventListener("pagehide", () => {
    closedForGood = true;
    if (socket) socket.close(1000, "page left");
  });
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) {
      closedForGood = false;
      connect();
    }
  });

  // Watching needs a session: a first-time visitor gets a guest one. The X-RM-CSRF header shows
  // the server this is the site's own script, not a form of another site; 409 means a session
  // started meanwhile (another tab), which is as good.
  const ready = root.dataset.signedIn === "true"
    ? Promise.resolve()
    : fetch("/api/v1/guest", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-RM-CSRF": "1" },
    }).then((res) => {
      if (!res.ok && res.status !== 409) throw new Error(`guest session: ${res.status}`);
    });
  // Asked once; anyone but a signed-in admin gets 401 and sees no admin buttons.
  const adminCheck = fetch("/admin/session.json", { credentials: "same-origin" })
    .then((res) => (res.ok ? res.json() : null))
    .then((session) => { admin = session; }, () => { admin = null; });
  Promise.all([ready, adminCheck])
    .then(connect, () => notice(t("tNoSession")));
})();
