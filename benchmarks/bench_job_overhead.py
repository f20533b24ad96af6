"""What a pipeline job pays before and around its real work, on a few CPU cores.

Each Snakemake job is a fresh process, so the demo (~170 jobs) pays start-up ~170 times. This
prints (1) the tokenizer load through `AutoTokenizer` and through `glode.model.load_tokenizer`,
(2) the cost of one prediction job over a test split run two ways on the same cores: two jobs one
after the other with 2 threads each, and two jobs side by side with 1 thread each.

    python benchmarks/bench_job_overhead.py --model results/source/conll/mlm-es/seed1/model \
        --sentences results/data/conll/es/test.parquet --spans results/spans/conll/es/test.parquet
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOKENIZER_LOADS = {
    "AutoTokenizer.from_pretrained": "from transformers import AutoTokenizer; AutoTokenizer.from_pretrained({path!r})",
    "glode.model.load_tokenizer": "from glode.model import load_tokenizer; load_tokenizer({path!r})",
}


def seconds_in_subprocess(statement: str) -> float:
    """Seconds one statement takes in a fresh interpreter, imports excluded (they are warmed first)."""
    code = (
        "import time, transformers, tokenizers, torch, glode.model\n"
        f"start = time.perf_counter()\n{statement}\nprint(time.perf_counter() - start)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def prediction_command(args, out: Path) -> list[str]:
    return ["glode", "pseudo-label", "--model", str(args.model), "--sentences", str(args.sentences), "--spans", str(args.spans), "--out", str(out), "--device", "cpu"]


def run_jobs(args, threads: int, side_by_side: bool, workdir: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    commands = [prediction_command(args, workdir / f"job{i}.parquet") for i in range(2)]
    if side_by_side:
        procs = [subprocess.Popen(c, env=env, stderr=subprocess.DEVNULL) for c in commands]
        if any(p.wait() != 0 for p in procs):
            raise SystemExit("a prediction job failed")
    else:
        for c in commands:
            subprocess.run(c, env=env, check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", type=Path, default=Path("resources/multilingual-e5-small"))
    parser.add_argument("--model", type=Path, help="a saved span model (for the prediction jobs)")
    parser.add_argument("--sentences", type=Path)
    parser.add_argument("--spans", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")

    print("\ntokenizer load in a fresh process (median of", args.repeats, "runs)")
    for name, template in TOKENIZER_LOADS.items():
        times = sorted(seconds_in_subprocess(template.format(path=str(args.backbone))) for _ in range(args.repeats))
        print(f"  {name:32s} {times[len(times) // 2]:6.2f} s")

    if args.model is None:
        return
    print(f"\ntwo prediction jobs over {args.sentences} (whole process, start-up included)")
    with tempfile.TemporaryDirectory() as tmp:
        sequential = run_jobs(args, threads=2, side_by_side=False, workdir=Path(tmp))
        parallel = run_jobs(args, threads=1, side_by_side=True, workdir=Path(tmp))
    print(f"  one after the other, 2 threads each  {sequential:6.1f} s")
    print(f"  side by side, 1 thread each          {parallel:6.1f} s")


if __name__ == "__main__":
    main()
