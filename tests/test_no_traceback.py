"""No user input reaches a traceback: every CLI command and every server route, fed bad and unlucky inputs.

Each CLI case runs `main(argv)` as the console script does (in-process, where an escaping exception fails the
test with its traceback; in a subprocess where a case needs a real process: a server, a Ray cluster, a signal)
and asserts a documented exit code (`jina-onnx --help`'s table), no `Traceback`, no "internal error" (our
catch-all for bugs) and a message naming the problem. The server cases assert the JSON error shape of every
other refusal, including 404 and 405.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from jina_onnx.cli import main

DOCUMENTED = {0, 1, 2, 3, 130}  # 4 is documented too, but it means a bug: never an answer to user input
LONG = "word " * 5000


@pytest.fixture(scope="module")
def paths(artifact, checkpoint, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The files the cases name: {T} the t artifact, {ckpt} its checkpoint, {dir} an empty folder, ..."""
    root = tmp_path_factory.mktemp("bad-inputs")
    (root / "empty-dir").mkdir()
    (root / "file.txt").write_text("one line\nanother\n")
    (root / "empty.txt").write_text("")
    (root / "blank.txt").write_text("a text\n\n   \nanother\n")
    (root / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (root / "no-text.jsonl").write_text("".join(json.dumps({"body": f"row {i}"}) + "\n" for i in range(20)))
    (root / "not-json.jsonl").write_text("{not json\n")
    (root / "list.jsonl").write_text("[1, 2]\n")
    (root / "null.jsonl").write_text('{"text": null}\n')
    (root / "number.jsonl").write_text('{"text": 42}\n')
    (root / "fake.parquet").write_text("this is not parquet\n")
    (root / "long.txt").write_text(LONG + "\n")
    (root / "notes.md").write_text("a format the job does not read\n")
    (root / "unreadable.txt").write_text("secret\n")
    (root / "unreadable.txt").chmod(0)
    broken = root / "broken-artifact"
    broken.mkdir()
    for item in Path(artifact("t")).iterdir():
        if item.is_file():
            (broken / item.name).write_bytes(item.read_bytes())
        else:
            (broken / item.name).symlink_to(item, target_is_directory=True)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["variants"]["fp32"]["sha256"] = "0" * 64  # a corrupted artifact: detected, never used
    (broken / "manifest.json").write_text(json.dumps(manifest))
    garbled = root / "garbled-manifest"
    garbled.mkdir()
    (garbled / "manifest.json").write_text("{")
    ckpt_bad = root / "ckpt-bad-config"
    ckpt_bad.mkdir()
    (ckpt_bad / "config.json").write_text('{"model_type": "nothing-we-know"}')
    ckpt_no_weights = root / "ckpt-no-weights"
    ckpt_no_weights.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        if (Path(checkpoint("t")) / name).exists():
            (ckpt_no_weights / name).write_bytes((Path(checkpoint("t")) / name).read_bytes())
    return {
        "T": str(artifact("t")),
        "ckpt": str(checkpoint("t")),
        "root": str(root),
        "dir": str(root / "empty-dir"),
        "missing": str(root / "no" / "such" / "path"),
    }


def fill(argv: list[str], paths: dict[str, str]) -> list[str]:
    return [arg.format(**paths) for arg in argv]


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch, stdin: bytes | None = None):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin or b""), encoding="utf-8"))
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def check(code: object, out: str, err: str, expected: int, fragment: str) -> None:
    text = out + err
    assert code == expected and code in DOCUMENTED, (code, text[-2000:])
    assert "Traceback" not in text and "internal error" not in text, text[-2000:]
    assert fragment in err, (fragment, err[-2000:])
    errors = [line for line in err.splitlines() if line.startswith("jina-onnx: error:")]
    assert len(errors) <= 1, err  # one line says what went wrong


