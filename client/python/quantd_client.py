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
`quantd_client.py decide profile=rp2040 battery=0.2`; `fetch-model device=ID [version=N]
[out=F.qm] [pub=HEX]` fetches a device's model and verifies it (the signed manifest under the
daemon's key, Ed25519 with python3-nacl; then its sha256).

Models: fetch_model(client, pub, device) returns (manifest, bytes) only when the manifest
verifies, names the device, is newer than `installed` and not expired, and the bytes match;
Subscriber(push, topics).recv() gives notifications (unsigned hints to fetch).
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

    # Every op as a method (the README's op table); context fields as keyword arguments
    # (free_flash, free_ram, latency_ms, energy_mj, battery).
    def health(self):
        return self.call("health")

    def stats(self):
        return self.call("stats")

    def devices(self, offset=0, limit=1000, **filters):
        """filters: group, profile, status (active|revoked|deleted), unacked (bool),
        unseen_s (not heard from for that many seconds)."""
        return self.call("devices", offset=offset, limit=limit, **filters)

    def group(self, name=None, devices=None):
        """With no name: the groups; else puts `devices` in group `name` ("" = none)."""
        if name is None:
            return self.call("group")
        return self.call("group", group=name, devices=list(devices or []))

    def set(self, device=None, group=None, **settings):
        """flash, ram, latency_ms, energy_mj (a number or "50%"), accuracy_floor, bits
        ([4, 8]), pin (a version or "current"), clear (True or a list of names)."""
        target = {"device": device} if device is not None else {"group": group}
        return self.call("set", **target, **settings)

    def rollback(self, device=None, group=None, to=None):
        fields = {"device": device} if device is not None else {"group": group}
        if to is not None:
            fields["to"] = to
        return self.call("rollback", **fields)

    def revoke(self, device):
        return self.call("revoke", device=device)

    def delete(self, device):
        return self.call("delete", device=device)

    def events(self, **filters):
        """filters: device, group, kind, since (unix seconds), limit."""
        return self.call("events", **filters)

    def pareto(self, profile, metric="flash", points=16):
        """The frontier of metric (flash, ram, latency_ms, energy_mj) against predicted
        accuracy on profile: {"points": [{budget, policy, flash, ram, latency_ms, energy_mj,
        predicted_loss, predicted_accuracy}, ...]}."""
        return self.call("pareto", profile=profile, metric=metric, points=points)

    def device(self, id):
        return self.call("device", id=id)

    def keys(self, action, id=None):
        """add|rotate ID returns {"id", "key", "sign_pub"}; the key comes sealed to a one-time
        X25519 key (python3-nacl's SealedBox). Without nacl it is asked for in clear, which the
        daemon gives only over ipc:// or with keys_in_clear = 1."""
        if action == "pub" or not id:
            return self.call("keys", action=action, **({"id": id} if id else {}))
        try:
            from nacl.public import PrivateKey, SealedBox
        except ImportError:
            return self.call("keys", action=action, id=id)
        sk = PrivateKey.generate()
        r = self.call("keys", action=action, id=id, seal_to=bytes(sk.public_key).hex())
        r["key"] = SealedBox(sk).decrypt(bytes.fromhex(r.pop("key_sealed"))).hex()
        return r

    def hello(self, profile, flash=None, ram=None):
        extra = {k: v for k, v in (("flash", flash), ("ram", ram)) if v}
        return self.call("hello", profile=profile, **extra)

    def report(self, **context):
        return self.call("report", **context)

    def decide(self, profile=None, device=None, **context):
        extra = {k: v for k, v in (("profile", profile), ("device", device)) if v}
        return self.call("decide", **extra, **context)

    def fetch(self, version=0, offset=0, device=None, pack="raw"):
        """One raw chunk reply (bytes); fetch_model() assembles and verifies a whole model."""
        f = {"pack": pack, "offset": offset}
        if version:
            f["version"] = version
        if device:
            f["device"] = device
        return self.call("fetch", **f)

    def ack(self, version, sha256):
        return self.call("ack", version=version, sha256=sha256)

    def event(self, kind, version=0, code=None, message=None):
        f = {"kind": kind, "version": version}
        if code:
            f["code"] = code
        if message:
            f["message"] = message[:512]
        return self.call("event", **f)


DOMAIN = b"quantd manifest v1\n"


