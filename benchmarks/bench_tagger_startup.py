"""What a fresh Python process pays to tag 5 sentences, against what `import torch, transformers` costs.

Each measurement is a new interpreter (`sys.executable -c ...`), timed from start to exit:

  import      `import torch, transformers`
  floor       `import glode.model`: torch, transformers and the modelling modules every span
              model needs (transformers.modeling_utils and what it imports), nothing of loading
  tag         `from glode import Tagger; Tagger.load(model, device="cpu", quiet=True).tag(5 texts)`,
              glode from this checkout (or --code DIR)
  tag@DIR     the same with the glode package of another checkout (--compare DIR, repeatable:
              e.g. a copy of the code before a change), so that before and after are measured
              side by side, under the same load of the machine

The commands are run in turn, `--repeats` rounds, so that a background job slows them alike. It
prints every run, the medians, and each median over the median of `import`; and the same for the
CPU time (user + system) of the child, which a busy machine disturbs less than the wall time.

The model is `--model`, else a span model built like benchmarks/bench_tagger.py's (the offline
backbone's bottom 8 layers, as the study's models) in a temporary directory.

    python benchmarks/bench_tagger_startup.py --repeats 7
    python benchmarks/bench_tagger_startup.py --model results/target/conll/es/glode/seed1/model --compare /tmp/glode-before
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TEXTS = [
    "Angela Merkel besuchte am Montag Paris.",
    "El río Loira atraviesa Orléans, Tours y Nantes.",
    "Barack Obama was born in Honolulu, Hawaii.",
    "La Organización de las Naciones Unidas tiene su sede en Nueva York.",
    "Le président Emmanuel Macron a rencontré Olaf Scholz à Berlin.",
]
IMPORT_CODE = "import torch, transformers"
FLOOR_CODE = "import glode.model"
TAG_CODE = f"import sys; from glode import Tagger; Tagger.load(sys.argv[1], device='cpu', quiet=True).tag({TEXTS!r})"


THREADS: dict[str, str] = {}  # OMP_NUM_THREADS for the children (--threads), else as inherited


def run_child(code: str, args: list[str], pythonpath: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of a fresh interpreter running `code` with glode from `pythonpath`
    (also its working directory: `python -c` looks there first)."""
    env = {**os.environ, **THREADS, "PYTHONPATH": os.pathsep.join([str(pythonpath), *filter(None, [os.environ.get("PYTHONPATH")])])}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, env=env, cwd=pythonpath)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def glode_location(pythonpath: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    code = "import glode; print(glode.__file__)"
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env, cwd=pythonpath).stdout.strip()


def startup_times(model: Path, repeats: int, compare: list[Path] = (), floor: bool = True, code: Path = ROOT) -> dict[str, dict[str, list[float]]]:
    """{command name: {"wall": [...], "cpu": [...]}}, the commands run in turn `repeats` times;
    `floor` and `tag` with the glode package under `code`, `tag@DIR` with the one under DIR."""
    commands = {"import": (IMPORT_CODE, [], code)}
    if floor:
        commands["floor"] = (FLOOR_CODE, [], code)
    commands["tag"] = (TAG_CODE, [str(model)], code)
    for other in compare:
        commands[f"tag@{other}"] = (TAG_CODE, [str(model)], other)
    for name, (code, args, pythonpath) in commands.items():  # untimed: warms the page cache, checks it runs
        run_child(code, args, pythonpath)
    times = {name: {"wall": [], "cpu": []} for name in commands}
    for _ in range(repeats):
        for name, (code, args, pythonpath) in commands.items():
            wall, cpu = run_child(code, args, pythonpath)
            times[name]["wall"].append(wall)
            times[name]["cpu"].append(cpu)
    return times


def report(times: dict[str, dict[str, list[float]]]) -> str:
    lines = []
    for measure in ("wall", "cpu"):
        base = statistics.median(times["import"][measure])
        lines.append(f"{measure} seconds, median of {len(times['import'][measure])} runs (ratio: median / median of import):")
        for name, measured in times.items():
            median = statistics.median(measured[measure])
            runs = " ".join(f"{x:5.2f}" for x in measured[measure])
            lines.append(f"  {name:<12} {median:5.2f}  ratio {median / base:4.2f}   runs {runs}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a glode model directory (default: one built from --backbone in a temporary directory)")
    parser.add_argument("--backbone", default=str(ROOT / "resources/multilingual-e5-small"))
    parser.add_argument("--encoder-layers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--compare", type=Path, action="append", default=[], help="another checkout whose glode package to time too (repeatable)")
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose glode package `floor` and `tag` use (default: this one)")
    parser.add_argument("--no-floor", action="store_true", help="leave out `import glode.model`")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of every child (default: as inherited; torch then takes one per core)")
    args = parser.parse_args()
    if args.threads:
        THREADS["OMP_NUM_THREADS"] = str(args.threads)

    threads = THREADS.get("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "unset"))
    print(f"{os.cpu_count()} CPUs, OMP_NUM_THREADS {threads}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; glode from {glode_location(args.code)}"
          + "".join(f"; tag@{d}: {glode_location(d)}" for d in args.compare))
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            sys.path.insert(0, str(ROOT))
            from bench_tagger import build_model

            model = build_model(args.backbone, Path(tmp) / "model", args.encoder_layers)
        times = startup_times(model, args.repeats, args.compare, floor=not args.no_floor, code=args.code)
    print(report(times))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
