#!/usr/bin/env python3
"""A real SMTP server for the integration tests (aiosmtpd).

Usage: python3 smtp_server.py EVENTS [options]

Binds 127.0.0.1 port 0 (the kernel picks a free port, so no other process can take it between
the choice and the bind) and prints "PORT <n>" as the first line on stdout. Unless --down is
given it then listens and prints "READY". Runs until killed.

Every SMTP event is appended to EVENTS as one JSON line, written and flushed before the server
answers the command, so a client that got the answer finds the line in the file:
  {"event": "ehlo", "tls": bool}
  {"event": "starttls"}                                    (the command, before the handshake)
  {"event": "auth", "mechanism": "...", "login": "...", "ok": bool, "tls": bool}
  {"event": "mail_from", "address": "...", "tls": bool}
  {"event": "refused", "command": "RCPT"|"DATA", "code": 5xx, "to": [...]}
  {"event": "delivered", "to": [...], "from": "...", "subject": "...", "text": "<text/plain>",
   "tls": bool, "login": "..." or null}

Options:
  --down                   bind the port but do not listen: connections are refused (ECONNREFUSED)
                           until the command "up" arrives on stdin
  --starttls CERT KEY      offer STARTTLS with this certificate chain and key, and require it
                           before MAIL
  --implicit-tls CERT KEY  TLS from the first byte (SMTPS, lettre's "tls" mode)
  --auth USER PASSWORD     offer AUTH PLAIN and LOGIN and require it before MAIL; only over TLS
                           unless --auth-plaintext
  --auth-plaintext         also offer AUTH on an unencrypted connection
  --reject-rcpt SUBSTRING  answer "550 5.1.1" to RCPT for every recipient containing SUBSTRING
                           (empty: every recipient)
  --reject-data SUBSTRING  answer "554 5.7.1" to DATA when a recipient contains SUBSTRING

The server exits when stdin ends (the test process is gone).

Commands on stdin, one a line, each acknowledged with "DONE <command>" on stdout once in effect:
  up      start listening (after --down; "READY" is not printed then)
  accept  stop refusing: --reject-rcpt and --reject-data no longer apply
"""

import argparse
import asyncio
import json
import logging
import os
import socket
import ssl
import sys
import threading
import warnings
from email import message_from_bytes
from email.policy import default

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

RCPT_REFUSED = "550 5.1.1 Mailbox unavailable"
DATA_REFUSED = "554 5.7.1 Message refused"


def say(line):
    print(line, flush=True)


def uses_tls(server):
    transport = server.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


class Recorder:
    def __init__(self, path, reject_rcpt, reject_data):
        self.path = path
        self.lock = threading.Lock()
        self.reject_rcpt = reject_rcpt
        self.reject_data = reject_data

    def record(self, event, **fields):
        line = json.dumps({"event": event, **fields})
        with self.lock:
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(line + "\n")
                out.flush()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.record("ehlo", tls=uses_tls(server))
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.record("mail_from", address=address, tls=uses_tls(server))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.reject_rcpt is not None and self.reject_rcpt in address:
            self.record("refused", command="RCPT", code=int(RCPT_REFUSED[:3]), to=[address])
            return RCPT_REFUSED
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        recipients = list(envelope.rcpt_tos)
        if self.reject_data is not None and any(self.reject_data in r for r in recipients):
            self.record("refused", command="DATA", code=int(DATA_REFUSED[:3]), to=recipients)
            return DATA_REFUSED
        message = message_from_bytes(envelope.original_content or envelope.content, policy=default)
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        auth = session.auth_data
        self.record(
            "delivered",
            to=recipients,
            **{"from": envelope.mail_from},
            subject=str(message.get("subject", "")),
            text=text,
            tls=uses_tls(server),
            login=auth.login.decode() if isinstance(auth, LoginPassword) else None,
        )
        return "250 Message accepted for delivery"


class Authenticator:
    def __init__(self, recorder, user, password):
        self.recorder = recorder
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == self.user
            and auth_data.password == self.password
        )
        login = auth_data.login.decode(errors="replace") if isinstance(auth_data, LoginPassword) else ""
        self.recorder.record("auth", mechanism=mechanism, login=login, ok=ok, tls=uses_tls(server))
        # handled=False: aiosmtpd answers "535 5.7.8" itself on failure.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class RecordingSMTP(SMTP):
    async def smtp_STARTTLS(self, arg):
        self.event_handler.record("starttls")
        return await super().smtp_STARTTLS(arg)


def tls_context(cert, key):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def parse_args():
    parser = argparse.ArgumentParser(description="SMTP server for the integration tests")
    parser.add_argument("events")
    parser.add_argument("--down", action="store_true")
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    tls.add_argument("--implicit-tls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--auth", nargs=2, metavar=("USER", "PASSWORD"))
    parser.add_argument("--auth-plaintext", action="store_true")
    parser.add_argument("--reject-rcpt", metavar="SUBSTRING")
    parser.add_argument("--reject-data", metavar="SUBSTRING")
    return parser.parse_args()


async def serve(args):
    loop = asyncio.get_running_loop()
    open(args.events, "a", encoding="utf-8").close()
    recorder = Recorder(args.events, args.reject_rcpt, args.reject_data)

    smtp_options = {"hostname": "127.0.0.1"}
    implicit = None
    if args.starttls:
        smtp_options["tls_context"] = tls_context(*args.starttls)
        smtp_options["require_starttls"] = True
    if args.implicit_tls:
        implicit = tls_context(*args.implicit_tls)
    if args.auth:
        smtp_options["authenticator"] = Authenticator(recorder, *args.auth)
        smtp_options["auth_required"] = True
        # A connection with TLS from the first byte is encrypted, though aiosmtpd only counts
        # STARTTLS as such.
        smtp_options["auth_require_tls"] = not (args.auth_plaintext or implicit)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    say(f"PORT {sock.getsockname()[1]}")

    up = asyncio.Event()
    if not args.down:
        up.set()

    def command(line):
        name = line.strip()
        if name == "up":
            up.set()
            return  # acknowledged once listening
        if name == "accept":
            recorder.reject_rcpt = None
            recorder.reject_data = None
        else:
            print(f"smtp_server.py: unknown command {name!r}", file=sys.stderr, flush=True)
            return
        say(f"DONE {name}")

    def read_commands():
        for line in sys.stdin:
            loop.call_soon_threadsafe(command, line)
        # End of stdin: the test process is gone, so is any use for this server.
        os._exit(0)

    threading.Thread(target=read_commands, daemon=True).start()

    await up.wait()
    sock.listen(100)
    server = await loop.create_server(
        lambda: RecordingSMTP(recorder, **smtp_options), sock=sock, ssl=implicit
    )
    say("DONE up" if args.down else "READY")
    async with server:
        await server.serve_forever()


def main():
    # The tests read the events file; aiosmtpd's own log (e.g. the traceback of a TLS handshake
    # a test makes fail on purpose) only with RM_SMTP_DEBUG=1.
    if os.environ.get("RM_SMTP_DEBUG") != "1":
        logging.getLogger("mail.log").setLevel(logging.CRITICAL)
        warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    asyncio.run(serve(parse_args()))


if __name__ == "__main__":
    main()