# (argv, stdin, exit code, a fragment of the message). {T}: the t artifact; {root}: the folder of bad files.
CLI_CASES: dict[str, list[tuple[list[str], bytes | None, int, str]]] = {
    "encode": [
        (["encode", "-m", "{missing}", "a"], None, 1, "no such directory"),
        (["encode", "-m", "{root}/file.txt", "a"], None, 1, "is a file, not a model"),
        (["encode", "-m", "{dir}", "a"], None, 1, "not an exported artifact"),
        (["encode", "-m", "jina-embedding-x-en-v1", "a"], None, 1, "did you mean 'jina-embedding-"),
        (["encode", "-m", "{root}/broken-artifact", "--precision", "fp32", "a"], None, 1, "sha256"),
        (["encode", "-m", "{root}/garbled-manifest", "a"], None, 1, "manifest.json"),
        (["encode", "-m", "{T}", "--threads", "0", "a"], None, 1, "--threads 0 must be a positive integer"),
        (["encode", "-m", "{T}", "--backend", "openvino", "--threads", "0", "a"], None, 1, "--threads 0 must be"),
        (["encode", "-m", "{T}", "--batch-size", "-1", "a"], None, 1, "--batch-size -1 must be a positive"),
        (["encode", "-m", "{T}", "-o", "{dir}", "a"], None, 1, "is a directory; give a file name"),
        (["encode", "-m", "{T}", "-o", "{missing}/x.npy", "a"], None, 1, "does not exist; create it"),
        (["encode", "-m", "{T}", "--device", "cuda", "a"], None, 1, "--device cpu"),
        (["encode", "-m", "{T}", "--truncation", "refuse", LONG], None, 1, "--truncation right"),
        (["encode", "-m", "{T}", "--precision", "fp8", "a"], None, 2, "invalid choice: 'fp8'"),
        (["encode", "-m", "{T}", "--threads", "many", "a"], None, 2, "invalid int value: 'many'"),
        (["encode", "-m", "{T}"], b"", 1, "no texts: give them as arguments"),
        (["encode", "-m", "{T}"], bytes(range(128, 256)), 1, "stdin is not UTF-8"),
        (["encode", "-m", "{T}", "", "  "], None, 0, "2 of 2 texts are empty or blank"),
    ],
    "tokens": [
        (["tokens", "-m", "{missing}", "a"], None, 1, "no such directory"),
        (["tokens", "-m", "{root}/file.txt", "a"], None, 1, "is a file"),
        (["tokens", "-m", "{dir}", "a"], None, 1, "not an exported artifact"),
        (["tokens", "-m", "jina-embedding-q-en-v1", "a"], None, 1, "not a known model name"),
        (["tokens", "-m", "{T}", "--truncation", "refuse", LONG], None, 1, "over the model's limit"),
        (["tokens", "-m", "{T}", "--truncation", "middle", "a"], None, 2, "invalid choice: 'middle'"),
        (["tokens", "-m", "{T}"], b"", 1, "no texts"),
        (["tokens", "-m", "{T}"], b"\xff\xfe\x00bad", 1, "stdin is not UTF-8"),
        (["tokens", "-m", "{T}", "--total"], b"\n\n", 0, "2 of 2 texts are empty or blank"),
        (["tokens", "-m", "{T}", "--threads", "-2", "a"], None, 1, "--threads -2 must be a positive"),
        (["tokens", "-m", "{root}/garbled-manifest", "a"], None, 1, "manifest.json"),
    ],
    "similarity": [
        (["similarity", "-m", "{T}", "only one"], None, 2, "the following arguments are required: text_b"),
        (["similarity", "-m", "{T}", "a", "b", "c"], None, 2, "unrecognized arguments: c"),
        (["similarity", "-m", "{missing}", "a", "b"], None, 1, "no such directory"),
        (["similarity", "-m", "{root}/file.txt", "a", "b"], None, 1, "is a file"),
        (["similarity", "-m", "{dir}", "a", "b"], None, 1, "not an exported artifact"),
        (["similarity", "-m", "jina-embedding-q-en-v1", "a", "b"], None, 1, "not a known model name"),
        (["similarity", "-m", "{T}", "--truncation", "refuse", LONG, "b"], None, 1, "over the model's limit"),
        (["similarity", "-m", "{T}", "--device", "cuda", "a", "b"], None, 1, "--device cpu"),
        (["similarity", "-m", "{T}", "--precision", "bf16", "--backend", "onnxruntime", "a", "b"], None, 1, "bf16"),
        (["similarity", "-m", "{T}", "", "b"], None, 0, "1 of 2 texts are empty or blank"),
        (["similarity", "-m", "{root}/broken-artifact", "--precision", "fp32", "a", "b"], None, 1, "sha256"),
    ],
    "verify": [
        (["verify", "{missing}"], None, 1, "no such directory"),
        (["verify", "{root}/file.txt"], None, 1, "is a file"),
        (["verify", "{dir}"], None, 1, "not an exported artifact"),
        (["verify", "jina-embedding-q-en-v1"], None, 1, "not a known model name"),
        (["verify", "{root}/garbled-manifest"], None, 1, ""),
        (["verify", "{root}/broken-artifact"], None, 1, ""),
        (["verify", "{T}", "--against", "{missing}"], None, 1, ""),
        (["verify", "{T}", "--against", "{dir}"], None, 1, ""),
        (["verify", "{T}", "--against", "{root}/file.txt"], None, 1, ""),
        (["verify"], None, 2, "the following arguments are required: directory"),
        (["verify", "{T}", "--against"], None, 2, "expected one argument"),
    ],
    "embed": [
        (["embed", "{missing}", "{root}/out-a", "-m", "{T}"], None, 1, "no input files"),
        (["embed", "{dir}", "{root}/out-b", "-m", "{T}"], None, 1, "no input files"),
        (["embed", "{root}/*.nomatch", "{root}/out-c", "-m", "{T}"], None, 1, "no input files"),
        (["embed", "{root}/notes.md", "{root}/out-d", "-m", "{T}"], None, 1, "unknown format"),
        (["embed", "{root}/file.txt", "{root}/file.txt", "-m", "{T}"], None, 1, "is a file; the job writes a dir"),
        (["embed", "{root}/file.txt", "{root}/out-e", "-m", "{missing}"], None, 1, "no such directory"),
        (["embed", "{root}/blank.txt", "{root}/out-f", "-m", "{T}"], None, 1, "empty text; remove such lines"),
        (["embed", "{root}/binary.txt", "{root}/out-g", "-m", "{T}"], None, 1, "not valid UTF-8"),
        (["embed", "{root}/no-text.jsonl", "{root}/out-h", "-m", "{T}"], None, 1, "--text-column body"),
        (
            ["embed", "{root}/no-text.jsonl", "{root}/out-i", "-m", "{T}", "--on-bad-row", "skip"],
            None,
            1,
            "--text-column body",
        ),
        (["embed", "{root}/not-json.jsonl", "{root}/out-j", "-m", "{T}"], None, 1, "not valid JSON"),
        (["embed", "{root}/list.jsonl", "{root}/out-k", "-m", "{T}"], None, 1, "not a JSON object"),
        (["embed", "{root}/null.jsonl", "{root}/out-l", "-m", "{T}"], None, 1, "text is null"),
        (["embed", "{root}/number.jsonl", "{root}/out-m", "-m", "{T}"], None, 1, "text is int, not a string"),
        (["embed", "{root}/fake.parquet", "{root}/out-n", "-m", "{T}"], None, 1, "cannot be read as Parquet"),
        (
            ["embed", "{root}/long.txt", "{root}/out-o", "-m", "{T}", "--truncation", "refuse"],
            None,
            1,
            "--truncation right",
        ),
        (["embed", "{root}/file.txt", "{root}/out-p", "-m", "{T}", "--workers", "0"], None, 1, "--workers=0 must be"),
        (["embed", "{root}/file.txt", "{root}/out-q", "-m", "{T}", "--batch-size", "0"], None, 1, "--batch-size=0"),
        (["embed", "{root}/blank.txt", "{root}/out-r", "-m", "{T}", "--on-bad-row", "skip"], None, 0, ""),
        (["embed", "{root}/file.txt", "{root}/out-s", "-m", "{T}", "--on-bad-row", "maybe"], None, 2, "invalid choice"),
    ],
    "embed --ray": [
        (["embed", "{missing}", "{root}/ray-a", "-m", "{T}", "--ray"], None, 1, "no input files"),
        (["embed", "{root}/file.txt", "{root}/file.txt", "-m", "{T}", "--ray"], None, 1, "is a file"),
        (["embed", "{root}/file.txt", "{root}/ray-b", "-m", "{missing}", "--ray"], None, 1, "no such directory"),
        (["embed", "{root}/file.txt", "{root}/ray-c", "-m", "{T}", "--ray", "--workers", "0"], None, 1, "--workers=0"),
        (
            ["embed", "{root}/file.txt", "{root}/ray-d", "-m", "{T}", "--ray", "--cpus-per-worker", "0"],
            None,
            1,
            "--cpus-per-worker=0.0 must be a positive number",
        ),
        (
            ["embed", "{root}/file.txt", "{root}/ray-e", "-m", "{T}", "--ray", "--cpus-per-worker", "nan"],
            None,
            1,
            "--cpus-per-worker=nan",
        ),
        (["embed", "{root}/file.txt", "{root}/ray-f", "-m", "{T}", "--ray", "--stall-timeout", "0"], None, 1, "stall"),
        (
            ["embed", "{root}/file.txt", "{root}/ray-g", "-m", "{T}", "--ray", "--backend", "openvino"],
            None,
            1,
            "drop --backend openvino",
        ),
        (
            ["embed", "{root}/file.txt", "{root}/ray-h", "-m", "{T}", "--ray", "--truncation", "refuse"],
            None,
            1,
            "use the local runner",
        ),
        (["embed", "{root}/notes.md", "{root}/ray-i", "-m", "{T}", "--ray"], None, 1, "unknown format"),
        (["embed", "{root}/file.txt", "{root}/ray-j", "-m", "{T}", "--ray", "--workers", "x"], None, 2, "invalid int"),
    ],
    "export": [
        (["export", "{missing}"], None, 1, "no such directory"),
        (["export", "{root}/file.txt"], None, 1, "neither a directory nor a hub id"),
        (["export", "{dir}"], None, 1, "has no config.json"),
        (["export", "jina-embedding-x-en-v1"], None, 1, "neither a directory nor a hub id"),
        (["export", "{ckpt}", "--precision", "fp8"], None, 1, "precision 'fp8' is not one of"),
        (["export", "{ckpt}", "--out", "{root}/file.txt"], None, 1, "already exists; pass --overwrite"),
        (["export", "{ckpt}", "--out", "{T}"], None, 1, "already exists; pass --overwrite"),
        (["export", "{root}/ckpt-bad-config"], None, 1, "ckpt-bad-config"),
        (["export", "{root}/ckpt-no-weights"], None, 1, "ckpt-no-weights"),
        (["export", "jinaai/jina-embedding-t-en-v1"], None, 3, "Hub"),
        (["export"], None, 2, "the following arguments are required: source"),
    ],
    "prepare": [
        (["prepare", "-m", "{missing}"], None, 1, "no such directory"),
        (["prepare", "-m", "{root}/file.txt"], None, 1, "is a file"),
        (["prepare", "-m", "{dir}"], None, 1, "not an exported artifact"),
        (["prepare", "-m", "jina-embedding-q-en-v1"], None, 1, "not a known model name"),
        (["prepare", "-m", "{root}/garbled-manifest"], None, 1, "manifest.json"),
        (["prepare", "-m", "{root}/broken-artifact", "--precision", "fp32"], None, 1, "sha256"),
        (["prepare", "-m", "{T}", "--for", "training"], None, 1, "--for training: name encode, serve or both"),
        (["prepare", "-m", "{T}", "--for", ""], None, 1, "name encode, serve or both"),
        (["prepare", "-m", "{T}", "--device", "cuda"], None, 1, "--device cpu"),
        (["prepare", "-m", "{T}", "--precision", "fp8"], None, 2, "invalid choice: 'fp8'"),
        (["prepare", "-m", "{T}", "--precision", "bf16", "--backend", "onnxruntime"], None, 1, "runs on OpenVINO"),
    ],
    "models": [
        (["models", "extra"], None, 2, "unrecognized arguments: extra"),
        (["models", "--all"], None, 2, "unrecognized arguments: --all"),
        (["-q", "models", "-m", "x"], None, 2, "unrecognized arguments"),
        (["model"], None, 2, "invalid choice: 'model'"),
        (["modles"], None, 2, "invalid choice"),
        ([], None, 2, "the following arguments are required: COMMAND"),
        (["--quiet=yes", "models"], None, 2, "ignored explicit argument"),
        (["-x", "models"], None, 2, "unrecognized arguments: -x"),
        (["models", "--help=1"], None, 2, "ignored explicit argument"),
        (["models", "-"], None, 2, "unrecognized arguments: -"),
    ],
}


