"""Receive kube-scim webhook deliveries (Standard Webhooks signatures).

Usage: WEBHOOK_KEY_FILE=/etc/webhook/key LISTEN_ADDRESS=0.0.0.0:8080 python receiver.py
Prints one line per new event: <event id> <event type> <transition>.
"""
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Lock

from standardwebhooks.webhooks import Webhook

# whsec_...; verify() also rejects a timestamp more than 5 minutes off (a stale replay).
verifier = Webhook(open(os.environ.get("WEBHOOK_KEY_FILE", "/etc/webhook/key")).read().strip())
seen, lock = set(), Lock()  # use your database: the event id is the idempotency key


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            payload = verifier.verify(body, {k.lower(): v for k, v in self.headers.items()})
        except Exception:
            self.send_response(401)
            self.end_headers()
            return
        events = payload["data"] if payload.get("object") == "list" else [payload]
        with lock:
            for event in events:
                if event["id"] in seen:  # a redelivery: already handled
                    continue
                seen.add(event["id"])
                # Act here, and store event["id"] with the change in one transaction.
                print(event["id"], event["event"], event.get("transition", ""), flush=True)
        self.send_response(204)
        self.end_headers()


host, _, port = os.environ.get("LISTEN_ADDRESS", "0.0.0.0:8080").rpartition(":")
ThreadingHTTPServer((host, int(port)), Hook).serve_forever()
