"""`jina-onnx serve` under load on loopback, next to offline `encode` of the same texts, in one run.

For each model (t int8 with seeded weights, the real all-MiniLM-L6-v2 int8): offline `encode` throughput
and batch-1 latency in this process; then the server in a subprocess, driven by bounded request loops at
concurrency 1, 16 and 64 (a minimal keep-alive HTTP/1.1 client on uvloop), each request carrying `--texts-per-request` STS sentences.
Then, where it is installed in a separate virtualenv (`--infinity-python`), infinity (`infinity_emb v2`)
serving the same MiniLM checkpoint offline, with the same loops; if it cannot run, the table says why.
The load generator shares the machine's cores with the server: on 2 cores that costs the server some
throughput, and the numbers say so rather than hide it.

    python -m benchmarks.serve --requests 1500 --infinity-python /tmp/infvenv/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import RESULTS, machine_facts, prepared_artifact, prepared_minilm
from .workloads import short_texts

CONCURRENCY = (1, 16, 64)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float, path: str = "/health") -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: " + (proc.stderr.read() or "")[-300:].strip())  # type: ignore[union-attr]
        try:
            if httpx.get(url + path, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"not healthy after {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Connection:
    """One keep-alive HTTP/1.1 connection that sends prepared requests and reads whole responses.

    The load generator shares the 2 cores with the server, so every microsecond it spends is taken from
    the server being measured. At concurrency 64 with one text per request, aiohttp took 112-208 us of CPU
    per request here, this client 40-57 us (2026-11-27): it does no more than an HTTP/1.1 exchange needs
    (write the bytes, read the head, read Content-Length or chunked bytes), the way wrk and oha drive servers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> _Connection:
        return cls(*await asyncio.open_connection(host, port))

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        headers = head.lower()
        if b"transfer-encoding: chunked" in headers:
            body = bytearray()
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                body += await self.reader.readexactly(size + 2)
            await self.reader.readuntil(b"\r\n")
            return status, bytes(body)
        at = headers.index(b"content-length:") + len(b"content-length:")
        return status, await self.reader.readexactly(int(headers[at : headers.index(b"\r\n", at)]))

    def close(self) -> None:
        self.writer.close()


def post_request(url: str, body: bytes) -> bytes:
    """The bytes of a keep-alive POST of a JSON `body` to `url` (http://host:port/path)."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    return (
        f"POST /{path} HTTP/1.1\r\nHost: {host_port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def load(
    url: str, model: str, texts: list[str], per_request: int, concurrency: int, requests: int
) -> dict[str, float]:
    """`requests` requests from `concurrency` connections; texts/s over the whole loop, latency percentiles."""
    host, _, port = url.removeprefix("http://").partition("/")[0].partition(":")
    prepared = [
        post_request(
            url,
            json.dumps(
                {"model": model, "input": [texts[(i * per_request + j) % len(texts)] for j in range(per_request)]}
            ).encode(),
        )
        for i in range(requests)
    ]
    latencies: list[float] = []
    failures = 0
    next_request = 0

    async def client(connection: _Connection) -> None:
        nonlocal next_request, failures
        while next_request < requests:
            request = prepared[next_request]
            next_request += 1
            start = time.perf_counter()
            status, _ = await connection.exchange(request)
            latencies.append((time.perf_counter() - start) * 1000)
            failures += status != 200

    connections = [await _Connection.open(host, int(port)) for _ in range(concurrency)]
    try:
        for connection in connections:  # connect and warm every connection before the clock starts
            await connection.exchange(prepared[0])
        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(client(c) for c in connections)), timeout=600)
        wall = time.perf_counter() - start
    finally:
        for connection in connections:
            connection.close()
    return {
        "concurrency": concurrency,
        "requests": requests,
        "texts_per_request": per_request,
        "texts_per_s": requests * per_request / wall,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "failures": failures,
    }


def run_loop(coroutine: Any) -> Any:
    """Run the load loop on uvloop where installed (the `serve` extra has it): less client CPU per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def offline(artifact: Path, texts: list[str], latency_calls: int) -> dict[str, float]:
    from jina_onnx import build_model

    model = build_model(artifact, device="cpu", precision="int8")
    model.encode(texts[:256])
    seconds = []
    for _ in range(3):
        time.sleep(0.2)
        start = time.perf_counter()
        model.encode(texts)
        seconds.append(time.perf_counter() - start)
    single = []
    for text in texts[:latency_calls]:
        start = time.perf_counter()
        model.encode([text])
        single.append((time.perf_counter() - start) * 1000)
    return {
        "texts_per_s": len(texts) / statistics.median(seconds),
        "batch1_p50_ms": float(np.percentile(single, 50)),
        "batch1_p99_ms": float(np.percentile(single, 99)),
    }