def parse_chunk(b: bytes):
    """A fetch reply: QDF1, a JSON header line, the manifest, its signature, the bytes."""
    if not b.startswith(b"QDF1") or b"\n" not in b[4:4100]:
        raise QuantdError("EFORMAT", "not a fetch chunk")
    nl = b.index(b"\n", 4)
    h = json.loads(b[4:nl])
    ml = h.get("manifest_len")
    if not isinstance(ml, int) or ml < 1 or len(b) < nl + 1 + ml + 64:
        raise QuantdError("EFORMAT", "truncated fetch chunk")
    text = b[nl + 1 : nl + 1 + ml]
    sig = b[nl + 1 + ml : nl + 1 + ml + 64]
    return h, text, sig, b[nl + 1 + ml + 64 :]


def check_manifest(text: bytes, sig: bytes, pub: bytes, device: str, installed: int, now=None):
    """The manifest as a dict, or QuantdError with the code the C client gives: EAUTH (the
    signature under the pinned key), EFOREIGN, EROLLBACK, EEXPIRED, EFORMAT."""
    from nacl.exceptions import BadSignatureError  # Debian python3-nacl (scripts/setup.sh)
    from nacl.signing import VerifyKey

    try:
        VerifyKey(pub).verify(DOMAIN + text, sig)
    except BadSignatureError:
        raise QuantdError("EAUTH", "manifest: the signature does not verify under the pinned key")
    try:
        m = json.loads(text)
        ok = m["v"] == 1 and all(isinstance(m[k], int) for k in ("version", "size", "expires"))
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise QuantdError("EFORMAT", "manifest: malformed")
    if m["device"] != device:
        raise QuantdError("EFOREIGN", f"manifest: for device {m['device']!r}, not {device!r}")
    if m["version"] <= installed:
        raise QuantdError("EROLLBACK", f"manifest: version {m['version']}, not above {installed}")
    if (now if now is not None else time.time()) >= m["expires"]:
        raise QuantdError("EEXPIRED", "manifest: expired")
    return m


def fetch_model(c: Client, pub: bytes, device: str, version=0, installed=0, admin=False):
    """A device's model (raw, chunk by chunk), verified: (manifest, bytes)."""
    fields = {"version": version, "device": device if admin else None}
    h, text, sig, data = parse_chunk(c.fetch(**fields))
    m = check_manifest(text, sig, pub, device, installed)
    if h["version"] != m["version"] or h["encoding"] != "raw" or h["total"] != m["size"]:
        raise QuantdError("EFORMAT", "fetch: the chunk does not match its manifest")
    buf = bytearray(data)
    while len(buf) < m["size"]:
        fields.update(version=m["version"], offset=len(buf))
        h2, _, _, data = parse_chunk(c.fetch(**fields))
        if h2["offset"] != len(buf) or h2["version"] != m["version"] or not data:
            raise QuantdError("EFORMAT", "fetch: chunks do not fit together")
        buf += data
    if len(buf) != m["size"] or hashlib.sha256(buf).hexdigest() != m["sha256"]:
        raise QuantdError("ECHECKSUM", "model: the bytes are not the manifest's")
    return m, bytes(buf)


class Subscriber:
    """Notifications from quantd's PUB socket (SP SUB: protocol 33 to PUB's 32; nanomsg
    filters at the subscriber, so this filters too). Unsigned hints: fetch_model decides."""

    def __init__(self, push="tcp://127.0.0.1:7412", topics=(), timeout=10.0):
        self.topics = {t.encode() + b"\0" for t in topics}
        if push.startswith("tcp://"):
            host, port = push[6:].rsplit(":", 1)
            self.sock = socket.create_connection((host, int(port)), timeout=timeout)
            self.ipc = False
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(push[6:])
            self.ipc = True
        self.sock.sendall(b"\x00SP\x00" + struct.pack(">HH", 33, 0))
        Client._read(self, 8)

    def recv(self):
        """The next notification for a subscribed topic (all when none given), as a dict."""
        while True:
            b = Client._recv(self)
            z = b.find(b"\0")
            if z < 0 or (self.topics and b[: z + 1] not in self.topics):
                continue
            return json.loads(b[z + 1 :])

    def close(self):
        self.sock.close()


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
        if a.op == "fetch-model":  # as admin: a device's model, verified
            pub = fields.get("pub") or c.call("keys", action="pub")["sign_pub"]
            m, qm = fetch_model(c, bytes.fromhex(pub), fields["device"],
                                fields.get("version", 0), admin=True)
            if fields.get("out"):
                with open(fields["out"], "wb") as f:
                    f.write(qm)
            r = {"verified": True, "version": m["version"], "bytes": len(qm),
                 "sha256": m["sha256"], "policy": m["policy"]}
        else:
            r = c.call(a.op, **fields)
    except QuantdError as e:
        print(json.dumps(e.reply) if e.reply else json.dumps({"error": e.code, "message": e.message}))
        return 1
    finally:
        c.close()
    print(json.dumps(r) if isinstance(r, dict) else f"{len(r)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
