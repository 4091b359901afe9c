#!/usr/bin/env python3
"""The room page's first load, as a browser with an empty cache makes it: the HTML of the first
live room's page, then every script, style sheet, icon and image it references, and the fonts and
images the style sheets reference (url(...), @import), each address once. Not counted: the video
(the HLS playlist and segments) and what the page's scripts ask for once running (a guest session,
the WebSocket). Prints each request and the totals.

Usage: first_load.py BASE_URL (a RoomManager on this machine, with at least one live room)."""

import gzip
import json
import re
import sys
import urllib.parse
import urllib.request
from html.parser import HTMLParser

LINK_RELS = {"stylesheet", "icon", "shortcut", "apple-touch-icon", "preload", "modulepreload", "manifest"}


class References(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.found.append(attrs["src"])
        elif tag == "link" and attrs.get("href"):
            if set((attrs.get("rel") or "").lower().split()) & LINK_RELS:
                self.found.append(attrs["href"])
        elif tag == "img" and attrs.get("src"):
            self.found.append(attrs["src"])


def fetch(url):
    """Status, content type, the body (decoded) and the bytes it took on the wire, asking for
    gzip as browsers do."""
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        wire = answer.read()
        body = gzip.decompress(wire) if answer.headers.get("content-encoding") == "gzip" else wire
        return answer.status, answer.headers.get("content-type", ""), body, len(wire)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    base = sys.argv[1].rstrip("/")
    host = urllib.parse.urlsplit(base).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"{base}: the benchmark only talks to this machine")
    rooms = json.loads(fetch(base + "/api/v1/rooms")[2])["rooms"]
    if not rooms:
        sys.exit("no live room to load")
    page = f"{base}/room/{rooms[0]['room_id']}"
    queue, seen, rows = [page], set(), []
    while queue:
        url = queue.pop(0)
        if url in seen:
            continue
        seen.add(url)
        status, kind, body, wire = fetch(url)
        rows.append((url[len(base):], status, kind.split(";")[0], len(body), wire))
        if kind.startswith("text/html"):
            parser = References()
            parser.feed(body.decode("utf-8", "replace"))
            refs = parser.found
        elif kind.startswith("text/css"):
            text = body.decode("utf-8", "replace")
            refs = re.findall(r"url\(\s*['\"]?([^'\")]+)['\"]?\s*\)", text)
            refs += re.findall(r"@import\s+['\"]([^'\"]+)['\"]", text)
        else:
            refs = []
        for ref in refs:
            target = urllib.parse.urljoin(url, ref)
            # data: URIs cost no request; other sites are not this server's.
            if target.startswith(base + "/"):
                queue.append(urllib.parse.urldefrag(target)[0])
    print(f"\n| request | status | type | bytes | on the wire |\n|---|---:|---|---:|---:|")
    for path, status, kind, size, wire in rows:
        print(f"| {path} | {status} | {kind} | {size:,} | {wire:,} |")
    total = sum(r[3] for r in rows)
    wire = sum(r[4] for r in rows)
    print(
        f"\nroom page first load: {len(rows)} requests, {total:,} bytes ({total / 1024:.1f} KiB), "
        f"{wire:,} bytes on the wire ({wire / 1024:.1f} KiB)"
    )


if __name__ == "__main__":
    main()
