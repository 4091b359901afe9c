#!/usr/bin/env python3
"""Recording viewers heartbeating: write transactions per second and server CPU.

Starts BINARY on a copy of DATA_DIR (a data dir that holds recording RECORD, e.g. one filled by
`records-fill`), makes VIEWERS guests, each starts a view of the recording and then sends a
heartbeat every INTERVAL seconds (position advancing with real time), each over its own
keep-alive connection, for SECONDS. Prints heartbeats per second, heartbeat latency p50/p99,
write transactions per second (`roommanager_record_watch_writes_total`) and the server's CPU
(utime + stime from /proc/PID/stat) as a share of one core.

    benches/records/heartbeats.py BINARY DATA_DIR RECORD [--viewers 1000] [--interval 1]
                                  [--seconds 30] [--flush-batch 1000]
"""
import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import subprocess
import tempfile
import threading
import time


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def start(binary, data, viewers, flush_batch):
    config = os.path.join(data, "rm.toml")
    with open(config, "w") as f:
        f.write(
            "[server]\nmax_connections_per_ip = %d\n"
            "[limits]\nguest_per_ip = %d\n"
            "[records]\nwatch_flush_batch = %d\n"
            "[media.rtmp]\nmanage_nginx = false\n" % (viewers + 64, viewers + 64, flush_batch)
        )
    child = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(data, "d"),
         "--config", config],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "RUST_LOG": "warn,roommanager=info"},
    )
    for line in child.stderr:
        found = re.search(r"listening on http://([\d.]+):(\d+)", line)
        if found:
            threading.Thread(target=lambda: [None for _ in child.stderr], daemon=True).start()
            return child, found.group(1), int(found.group(2))
    raise RuntimeError(f"{binary} did not start")


class Connection:
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, host, port):
        self.host, self.port = host, port

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method, path, token=None, body=None, headers=()):
        data = json.dumps(body).encode() if body is not None else b""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 f"Content-Length: {len(data)}"]
        if body is not None:
            lines.append("Content-Type: application/json")
        if token:
            lines.append(f"Authorization: Bearer {token}")
        lines.extend(headers)
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        payload = await self.reader.readexactly(length)
        return status, payload

    def close(self):
        self.writer.close()


async def metric(host, port, series):
    conn = Connection(host, port)
    await conn.open()
    _, text = await conn.request("GET", "/metrics")
    conn.close()
    for line in text.decode().splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    return 0.0


async def viewer(host, port, record, interval, latencies, errors, ready):
    conn = Connection(host, port)
    await conn.open()
    status, body = await conn.request("POST", "/api/v1/guest", headers=["X-RM-CSRF: 1"])
    if status != 201:
        raise RuntimeError(f"guest: {status} {body[:200]}")
    token = json.loads(body)["token"]
    status, body = await conn.request("POST", f"/api/v1/records/{record}/watch", token)
    if status != 200:
        raise RuntimeError(f"watch: {status} {body[:200]}")
    view = json.loads(body)["view_id"]
    ready.append(view)
    began = time.monotonic()
    # Spread the viewers over the interval, as real players are.
    await asyncio.sleep(interval * (int(view[:8], 16) % 1000) / 1000)
    while True:
        position = int((time.monotonic() - began) * 1000)
        sent = time.monotonic()
        status, _ = await conn.request(
            "POST", f"/api/v1/records/{record}/watch/{view}", token, {"position_ms": position})
        latencies.append(time.monotonic() - sent)
        if status != 200:
            errors.append(status)
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - sent)))


async def run(host, port, pid, args):
    latencies, errors, ready = [], [], []
    tasks = []
    for i in range(args.viewers):
        tasks.append(asyncio.create_task(
            viewer(host, port, args.record, args.interval, latencies, errors, ready)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    while len(ready) < args.viewers:
        failed = [t for t in tasks if t.done()]
        if failed:
            failed[0].result()
        await asyncio.sleep(0.1)
    # One interval for every viewer to be heartbeating, then measure.
    await asyncio.sleep(args.interval * 2)
    latencies.clear()
    writes0 = await metric(host, port, "roommanager_record_watch_writes_total")
    beats0 = await metric(host, port, "roommanager_record_heartbeats_total")
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(args.seconds)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    writes1 = await metric(host, port, "roommanager_record_watch_writes_total")
    beats1 = await metric(host, port, "roommanager_record_heartbeats_total")
    opened = await metric(host, port, "roommanager_record_views_open")
    for task in tasks:
        task.cancel()
    elapsed = t1 - t0
    lat = sorted(latencies)
    pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))] * 1000 if lat else float("nan")
    print(f"viewers {args.viewers} (open views {opened:.0f}), one heartbeat each per "
          f"{args.interval} s, measured {elapsed:.1f} s")
    print(f"heartbeats/s {(beats1 - beats0) / elapsed:.0f}  latency p50 {pct(0.5):.2f} ms "
          f"p99 {pct(0.99):.2f} ms  errors {len(errors)}")
    print(f"write transactions/s {(writes1 - writes0) / elapsed:.2f}")
    print(f"server CPU {(cpu1 - cpu0) / elapsed * 100:.1f}% of one core")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("data_dir")
    parser.add_argument("record", type=int)
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    # records.watch_flush_batch: 1 writes as soon as one viewer waits (the unbatched case).
    parser.add_argument("--flush-batch", type=int, default=1000)
    args = parser.parse_args()
    # A socket per viewer here and in the server (which inherits the raised limit).
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copytree(args.data_dir, os.path.join(scratch, "d"))
        child, host, port = start(args.binary, scratch, args.viewers, args.flush_batch)
        try:
            asyncio.run(run(host, port, child.pid, args))
        finally:
            child.terminate()
            child.wait()
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
