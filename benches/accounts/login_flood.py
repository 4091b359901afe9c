#!/usr/bin/env python3
"""Memory of a roommanager server under login floods, for several binaries in one run.

For each binary given, alternately and `--rounds` times: start it as a child with a fresh data
dir (nginx off, the per-IP login limit out of the way), log in once (a warm-up, so the first
password check's memory is counted before), then
  names:    155 sequential POST /api/v1/login, each with a different one-megabyte login name;
  parallel: 30 logins of unknown names at once (each one password check).
Prints VmRSS before and after, and VmHWM (peak), from /proc/PID/status.

    benches/accounts/login_flood.py BEFORE_BINARY AFTER_BINARY [--rounds N]
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def login(base, name):
    body = json.dumps({"login": name, "password": "not the password"}).encode()
    request = urllib.request.Request(
        base + "/api/v1/login", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code


def start(binary, data):
    config = os.path.join(data, "rm.toml")
    with open(config, "w") as f:
        f.write("[limits]\nlogin_per_ip = 1000000\n[media.rtmp]\nmanage_nginx = false\n")
    child = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(data, "d"),
         "--config", config],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "RUST_LOG": "info"},
    )
    for line in child.stderr:
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            threading.Thread(target=lambda: [None for _ in child.stderr], daemon=True).start()
            return child, found.group(1)
    raise RuntimeError(f"{binary} did not start")


def run(binary, flood):
    with tempfile.TemporaryDirectory() as data:
        child, base = start(binary, data)
        try:
            login(base, "warmup")
            before = status_kib(child.pid, "VmRSS")
            if flood == "names":
                for i in range(155):
                    login(base, f"{i:03}" + "x" * 1_000_000)
            else:
                threads = [threading.Thread(target=login, args=(base, f"nobody{i}"))
                           for i in range(30)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            after = status_kib(child.pid, "VmRSS")
            peak = status_kib(child.pid, "VmHWM")
            return before // 1024, after // 1024, peak // 1024
        finally:
            child.kill()
            child.wait()


def main():
    args = sys.argv[1:]
    rounds = 2
    if "--rounds" in args:
        i = args.index("--rounds")
        rounds = int(args[i + 1])
        del args[i:i + 2]
    print(f"load average at start: {open('/proc/loadavg').read().split()[:3]}")
    for flood in ("names", "parallel"):
        for r in range(rounds):
            for binary in args:
                before, after, peak = run(binary, flood)
                print(f"{flood:8} round {r + 1}  {binary}: RSS {before} -> {after} MiB, "
                      f"peak {peak} MiB")
    print(f"load average at end: {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