def drive(url: str, model: str, texts: list[str], args: argparse.Namespace) -> list[dict[str, float]]:
    rows = []
    for per_request in (int(n) for n in str(args.texts_per_request).split(",")):
        for concurrency in CONCURRENCY:
            count = args.latency_requests if concurrency == 1 else args.requests
            rows.append(run_loop(load(url, model, texts, per_request, concurrency, max(count // per_request, 50))))
            print(
                f"  {per_request} text(s)/request, concurrency {concurrency}: {rows[-1]['texts_per_s']:,.0f} texts/s, "
                f"p50 {rows[-1]['p50_ms']:.2f} ms, p99 {rows[-1]['p99_ms']:.2f} ms",
                flush=True,
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1500, help="requests per loop at concurrency 16 and 64")
    parser.add_argument("--latency-requests", type=int, default=400, help="requests at concurrency 1")
    parser.add_argument("--texts-per-request", default="1,16", help="comma-separated: one loop set each")
    parser.add_argument("--infinity-python", help="python of a virtualenv with infinity-emb installed")
    args = parser.parse_args(argv)
    texts = short_texts(0)  # the 3,000 STS-dev sentences
    results: dict[str, dict] = {}
    for label, artifact in (("t int8", prepared_artifact("t")), ("MiniLM int8", prepared_minilm())):
        name = json.loads((artifact / "manifest.json").read_text())["name"]
        print(f"{label}: offline encode", flush=True)
        entry: dict = {"offline": offline(artifact, texts, args.latency_requests)}
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jina_onnx",
                "-q",
                "serve",
                "-m",
                str(artifact),
                "--device",
                "cpu",
                "--precision",
                "int8",
                "--port",
                str(port),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_healthy(f"http://127.0.0.1:{port}", proc, 120)
            print(f"{label}: jina-onnx serve", flush=True)
            entry["jina-onnx serve"] = drive(f"http://127.0.0.1:{port}/v1/embeddings", name, texts, args)
        finally:
            stop(proc)
        results[label] = entry
    results["MiniLM int8"]["infinity"] = infinity(args, texts)
    data = {
        "machine": machine_facts(),
        "command": "python -m benchmarks.serve " + " ".join(argv if argv is not None else sys.argv[1:]),
        "results": results,
    }
    stem = f"serve-{time.strftime('%Y-%m-%d')}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown(data))
    print(markdown(data))
    return 0


def infinity(args: argparse.Namespace, texts: list[str]) -> dict | list:
    """infinity serving the same MiniLM checkpoint, or why it could not."""
    if not args.infinity_python or not Path(args.infinity_python).exists():
        return {"error": "not run: pass --infinity-python (a virtualenv with infinity-emb installed)"}
    from jina_onnx.export.synthetic import minilm_checkpoint

    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", INFINITY_ANONYMOUS_USAGE_STATS="0", DO_NOT_TRACK="1")
    command = [
        str(Path(args.infinity_python).parent / "infinity_emb"),
        "v2",
        "--model-id",
        str(minilm_checkpoint()),
        "--served-model-name",
        "minilm",
        "--engine",
        "torch",
        "--device",
        "cpu",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--no-model-warmup",
    ]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, 300)
        print("MiniLM: infinity (torch engine)", flush=True)
        return drive(f"http://127.0.0.1:{port}/embeddings", "minilm", texts, args)
    except Exception as error:  # the finding is why the peer could not run here
        return {"error": f"{type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}"}
    finally:
        stop(proc)


def markdown(data: dict) -> str:
    facts = data["machine"]
    lines = [
        f"Machine: {facts['cpu']}, {facts['physical_cores']} physical cores, {facts['date']}; the load generator "
        f"runs on the same cores. Command: `{data['command']}`.",
        "",
        "| model | server | texts per request | concurrency | texts/s | vs offline encode | p50 ms | p99 ms "
        "| failures |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, entry in data["results"].items():
        base = entry["offline"]
        lines.append(
            f"| {label} | offline `encode` (batch 32) | - | - | {base['texts_per_s']:,.0f} | 1.00x | "
            f"{base['batch1_p50_ms']:.2f} (batch 1) | {base['batch1_p99_ms']:.2f} (batch 1) | |"
        )
        for server in ("jina-onnx serve", "infinity"):
            rows = entry.get(server)
            if isinstance(rows, dict):
                lines.append(f"| {label} | {server} | | | {rows['error']} | | | | |")
                continue
            for row in rows or []:
                lines.append(
                    f"| {label} | {server} | {row['texts_per_request']} | {row['concurrency']} | "
                    f"{row['texts_per_s']:,.0f} | "
                    f"{row['texts_per_s'] / base['texts_per_s']:.2f}x | {row['p50_ms']:.2f} | "
                    f"{row['p99_ms']:.2f} | {row['failures']} |"
                )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
