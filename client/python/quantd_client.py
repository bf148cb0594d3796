#!/usr/bin/env python3
"""quantd_client: a stdlib-only client of quantd for fleet scripts.

Speaks nanomsg's SP wire protocol directly (no bindings): an 8-byte handshake
(00 53 50 00, the 16-bit protocol id, 00 00), then messages framed by a 64-bit big-endian
length (ipc:// adds a 1-byte message type before it). A REQ body starts with a 32-bit request
id whose top bit is set; the reply echoes it. Requests are signed as quantd expects: the JSON
object's last member is "mac", HMAC-SHA256 under the sender's key over every byte before it,
and "nonce" is the sender's clock in microseconds.

    from quantd_client import Client
    c = Client("tcp://127.0.0.1:7411", who="admin", key=open("state/admin.key").read())
    print(c.call("stats"))
    print(c.call("decide", profile="esp32", battery=0.3)["policy"])

Command line: quantd_client.py [--control URL] [--admin-key FILE] OP [key=value ...]
(values parse as JSON when they can), e.g. `quantd_client.py stats` or
`quantd_client.py decide profile=rp2040 battery=0.2`.
"""
import argparse
import hashlib
import hmac
import json
import os
import socket
import struct
import sys
import time

NN_REQ, NN_REP = 48, 49


class QuantdError(Exception):
    def __init__(self, code, message, reply=None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.reply = code, message, reply


class Client:
    def __init__(self, control="tcp://127.0.0.1:7411", who=None, key=None, timeout=10.0):
        self.who = who
        self.key = bytes.fromhex(key.strip()) if key else None
        self.nonce = 0
        self.reqid = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF
        if control.startswith("tcp://"):
            host, port = control[6:].rsplit(":", 1)
            self.sock = socket.create_connection((host, int(port)), timeout=timeout)
            self.ipc = False
        elif control.startswith("ipc://"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(control[6:])
            self.ipc = True
        else:
            raise ValueError(f"unsupported endpoint {control!r} (tcp:// or ipc://)")
        self.sock.sendall(b"\x00SP\x00" + struct.pack(">HH", NN_REQ, 0))
        peer = self._read(8)
        if peer[:4] != b"\x00SP\x00" or struct.unpack(">H", peer[4:6])[0] != NN_REP:
            raise QuantdError("EFORMAT", "the peer is not an SP REP socket")

    def close(self):
        self.sock.close()

    def _read(self, n):
        b = b""
        while len(b) < n:
            chunk = self.sock.recv(n - len(b))
            if not chunk:
                raise QuantdError("EIO", "connection closed")
            b += chunk
        return b

    def _send(self, payload):
        head = (b"\x01" if self.ipc else b"") + struct.pack(">Q", len(payload))
        self.sock.sendall(head + payload)

    def _recv(self):
        if self.ipc:
            self._read(1)
        (n,) = struct.unpack(">Q", self._read(8))
        return self._read(n)

    def request(self, body: bytes) -> bytes:
        """Sends one request body, returns the reply body (binary for models)."""
        self.reqid = (self.reqid + 1) & 0x7FFFFFFF
        rid = struct.pack(">I", self.reqid | 0x80000000)
        self._send(rid + body)
        while True:
            rep = self._recv()
            if rep[:4] == rid:
                return rep[4:]

    def seal(self, msg: dict) -> bytes:
        body = json.dumps(msg, separators=(",", ":")).encode()
        if self.key is None:
            return body
        head = body[:-1]
        mac = hmac.new(self.key, head, hashlib.sha256).hexdigest()
        return head + b',"mac":"' + mac.encode() + b'"}'

    def call(self, op, **fields):
        msg = {"v": 1, "op": op, **fields}
        if self.key is not None and op != "health":
            self.nonce = max(self.nonce + 1, int(time.time() * 1e6))
            msg["from"], msg["nonce"] = self.who, self.nonce
        rep = self.request(self.seal(msg))
        if not rep.startswith(b"{"):
            return rep  # binary: a fetch chunk (QDF1, header line, signed manifest, bytes)
        r = json.loads(rep)
        if not r.get("ok"):
            e = r.get("error", {})
            raise QuantdError(e.get("code", "EFORMAT"), e.get("message", ""), r)
        return r


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--control", default="tcp://127.0.0.1:7411")
    ap.add_argument("--admin-key", default=os.environ.get("QUANTD_ADMIN_KEY", "state/admin.key"))
    ap.add_argument("op")
    ap.add_argument("fields", nargs="*", help="key=value")
    a = ap.parse_args(argv)
    fields = {}
    for kv in a.fields:
        k, _, v = kv.partition("=")
        try:
            fields[k] = json.loads(v)
        except ValueError:
            fields[k] = v
    key = None
    if a.op != "health":
        with open(a.admin_key) as f:
            key = f.read()
    c = Client(a.control, who="admin", key=key)
    try:
        r = c.call(a.op, **fields)
    except QuantdError as e:
        print(json.dumps(e.reply) if e.reply else str(e))
        return 1
    finally:
        c.close()
    print(json.dumps(r) if isinstance(r, dict) else f"{len(r)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
