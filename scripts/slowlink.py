#!/usr/bin/env python3
"""A slow link as a TCP forwarding proxy: one-way delay and a shared rate.

    python3 scripts/slowlink.py LISTEN_HOST:PORT TARGET_HOST:PORT \
        --delay-ms 20 --rate-mbit 100

Stands in for `tc qdisc add dev lo root netem delay 20ms rate 100mbit` on
kernels without the sch_netem qdisc ("Specified qdisc kind is unknown"):
scripts/bench.sh points the clients at this proxy instead of at the
registry when netem is missing.

Every connection accepted on LISTEN is forwarded to TARGET, both ways.
Every chunk read (up to 64 KiB) in either direction is delivered no
earlier than the delay after it was read (a one-way delay: a round trip
costs twice the delay), and each direction's deliveries, across all
connections together, are paced to the rate: a chunk goes at
max(read time + delay, the time the link is free), and the link is then
busy for len * 8 / rate. Order within a connection is kept, end of file
included: once one side has shut down writing and everything it sent has
been delivered, the proxy shuts down writing on the other side; the
connection is closed when both directions have ended, or at once on an
error on either side. At most a few hundred KiB per connection and
direction wait in the proxy; past that it stops reading, so the sender
sees back-pressure.

Connection setup is not delayed (the proxy accepts at once and connects
to the target at once). Only standard library. It prints `listening` on
stdout once it accepts connections, and nothing else there.
"""

import argparse
import asyncio
import socket
import sys

CHUNK = 64 * 1024
# Bytes read but not yet delivered, per connection and direction, past
# which reading stops: above the 250 KB that 100 Mbit/s x 20 ms needs to
# keep the link busy.
MAX_PENDING = 1024 * 1024


class Link:
    """One direction of the shared link: when it is next free."""

    def __init__(self, delay, rate_bps):
        self.delay = delay
        self.rate = rate_bps
        self.free = 0.0

    def schedule(self, now, size):
        at = max(now + self.delay, self.free)
        if self.rate > 0:
            self.free = at + size * 8 / self.rate
        return at


def hostport(s):
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {s!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def nodelay(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def pipe(src, dst, link):
    """The two tasks of one direction: read and schedule, deliver."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()
    space = asyncio.Event()
    space.set()
    pending = 0

    async def read():
        nonlocal pending
        while True:
            data = await src.read(CHUNK)
            at = link.schedule(loop.time(), len(data))
            queue.put_nowait((at, data))
            if not data:
                return
            pending += len(data)
            if pending > MAX_PENDING:
                space.clear()
                await space.wait()

    async def deliver():
        nonlocal pending
        while True:
            at, data = await queue.get()
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if dst.can_write_eof():
                    dst.write_eof()
                await dst.drain()
                return
            dst.write(data)
            await dst.drain()
            pending -= len(data)
            if pending <= MAX_PENDING:
                space.set()

    return [asyncio.create_task(read()), asyncio.create_task(deliver())]


async def handle(creader, cwriter, target, up, down):
    tasks = []
    twriter = None
    try:
        nodelay(cwriter)
        try:
            treader, twriter = await asyncio.open_connection(*target)
        except OSError as e:
            print(f"slowlink: connecting to {target[0]}:{target[1]}: {e}", file=sys.stderr)
            return
        nodelay(twriter)
        tasks = pipe(creader, twriter, up) + pipe(treader, cwriter, down)
        done, rest = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failed = any(not t.cancelled() and t.exception() is not None for t in done)
        if failed:
            # Reset both sides rather than leave one waiting.
            for w in (cwriter, twriter):
                w.transport.abort()
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        for w in (cwriter, twriter):
            if w is not None:
                w.close()
                try:
                    await w.wait_closed()
                except Exception:
                    pass


async def main():
    p = argparse.ArgumentParser(description="TCP proxy adding a one-way delay and a shared rate limit")
    p.add_argument("listen", type=hostport, metavar="LISTEN_HOST:PORT")
    p.add_argument("target", type=hostport, metavar="TARGET_HOST:PORT")
    p.add_argument("--delay-ms", type=float, default=20.0, help="one-way delay (default 20)")
    p.add_argument("--rate-mbit", type=float, default=100.0,
                   help="rate of each direction in Mbit/s, 0 for none (default 100)")
    a = p.parse_args()
    up = Link(a.delay_ms / 1000, a.rate_mbit * 1e6)
    down = Link(a.delay_ms / 1000, a.rate_mbit * 1e6)
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, a.target, up, down),
        a.listen[0], a.listen[1], backlog=1024, reuse_address=True)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
