#!/usr/bin/env python3
"""A loopback TCP proxy for the hardening tests that cuts connections at random byte offsets and
can stall them.

  cutproxy.py TARGET_HOST:TARGET_PORT PORT_FILE STATS_FILE [--cuts N] [--mean BYTES]
              [--stall-ms MS --stall-every BYTES] [--seed S]

Listens on a free loopback port (written to PORT_FILE). For each connection it picks a cut point
uniformly in [1, 2*mean] bytes of client-to-server traffic; when the forwarded bytes reach it the
proxy resets both sides (SO_LINGER 0), until N cuts were made; after that it forwards faithfully.
With --stall-ms it pauses the client-to-server direction for MS every BYTES forwarded, and
creates STATS_FILE.stalled when a pause begins. With --hold-down-after BYTES, a connection's
server-to-client direction stops for good once it has forwarded BYTES (a server that hangs in
the middle of a response, as a stalled registry does), and STATS_FILE.held is created.
STATS_FILE gets one JSON object, rewritten after every connection: cuts, connections,
client_to_server bytes (what crossed the "link" towards the agent), server_to_client bytes.
"""
import argparse, json, random, socket, struct, threading, time

lock = threading.Lock()
stats = {"cuts": 0, "connections": 0, "client_to_server": 0, "server_to_client": 0}


def save(path):
    with lock:
        data = json.dumps(stats)
    with open(path + ".tmp", "w") as f:
        f.write(data)
    import os
    os.replace(path + ".tmp", path)


def reset(s):
    # shutdown() wakes the thread blocked in recv() on this socket (close() alone would not, and
    # the kernel would keep the connection open); linger 0 then makes close() a reset.
    for op in (lambda: s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)),
               lambda: s.shutdown(socket.SHUT_RDWR)):
        try:
            op()
        except OSError:
            pass
    try:
        s.close()
    except OSError:
        pass


def handle(client, args, rnd):
    try:
        server = socket.create_connection((args.host, args.port))
    except OSError:
        client.close()
        return
    with lock:
        stats["connections"] += 1
        cut_at = rnd.randint(1, 2 * args.mean) if stats["cuts"] < args.cuts else None
    done = threading.Event()
    state = {"cut": False}

    def up():  # client -> server, where the cuts happen
        sent = 0
        next_stall = args.stall_every or None
        try:
            while not done.is_set():
                room = 65536 if cut_at is None else max(1, min(65536, cut_at - sent))
                data = client.recv(room)
                if not data:
                    break
                server.sendall(data)
                sent += len(data)
                with lock:
                    stats["client_to_server"] += len(data)
                if cut_at is not None and sent >= cut_at:
                    with lock:
                        if stats["cuts"] < args.cuts:
                            stats["cuts"] += 1
                            state["cut"] = True
                    if state["cut"]:
                        break
                if next_stall and sent >= next_stall:
                    open(args.stats + ".stalled", "w").close()  # tests wait for this, not for time
                    time.sleep(args.stall_ms / 1000.0)
                    next_stall += args.stall_every
        except OSError:
            pass
        done.set()

    def down():  # server -> client
        got = 0
        try:
            while not done.is_set():
                data = server.recv(65536)
                if not data:
                    break
                if args.hold_down_after and got + len(data) > args.hold_down_after:
                    client.sendall(data[: max(0, args.hold_down_after - got)])
                    open(args.stats + ".held", "w").close()  # tests wait for this, not for time
                    done.wait()  # nothing more that way until the client gives up
                    break
                got += len(data)
                client.sendall(data)
                with lock:
                    stats["server_to_client"] += len(data)
        except OSError:
            pass
        done.set()

    t1, t2 = threading.Thread(target=up, daemon=True), threading.Thread(target=down, daemon=True)
    t1.start()
    t2.start()
    done.wait()
    if state["cut"]:
        # The pusher's side is reset. Towards the agent the link just ends: what already crossed
        # it is in the node's socket buffer and would be read there after a real cut too (a RST
        # from this proxy would make the node's kernel discard it, which no cut link does).
        reset(client)
        try:
            server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        server.close()
    else:
        for s in (client, server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
    t1.join(2)
    t2.join(2)
    save(args.stats)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("target")
    ap.add_argument("port_file")
    ap.add_argument("stats")
    ap.add_argument("--cuts", type=int, default=0)
    ap.add_argument("--mean", type=int, default=1 << 20)
    ap.add_argument("--stall-ms", type=int, default=0)
    ap.add_argument("--stall-every", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hold-down-after", type=int, default=0)
    args = ap.parse_args()
    args.host, port = args.target.rsplit(":", 1)
    args.port = int(port)
    rnd = random.Random(args.seed)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    save(args.stats)
    with open(args.port_file, "w") as f:
        f.write(str(ls.getsockname()[1]))
    while True:
        c, _ = ls.accept()
        threading.Thread(target=handle, args=(c, args, rnd), daemon=True).start()


if __name__ == "__main__":
    main()
