#!/usr/bin/env python3
"""ffmpeg CPU per browser push (docs/BENCHMARKS.md, "Going live from the browser").

Starts `roommanager serve` (rtmp backend, managed nginx) on a temp data dir, makes a host through
the API and the mail outbox, goes live over /ws, and uploads over /ws/publish what a page's
MediaRecorder would send: a camera-like clip (testsrc, WIDTHxHEIGHT at 30 fps, with a tone),
encoded beforehand once as WebM VP8/Opus (the server converts it) and once as Matroska
H.264/Opus (the server copies it), paced in real time by `ffmpeg -re -c copy`. For each, it reads
/proc/PID/stat of the server's push ffmpeg over the upload (after a 5 s warm-up) and prints its
CPU share of one core and its resident memory.

Usage: push.py ROOMMANAGER_BINARY [SECONDS] [WIDTHxHEIGHT]   (standard library only)
"""
import base64, email, json, os, re, socket, struct, subprocess, sys, tempfile, threading, time
import urllib.request

BINARY = sys.argv[1]
SECONDS = int(sys.argv[2]) if len(sys.argv) > 2 else 60
SIZE = sys.argv[3] if len(sys.argv) > 3 else "1280x720"
WARM_UP = 5
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(base, method, path, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", "Bearer " + token)
    with urllib.request.urlopen(req) as res:
        text = res.read()
        return json.loads(text) if text.strip().startswith(b"{") else text


class Ws:
    """Just enough of RFC 6455 for a client: masked frames out, pings answered."""

    def __init__(self, port, path, token):
        self.sock = socket.create_connection(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           f"Authorization: Bearer {token}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(4096)
        head, self.buf = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise SystemExit(f"{path}: {head.decode(errors='replace')}")
        self.lock = threading.Lock()
        self.messages = []

    def send(self, opcode, payload):
        n = len(payload)
        head = bytes([0x80 | opcode])
        head += bytes([0x80 | n]) if n < 126 else (
            bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else bytes([0x80 | 127]) + struct.pack(">Q", n))
        mask = os.urandom(4)
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
        with self.lock:
            self.sock.sendall(head + mask + masked)

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def pump(self):
        """Reads frames until the close: text is kept, pings answered."""
        try:
            while True:
                b0, b1 = self._read(2)
                n = b1 & 0x7F
                if n == 126:
                    n = struct.unpack(">H", self._read(2))[0]
                elif n == 127:
                    n = struct.unpack(">Q", self._read(8))[0]
                payload = self._read(n)
                op = b0 & 0x0F
                if op == 1:
                    self.messages.append(json.loads(payload))
                elif op == 9:
                    self.send(0xA, payload)
                elif op == 8:
                    return
        except (EOFError, OSError):
            return

    def wait_for(self, kind, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for m in list(self.messages):
                if m.get("type") == kind:
                    return m
                if m.get("type") == "error":
                    raise SystemExit(f"error: {m}")
            time.sleep(0.05)
        raise SystemExit(f"no {kind}: {self.messages}")


def verify_link(outbox):
    for name in os.listdir(outbox):
        message = email.message_from_bytes(open(os.path.join(outbox, name), "rb").read())
        for part in message.walk():
            if part.get_content_type() == "text/plain":
                found = re.search(r"https?://\S+/verify\?token=[\w-]+", part.get_payload(decode=True).decode())
                if found:
                    return found.group(0)
    return None


def cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def push_pid(live_id):
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "pipe:0" in line and live_id in line:
            return int(line.split()[0])
    return None


def clip(dir, name, container, video):
    path = os.path.join(dir, f"{name}.{container}")
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"testsrc=size={SIZE}:rate=30", "-f", "lavfi", "-i", "sine=frequency=440",
                    "-t", str(SECONDS + 5), *video, "-g", "60", "-b:v", "2500k",
                    "-c:a", "libopus", "-b:a", "96k", path], check=True)
    return path


def measure(port, token, room, live_id, path, muxer):
    publish = Ws(port, f"/ws/publish?room={room}", token)
    threading.Thread(target=publish.pump, daemon=True).start()
    feeder = subprocess.Popen(["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-i", path,
                               "-t", str(SECONDS), "-c", "copy", "-f", muxer, "pipe:1"],
                              stdout=subprocess.PIPE)

    def feed():
        while True:
            chunk = feeder.stdout.read1(256 * 1024)
            if not chunk:
                return
            publish.send(2, chunk)

    threading.Thread(target=feed, daemon=True).start()
    publish.wait_for("publish_status")
    deadline = time.time() + 30
    while time.time() < deadline and not any(m.get("state") == "pushing" for m in publish.messages):
        time.sleep(0.1)
    pid = None
    while pid is None and time.time() < deadline:
        pid = push_pid(live_id)
        time.sleep(0.1)
    time.sleep(WARM_UP)
    t0, c0 = time.time(), cpu_ticks(pid)
    rss = 0
    while feeder.poll() is None:
        rss = max(rss, rss_kib(pid))
        time.sleep(1)
    t1, c1 = time.time(), cpu_ticks(pid)
    publish.send(8, struct.pack(">H", 1000))
    time.sleep(4)
    dropped = [m for m in publish.messages if m.get("type") == "error"]
    return (c1 - c0) / TICK / (t1 - t0), rss, t1 - t0, dropped


def main():
    work = tempfile.mkdtemp(prefix="rm-publish-bench-")
    http_port, rtmp_port, control_port = free_port(), free_port(), free_port()
    base = f"http://127.0.0.1:{http_port}"
    data = os.path.join(work, "data")
    config = os.path.join(work, "roommanager.toml")
    open(config, "w").write(f"""[server]
listen = "127.0.0.1:{http_port}"
shutdown_grace_secs = 2
[storage]
data_dir = "{data}"
[email]
transport = "outbox"
[media]
backend = "rtmp"
[media.rtmp]
manage_nginx = true
rtmp_listen = "127.0.0.1:{rtmp_port}"
control_port = {control_port}
""")
    vp8 = clip(work, "vp8", "webm", ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8"])
    h264 = clip(work, "h264", "mkv", ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"])
    server = subprocess.Popen([BINARY, "--config", config, "serve"], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                http(base, "GET", "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        http(base, "POST", "/api/v1/register", {"username": "benchhost", "password": "correct horse battery", "email": "benchhost@bench.example"})
        link = None
        for _ in range(100):
            link = verify_link(os.path.join(data, "outbox")) if os.path.isdir(os.path.join(data, "outbox")) else None
            if link:
                break
            time.sleep(0.1)
        http(base, "GET", link[link.index("/verify?"):])
        token = http(base, "POST", "/api/v1/login", {"login": "benchhost", "password": "correct horse battery"})["token"]
        host = Ws(http_port, "/ws", token)
        threading.Thread(target=host.pump, daemon=True).start()
        host.send(1, json.dumps({"type": "start_live"}).encode())
        started = host.wait_for("live_started")
        for name, path, muxer in [("VP8 (converted)", vp8, "webm"), ("H.264 (copied)", h264, "matroska")]:
            cpu, rss, secs, errors = measure(http_port, token, started["room_id"], started["live_id"], path, muxer)
            print(f"{name} {SIZE}: push ffmpeg {cpu * 100:.1f}% of one core over {secs:.0f} s, "
                  f"max RSS {rss / 1024:.0f} MiB, errors {errors}")
    finally:
        server.terminate()
        server.wait()


main()
