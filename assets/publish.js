// Going live from the page, without OBS: the camera and microphone (or a screen), recorded by
// MediaRecorder and sent as binary frames over /ws/publish (docs/PROTOCOL.md, "Publishing from
// the browser"). Also the rest of the host console: on-air status, the viewers list, the push key
// with copy and rotate buttons. The room socket belongs to room.js: its messages arrive here as
// "rm:message" events, and an "rm:send" event asks it to send one.
"use strict";

(() => {
  // ---- Every word this script shows, in the reader's language ----
  // From #publish-text's data-t-* attributes (the catalogue's js.publish section); `{name}`
  // placeholders are filled from `values`.
  const words = document.getElementById("publish-text");
  if (!words) return;
  const t = (name, values = {}) =>
    (words.dataset[name] || "").replace(/\{(\w+)\}/g, (all, key) => (key in values ? values[key] : all));
  const STATES = {
    idle: t("tStateIdle"),
    opening: t("tStateOpening"),
    going_live: t("tStateGoingLive"),
    connecting: t("tStateConnecting"),
    waiting: t("tStateWaiting"),
    pushing: t("tStatePushing"),
    stopped: t("tStateStopped"),
    restarting: t("tStateRestarting"),
    reconnecting: t("tStateReconnecting"),
  };
  const ERRORS = {
    bad_stream: t("tErrorBadStream"),
    bad_message: t("tErrorBadMessage"),
    too_fast: t("tErrorTooFast"),
    too_slow: t("tErrorTooSlow"),
    idle: t("tErrorIdle"),
    push_failed: t("tErrorPushFailed"),
    session_ended: t("tErrorSessionEnded"),
  };

  // Bytes waiting in the upload socket before the page starts the upload over. Dropping single
  // chunks would corrupt the WebM stream, so a lagging upload restarts with a new header.
  const QUEUE_CAP = 4 * 1024 * 1024;
  const CHUNK_MS = 1000;
  const VIDEO_BPS = 2500000;
  // A keyframe every second, as for OBS (roommanager.toml, hls_fragment_secs): Chromium's own
  // default is one per 100 frames (5 s from its fake camera), and a server-side reader that
  // joins the stream (the co-stream mixer, a new HLS segment) sees no picture until the next
  // one, so the mixer could give up on a stream it found without video.
  const KEYFRAME_MS = 1000;
  // Attempts in a row that never reached "pushing" before the page gives up.
  const RETRIES = 5;
  // H.264 is copied by the server; anything else is converted, which costs it CPU.
  const MIME_TYPES = [
    "video/webm;codecs=h264,opus",
    "video/x-matroska;codecs=avc1,opus",
    "video/webm;codecs=vp8,opus",
  ];
  // Errors that come back however often the page tries again.
  const FINAL = new Set(["bad_stream", "bad_message", "too_fast", "session_ended"]);

  const $ = (id) => document.getElementById(id);
  const room = { live: false, pendingLive: null };

  function mimeType() {
    const preferred = new URLSearchParams(location.search).get("codec");
    const offered = MIME_TYPES.filter((type) => MediaRecorder.isTypeSupported(type));
    return offered.find((t) => preferred && t.includes(preferred)) || offered[0] || "";
  }

  function sendToRoom(message) {
    document.dispatchEvent(new CustomEvent("rm:send", { detail: message }));
  }

  // Resolves once the room is live: asks for it first when it is not.
  function goLive() {
    if (room.live) return Promise.resolve();
    return new Promise((resolve, reject) => {
      room.pendingLive = { resolve, reject };
      const title = $("live-title");
      sendToRoom({ type: "start_live", title: title ? title.value : "" });
    });
  }

  function publisher(root) {
    const part = (name) => root.querySelector(`[data-part="${name}"]`);
    const role = root.dataset.publish;
    const roomId = Number(root.dataset.room);
    const preview = part("preview");
    let media = null;
    let recorder = null;
    let socket = null;
    let wanted = false;
    let failures = 0;
    let retryTimer = null;
    let dropped = 0;
    let serverBytes = null;

    const say = (text) => { part("notice").textContent = text; };
    function state(name) {
      root.dataset.state = name;
      part("state").textContent = STATES[name] || name;
    }
    function buttons() {
      part("start").disabled = wanted;
      part("stop").disabled = !wanted;
      for (const name of ["source", "camera", "microphone"]) part(name).disabled = wanted;
    }

    async function listDevices() {
      const all = await navigator.mediaDevices.enumerateDevices();
      for (const [kind, name, word] of [
        ["videoinput", "camera", t("tCamera")], ["audioinput", "microphone", t("tMicrophone")],
      ]) {
        const select = part(name);
        const chosen = select.value;
        const options = all.filter((d) => d.kind === kind).map((d, i) => {
          const option = document.createElement("option");
          option.value = d.deviceId;
          option.textContent = d.label || `${word} ${i + 1}`;
          return option;
        });
        select.replaceChildren(select.options[0], ...options);
        select.value = chosen;
        if (select.value !== chosen) select.value = "";
      }
    }

    function openMedia() {
      if (part("source").value === "screen") {
        return navigator.mediaDevices.getDisplayMedia({ video: true, audio: true });
      }
      const pick = (id) => (id ? { deviceId: { exact: id } } : true);
      return navigator.mediaDevices.getUserMedia({
        video: pick(part("camera").value),
        audio: pick(part("microphone").value),
      });
    }

    async function start() {
      if (wanted) return;
      if (!window.MediaRecorder || !navigator.mediaDevices) {
        say(t("tUnsupported"));
        return;
      }
      wanted = true;
      failures = 0;
      dropped = 0;
      say("");
      buttons();
      try {
        state("opening");
        media = await openMedia();
        preview.srcObject = media;
        preview.hidden = false;
        listDevices().catch(() => {});
        // A screen share ended from the browser's own bar ends the push.
        for (const track of media.getVideoTracks()) track.addEventListener("ended", stop);
        if (role === "host") {
          state("going_live");
          await goLive();
        }
        if (wanted) connect();
      } catch (e) {
        say(e && e.name === "NotAllowedError" ? t("tDenied") : String(e && e.message ? e.message : e));
        stop();
      }
    }

    function connect() {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      const ws = new WebSocket(`${scheme}${location.host}/ws/publish?room=${roomId}`);
      socket = ws;
      serverBytes = null;
      state("connecting");
      let opened = false;
      ws.addEventListener("open", () => {
        opened = true;
        record(ws);
      });
      ws.addEventListener("message", (event) => {
        if (typeof event.data !== "string") return;
        let m;
        try { m = JSON.parse(event.data); } catch (_) { return; }
        if (m.type === "publish_status") {
          state(m.state);
          if (m.state === "pushing") failures = 0;
          // The rate is what reached the server, from its own count.
          if (serverBytes !== null) part("rate").textContent = Math.round(((m.bytes - serverBytes) * 8) / 1000);
          serverBytes = m.bytes;
        } else if (m.type === "error") {
          say(ERRORS[m.code] ? `${ERRORS[m.code]} (${m.message})` : m.message);
        }
      });
      ws.addEventListener("close", (event) => {
        if (socket !== ws) return;
        socket = null;
        stopRecorder();
        if (!wanted) return;
        if (event.code === 4002 && FINAL.has(event.reason)) {
          stop();
          return;
        }
        failures += 1;
        if (failures > RETRIES) {
          if (!opened) say(t("tRefused"));
          stop();
          return;
        }
        state("reconnecting");
        retryTimer = setTimeout(connect, 1000 * 2 ** Math.min(failures - 1, 4));
      });
    }

    // A new recorder for every socket: the server needs the stream's header first.
    function record(ws) {
      const type = mimeType();
      const options = { videoBitsPerSecond: VIDEO_BPS, videoKeyFrameIntervalDuration: KEYFRAME_MS };
      recorder = new MediaRecorder(media, type ? { mimeType: type, ...options } : options);
      root.dataset.mime = recorder.mimeType;
      recorder.addEventListener("dataavailable", (event) => {
        if (socket !== ws || ws.readyState !== WebSocket.OPEN || event.data.size === 0) return;
        if (ws.bufferedAmount > QUEUE_CAP) {
          dropped += 1;
          restart();
          return;
        }
        ws.send(event.data);
      });
      recorder.start(CHUNK_MS);
    }

    function restart() {
      const old = socket;
      socket = null;
      stopRecorder();
      if (old) old.close(1000, "restart");
      state("restarting");
      connect();
    }

    function stopRecorder() {
      if (recorder && recorder.state !== "inactive") recorder.stop();
      recorder = null;
    }

    function stop() {
      wanted = false;
      clearTimeout(retryTimer);
      const old = socket;
      socket = null;
      stopRecorder();
      if (old) old.close(1000, "stopped");
      if (media) for (const track of media.getTracks()) track.stop();
      media = null;
      preview.srcObject = null;
      preview.hidden = true;
      part("rate").textContent = "0";
      state("stopped");
      buttons();
    }

    setInterval(() => {
      part("queue").textContent = socket ? Math.round(socket.bufferedAmount / 1024) : 0;
      part("dropped").textContent = dropped;
    }, 1000);

    part("start").addEventListener("click", start);
    part("stop").addEventListener("click", stop);
    buttons();
    return { role, stop, active: () => wanted };
  }

  const publishers = [...document.querySelectorAll("[data-publish]")].map(publisher);
  const stopAll = (role) => {
    for (const p of publishers) if (p.active() && (!role || p.role === role)) p.stop();
  };

  // ---- The rest of the host console ----

  function setOnAir(onAir) {
    const mark = $("on-air");
    if (!mark) return;
    mark.textContent = onAir ? t("tOnAir") : t("tOffAir");
    mark.classList.toggle("on-air", onAir);
  }

  function item(text, className) {
    const li = document.createElement("li");
    if (className) li.className = className;
    li.textContent = text;
    return li;
  }

  function renderViewers(v) {
    const list = $("viewers");
    if (!list) return;
    const items = v.people.map((p) => item(p.nickname));
    if (v.more > 0) items.push(item(t("tViewersMore", { n: v.more }), "hint"));
    if (v.guests > 0) items.push(item(t("tViewersGuests", { n: v.guests }), "hint"));
    if (items.length === 0) items.push(item(t("tViewersNone"), "hint"));
    list.replaceChildren(...items);
  }

  function pushKey(method, path) {
    return fetch(path, { method, credentials: "same-origin", headers: { "X-RM-CSRF": "1" } })
      .then((res) => res.json().then((body) => {
        if (!res.ok) throw new Error(body.error ? body.error.message : t("tStatus", { status: res.status }));
        return body;
      }));
  }

  function showKey(key) {
    $("push-server").textContent = key.server;
    $("push-key").textContent = key.stream_key;
    $("push-url").textContent = key.push_url;
    $("push").hidden = false;
  }

  const notice = (text) => { if ($("notice")) $("notice").textContent = text; };

  if ($("push")) {
    // Another media backend has no push key (404 not_rtmp): the section stays as live_started
    // leaves it.
    pushKey("GET", "/api/v1/me/push").then(showKey, () => {});
    $("rotate-key").addEventListener("click", () => {
      if (!confirm(t("tRotateConfirm"))) return;
      pushKey("POST", "/api/v1/me/push/rotate")
        .then((key) => { showKey(key); notice(t("tRotated")); }, (e) => notice(e.message));
    });
    for (const button of document.querySelectorAll("[data-copy]")) {
      const label = button.textContent;
      button.addEventListener("click", () => {
        const text = $(button.dataset.copy).textContent;
        if (!navigator.clipboard) {
          notice(t("tCopyByHand"));
          return;
        }
        navigator.clipboard.writeText(text).then(() => {
          button.textContent = t("tCopied");
          setTimeout(() => { button.textContent = label; }, 2000);
        }, () => notice(t("tCopyByHand")));
      });
    }
  }

  document.addEventListener("rm:message", (event) => {
    const m = event.detail;
    switch (m.type) {
      case "room_info":
        room.live = m.state === "live" || m.state === "co_streaming";
        if (m.you_are_host) setOnAir(m.on_air);
        break;
      case "live_started":
        room.live = true;
        if (room.pendingLive) room.pendingLive.resolve();
        room.pendingLive = null;
        break;
      case "live_stopped":
      case "room_closed":
        room.live = false;
        setOnAir(false);
        stopAll();
        break;
      case "on_air":
        if (m.stream === "host") setOnAir(m.on_air);
        break;
      case "viewers":
        renderViewers(m);
        break;
      case "connect_ended":
        stopAll("guest");
        break;
      case "error":
        if (m.about === "start_live" && room.pendingLive) {
          room.pendingLive.reject(new Error(t("tGoLiveFailed", { reason: m.message })));
          room.pendingLive = null;
        }
        break;
      default:
        break;
    }
  });

  // Leaving the page ends the push (the server also ends it when the socket drops).
  window.addEventListener("pagehide", () => stopAll());
})();
