"""What the Python API costs over the pipeline's own prediction, and what loading costs.

1. `Tagger.load(model).tag(texts)` on N WikiAnn test sentences given as raw text (words joined by
   spaces), against `glode pseudo-label` (in process, model load and Parquet write included) on
   the same sentences as a prepared sentences file with their spans precomputed (the spans stage
   is a job of its own in the workflow). The tagger splits the text, enumerates the spans and
   decodes: the ratio says what that adds. Alternated, `--repeats` times; medians and the ratio.
2. A fresh Python process that loads a model and tags 5 sentences, against one that only imports
   torch and transformers; medians of `--repeats` runs and the ratio.

The model is a span model on the offline backbone (its bottom 8 layers by default, as the
study's models; heads as initialised: speed does not depend on what the heads learned).

    python benchmarks/bench_tagger.py --sentences 10000 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def wikiann_sentences(n: int, lang: str) -> list[list[str]]:
    from glode.conll import read_conll
    from glode.manifest import find_entry, read_manifest

    data_root = ROOT.parent / "shared/datasets"
    entry = find_entry(read_manifest(data_root / "MANIFEST.tsv"), "wikiann", lang, "test")
    parsed = read_conll(data_root / entry.path, ["PER", "LOC", "ORG"], encoding=entry.encoding, scheme=entry.scheme)
    return [s.tokens for s in parsed.sentences[:n]]


def build_model(backbone: str, out: Path, encoder_layers: int) -> Path:
    from glode.model import SpanModel, load_tokenizer
    from glode.training import save_model_dir

    model = SpanModel.from_backbone(backbone, ["O", "PER", "LOC", "ORG"], encoder_layers=encoder_layers)
    save_model_dir(out, model.eval(), load_tokenizer(backbone), {"span_settings": {"max_span_len": 4, "max_seq_len": 128}, "splitter": {"lang": "xx"}})
    return out


def prepared_inputs(words: list[list[str]], tokenizer, tmp: Path) -> tuple[Path, Path]:
    import pandas as pd

    from glode.io import write_parquet
    from glode.spans import build_span_table

    frame = pd.DataFrame({"sent_id": range(len(words)), "line": range(1, len(words) + 1), "tokens": words})
    write_parquet(frame, tmp / "sentences.parquet", {"tokenisation": "words", "labeled": False})
    spans, stats = build_span_table(frame, tokenizer, 4, 128)
    write_parquet(spans, tmp / "spans.parquet", {**stats, "max_span_len": 4, "max_seq_len": 128})
    return tmp / "sentences.parquet", tmp / "spans.parquet"


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def subprocess_seconds(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=str(ROOT / "resources/multilingual-e5-small"))
    parser.add_argument("--sentences", type=int, default=10000)
    parser.add_argument("--lang", default="ar", help="WikiAnn test file to take sentences from (ar and zh have 10,000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--encoder-layers", type=int, default=8, help="the backbone's bottom N layers (8: the study's models; 0: all 12)")
    args = parser.parse_args()

    import torch

    from glode import Tagger
    from glode.model import load_tokenizer
    from glode.pseudo_label import PseudoLabelOptions, pseudo_label

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = build_model(args.backbone, tmp / "model", args.encoder_layers)
        words = wikiann_sentences(args.sentences, args.lang)
        texts = [" ".join(w) for w in words]
        sentences, spans = prepared_inputs(words, load_tokenizer(args.backbone), tmp)
        options = PseudoLabelOptions(batch_size=args.batch_size, device="cpu")
        api, pipeline = [], []
        for _ in range(args.repeats):
            pipeline.append(timed(lambda: pseudo_label(model, sentences, spans, tmp / "pred.parquet", options)))
            api.append(timed(lambda: Tagger.load(model, device="cpu", batch_size=args.batch_size, quiet=True).tag(texts)))
        print(f"1. {len(texts)} WikiAnn {args.lang} sentences: pseudo-label {statistics.median(pipeline):.1f} s, Tagger {statistics.median(api):.1f} s "
              f"(medians of {args.repeats}; runs {[round(x, 1) for x in pipeline]} / {[round(x, 1) for x in api]}); ratio {statistics.median(api) / statistics.median(pipeline):.2f}")

        five = repr(texts[:5])
        imports, tagging = [], []
        for _ in range(args.repeats):
            imports.append(subprocess_seconds("import torch, transformers"))
            tagging.append(subprocess_seconds(f"from glode import Tagger; Tagger.load({str(model)!r}, device='cpu', quiet=True).tag({five})"))
        print(f"2. fresh process: import torch+transformers {statistics.median(imports):.2f} s, load + tag 5 sentences {statistics.median(tagging):.2f} s "
              f"(medians of {args.repeats}; runs {[round(x, 2) for x in imports]} / {[round(x, 2) for x in tagging]}); ratio {statistics.median(tagging) / statistics.median(imports):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
