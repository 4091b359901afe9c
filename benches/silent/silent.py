#!/usr/bin/env python3
"""Silent connections: N TCP connections that never send a byte (docs/BENCHMARKS.md).

Usage: benches/silent/silent.py BINARY HEADER_TIMEOUT_SECS [N=3000] [WAIT_SECS=30]

Starts BINARY (`roommanager`) on 127.0.0.1:0 with a fresh data dir, nginx off and
`server.header_timeout_secs = HEADER_TIMEOUT_SECS` (everything else default, so the per-IP cap
of 64 refuses all but 64 of them: they are still accepted and held until the deadline). Opens N
connections, reads the server's RSS and open descriptors a second later, then waits up to
WAIT_SECS for the server to close them and reports how many it closed and when.
"""
import os
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import time

binary, header = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
wait = float(sys.argv[4]) if len(sys.argv) > 4 else 30.0
data = tempfile.mkdtemp()
config = os.path.join(data, "roommanager.toml")
with open(config, "w") as f:
    f.write(f"[server]\nheader_timeout_secs = {header}\n[media.rtmp]\nmanage_nginx = false\n")
server = subprocess.Popen(
    [binary, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(data, "data"), "--config", config],
    stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
for line in server.stderr:
    found = re.search(r"listening on http://(\S+):(\d+)", line)
    if found:
        host, port = found.group(1), int(found.group(2))
        break


def rss_kib():
    with open(f"/proc/{server.pid}/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmRSS"))


def fds():
    return len(os.listdir(f"/proc/{server.pid}/fd"))


time.sleep(0.5)
rss0, fds0 = rss_kib(), fds()
sockets = [socket.create_connection((host, port)) for _ in range(n)]
opened = time.time()
time.sleep(1.0)
rss1, fds1 = rss_kib(), fds()
print(f"header_timeout_secs = {header}: server RSS {rss0} -> {rss1} KiB with {n} silent "
      f"connections ({(rss1 - rss0) / n:.1f} KiB each); open descriptors {fds0} -> {fds1}")
selector = selectors.DefaultSelector()
for s in sockets:
    s.setblocking(False)
    selector.register(s, selectors.EVENT_READ)
left, last = n, None
while left and time.time() < opened + wait:
    for key, _ in selector.select(timeout=0.5):
        try:
            closed = key.fileobj.recv(1) == b""
        except ConnectionResetError:
            closed = True
        if closed:
            selector.unregister(key.fileobj)
            left, last = left - 1, time.time() - opened
print(f"  {n - left} of {n} closed by the server"
      + (f", the last {last:.2f} s after the last connect" if last else "")
      + f"; server descriptors now {fds()}, RSS {rss_kib()} KiB")
server.terminate()
server.wait()
