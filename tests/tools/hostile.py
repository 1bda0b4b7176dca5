#!/usr/bin/env python3
"""Hostile and careless peers for the hardening tests, with Python's socket and ssl modules
(not ferry's code).

  hostile.py trickle-raw HOST:PORT INTERVAL_S             TCP only: 1 byte of a ClientHello per interval
  hostile.py trickle-tls IDENTITY HOST:PORT INTERVAL_S    TLS up, then 1 byte of a frame per interval
  hostile.py churn IDENTITY HOST:PORT N                   N connections: every 4th a full TLS handshake,
                                                           the rest connect and close at once
  hostile.py garbage HOST:PORT N                          N connections sending random bytes

The trickle modes print how long the agent took to drop them ("dropped after S s") and exit 0
when it did, 1 when it never did within 120 s.
"""
import os, random, socket, ssl, sys, time

# The start of a real TLS 1.2 ClientHello record.
HELLO = bytes.fromhex("16030100c8010000c40303") + os.urandom(32) + b"\x00" * 200


def addr(s):
    h, p = s.rsplit(":", 1)
    return h, int(p)


def tls(identity, target):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.load_verify_locations(os.path.join(identity, "ca.pem"))
    ctx.load_cert_chain(os.path.join(identity, "cert.pem"), os.path.join(identity, "key.pem"))
    return ctx.wrap_socket(socket.create_connection(addr(target), timeout=30))


def trickle(sock, data, interval):
    t0 = time.time()
    sock.settimeout(interval)
    for b in data:
        try:
            sock.sendall(bytes([b]))
            got = sock.recv(4096)  # waits up to one interval for the agent to give up
            if got == b"":
                break
        except (socket.timeout, TimeoutError):
            continue
        except (ConnectionError, OSError, ssl.SSLError):
            break
        if time.time() - t0 > 120:
            print("never dropped")
            return 1
    print("dropped after %.1f s" % (time.time() - t0))
    return 0


def main():
    mode = sys.argv[1]
    if mode == "trickle-raw":
        s = socket.create_connection(addr(sys.argv[2]))
        return trickle(s, HELLO, float(sys.argv[3]))
    if mode == "trickle-tls":
        s = tls(sys.argv[2], sys.argv[3])
        hello = b'{"proto_min":1,"proto_max":1,"client":"trickle","intent":"status"}'
        frame = b"FY\x01\x00" + len(hello).to_bytes(4, "big") + hello
        return trickle(s, frame * 100, float(sys.argv[4]))
    if mode == "churn":
        identity, target, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
        for i in range(n):
            if i % 4 == 0:
                s = tls(identity, target)
                s.close()
            else:
                s = socket.create_connection(addr(target))
                s.close()
        return 0
    if mode == "garbage":
        target, n = sys.argv[2], int(sys.argv[3])
        rnd = random.Random(6)
        for i in range(n):
            s = socket.create_connection(addr(target))
            try:
                s.sendall(rnd.randbytes(rnd.randint(1, 20000)))
                s.settimeout(0.5)
                while s.recv(4096):
                    pass
            except OSError:
                pass
            s.close()
        return 0
    raise SystemExit("unknown mode " + mode)


if __name__ == "__main__":
    sys.exit(main())