@pytest.mark.parametrize(
    ("command", "index"), [(command, i) for command, cases in CLI_CASES.items() for i in range(len(cases))]
)
def test_cli_bad_input_gets_a_message_not_a_traceback(command, index, paths, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    argv, stdin, expected, fragment = CLI_CASES[command][index]
    if command == "export":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the Hub id case: refused as unreachable, never fetched
    code, out, err = run_main(fill(argv, paths), capsys, monkeypatch, stdin)
    check(code, out, err, expected, fragment.format(**paths))


def test_every_cli_command_has_ten_bad_inputs() -> None:
    from jina_onnx.cli import _parser

    commands = set(_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    covered = {name.split()[0] for name in CLI_CASES} | {"serve"}  # serve: test_serve_bad_input_...
    assert commands <= covered, commands - covered
    assert all(len(cases) >= 10 for cases in CLI_CASES.values())
    assert len(SERVE_CASES) >= 10


def run_cli(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jina_onnx", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


# serve runs in a subprocess: a case that got past its checks would start serving, not return.
SERVE_CASES: list[tuple[list[str], int, str]] = [
    (["-m", "{missing}"], 1, "no such directory"),
    (["-m", "{root}/file.txt"], 1, "is a file"),
    (["-m", "{dir}"], 1, "not an exported artifact"),
    (["-m", "jina-embedding-q-en-v1"], 1, "not a known model name"),
    (["-m", "{T}", "--port", "{busy}"], 1, "Address already in use; pick another --port"),
    (["-m", "{T}", "--port", "70000"], 1, "--port=70000 is out of range: use 0 to 65535"),
    (["-m", "{T}", "--workers", "0"], 1, "--workers=0 is out of range: use 1 to 64"),
    (["-m", "{T}", "--workers", "65"], 1, "--workers=65 is over 64"),
    (["-m", "{T}", "--max-queue", "0"], 1, "--max-queue=0 is out of range"),
    (["-m", "{T}", "--max-batch-wait-ms", "nan"], 1, "--max-batch-wait-ms=nan is out of range"),
    (["-m", "{T}", "--batches-in-flight", "1000"], 1, "is over 64"),
    (["-m", "{T}", "--host", "256.1.1.1"], 1, "256.1.1.1"),
    (["-m", "{T}", "--port", "http"], 2, "invalid int value: 'http'"),
    (["-m", "{T}", "-m", "{T}"], 1, "is given twice"),
    (["-m", "{root}/broken-artifact", "--precision", "fp32"], 1, "sha256"),
]


@pytest.mark.parametrize("index", range(len(SERVE_CASES)))
def test_serve_bad_input_gets_a_message_not_a_traceback(index, paths, busy_port) -> None:  # type: ignore[no-untyped-def]
    argv, expected, fragment = SERVE_CASES[index]
    values = {**paths, "busy": str(busy_port)}
    result = run_cli("serve", "--device", "cpu", *[arg.format(**values) for arg in argv], timeout=90)
    check(result.returncode, result.stdout, result.stderr, expected, fragment.format(**values))


def default_sigint() -> None:
    """What a terminal gives the command: a suite started in the background by a shell without job control
    (`sh -c '... &'`, some CI runners) ignores SIGINT, and Python then installs no KeyboardInterrupt handler in
    the child, which would finish its work instead (measured: exit 0 after all 6,000 texts)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_interrupted_embed_exits_130_and_a_rerun_finishes_the_job(artifact, tmp_path: Path) -> None:
    """Ctrl-C in the middle of a shard: exit 130, one line, no half-written shard; the rerun completes it."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"sentence {i} about a long afternoon in the park\n" for i in range(6_000)))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jina_onnx", "embed", str(corpus), str(out), "-m", str(artifact("t"))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 120
    while not list(out.glob(".*.tmp-*")):  # a shard being written
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    check(proc.returncode, stdout, stderr, 130, "jina-onnx: interrupted")
    assert not list(out.glob("*.parquet")) and not list(out.glob(".*.tmp-*"))
    rerun = run_cli("-q", "embed", str(corpus), str(out), "-m", str(artifact("t")), timeout=600)
    check(rerun.returncode, rerun.stdout, rerun.stderr, 0, "")
    assert "6000 texts embedded" in rerun.stdout


def test_interrupted_encode_exits_130(artifact) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "jina_onnx", "encode", "-m", str(artifact("t"))],  # waits on stdin
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    check(proc.returncode, stdout, stderr, 130, "jina-onnx: interrupted")


def ray_processes(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ and "jina_onnx" not in cmdline:
            found.append(cmdline[:120])
    return found


def ray_gone(marker: str, within: float = 30.0) -> bool:
    """Whether every Ray process started with `marker` in its environment has exited within `within` seconds."""
    deadline = time.monotonic() + within
    while ray_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    return not ray_processes(marker)


@pytest.mark.parametrize("quiet", [False, True])
def test_failed_ray_job_says_why_in_one_line_and_leaves_no_ray_behind(artifact, paths, quiet) -> None:  # type: ignore[no-untyped-def]
    """A bad row stops the job on Ray: our one-line error (not Ray's tracebacks), exit 1, every Ray process
    gone, and nothing of Ray's on the terminal under -q."""
    marker = f"JINA_ONNX_TEST_RAY_{os.getpid()}_{int(quiet)}"
    out = Path(paths["root"]) / f"ray-fail-{int(quiet)}"
    result = run_cli(
        *(["-q"] if quiet else []),
        "embed",
        f"{paths['root']}/blank.txt",
        str(out),
        "-m",
        str(artifact("t")),
        "--ray",
        timeout=300,
        env={marker: "1"},
    )
    check(result.returncode, result.stdout, result.stderr, 1, "empty text; remove such lines")
    lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith(("jina-onnx:", "embed "))]
    assert ours == lines, lines  # no line of Ray's
    if quiet:
        assert [line for line in lines if "error:" in line] == lines[-1:] and not result.stdout
    assert not list(out.glob("*.parquet")) and not list(out.glob(".ray-staging-*"))
    assert ray_gone(marker), ray_processes(marker)
    if not quiet:  # the fix the message names works, with the progress bar on
        skip = run_cli(*result.args[3:], "--on-bad-row", "skip", timeout=300, env={marker: "1"})
        check(skip.returncode, skip.stdout, skip.stderr, 0, "embed jina-embedding-t-en-v1 on Ray: ")
        assert skip.stdout.startswith("2 texts embedded into") and "2 rejected" in skip.stdout


def test_a_ray_job_the_cluster_cannot_hold_is_refused_and_stops_its_ray(artifact, paths) -> None:  # type: ignore[no-untyped-def]
    marker = f"JINA_ONNX_TEST_RAY_{os.getpid()}_capacity"
    result = run_cli(
        "embed",
        f"{paths['root']}/file.txt",
        f"{paths['root']}/ray-capacity",
        "-m",
        str(artifact("t")),
        "--ray",
        "--workers",
        "64",
        timeout=300,
        env={marker: "1"},
    )
    check(result.returncode, result.stdout, result.stderr, 1, "do not fit this Ray cluster")
    assert ray_gone(marker), ray_processes(marker)


# ---- the server ------------------------------------------------------------------------------------------------

KEY = "s3cret"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server_url(artifact) -> Iterator[str]:  # type: ignore[no-untyped-def]
    from tests.test_server import server

    args = ["-m", str(artifact("t")), "--precision", "fp32", "--max-inputs-per-request", "8"]
    args += ["--max-request-bytes", "20000"]
    with server(*args, env={"JINA_ONNX_API_KEY": KEY}) as (url, proc):
        yield url
    _, stderr = proc.communicate()  # stopped by server(): what it said while every bad request came in
    assert "Traceback" not in stderr, stderr


Request = Callable[[httpx.Client], httpx.Response]


def post(path: str, body: bytes | str, headers: dict[str, str] | None = None) -> Request:
    return lambda client: client.post(path, content=body, headers={**AUTH, **(headers or {})})


def call(method: str, path: str, **kwargs) -> Request:  # type: ignore[no-untyped-def]
    return lambda client: client.request(method, path, **kwargs)


def embedding_cases(path: str, field: str) -> list[tuple[Request, int, str]]:
    """Bad requests to an embedding route whose texts are in `field` (input for OpenAI, inputs for TEI)."""
    return [
        (post(path, b"{not json"), 400, "malformed JSON"),
        (post(path, b"[1, 2]"), 400, "must be a JSON object"),
        (post(path, b'{"' + field.encode() + b'": "caf\xe9"}'), 400, "not valid UTF-8"),
        (post(path, json.dumps({field: 42})), 400, "must be a string or a list"),
        (post(path, json.dumps({field: ["ok", None]})), 400, f"{field}[1] is null"),
        (post(path, json.dumps({field: []})), 400, "empty list"),
        (post(path, json.dumps({field: ["x"] * 9})), 413, "over the limit of 8 per request"),
        (post(path, json.dumps({field: "x" * 30000})), 413, "--max-request-bytes"),
        (post(path, b"[" * 9000 + b"]" * 9000), 400, "nested too deeply"),
        (post(path, json.dumps({"text": "x"})), 400, f'no "{field}" field: send the texts to embed as "{field}"'),
        (post(path, json.dumps({field: "x", "model": "no-such-model"})), 404, "no-such-model"),
        (post(path, b""), 400, ""),
        (call("POST", path, json={field: "x"}), 401, "API key"),
        (call("POST", path, json={field: "x"}, headers={"Authorization": "Bearer wrong"}), 401, "API key"),
        (call("GET", path, headers=AUTH), 405, "use POST"),
        (call("PUT", path, headers=AUTH, json={field: "x"}), 405, "use POST"),
        (call("DELETE", path, headers=AUTH), 405, "use POST"),
    ]


def get_route_cases(path: str, public: bool) -> list[tuple[Request, int, str]]:
    cases: list[tuple[Request, int, str]] = [
        (call(method, path, headers=AUTH, content=b"{}"), 405, "use GET")
        for method in ("POST", "PUT", "DELETE", "PATCH")
    ]
    cases += [
        (call("GET", path + "/", headers=AUTH), 307, ""),  # Starlette redirects to the route without the slash
        (call("GET", path + "/extra", headers=AUTH), 404, "no route"),
        (call("GET", path.upper(), headers=AUTH), 404, "no route"),
        (call("GET", path + "%00", headers=AUTH), 404, "no route"),
    ]
    if not public:
        cases += [
            (call("GET", path), 401, "API key"),
            (call("GET", path, headers={"Authorization": "Bearer wrong"}), 401, "API key"),
            (call("GET", path, headers={"Authorization": KEY}), 401, "API key"),
        ]
    else:  # open to probes: odd requests still get the page
        cases += [
            (call("GET", path + "?verbose=1&x=%ff"), 200, ""),
            (call("GET", path, headers={"Authorization": "Bearer wrong"}), 200, ""),
            (call("GET", path, content=b"\xff" * 100), 200, ""),
        ]
    return cases


SERVER_ROUTES: dict[str, list[tuple[Request, int, str]]] = {
    "POST /v1/embeddings": [
        *embedding_cases("/v1/embeddings", "input"),
        (post("/v1/embeddings", json.dumps({"input": [101, 2023]})), 400, "token-id inputs are not supported"),
        (post("/v1/embeddings", json.dumps({"input": "x", "dimensions": 64})), 400, "was not trained for"),
        (post("/v1/embeddings", json.dumps({"input": "x", "encoding_format": "int8"})), 400, "encoding_format"),
        (post("/v1/embeddings", json.dumps({"input": "x", "temperature": 1})), 400, "unsupported field(s)"),
        (
            post("/v1/embeddings", json.dumps({"input": "word " * 600, "truncation": "refuse"})),
            413,
            '"truncation": "right"',
        ),
    ],
    "POST /embed": [
        *embedding_cases("/embed", "inputs"),
        (post("/embed", json.dumps({"inputs": "x", "normalize": "yes"})), 400, "'normalize'"),
        (post("/embed", json.dumps({"inputs": "word " * 600, "truncate": False})), 413, '"truncate": true'),
    ],
    "POST /": embedding_cases("/", "inputs"),
    "POST /tokenize": [
        (post("/tokenize", b"{not json"), 400, "malformed JSON"),
        (post("/tokenize", b"[1]"), 400, "must be a JSON object"),
        (post("/tokenize", json.dumps({"inputs": 42})), 400, "must be a string or a list"),
        (post("/tokenize", json.dumps({"inputs": [None]})), 400, "inputs[0] is null"),
        (post("/tokenize", json.dumps({"inputs": []})), 400, "empty list"),
        (post("/tokenize", json.dumps({"inputs": ["x"] * 9})), 413, "over the limit of 8 per request"),
        (post("/tokenize", json.dumps({"inputs": "x" * 30000})), 413, "--max-request-bytes"),
        (post("/tokenize", b'{"inputs": "\xff"}'), 400, "not valid UTF-8"),
        (post("/tokenize", json.dumps({"text": "x"})), 400, 'no "inputs" field'),
        (call("POST", "/tokenize", json={"inputs": "x"}), 401, "API key"),
        (call("GET", "/tokenize", headers=AUTH), 405, "use POST"),
    ],
    "GET /info": get_route_cases("/info", public=False),
    "GET /v1/models": get_route_cases("/v1/models", public=False),
    "GET /health": get_route_cases("/health", public=True),
    "GET /metrics": get_route_cases("/metrics", public=True),
}


@pytest.mark.parametrize("route", list(SERVER_ROUTES))
def test_server_route_refuses_bad_requests_in_json(route: str, server_url: str) -> None:
    cases = SERVER_ROUTES[route]
    assert len(cases) >= 10
    with httpx.Client(base_url=server_url, timeout=60) as client:
        for index, (request, status, fragment) in enumerate(cases):
            response = request(client)
            assert response.status_code == status, (route, index, fragment, response.text[:500])
            assert "Traceback" not in response.text
            if status >= 400:
                message = response.json()["error"]["message"]
                assert fragment in message and "\n" not in message, (route, index, message)
        assert client.get("/health").status_code == 200  # still serving
