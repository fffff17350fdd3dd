#!/usr/bin/env python3
"""An application server for weir's `nats` adapter in Python (nats-py), written from the
message contract alone (README "Writing an application server"; the authoritative text is
the module doc of dataplane/model/src/appmsg.rs). The tests run it beside weir-app.

It answers every request with 200 and "hello from python: METHOD TARGET\n", and POST with
its body; replies carry X-Weir-App: NAME.

usage: python3 scripts/app-server.py [NATS_URL] [SUBJECT] [QUEUE] [NAME]
(pip install nats-py). Prints "ready" once subscribed, "served N" on SIGTERM/SIGINT.
"""
import asyncio
import ipaddress
import signal
import sys

import nats


def varint(buf, i):
    """Unsigned LEB128 at buf[i:]; returns (value, next index)."""
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def blob(buf, i):
    n, i = varint(buf, i)
    if i + n > len(buf):
        raise ValueError("truncated")
    return bytes(buf[i:i + n]), i + n


def decode_request(buf):
    """Version 1 request: version, method, target, http_minor, client[16], client_port,
    headers seq<(str, bytes)>, body."""
    if not buf or buf[0] != 1:
        raise ValueError("not a version-1 request")
    i = 1
    method, i = blob(buf, i)
    target, i = blob(buf, i)
    minor = buf[i]
    i += 1
    client = ipaddress.IPv6Address(bytes(buf[i:i + 16]))
    i += 16
    port, i = varint(buf, i)
    count, i = varint(buf, i)
    headers = []
    for _ in range(count):
        name, i = blob(buf, i)
        value, i = blob(buf, i)
        headers.append((name.decode(), value))
    body, i = blob(buf, i)
    if i != len(buf):
        raise ValueError("trailing bytes")
    return {
        "method": method.decode(), "target": target.decode(), "minor": minor,
        "client": client.ipv4_mapped or client, "port": port,
        "headers": headers, "body": body,
    }


def put_varint(out, n):
    while True:
        low = n & 0x7F
        n >>= 7
        if n == 0:
            out.append(low)
            return
        out.append(low | 0x80)


def put_blob(out, b):
    put_varint(out, len(b))
    out.extend(b)


def encode_reply(status, headers, body):
    """Version 1 reply: version, status, headers seq<(str, str)>, body."""
    out = bytearray([1])
    put_varint(out, status)
    put_varint(out, len(headers))
    for name, value in headers:
        put_blob(out, name.encode())
        put_blob(out, value.encode())
    put_blob(out, body)
    return bytes(out)


async def main():
    url = sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222"
    subject = sys.argv[2] if len(sys.argv) > 2 else "weir.http"
    queue = sys.argv[3] if len(sys.argv) > 3 else "weir-app"
    name = sys.argv[4] if len(sys.argv) > 4 else "python"
    nc = await nats.connect(url)
    served = 0

    async def handle(msg):
        nonlocal served
        try:
            req = decode_request(msg.data)
        except (ValueError, IndexError, UnicodeDecodeError) as e:
            print(f"refused: {e}", file=sys.stderr)
            return  # not answered: weir answers 504 when timeout_ms is up
        if req["method"] == "POST":
            body = req["body"]
        else:
            body = f"hello from python: {req['method']} {req['target']}\n".encode()
        headers = [("Content-Type", "text/plain"), ("X-Weir-App", name)]
        await msg.respond(encode_reply(200, headers, body))
        served += 1

    await nc.subscribe(subject, queue=queue, cb=handle)
    await nc.flush()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await nc.drain()
    print(f"served {served}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
