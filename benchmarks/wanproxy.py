"""A userspace TCP proxy that adds latency and caps bandwidth: a WAN on loopback.

Loopback hides round trips; this puts them back. Every byte that crosses the
proxy, in either direction, is delivered ``rtt / 2`` seconds after it arrived
and no faster than ``rate`` bits per second, the rate shared by every
connection in that direction, as on one link (the lib-storage guide's
conditions: 1 Gbps at 20 ms and at 60 ms RTT). TCP's own acknowledgements
stay on loopback, so the application's round trips (request, then answer)
see the RTT, and the window is bounded by the proxy's queue instead. Bytes in transit per
direction are capped at twice the bandwidth-delay product; beyond that the
proxy stops reading, so TCP's flow control reaches the sender as on a real
path with a bounded bottleneck queue.

Run: ``python benchmarks/wanproxy.py --upstream 127.0.0.1:9000 --rtt-ms 20 --mbps 1000``
(prints ``READY <port>``).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import deque
from typing import Any

READ = 256 * 1024


class Pacer:
    """One direction of the link: when it has serialized everything handed to it."""

    def __init__(self, rate_bytes: float) -> None:
        self.rate = rate_bytes
        self.next_free = 0.0

    def schedule(self, due: float, n: int) -> float:
        """When the last of ``n`` bytes that may leave at ``due`` has crossed the link."""
        start = max(due, self.next_free, time.monotonic())
        self.next_free = start + n / self.rate
        return self.next_free


class Link:
    """One direction of one connection: delay, then pace (shared), then write."""

    def __init__(self, delay: float, pacer: Pacer) -> None:
        self.delay = delay
        self.pacer = pacer
        rate_bytes = pacer.rate
        self.limit = max(1 << 20, int(2 * rate_bytes * max(delay * 2, 0.001)))
        self.queue: deque[tuple[float, bytes]] = deque()
        self.queued = 0
        self.data = asyncio.Event()
        self.space = asyncio.Event()
        self.space.set()
        self.closed = False

    async def pump_in(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                while self.queued >= self.limit:
                    self.space.clear()
                    await self.space.wait()
                data = await reader.read(READ)
                if not data:
                    break
                self.queue.append((time.monotonic() + self.delay, data))
                self.queued += len(data)
                self.data.set()
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed = True
            self.data.set()

    async def pump_out(self, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                while not self.queue:
                    if self.closed:
                        return
                    self.data.clear()
                    await self.data.wait()
                due, data = self.queue.popleft()
                self.queued -= len(data)
                self.space.set()
                wait = self.pacer.schedule(due, len(data)) - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


class WanProxy:
    def __init__(self, upstream: tuple[str, int], rtt: float, rate_bits: float) -> None:
        self.upstream = upstream
        self.delay = rtt / 2
        self.up, self.down = Pacer(rate_bits / 8), Pacer(rate_bits / 8)

    async def handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            c_writer.close()
            return
        await asyncio.sleep(self.delay * 2)  # the SYN/SYN-ACK round trip
        up, down = Link(self.delay, self.up), Link(self.delay, self.down)
        tasks = [
            asyncio.ensure_future(up.pump_in(c_reader)),
            asyncio.ensure_future(up.pump_out(s_writer)),
            asyncio.ensure_future(down.pump_in(s_reader)),
            asyncio.ensure_future(down.pump_out(c_writer)),
        ]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def serve(self, host: str, port: int) -> None:
        server = await asyncio.start_server(self.handle, host, port, backlog=1024)
        print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
        async with server:
            await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--upstream", required=True, help="HOST:PORT of the real server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--rtt-ms", type=float, default=20.0)
    p.add_argument("--mbps", type=float, default=1000.0, help="bandwidth per direction, Mbit/s")
    args = p.parse_args()
    host, _, port = args.upstream.rpartition(":")
    proxy = WanProxy((host, int(port)), args.rtt_ms / 1000, args.mbps * 1e6)
    runner: Any = asyncio.run
    try:
        import uvloop  # type: ignore[import-not-found]

        runner = uvloop.run
    except ImportError:
        pass
    try:
        runner(proxy.serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
