"""Fuzz the spec language at length: 21,000 cases by default, across the five strategies of
tests/fuzz_strategies.py, each checked against the CLI's invariant (tests/test_fuzz_spec.py runs a
bounded version of the same in CI).

    nice .venv/bin/python bench/fuzz.py [--cases 21000] [--builds 150] [--seed 0] [--write]

Cases run one at a time in a worker process, so that a hang (a case over --case-timeout) or a
crash of the interpreter is detected, counted, and the worker replaced. Most cases are validated
only; a sample of accepted ones (under 30M parameters and 200 layers) is also built with Keras and compared
with static inference. Prints cases, accepted, rejected, crashes, hangs, memory blow-ups and peak
RSS; with --write, records them in the `## Fuzzing` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import resource
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

from tests.fuzz_strategies import STRATEGIES, Case, InvariantBroken  # noqa: E402

RESULTS = REPO / "bench" / "RESULTS.md"
FAILURES = REPO / "bench" / "fuzz_failures"
# Up to ResNet-50's size, so that mutants of the shipped ResNets are built too (3-5 s each).
BUILD_MAX_PARAMS = 30_000_000
BLOWUP_BYTES = 512 * 2**20  # a case that raises the worker's peak RSS by this much is a memory blow-up


def _worker(connection) -> None:
    """Check cases sent by the parent; answer (status, detail, accepted, built, seconds, peak RSS bytes)."""
    from archbuilder.runtime import configure_tensorflow_environment

    configure_tensorflow_environment()
    from tests.fuzz_strategies import Workspace, check_case

    workspace = Workspace()
    try:
        while True:
            message = connection.recv()
            if message is None:
                return
            case, build = message
            start = time.perf_counter()
            try:
                outcome = check_case(case, workspace, build=build, build_max_params=BUILD_MAX_PARAMS)
                answer = ("ok", "", outcome.accepted, outcome.built)
            except InvariantBroken as error:
                answer = ("crash", str(error), False, False)
            except BaseException as error:  # noqa: BLE001 - anything escaping check_case is a finding
                answer = ("crash", f"harness: {error!r}", False, False)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            connection.send((*answer, time.perf_counter() - start, peak))
    finally:
        workspace.close()


class Runner:
    def __init__(self, case_timeout: float, build_timeout: float):
        self.case_timeout = case_timeout
        self.build_timeout = build_timeout
        self.counts: Counter = Counter()
        self.per_strategy: dict[str, Counter] = {}
        self.failures: list[tuple[str, str, Case]] = []
        self.peak_rss = 0
        self.slowest = (0.0, None)
        self.process = None
        self._start()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child,), daemon=True)
        self.process.start()
        self.worker_peak = 0

    def _restart(self) -> None:
        self.process.kill()
        self.process.join()
        self._start()

    def run(self, strategy: str, case: Case, build: bool) -> None:
        counts = self.per_strategy.setdefault(strategy, Counter())
        counts["cases"] += 1
        self.connection.send((case, build))
        timeout = self.build_timeout if build else self.case_timeout
        if not self.connection.poll(timeout):
            counts["hangs"] += 1
            self.failures.append(("hang", f"over {timeout:.0f} s", case))
            self._restart()
            return
        try:
            status, detail, accepted, built, seconds, peak = self.connection.recv()
        except EOFError:
            counts["crashes"] += 1
            self.failures.append(("crash", f"worker died (exit code {self.process.exitcode})", case))
            self._restart()
            return
        if status == "crash":
            counts["crashes"] += 1
            self.failures.append(("crash", detail, case))
        else:
            counts["accepted" if accepted else "rejected"] += 1
            counts["built"] += built
        if not built and self.worker_peak and peak - self.worker_peak > BLOWUP_BYTES:
            counts["memory blow-ups"] += 1
            self.failures.append(("memory", f"peak RSS rose {(peak - self.worker_peak) / 2**20:.0f} MiB", case))
        self.worker_peak = peak
        self.peak_rss = max(self.peak_rss, peak)
        if not built and seconds > self.slowest[0]:
            self.slowest = (seconds, case)

    def close(self) -> None:
        self.connection.send(None)
        self.process.join(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=21_000, help="total, split evenly across the strategies")
    parser.add_argument("--builds", type=int, default=150, help="accepted small cases to build with Keras")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--case-timeout", type=float, default=10.0, help="seconds before a validate-only case is a hang")
    parser.add_argument("--write", action="store_true", help="write the figures into bench/RESULTS.md")
    args = parser.parse_args()

    runner = Runner(args.case_timeout, build_timeout=180.0)
    chooser = random.Random(args.seed)
    per_strategy = args.cases // len(STRATEGIES)
    build_share = args.builds / len(STRATEGIES)
    started = time.time()
    try:
        _run_all(args, runner, chooser, per_strategy, build_share, started)
        runner.close()
        stopped = ""
    except KeyboardInterrupt:  # Ctrl-C: report (and --write) what ran, marked as a partial run
        runner.process.kill()
        stopped = " **stopped by hand before the end: a partial run**"
    wall = time.time() - started

    total = Counter()
    for counts in runner.per_strategy.values():
        total.update(counts)
    lines = _report(args, runner, total, wall, stopped)
    print("\n".join(lines))
    _save_failures(runner)
    if args.write:
        _write_section(lines)


def _run_all(args, runner: Runner, chooser: random.Random, per_strategy: int, build_share: float, started: float) -> None:
    for name, strategy in STRATEGIES.items():

        @seed(args.seed)
        @settings(max_examples=per_strategy, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def generate(case: Case) -> None:
            built = runner.per_strategy.get(name, Counter())["built"]
            # About one case in ten is offered for building, until this strategy's share is built.
            runner.run(name, case, build=built < build_share and chooser.random() < 0.1)
            done = runner.per_strategy[name]["cases"]
            if done % 1000 == 0:
                print(f"  {name}: {done} cases, {dict(runner.per_strategy[name])}, {time.time() - started:.0f} s",
                      flush=True)

        generate()


def _report(args, runner: Runner, total: Counter, wall: float, stopped: str = "") -> list[str]:
    command = "nice .venv/bin/python bench/fuzz.py" + (f" --cases {args.cases}" if args.cases != 21_000 else "") + \
        (f" --builds {args.builds}" if args.builds != 150 else "") + (f" --seed {args.seed}" if args.seed else "") + \
        (" --write" if args.write else "")
    keys = ["cases", "accepted", "rejected", "built", "crashes", "hangs", "memory blow-ups"]
    lines = [
        "## Fuzzing",
        "",
        f"`{command}` ({time.strftime('%Y-%m-%d', time.gmtime())}, {wall / 60:.1f} min on a shared 2-core machine){stopped}.",
        "",
        "| strategy | " + " | ".join(keys) + " |",
        "|---|" + "---:|" * len(keys),
    ]
    for name, counts in runner.per_strategy.items():
        lines.append(f"| {name} | " + " | ".join(f"{counts[k]:,}" for k in keys) + " |")
    lines.append("| **total** | " + " | ".join(f"**{total[k]:,}**" for k in keys) + " |")
    slowest_seconds, _ = runner.slowest
    lines += [
        "",
        f"Peak RSS of the worker process: {runner.peak_rss / 2**20:.0f} MiB (TensorFlow and Keras loaded for the builds). "
        f"Slowest validate-only case: {slowest_seconds:.2f} s (hang limit {args.case_timeout:.0f} s). "
        f"Built cases are accepted specs under {BUILD_MAX_PARAMS // 10**6}M parameters and 200 layers, built with Keras and compared with static inference "
        f"(totals, the output's shape or each named output's, every named layer's shape and parameters).",
    ]
    if runner.failures:
        lines += ["", "Failures (inputs saved under bench/fuzz_failures/):", ""]
        seen = set()
        for kind, detail, _ in runner.failures:
            summary = f"- {kind}: {detail.strip().splitlines()[-1][:200] if detail.strip() else ''}"
            if summary not in seen:
                seen.add(summary)
                lines.append(summary)
    return lines


def _save_failures(runner: Runner) -> None:
    if not runner.failures:
        return
    FAILURES.mkdir(exist_ok=True)
    for index, (kind, detail, case) in enumerate(runner.failures):
        (FAILURES / f"{index:04d}-{kind}.yaml").write_bytes(case.text)
        (FAILURES / f"{index:04d}-{kind}.txt").write_text(f"{case!r}\n\n{detail}\n")


def _write_section(lines: list[str]) -> None:
    """Replace (or add) the `## Fuzzing` section of bench/RESULTS.md, leaving other sections alone."""
    body = "\n".join(lines) + "\n"
    text = RESULTS.read_text() if RESULTS.exists() else ""
    start = text.find("## Fuzzing")
    if start < 0:
        RESULTS.write_text(text + ("\n" if text else "") + body)
        return
    end = text.find("\n## ", start + 1)
    RESULTS.write_text(text[:start] + body + (text[end:] if end >= 0 else ""))


if __name__ == "__main__":
    main()
