#!/usr/bin/env python3
"""Hostile clients of an HTTP server, for tests/serve.sh. Each prints one
JSON object with what it saw. Attackers bind their own loopback address
(--from, 127.0.0.2 by default) so that a legitimate client on 127.0.0.1 is
another client to the server.

  silent ADDR [--count N] [--hold S]   N connections that send nothing
  idle ADDR                            one request, then silence: when closed
  trickle ADDR PATH [--every S] [--auth U:P]  a body one byte every S s
  flood ADDR [--threads N] [--seconds S] [--user U]  wrong Basic passwords
  uploads ADDR REPO N [--auth U:P]     N upload POSTs left unfinished
  raw ADDR                             stdin sent as is; the answer printed
"""
import argparse
import base64
import json
import resource
import socket
import sys
import threading
import time


def addr(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def connect(a, src, timeout=10):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(addr(a))
    return s


def status_of(data):
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def read_answer(s, limit=1 << 20):
    data = b""
    while b"\r\n\r\n" not in data and len(data) < limit:
        b = s.recv(65536)
        if not b:
            break
        data += b
    return data


def until_closed(s, deadline):
    """Seconds until the peer closes s (None if it is open at deadline)."""
    start = time.time()
    while time.time() < deadline:
        s.settimeout(max(0.05, deadline - time.time()))
        try:
            b = s.recv(65536)
        except socket.timeout:
            return None
        except OSError:
            return time.time() - start
        if not b:
            return time.time() - start
    return None


def silent(a, src, count, hold):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, count + 100)), hard))
    socks, failed = [], 0
    start = time.time()
    for _ in range(count):
        try:
            socks.append(connect(a, src))
        except OSError:
            failed += 1
    refused = 0
    closed_after = []
    deadline = start + hold
    open_ones = []
    # which were answered 503 at once
    for s in socks:
        s.settimeout(0.2)
        try:
            b = s.recv(4096)
        except socket.timeout:
            open_ones.append(s)
            continue
        except OSError:
            refused += 1
            continue
        if b.startswith(b"HTTP/1.1 503"):
            refused += 1
        else:
            closed_after.append(time.time() - start)
    held = len(open_ones)
    lock = threading.Lock()

    def watch(s):
        t = until_closed(s, deadline)
        if t is not None:
            with lock:
                closed_after.append(time.time() - start)

    ths = [threading.Thread(target=watch, args=(s,)) for s in open_ones]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    closed_after.sort()
    print(json.dumps({
        "opened": len(socks), "connect_failed": failed, "refused_503": refused, "held": held,
        "closed": len(closed_after) + refused,
        "last_closed_s": round(closed_after[-1], 1) if closed_after else None,
    }))


def idle(a, src):
    s = connect(a, src)
    s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
    ans = read_answer(s)
    t = until_closed(s, time.time() + 200)
    print(json.dumps({"status": status_of(ans), "closed_after_s": None if t is None else round(t, 1)}))


def trickle(a, src, path, every, auth):
    s = connect(a, src)
    head = "PATCH %s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nContent-Type: application/octet-stream\r\n" % path
    if auth:
        head += "Authorization: Basic %s\r\n" % base64.b64encode(auth.encode()).decode()
    s.sendall((head + "\r\n").encode())
    start = time.time()
    sent = 0
    closed = None
    while time.time() - start < 120:
        try:
            s.sendall(b"x")
            sent += 1
        except OSError:
            closed = time.time() - start
            break
        t = until_closed(s, time.time() + every)
        if t is not None:
            closed = time.time() - start
            break
    print(json.dumps({"bytes_sent": sent, "dropped_after_s": None if closed is None else round(closed, 1)}))


def flood(a, src, threads, seconds, user):
    counts = {}
    lock = threading.Lock()
    end = time.time() + seconds

    def one(i):
        n = 0
        while time.time() < end:
            cred = base64.b64encode(("%s:wrong-%d-%d" % (user, i, n)).encode()).decode()
            n += 1
            try:
                s = connect(a, src, timeout=30)
                s.sendall(("GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\nConnection: close\r\n\r\n" % cred).encode())
                st = status_of(read_answer(s))
                s.close()
            except OSError:
                st = -1
            with lock:
                counts[st] = counts.get(st, 0) + 1

    ths = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    print(json.dumps({str(k): v for k, v in sorted(counts.items())}))


def uploads(a, src, repo, n, auth):
    counts = {}
    for _ in range(n):
        head = "POST /v2/%s/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n" % repo
        if auth:
            head += "Authorization: Basic %s\r\n" % base64.b64encode(auth.encode()).decode()
        try:
            s = connect(a, src)
            s.sendall((head + "\r\n").encode())
            st = status_of(read_answer(s))
            s.close()
        except OSError:
            st = -1  # reset or refused
        counts[st] = counts.get(st, 0) + 1
    print(json.dumps({str(k): v for k, v in sorted(counts.items())}))


def raw(a, src):
    data = sys.stdin.buffer.read()
    s = connect(a, src)
    s.sendall(data)
    out = b""
    s.settimeout(3)
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except OSError:
        pass
    sys.stdout.write(out.decode("latin-1"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what")
    p.add_argument("addr")
    p.add_argument("rest", nargs="*")
    p.add_argument("--from", dest="src", default="127.0.0.2")
    p.add_argument("--count", type=int, default=1030)
    p.add_argument("--hold", type=float, default=30)
    p.add_argument("--every", type=float, default=40)
    p.add_argument("--auth", default="")
    p.add_argument("--threads", type=int, default=64)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--user", default="op")
    o = p.parse_args()
    if o.what == "silent":
        silent(o.addr, o.src, o.count, o.hold)
    elif o.what == "idle":
        idle(o.addr, o.src)
    elif o.what == "trickle":
        trickle(o.addr, o.src, o.rest[0], o.every, o.auth)
    elif o.what == "flood":
        flood(o.addr, o.src, o.threads, o.seconds, o.user)
    elif o.what == "uploads":
        uploads(o.addr, o.src, o.rest[0], int(o.rest[1]), o.auth)
    elif o.what == "raw":
        raw(o.addr, o.src)
    else:
        sys.exit("unknown attack %s" % o.what)


if __name__ == "__main__":
    main()
