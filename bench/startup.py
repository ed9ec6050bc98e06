"""Start-up time and idle memory: what a desktop host and a deployment wait for and pay.

    python -m bench.startup                 # 7 runs of each, medians
    python -m bench.startup --runs 15 --calls 20
    python -m bench.startup --baseline /tmp/before/src   # before/after, interleaved

With KAMIYO's modules compiled to bytecode first (as installed packages are), on a fresh data
folder, migrated and loaded once beforehand (``kamiyo db upgrade``: what a
desktop host starts on every launch after its first), with ``KAMIYO_*`` variables from the
environment dropped and logs at WARNING:

- ``import kamiyo.cli``: ``python -c "import kamiyo.cli"``, process start to exit.
- ``kamiyo search ronin``: the command's wall time, process start to exit (target < 0.7 s).
- ``kamiyo serve`` (stdio): process start to the answer of the first ``tools/call``
  (``search_exploits``, "ronin"), sent as raw JSON-RPC over the pipes with a ``tools/list``
  right after ``initialize``'s answer, as a host does (target < 1 s); then the input closes
  and the server exits.
- Idle memory: RSS (``VmRSS`` in ``/proc``) of ``kamiyo serve --transport http`` once its
  ``/healthz`` answers, and again after ``--calls`` MCP calls (initialize, then
  ``search_exploits`` in one Streamable HTTP session, with plain JSON answers).

Each figure is the median of ``--runs`` runs (min and max beside it), with the median CPU
seconds (user + system) of the process, which a shared machine inflates less than wall time.
With ``--baseline DIR`` (another version's ``src/``, e.g. ``git archive REV src | tar -x -C
/tmp/before``) each command also runs from that version, the two taking turns, so that a
before/after table shares one run's load.
The table is printed and written to ``bench/results/startup-<time>.json``.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench.common import INITIALIZED, PROTOCOL, free_port, initialize, stop_process

HERE = Path(__file__).parent
KAMIYO = [sys.executable, "-m", "kamiyo"]
INITIALIZE = initialize("bench-startup")
LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
SEARCH = {
    "jsonrpc": "2.0",
    "id": 3,
    "method": "tools/call",
    "params": {"name": "search_exploits", "arguments": {"query": "ronin", "limit": 10}},
}
HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": PROTOCOL,
}


def clean_env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAMIYO_")}
    return env | {"KAMIYO_DATA_DIR": str(data), "KAMIYO_LOG_LEVEL": "WARNING"}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wall(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of a command, start to exit."""
    cpu, started = children_cpu(), time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started, children_cpu() - cpu


