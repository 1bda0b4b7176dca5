#!/usr/bin/env python3
"""A misbehaving pusher for the tests, written with Python's ssl module (not ferry's code):
speaks ferry's frames over mutual TLS and breaks the rules on purpose.

  rawpeer.py IDENTITY HOST:PORT bad-manifest-digest LAYOUT REF PLATFORM APP
  rawpeer.py IDENTITY HOST:PORT cut-blob LAYOUT REF PLATFORM APP NBYTES

Prints the agent's answers as JSON lines.
"""
import hashlib, json, os, socket, ssl, struct, sys

T = {"hello": 1, "facts": 2, "error": 3, "plan": 4, "blob": 5, "commit": 6, "result": 7, "reply": 9, "blob-begin": 11}


def connect(identity, target):
    host, port = target.rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.load_verify_locations(os.path.join(identity, "ca.pem"))
    ctx.load_cert_chain(os.path.join(identity, "cert.pem"), os.path.join(identity, "key.pem"))
    return ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=60))


def send(s, typ, payload):
    if isinstance(payload, (dict, list)):
        payload = json.dumps(payload).encode()
    s.sendall(b"FY" + bytes([T[typ], 0]) + struct.pack(">I", len(payload)) + payload)


def recv(s):
    hdr = b""
    while len(hdr) < 8:
        chunk = s.recv(8 - len(hdr))
        if not chunk:
            return None, None
        hdr += chunk
    n = struct.unpack(">I", hdr[4:])[0]
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            return None, None
        body += chunk
    name = {v: k for k, v in T.items()}.get(hdr[2], str(hdr[2]))
    return name, json.loads(body) if body[:1] == b"{" else body


def blob(layout, digest):
    with open(os.path.join(layout, "blobs", "sha256", digest.split(":")[1]), "rb") as f:
        return f.read()


def variant(layout, ref, platform):
    ix = json.load(open(os.path.join(layout, "index.json")))
    top = [m for m in ix["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref][0]
    nested = json.loads(blob(layout, top["digest"]))
    os_, arch = platform.split("/")[:2]
    for m in nested["manifests"]:
        p = m.get("platform", {})
        if p.get("os") == os_ and p.get("architecture") == arch:
            raw = blob(layout, m["digest"])
            man = json.loads(raw)
            return raw, man, blob(layout, man["config"]["digest"])
    raise SystemExit("no such variant")


def main():
    identity, target, mode, layout, ref, platform, app = sys.argv[1:8]
    s = connect(identity, target)
    send(s, "hello", {"proto_min": 1, "proto_max": 1, "client": "rawpeer", "intent": "deploy", "app": app})
    print(json.dumps({"got": recv(s)[0]}))
    raw, man, cfg = variant(layout, ref, platform)
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    plan = {"app": app, "manifest": raw.decode(), "manifest_digest": digest, "config": cfg.decode(), "settle_ms": 1000}
    if mode == "bad-manifest-digest":
        plan["manifest_digest"] = "sha256:" + hashlib.sha256(raw + b" ").hexdigest()
        send(s, "plan", plan)
        name, body = recv(s)
        print(json.dumps({"got": name, "body": body}))
        return
    if mode == "cut-blob":
        nbytes = int(sys.argv[8])
        send(s, "plan", plan)
        name, body = recv(s)
        print(json.dumps({"got": name, "body": body}))
        first = body["need"][0]
        data = blob(layout, first["digest"])[first["offset"]:first["offset"] + nbytes]
        send(s, "blob-begin", {"digest": first["digest"], "offset": first["offset"]})
        for i in range(0, len(data), 65536):
            send(s, "blob", data[i:i + 65536])
        s.close()  # the link drops mid-blob
        print(json.dumps({"sent": len(data), "of": first["size"]}))
        return
    raise SystemExit("unknown mode " + mode)


if __name__ == "__main__":
    main()
