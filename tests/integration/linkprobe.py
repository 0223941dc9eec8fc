"""Both ends of a link measurement, run inside a test's namespaces.

    linkprobe.py serve                 echo (first byte e) or hash a stream (first byte b), on port 5555
    linkprobe.py probe ADDRESS BYTES   round trips and a bulk transfer; one JSON line out
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import statistics
import sys
import time

PORT = 5555


def serve() -> None:
    srv = socket.create_server(("0.0.0.0", PORT), reuse_port=True)
    while True:
        conn, _ = srv.accept()
        with conn:
            if conn.recv(1) == b"e":
                while data := conn.recv(100):
                    conn.sendall(data)
            else:
                h, n = hashlib.sha256(), 0
                while data := conn.recv(1 << 16):
                    h.update(data)
                    n += len(data)
                conn.sendall(f"{n} {h.hexdigest()}".encode())


def connect(address: str) -> socket.socket:
    deadline = time.monotonic() + 10  # the server may still be starting
    while True:
        try:
            return socket.create_connection((address, PORT), timeout=10)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def probe(address: str, size: int) -> dict[str, object]:
    with connect(address) as c:
        c.sendall(b"e")
        rtts = []
        for _ in range(10):
            t = time.monotonic()
            c.sendall(b"x")
            c.recv(1)
            rtts.append((time.monotonic() - t) * 1000)
    data = os.urandom(size)
    with connect(address) as c:
        c.sendall(b"b" + data)
        c.shutdown(socket.SHUT_WR)
        got = c.recv(200).decode().split()
    return {"rtt_ms": statistics.median(rtts), "bytes": int(got[0]),
            "intact": got[1] == hashlib.sha256(data).hexdigest()}


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    else:
        print(json.dumps(probe(sys.argv[2], int(sys.argv[3]))))