def stdio_first_answer(env: dict[str, str]) -> tuple[float, float]:
    """Seconds from starting ``kamiyo serve`` to the answer of its first tool call, and the
    CPU seconds of the whole process (its exit included)."""
    cpu, started = children_cpu(), time.perf_counter()
    process = subprocess.Popen(
        [*KAMIYO, "serve"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        process.stdin.write(json.dumps(INITIALIZE).encode() + b"\n")
        process.stdin.flush()
        _answer(process.stdout.readline(), 1)
        process.stdin.write(
            b"".join(json.dumps(m).encode() + b"\n" for m in (INITIALIZED, LIST, SEARCH))
        )
        process.stdin.flush()
        _answer(process.stdout.readline(), 2)
        result = _answer(process.stdout.readline(), 3)
        elapsed = time.perf_counter() - started
        if result.get("isError"):
            raise RuntimeError(f"stdio: the search failed: {json.dumps(result)[:300]}")
    finally:
        process.stdin.close()  # end of input: the server exits
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return elapsed, children_cpu() - cpu


def _answer(line: bytes, wanted_id: int) -> dict[str, Any]:
    if not line:
        raise RuntimeError("the server closed its output before answering")
    message = json.loads(line)
    if message.get("id") != wanted_id or "result" not in message:
        raise RuntimeError(f"unexpected answer: {line[:300]!r}")
    return dict(message["result"])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def post(url: str, message: Mapping[str, object], headers: Mapping[str, str]) -> Any:
    body = json.dumps(message).encode()
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def http_idle_memory(env: dict[str, str], calls: int) -> tuple[float, float]:
    """RSS in MB of an HTTP instance once it answers, and after ``calls`` tool calls."""
    port = free_port()
    command = [*KAMIYO, "serve", "--transport", "http", "--port", str(port), "--json-response"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the HTTP server never answered /healthz") from None
                time.sleep(0.05)
        time.sleep(1.0)  # let start-up work scheduled after the first answer settle
        started = rss_mb(process.pid)
        request = urllib.request.Request(
            f"{base}/mcp", data=json.dumps(INITIALIZE).encode(), headers=HEADERS, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            session = response.headers.get("Mcp-Session-Id")
            response.read()
        headers = HEADERS | ({"Mcp-Session-Id": session} if session else {})
        post_no_answer(f"{base}/mcp", INITIALIZED, headers)
        for n in range(calls):
            answer = post(f"{base}/mcp", SEARCH | {"id": 10 + n}, headers)
            if answer.get("result", {}).get("isError") or "result" not in answer:
                raise RuntimeError(f"http: the search failed: {json.dumps(answer)[:300]}")
        return started, rss_mb(process.pid)
    finally:
        stop_process(process, timeout=30)


def post_no_answer(url: str, message: Mapping[str, object], headers: Mapping[str, str]) -> None:
    body = json.dumps(message).encode()
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def summary(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def measure(
    runs: int, what: Callable[[dict[str, str]], tuple[float, float]], envs: list[dict[str, str]]
) -> list[list[tuple[float, float]]]:
    """``runs`` samples of ``what`` per environment, the environments taking turns so that
    they share the machine's load alike."""
    for env in envs:
        what(env)  # one untimed run: the page cache and the bytecode cache are warm afterwards
    samples: list[list[tuple[float, float]]] = [[] for _ in envs]
    for _ in range(runs):
        for env, taken in zip(envs, samples, strict=True):
            taken.append(what(env))
    return samples


COMMANDS: dict[str, Callable[[dict[str, str]], tuple[float, float]]] = {
    "import kamiyo.cli": lambda env: wall([sys.executable, "-c", "import kamiyo.cli"], env),
    "kamiyo search ronin": lambda env: wall([*KAMIYO, "search", "ronin"], env),
    "kamiyo serve (stdio): first tools/call answer": stdio_first_answer,
}


def table(seconds: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    return {
        "wall_s": {name: summary([s[0] for s in samples]) for name, samples in seconds.items()},
        "cpu_s": {name: summary([s[1] for s in samples]) for name, samples in seconds.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each measurement")
    parser.add_argument("--calls", type=int, default=10, help="HTTP calls before the 2nd RSS")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another version's src/ folder (git archive REV src | tar -x -C DIR): the "
        "commands also run from it, taking turns with this one, for a before/after table",
    )
    args = parser.parse_args()
    # Bytecode as an installed package has it (pip and uv compile on install): where
    # PYTHONDONTWRITEBYTECODE is set, nothing would be cached and every start would compile
    # KAMIYO's own modules again (~0.2 s CPU), which no desktop host pays.
    for source in [HERE.parent / "src", *([args.baseline] if args.baseline else [])]:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(source)], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        # Each version its own database, migrated by itself: an older one cannot open a
        # database a newer one has migrated past its head.
        env = clean_env(Path(tmp) / "this")
        envs = [env]
        if args.baseline is not None:
            baseline = clean_env(Path(tmp) / "baseline")
            envs.append(baseline | {"PYTHONPATH": str(args.baseline.resolve())})
        for each in envs:
            subprocess.run([*KAMIYO, "db", "upgrade"], env=each, check=True, capture_output=True)
        runs = {name: measure(args.runs, what, envs) for name, what in COMMANDS.items()}
        memory = [http_idle_memory(env, args.calls) for _ in range(max(1, args.runs // 2))]
    seconds = {name: samples[0] for name, samples in runs.items()}
    report: dict[str, Any] = table(seconds) | {
        "http_rss_mb": {
            "after start": summary([m[0] for m in memory]),
            f"after {args.calls} calls": summary([m[1] for m in memory]),
        },
        "load_average": os.getloadavg(),
    }
    if args.baseline is not None:
        report["baseline"] = table({name: samples[1] for name, samples in runs.items()})
    print(f"{'measurement':48} {'wall':>8} {'min':>8} {'max':>8} {'cpu':>8}")
    for label, part in (("", report), (" (baseline)", report.get("baseline"))):
        if part is None:
            continue
        for name, row in part["wall_s"].items():
            cpu = part["cpu_s"][name]["median"]
            title = (name + label)[:48]
            print(
                f"{title:48} {row['median']:7.3f}s {row['min']:7.3f}s {row['max']:7.3f}s "
                f"{cpu:7.3f}s"
            )
    for name, row in report["http_rss_mb"].items():
        label = f"HTTP instance RSS, {name}"
        print(f"{label:48} {row['median']:6.1f}MB {row['min']:6.1f}MB {row['max']:6.1f}MB")
    print(f"load average during the run: {report['load_average']}")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    out = results / f"startup-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(
        json.dumps(
            {"args": {**vars(args), "baseline": str(args.baseline)}, **report, "samples": runs},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
