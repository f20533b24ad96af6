"""Wall time per workflow stage, from Snakemake's own run logs (.snakemake/log/*.snakemake.log).

Each job's time runs from its start line to its "Finished jobid" line, so it includes the job's
process start-up. Jobs ran side by side (--cores), so the sum over stages is job-seconds, not the
run's elapsed time, which is printed separately (first start to last finish per log).

    python benchmarks/stage_times.py .snakemake/log/*.snakemake.log
"""

from __future__ import annotations

import re
import statistics
import sys
from collections import defaultdict
from datetime import datetime

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
START = re.compile(r"^(?:local)?rule (\w+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")


def job_times(path: str) -> tuple[list[tuple[str, float]], float]:
    """[(rule, seconds)] of the jobs finished in one log, and the log's elapsed seconds."""
    started: dict[str, tuple[str, datetime]] = {}
    jobs, stamp, pending_rule, first, last = [], None, None, None, None
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if m := STAMP.match(line):
            stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
            first = first or stamp
        elif m := START.match(line):
            pending_rule = (m.group(1), stamp)
        elif (m := JOBID.match(line)) and pending_rule:
            started[m.group(1)] = pending_rule
            pending_rule = None
        elif m := FINISHED.match(line):
            rule, begun = started.pop(m.group(1), (m.group(2), None))
            if begun is not None:
                jobs.append((rule, (stamp - begun).total_seconds()))
                last = stamp
    return jobs, (last - first).total_seconds() if first and last else 0.0


def main(paths: list[str]) -> None:
    by_rule: dict[str, list[float]] = defaultdict(list)
    elapsed = 0.0
    for path in paths:
        jobs, seconds = job_times(path)
        elapsed += seconds
        for rule, t in jobs:
            by_rule[rule].append(t)
    print("| stage (rule) | jobs | job-seconds | median s/job |")
    print("|---|---:|---:|---:|")
    for rule, times in sorted(by_rule.items(), key=lambda kv: -sum(kv[1])):
        print(f"| {rule} | {len(times)} | {sum(times):.0f} | {statistics.median(times):.0f} |")
    total = sum(sum(t) for t in by_rule.values())
    print(f"\n{sum(len(t) for t in by_rule.values())} jobs, {total:.0f} job-seconds; elapsed {elapsed:.0f} s ({elapsed / 60:.1f} min) over {len(paths)} log(s)")


if __name__ == "__main__":
    main(sys.argv[1:])
