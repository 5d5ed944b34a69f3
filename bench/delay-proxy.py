#!/usr/bin/env python3
"""A registry far away, for bench/run.sh: an HTTP/1.1 proxy on 127.0.0.1 that forwards every
request to a registry and holds each response back for a fixed delay, as a registry in
another region would. Connections are kept alive on both sides, one upstream connection per
client connection, so a client that reuses connections pays the delay once per request and
no handshake on top.

    bench/delay-proxy.py --upstream 127.0.0.1:5000 --delay-ms 100 --port-file FILE

It writes the port it listens on to FILE, then serves until killed. Bodies are streamed
(Content-Length or chunked), so big uploads pass through without being held in memory.
"""

import argparse
import asyncio
import sys
import time


async def read_head(reader):
    """The start line and headers of one message, or None at a clean end of stream."""
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    if not head:
        return None
    lines = head.decode("latin-1").split("\r\n")[:-2]
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return lines[0], headers


def header(headers, name):
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


async def copy_body(reader, writer, headers, has_body):
    """Streams one message body from reader to writer, framed as its headers say."""
    if not has_body:
        return
    length = header(headers, "content-length")
    if header(headers, "transfer-encoding") is not None:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            writer.write(size_line)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                writer.write(await reader.readuntil(b"\r\n"))
                break
            await copy_exactly(reader, writer, size + 2)
    elif length is not None:
        await copy_exactly(reader, writer, int(length))


async def copy_exactly(reader, writer, n):
    while n > 0:
        chunk = await reader.read(min(n, 1 << 20))
        if not chunk:
            raise ConnectionError("peer closed mid-body")
        writer.write(chunk)
        await writer.drain()
        n -= len(chunk)


def render(start, headers):
    return (start + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode(
        "latin-1"
    )


async def serve_client(client_r, client_w, upstream, delay, log):
    host, port = upstream
    up_r, up_w = await asyncio.open_connection(host, port)
    try:
        while True:
            request = await read_head(client_r)
            if request is None:
                return
            start, headers = request
            method = start.split(" ", 1)[0]
            if log:
                print(f"{time.monotonic():.3f} {start}", file=log, flush=True)
            up_w.write(render(start, headers))
            await copy_body(client_r, up_w, headers, True)
            await up_w.drain()
            response = await read_head(up_r)
            if response is None:
                return
            status_line, rheaders = response
            status = int(status_line.split(" ")[1])
            has_body = method != "HEAD" and status not in (204, 304) and status >= 200
            await asyncio.sleep(delay)
            client_w.write(render(status_line, rheaders))
            await copy_body(up_r, client_w, rheaders, has_body)
            await client_w.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        up_w.close()
        client_w.close()


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", required=True, help="HOST:PORT of the registry")
    p.add_argument("--delay-ms", type=float, required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", help="append each request's arrival time and line to this file")
    args = p.parse_args()
    log = open(args.log, "a") if args.log else None
    host, port = args.upstream.rsplit(":", 1)
    upstream = (host, int(port))
    delay = args.delay_ms / 1000

    server = await asyncio.start_server(
        lambda r, w: serve_client(r, w, upstream, delay, log), "127.0.0.1", 0, limit=1 << 20
    )
    with open(args.port_file, "w") as f:
        f.write(str(server.sockets[0].getsockname()[1]))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
