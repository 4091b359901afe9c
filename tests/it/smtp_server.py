#!/usr/bin/env python3
"""A real SMTP server for the integration tests (aiosmtpd).

Usage: python3 smtp_server.py PORT FILE

Listens on 127.0.0.1:PORT, appends one JSON line per delivered message to FILE:
{"to": [...], "from": "...", "subject": "...", "text": "<decoded text/plain body>"}
and prints READY on stdout once it accepts connections. Runs until killed.
"""

import json
import sys
import threading
from email import message_from_bytes
from email.policy import default

from aiosmtpd.controller import Controller


class Recorder:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.original_content or envelope.content, policy=default)
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        record = {
            "to": list(envelope.rcpt_tos),
            "from": envelope.mail_from,
            "subject": str(message.get("subject", "")),
            "text": text,
        }
        with self.lock:
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")
                out.flush()
        return "250 Message accepted for delivery"


def main():
    if len(sys.argv) != 3:
        print("usage: smtp_server.py PORT FILE", file=sys.stderr)
        sys.exit(2)
    port = int(sys.argv[1])
    path = sys.argv[2]
    open(path, "a", encoding="utf-8").close()
    controller = Controller(Recorder(path), hostname="127.0.0.1", port=port)
    controller.start()
    print("READY", flush=True)
    try:
        threading.Event().wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
