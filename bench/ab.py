"""``python bench/ab.py --before TREE [--after TREE]``: an A/B of two trees of this repository on
the same machine, in one run: each tree's ``python -m service`` (default settings, one worker,
the same Python, the same bundled models) under the same wrk load, in alternating rounds.

Why: a refactor that means no change of behaviour must mean no change of speed either. The
golden test (``tests/test_golden.py``) proves the bytes; this proves the throughput, where timed
unit tests could not (the machine's load moves every figure; alternating rounds and ratios of
medians taken in one run cancel most of it).

Per round and tree it starts the server, warms it (2 s of load), runs every scenario for
``--duration`` seconds with ``wrk -t1``, and reads the server's CPU time from ``/proc`` around
each scenario: requests per second, p99, and CPU microseconds per request. The trees alternate
which goes first in each round. The report (``--output``, default bench/AB.md) gives each
round's figures, the medians, and after ÷ before.

Inputs come from the data folder as bench/run.py reads them (the 235-word IMDB review, the
first Reuters test newswire, the first Boston test row).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (  # noqa: E402  (bench/run.py: the shared harness)
    HOST,
    REPO_DIR,
    fallback_inputs,
    free_port,
    http_request,
    load_inputs,
    log,
    memory_kib,
    run_wrk,
    stop,
)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    connections: int
    body: dict


def scenarios(review: str, newswire: str, row: list[float]) -> list[Scenario]:
    v2_text = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [review]}]}
    return [
        Scenario("imdb-c16", "/imdb/predict", 16, {"text": review}),
        Scenario("imdb-c64", "/imdb/predict", 64, {"text": review}),
        Scenario("reuters-c16", "/reuters/predict", 16, {"text": newswire}),
        Scenario("boston-c16", "/boston/predict", 16, {"features": row}),
        Scenario("v2-imdb-c16", "/v2/models/imdb/infer", 16, v2_text),
    ]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def serve(tree: Path, models: Path, port: int) -> tuple[subprocess.Popen[bytes], float]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "KERAS_BACKEND"}}
    env.update({"PYTHONPATH": str(tree), "MODELS_DIR": str(models), "PORT": str(port),
                "HOST": HOST, "WORKERS": "1"})  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "service"], cwd=tree, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if http_request(port, "GET", "/readyz", timeout=2)[0] == 200:
                return process, time.perf_counter() - started
        except OSError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"{tree}: the server exited with {process.returncode}")
        time.sleep(0.05)
    stop(process)
    raise RuntimeError(f"{tree}: not ready within 60 s")


def measure(tree: Path, models: Path, cases: list[Scenario], bodies: Path, seconds: int) -> dict:
    port = free_port()
    process, start = serve(tree, models, port)
    try:
        url = f"http://{HOST}:{port}"
        run_wrk(url + cases[0].path, bodies / f"{cases[0].name}.json", 16, 2)  # warm-up
        figures = {}
        for case in cases:
            before = cpu_seconds(process.pid)
            result = run_wrk(url + case.path, bodies / f"{case.name}.json", case.connections, seconds)
            used = cpu_seconds(process.pid) - before
            errors = sum(result[k] for k in result if k.startswith("errors_"))
            figures[case.name] = {
                "rps": result["rps"], "p99_ms": result["p99_us"] / 1000, "errors": errors,
                "cpu_us": used * 1e6 / max(1, result["requests"]),
            }  # fmt: skip
        figures["start"] = {"cold_start_s": start, "peak_rss_mb": memory_kib(process.pid, "VmHWM")[0] * 1024 / 1e6}
        return figures
    finally:
        stop(process)


def report(trees: dict[str, Path], rounds: list[dict], cases: list[Scenario], args) -> str:
    lines = [
        "# A/B: two trees of the repository, alternated in one run",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `python bench/ab.py "
        f"--before {args.before} --after {args.after} --rounds {args.rounds} "
        f"--duration {args.duration}`; {os.cpu_count()} cores; wrk -t1, {args.duration} s per "
        f"scenario, one server process each, default settings, the bundled models.",
        "",
        "| tree | commit |", "|---|---|",
    ]  # fmt: skip
    for label, tree in trees.items():
        commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--", "service"],
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
        lines.append(f"| {label} | {commit}{' + uncommitted changes' if dirty else ''} |")
    lines += ["", "| scenario | before req/s (rounds) | after req/s (rounds) | after ÷ before "
              "(medians) | CPU µs/request before → after | p99 ms before → after | errors |",
              "|---|---|---|---:|---|---|---:|"]  # fmt: skip
    for case in cases:
        cells = {}
        for label in trees:
            runs = [r[label][case.name] for r in rounds]
            cells[label] = {
                "rps": [run["rps"] for run in runs], "cpu": [run["cpu_us"] for run in runs],
                "p99": [run["p99_ms"] for run in runs], "errors": sum(run["errors"] for run in runs),
            }  # fmt: skip
        b, a = cells["before"], cells["after"]
        ratio = statistics.median(a["rps"]) / statistics.median(b["rps"])
        lines.append(
            f"| {case.name} | {' / '.join(f'{x:,.0f}' for x in b['rps'])} "
            f"| {' / '.join(f'{x:,.0f}' for x in a['rps'])} | **{ratio:.3f}** "
            f"| {statistics.median(b['cpu']):.0f} → {statistics.median(a['cpu']):.0f} "
            f"| {statistics.median(b['p99']):.1f} → {statistics.median(a['p99']):.1f} "
            f"| {b['errors'] + a['errors']} |"
        )
    starts = {label: [r[label]["start"] for r in rounds] for label in trees}
    lines += ["", "| start (process to /readyz 200) and peak RSS after the load, medians | before | after |",
              "|---|---:|---:|",
              "| cold start | " + " | ".join(f"{statistics.median(s['cold_start_s'] for s in starts[t]):.2f} s"
                                          for t in trees) + " |",
              "| peak RSS | " + " | ".join(f"{statistics.median(s['peak_rss_mb'] for s in starts[t]):.0f} MB"
                                        for t in trees) + " |"]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the tree before the change")
    parser.add_argument("--after", type=Path, default=REPO_DIR, help="the tree after (default: this one)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per scenario")
    parser.add_argument("--data-dir", type=Path, default=REPO_DIR.parent / "shared" / "data")
    parser.add_argument("--output", type=Path, default=REPO_DIR / "bench" / "AB.md")
    args = parser.parse_args(argv)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    inputs = load_inputs(args.data_dir, 2) if (args.data_dir / "imdb").is_dir() else fallback_inputs()
    cases = scenarios(inputs.review, inputs.newswire, inputs.boston_row)
    with tempfile.TemporaryDirectory() as scratch:
        models, bodies = Path(scratch) / "models", Path(scratch)
        subprocess.run([sys.executable, "-m", "service.bundle", str(REPO_DIR / "models"), str(models)],
                       cwd=trees["after"], check=True, capture_output=True)  # fmt: skip
        for case in cases:
            (bodies / f"{case.name}.json").write_text(json.dumps(case.body))
        rounds = []
        for number in range(args.rounds):
            order = ["before", "after"] if number % 2 == 0 else ["after", "before"]
            figures = {}
            for label in order:
                log(f"round {number + 1}/{args.rounds}: {label} ({trees[label]})")
                figures[label] = measure(trees[label], models, cases, bodies, args.duration)
            rounds.append(figures)
    text = report(trees, rounds, cases, args)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
