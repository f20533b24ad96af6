"""Raw text against the tagged file: does training from untagged text work as well?

Takes a shipped target's train split, strips its tags and detokenises each sentence into plain
text (sacremoses' Moses detokenizer: `pip install sacremoses`; only this script needs it), one
sentence per line. Then it runs the same workflow twice, one seed, at the given scale: once from
the tagged file (the manifest's, its tags hidden as always), once from the raw text
(`format: text`, split by glode.textsplit). Both are scored on the target's full test file.

It prints, and writes as CSV/JSON under --out:
- what the splitter changes: sentences and words per sentence, and the share of the splitter's
  words that are not a word of the benchmark's tokenisation (difflib alignment per line);
- test F1 of source-mlm, target-wo_denoising and target-glode for both inputs (source-plain
  never sees target text, so it is the same model in both).

    python benchmarks/raw_text_vs_tagged.py --dataset conll --lang es --config config/demo.yaml \\
        --workdir /tmp/raw_vs_tagged --out docs/raw_text
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from glode.conll import read_conll  # noqa: E402
from glode.manifest import find_entry, read_manifest  # noqa: E402
from glode.textsplit import Splitter  # noqa: E402

SYSTEMS = ("source-mlm", "target-wo_denoising", "target-glode")


def detokenised_lines(dataset: str, lang: str, data_root: Path, entity_types: list[str]) -> tuple[list[list[str]], list[str]]:
    """(the benchmark's words per sentence, each sentence detokenised into a line of text)."""
    from sacremoses import MosesDetokenizer

    entry = find_entry(read_manifest(data_root / "MANIFEST.tsv"), dataset, lang, "train")
    parsed = read_conll(data_root / entry.path, entity_types, encoding=entry.encoding, scheme=entry.scheme)
    detok = MosesDetokenizer(lang=lang)
    words = [s.tokens for s in parsed.sentences]
    return words, [detok.detokenize(w) for w in words]


def splitter_changes(lang: str, words: list[list[str]], lines: list[str]) -> dict:
    """Sentences, words per sentence, and the splitter's words that are no benchmark word."""
    split = list(Splitter(lang).split_docs(lines))
    ours = [[w for s in doc for w in s.words] for doc in split]
    unmatched = 0
    for theirs, mine in zip(words, ours):
        matched = sum(b.size for b in difflib.SequenceMatcher(a=theirs, b=mine, autojunk=False).get_matching_blocks())
        unmatched += len(mine) - matched
    n_ours = sum(map(len, ours))
    return {
        "benchmark_sentences": len(words),
        "split_sentences": sum(len(doc) for doc in split),
        "benchmark_words_per_sentence": round(statistics.fmean(map(len, words)), 2),
        "split_words_per_sentence": round(n_ours / max(1, sum(len(doc) for doc in split)), 2),
        "benchmark_words": sum(map(len, words)),
        "split_words": n_ours,
        "split_words_not_in_benchmark": unmatched,
        "split_words_not_in_benchmark_pct": round(100 * unmatched / max(1, n_ours), 2),
    }


def run_workflow(workdir: Path, configs: list[Path], dataset: str, lang: str, seed: int, cores: int) -> dict[str, float]:
    """Snakemake in `workdir` for the systems' metrics; {system: test F1 x 100}."""
    targets = [f"results/eval/{dataset}/{lang}/{s}/seed{seed}/metrics.json" for s in SYSTEMS]
    cmd = [str(Path(sys.executable).parent / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--workflow-profile", "none", "--cores", str(cores), *targets, "--configfile", *map(str, configs)]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"snakemake failed in {workdir}:\n{result.stderr[-4000:]}")
    return {s: round(100 * json.loads((workdir / t).read_text())["seqeval"]["f1"], 2) for s, t in zip(SYSTEMS, targets)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="conll")
    parser.add_argument("--lang", default="es")
    parser.add_argument("--config", type=Path, default=ROOT / "config/demo.yaml", help="the scale overlay (demo or study)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", type=Path, required=True, help="where both runs go (two subdirectories)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the CSV and JSON results")
    args = parser.parse_args()

    base = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    scale = yaml.safe_load(args.config.read_text())
    data_root = (ROOT / (scale.get("data_root") or base["data_root"])).resolve()
    spec = base["datasets"][args.dataset]
    words, lines = detokenised_lines(args.dataset, args.lang, data_root, spec["entity_types"])
    changes = splitter_changes(args.lang, words, lines)
    print(json.dumps(changes, indent=1))

    args.workdir.mkdir(parents=True, exist_ok=True)
    raw_file = (args.workdir / f"{args.lang}.train.txt").resolve()
    raw_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    test = find_entry(read_manifest(data_root / "MANIFEST.tsv"), args.dataset, args.lang, "test")
    only = {"datasets": {d: {"targets": [args.lang] if d == args.dataset else []} for d in base["datasets"]}, "seeds": [args.seed], "data_root": str(data_root)}
    raw = {"datasets": {args.dataset: {"files": {args.lang: {"train": {"path": str(raw_file), "format": "text"},
                                                            "test": {"path": str(data_root / test.path), "sha256": test.sha256}}},
                                       "format": {"scheme": test.scheme, "encoding": test.encoding}}}}
    scores = {}
    for name, overlays in (("tagged", [only]), ("raw", [only, raw])):
        files = []
        for i, overlay in enumerate(overlays):
            files.append(args.workdir / name / f"overlay{i}.yaml")
            files[-1].parent.mkdir(parents=True, exist_ok=True)
            files[-1].write_text(yaml.safe_dump(overlay))
        scores[name] = run_workflow(args.workdir / name, [ROOT / "config/config.yaml", args.config.resolve(), *files], args.dataset, args.lang, args.seed, args.cores)
        print(name, scores[name])

    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.dataset}_{args.lang}_{args.config.stem}_seed{args.seed}"
    rows = ["input,system,f1"] + [f"{name},{s},{f1:.2f}" for name, by in scores.items() for s, f1 in by.items()]
    (args.out / f"{stem}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (args.out / f"{stem}.splitter.json").write_text(json.dumps({**changes, "scale": args.config.name, "seed": args.seed}, indent=1) + "\n", encoding="utf-8")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
