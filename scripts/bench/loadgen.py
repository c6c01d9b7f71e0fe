"""An open-loop HTTP load generator: requests at a steady rate, whatever the server does.

    python loadgen.py URL --rate 200 --duration 10 --connections 32 --body-file F

sends ``POST`` (or ``GET`` without ``--body-file``) requests at exactly ``rate`` per second
over at most ``connections`` keep-alive connections and prints one JSON line: latency
percentiles measured from each request's SCHEDULED send time (so a stalled server shows
up as latency, not as fewer requests: no coordinated omission) and from its actual send
time, status counts and the rate achieved. Run it as its own process, away from the
server under test.

The generator's own garbage collector is off while it measures: a full collection of its
thousands of finished request tasks once paused it for tens of milliseconds, which it then
counted as the server's latency, at the same moment of every app's run. Its garbage is
bounded by ``rate * duration`` requests. ``gc_pauses`` in the output says how many
collections still ran (0 expected) and the longest of them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from common import percentile


async def run(args: argparse.Namespace) -> dict[str, object]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    body = args.body_file.read_bytes() if args.body_file else b""
    method = "POST" if body else "GET"
    request = (
        f"{method} {url.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body

    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(args.connections):
        idle.put_nowait(await asyncio.open_connection(host, port))

    scheduled_latency: list[float] = []
    slowest: list[tuple[float, float]] = []  # (latency, scheduled): where the tail comes from
    service_latency: list[float] = []
    statuses: Counter[int] = Counter()

    async def one(scheduled: float) -> None:
        reader, writer = await idle.get()
        sent = time.perf_counter()
        writer.write(request)
        status_line = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await reader.readexactly(length)
        done = time.perf_counter()
        idle.put_nowait((reader, writer))
        statuses[int(status_line.split()[1]) if status_line else 0] += 1
        scheduled_latency.append(done - scheduled)
        slowest.append((done - scheduled, scheduled))
        service_latency.append(done - sent)

    pauses: list[tuple[float, float]] = []  # (start, seconds) of this process's collections
    began: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began.append(time.perf_counter())
        elif began:
            at = began.pop()
            pauses.append((at, time.perf_counter() - at))

    gc.callbacks.append(on_gc)
    gc.collect()
    gc.freeze()
    gc.disable()
    total = round(args.rate * args.duration)
    start = time.perf_counter() + 0.05
    tasks = []
    for i in range(total):
        scheduled = start + i / args.rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    gc.enable()
    while not idle.empty():
        _, writer = idle.get_nowait()
        writer.close()

    def ms(values: list[float], q: float) -> float:
        return percentile(values, q) * 1000

    return {
        "requests": total,
        "achieved_rate": total / elapsed,
        "statuses": dict(statuses),
        "p50_ms": ms(scheduled_latency, 50),
        "p90_ms": ms(scheduled_latency, 90),
        "p99_ms": ms(scheduled_latency, 99),
        "max_ms": max(scheduled_latency) * 1000,
        "service_p50_ms": ms(service_latency, 50),
        "service_p99_ms": ms(service_latency, 99),
        "gc_pauses": len(pauses),
        "gc_longest": [
            [round(at - start, 3), round(took * 1000, 2)]
            for at, took in sorted(pauses, key=lambda p: -p[1])[:5]
        ],
        "slowest_at_s": [
            [round(at - start, 3), round(latency * 1000, 1)]
            for latency, at in sorted(slowest, reverse=True)[:10]
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--body-file", type=Path)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(args))
    else:
        result = uvloop.run(run(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
