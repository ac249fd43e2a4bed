"""A latency-injecting reverse proxy for benchmarks (not a test, not the product): every HTTP request is forwarded
to the target after sleeping --latency-ms, bodies streamed both ways, headers kept (the Host header too, so S3
signatures made for the proxy's address still verify at the store).

    .venv/bin/python bench/latency_proxy.py --listen 127.0.0.1:PORT --target 127.0.0.1:PORT [--latency-ms 50] [--off]

SIGUSR1 turns the latency on, SIGUSR2 off (--off starts it off): one store, one stack, measured both ways.
"""
from __future__ import annotations

import argparse
import asyncio
import signal

import aiohttp
from aiohttp import web

HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
       "transfer-encoding", "upgrade"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", required=True, help="host:port to serve on")
    parser.add_argument("--target", required=True, help="host:port to forward to")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--off", action="store_true", help="start with no added latency (SIGUSR1 turns it on)")
    args = parser.parse_args()
    delay = {"s": 0.0 if args.off else args.latency_ms / 1000}
    target = f"http://{args.target}"

    async def forward(request: web.Request) -> web.StreamResponse:
        if delay["s"]:
            await asyncio.sleep(delay["s"])
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP | {"expect"}}
        body = request.content if request.body_exists else None
        session: aiohttp.ClientSession = request.app["session"]
        async with session.request(request.method, target + request.rel_url.raw_path_qs, headers=headers,
                                   data=body, allow_redirects=False,
                                   skip_auto_headers=("Content-Type", "User-Agent", "Accept-Encoding")) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for k, v in upstream.headers.items():
                if k.lower() not in HOP:
                    response.headers.add(k, v)
            await response.prepare(request)
            if request.method != "HEAD":
                async for block in upstream.content.iter_chunked(1 << 20):
                    await response.write(block)
            await response.write_eof()
            return response

    async def start(app: web.Application) -> None:
        app["session"] = aiohttp.ClientSession(auto_decompress=False, connector=aiohttp.TCPConnector(limit=0),
                                               timeout=aiohttp.ClientTimeout(total=None))
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, lambda: delay.update(s=args.latency_ms / 1000))
        loop.add_signal_handler(signal.SIGUSR2, lambda: delay.update(s=0.0))

    async def stop(app: web.Application) -> None:
        await app["session"].close()

    app = web.Application(client_max_size=0)
    app.router.add_route("*", "/{tail:.*}", forward)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    host, port = args.listen.rsplit(":", 1)
    web.run_app(app, host=host, port=int(port), print=None, access_log=None)


if __name__ == "__main__":
    main()
