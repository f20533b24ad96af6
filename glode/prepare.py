"""`glode prepare`: read one benchmark file, check it, and write its sentences to Parquet.

A benchmark file is located through MANIFEST.tsv (under --data-root, or downloaded with
--download), its sha256 is always checked, and the parsed sentence, `-DOCSTART-` and per-type
entity counts must equal the manifest's. A file of your own (`--file`, a language declared in the
config: docs/new-language.md) needs no manifest: its sha256 is checked where one is pinned
(`--sha256`), and its counts are logged and kept in the metadata. Output follows docs/data-formats.md ("Sentences"). For the train
split of a target language (the paper's unlabeled target data) the words go to --out without a
`tags` column, and the tags go to --gold-out, marked `hidden_gold: true` so that
`glode.data.load_sentences` refuses it.

Raw text (`--format text` or `jsonl`, with `--file`): a target language's unlabeled train data
as plain text, one document or paragraph per line (or one JSON object per line, its text under
`--text-key`). It is split into sentences and words by glode.textsplit (spaCy's rules for
`--lang`; sentences longer than the encoder window of `--backbone`'s tokenizer are cut into
pieces that fit, with a warning), and each word keeps its character offsets into its source
line (`char_starts`, `char_ends`), so that a pseudo label can be read in its context. There are
no tags, so no hidden gold either.

All or nothing: on any error, neither --out nor --gold-out exists afterwards (an output left by
an earlier run is removed too, so it cannot pass for this run's).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pyarrow as pa

from glode.conll import ConllFile, read_conll
from glode.io import GlodeInputError, setup_logging, write_parquet
from glode.data import TOKENISATIONS
from glode.textsplit import RAW_FORMATS
from glode.manifest import SCHEMES, ManifestEntry, fetch, find_entry, read_manifest, sha256_of, verify_checksum

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glode prepare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, help="directory holding MANIFEST.tsv and the benchmark files (required without --file)")
    parser.add_argument("--file", type=Path, help="a file of your own, read without a manifest (CoNLL-style columns with the tag last, or PAN-X `token<TAB>tag`)")
    parser.add_argument("--sha256", help="with --file: its pinned sha256 (checked when given)")
    parser.add_argument("--format", choices=("conll", *RAW_FORMATS), default="conll",
                        help="with --file: conll (tagged columns, default), or raw text for a target's train split: text (a document or paragraph per line) or jsonl (its text under --text-key)")
    parser.add_argument("--text-key", default="text", help="with --format jsonl: the key of each object's text (default: text)")
    parser.add_argument("--backbone", help="with raw text: the encoder whose tokenizer measures the window (sentences longer than --max-seq-len subwords are cut)")
    parser.add_argument("--max-seq-len", type=int, default=128, help="with raw text: the encoder window in subwords (default 128, as the spans stage)")
    parser.add_argument("--scheme", choices=SCHEMES, default="BIO", help="with --file: its tag scheme (default BIO)")
    parser.add_argument("--encoding", default="UTF-8", help="with --file: its encoding (default UTF-8)")
    parser.add_argument("--manifest", type=Path, default=None, help="default: <data-root>/MANIFEST.tsv")
    parser.add_argument("--dataset", required=True, help="e.g. conll, wikiann")
    parser.add_argument("--lang", required=True)
    parser.add_argument("--split", required=True, help="train, dev or test")
    parser.add_argument("--role", choices=("source", "target"), required=True)
    parser.add_argument("--entity-types", nargs="+", required=True, help="the label set without O, e.g. PER LOC ORG MISC")
    parser.add_argument("--tokenisation", choices=TOKENISATIONS, default="words",
                        help="how later stages give the words to the tokenizer, kept in the metadata: each as a word (words, the paper) or "
                             "the sentence's words concatenated, pieces mapped back (joined: one character per token, e.g. WikiAnn zh)")
    parser.add_argument("--out", type=Path, required=True, help="sentences Parquet")
    parser.add_argument("--gold-out", type=Path, default=None, help="hidden gold Parquet (required for a target train split)")
    parser.add_argument("--download", action="store_true", help="download a missing file from the manifest's source_url")
    parser.add_argument("--download-dir", type=Path, default=None, help="where downloads go (default: --data-root)")
    parser.add_argument(
        "--max-sentences", type=int, default=0,
        help="demo scale: keep a seeded random sample of this many sentences of a train split, in file order (0 = all; dev and test are always whole)",
    )
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of that sample")
    parser.add_argument("--log", type=Path, default=None, help="also log to this file")
    return parser


def sample_indices(n: int, max_sentences: int, seed: int) -> list[int]:
    """Seeded sample of sentence indices in file order; all of them when max_sentences is 0 or >= n."""
    if max_sentences <= 0 or max_sentences >= n:
        return list(range(n))
    import random

    return sorted(random.Random(seed).sample(range(n), max_sentences))


def _list_column(rows: list[list[str]]) -> pa.Array:
    return pa.array(rows, type=pa.list_(pa.string()))


def _check_counts(parsed: ConllFile, entry: ManifestEntry, manifest: Path) -> None:
    """The parsed file must match the manifest's counts (the paper's Table 5)."""
    problems = []
    if len(parsed.sentences) != entry.sentences:
        problems.append(f"{len(parsed.sentences)} sentences parsed, manifest says {entry.sentences}")
    if parsed.docstart_lines != entry.docstart_lines:
        problems.append(f"{parsed.docstart_lines} -DOCSTART- lines, manifest says {entry.docstart_lines}")
    if parsed.entity_counts != entry.entities:
        problems.append(f"entities {parsed.entity_counts}, manifest says {entry.entities}")
    if problems:
        raise GlodeInputError(parsed.path, "; ".join(problems) + f" ({manifest} line {entry.line})")


def read_manifest_file(args: argparse.Namespace) -> tuple[ConllFile, str, str, str]:
    """A benchmark file through MANIFEST.tsv: (parsed, sha256, scheme, encoding); counts checked."""
    manifest = args.manifest or args.data_root / "MANIFEST.tsv"
    entries = read_manifest(manifest)
    try:
        entry = find_entry(entries, args.dataset, args.lang, args.split)
    except KeyError as err:
        raise GlodeInputError(manifest, f"{err.args[0]}. A language of your own is declared in the config instead: docs/new-language.md") from None
    source = fetch(entry, args.data_root, args.download_dir, allow_download=args.download)
    log.info("%s: sha256 ok (%s)", source, entry.sha256)
    parsed = read_conll(source, args.entity_types, encoding=entry.encoding, scheme=entry.scheme)
    _check_counts(parsed, entry, manifest)
    return parsed, entry.sha256, entry.scheme, entry.encoding


def read_declared_file(args: argparse.Namespace) -> tuple[ConllFile, str, str, str]:
    """A file of your own (--file): sha256 checked where pinned, counts logged (no manifest)."""
    if not args.file.is_file():
        raise GlodeInputError(args.file, f"no such file ({args.dataset}/{args.lang}/{args.split})")
    if args.sha256:
        verify_checksum(args.file, args.sha256)
        log.info("%s: sha256 ok (%s)", args.file, args.sha256.lower())
    parsed = read_conll(args.file, args.entity_types, encoding=args.encoding, scheme=args.scheme)
    return parsed, args.sha256.lower() if args.sha256 else sha256_of(args.file), args.scheme, args.encoding


def prepare_raw_text(args: argparse.Namespace) -> None:
    """A target's train split from raw text: sentences and words with their offsets, no tags."""
    from glode.model import load_tokenizer
    from glode.textsplit import SplitReport, Splitter, read_raw_texts, split_within_window

    if not args.file.is_file():
        raise GlodeInputError(args.file, f"no such file ({args.dataset}/{args.lang}/{args.split})")
    if args.sha256:
        verify_checksum(args.file, args.sha256)
    texts = read_raw_texts(args.file, args.format, args.text_key)
    if not texts:
        raise GlodeInputError(args.file, "is empty: no text to split into words")
    splitter, report = Splitter(args.lang), SplitReport()
    lines, words, starts, ends = [], [], [], []
    for (line, _), sentences in zip(texts, split_within_window(splitter, (t for _, t in texts), load_tokenizer(args.backbone), args.max_seq_len, report)):
        for sentence in sentences:
            lines.append(line), words.append(sentence.words), starts.append(sentence.starts), ends.append(sentence.ends)
    if not words:
        raise GlodeInputError(args.file, f"has {len(texts)} non-blank lines but no words")
    report.warn(str(args.file), args.max_seq_len)
    counts = {"lines": len(texts), "sentences": len(words), "words": sum(map(len, words)), "cut_sentences": report.cut_sentences, "moved_words": report.moved_words}
    log.info("%s: %d lines -> %d sentences, %d words (%s)", args.file, counts["lines"], counts["sentences"], counts["words"], splitter.describe())
    metadata = {
        "dataset": args.dataset, "lang": args.lang, "split": args.split, "role": args.role, "entity_types": list(args.entity_types),
        "labeled": False, "source_path": str(args.file), "sha256": args.sha256.lower() if args.sha256 else sha256_of(args.file),
        "format": args.format, "text_key": args.text_key if args.format == "jsonl" else None, "encoding": "UTF-8",
        "splitter": splitter.describe(), "tokenisation": "words", "counts": counts,
    }  # fmt: skip
    keep = sample_indices(len(words), args.max_sentences, args.sample_seed)
    if len(keep) < len(words):
        metadata["sample"] = {"max_sentences": args.max_sentences, "seed": args.sample_seed, "of": len(words)}
        log.info("keeping a seeded sample of %d of %d sentences (demo scale)", len(keep), len(words))
    offsets = pa.list_(pa.int32())
    table = pa.table({
        "sent_id": pa.array(keep, type=pa.int64()),
        "line": pa.array([lines[i] for i in keep], type=pa.int64()),
        "tokens": _list_column([words[i] for i in keep]),
        "char_starts": pa.array([starts[i] for i in keep], type=offsets),
        "char_ends": pa.array([ends[i] for i in keep], type=offsets),
    })  # fmt: skip
    write_parquet(table, args.out, metadata)
    log.info("wrote %s (%d sentences of raw text, no tags)", args.out, len(keep))


def prepare(args: argparse.Namespace) -> None:
    if args.format in RAW_FORMATS:
        prepare_raw_text(args)
        return
    parsed, sha256, scheme, encoding = read_declared_file(args) if args.file else read_manifest_file(args)
    source = parsed.path
    sentences = parsed.sentences
    log.info(
        "%s: %d sentences, %d tokens, %d -DOCSTART- lines, %s-separated %d columns, %s, %s",
        source, len(sentences), parsed.tokens, parsed.docstart_lines, parsed.separator, parsed.columns, encoding, scheme,
    )
    log.info(
        "%s: %d entities %s; %d I- tags opened an entity and became B- (%s)",
        source, parsed.entity_total, parsed.entity_counts, parsed.opened_by_i,
        "IOB1 -> BIO" if scheme == "IOB1" else "lenient BIO",
    )

    hidden = args.role == "target" and args.split == "train"
    metadata = {
        "dataset": args.dataset,
        "lang": args.lang,
        "split": args.split,
        "role": args.role,
        "entity_types": list(args.entity_types),
        "labeled": not hidden,
        "source_path": str(source),
        "sha256": sha256,
        "scheme": scheme,
        "encoding": encoding,
        "tokenisation": args.tokenisation,
    }
    if args.file:  # no manifest checked the counts: keep them with the data
        metadata["counts"] = {"sentences": len(sentences), "docstart_lines": parsed.docstart_lines, "entities": parsed.entity_counts}
    # Counts were checked on the whole file; a demo-scale sample keeps the original sent_ids.
    keep = sample_indices(len(sentences), args.max_sentences if args.split == "train" else 0, args.sample_seed)
    if len(keep) < len(sentences):
        metadata["sample"] = {"max_sentences": args.max_sentences, "seed": args.sample_seed, "of": len(sentences)}
        log.info("keeping a seeded sample of %d of %d sentences (demo scale)", len(keep), len(sentences))
    sentences = [sentences[i] for i in keep]
    sent_ids = pa.array(keep, type=pa.int64())
    tokens = _list_column([s.tokens for s in sentences])
    tags = _list_column([s.tags for s in sentences])
    columns = {"sent_id": sent_ids, "line": pa.array([s.line for s in sentences], type=pa.int64()), "tokens": tokens}
    if not hidden:
        columns["tags"] = tags
    write_parquet(pa.table(columns), args.out, metadata)
    log.info("wrote %s (%d sentences%s)", args.out, len(sentences), ", no tags: unlabeled target data" if hidden else "")
    if hidden:
        gold = pa.table({"sent_id": sent_ids, "tokens": tokens, "tags": tags})
        write_parquet(gold, args.gold_out, {**metadata, "labeled": True, "hidden_gold": True})
        log.info("wrote hidden gold %s (analysis only)", args.gold_out)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log)
    outputs = [p for p in (args.out, args.gold_out) if p is not None]
    try:
        raw = args.format in RAW_FORMATS
        hidden = args.role == "target" and args.split == "train" and not raw
        if raw and (args.file is None or args.role != "target" or args.split != "train"):
            parser.error(f"--format {args.format} (raw text) is for a target language's train split, given as --file: every other split is tagged CoNLL")
        if raw and not args.backbone:
            parser.error(f"--format {args.format} needs --backbone: its tokenizer measures the encoder window")
        if raw and args.gold_out is not None:
            parser.error("--gold-out: raw text has no tags, so no hidden gold")
        if hidden and args.gold_out is None:
            parser.error("--gold-out is required for the train split of a target language (its tags are hidden)")
        if not hidden and not raw and args.gold_out is not None:
            parser.error("--gold-out is only for the train split of a target language")
        if args.file is None and args.data_root is None:
            parser.error("--data-root is required (or --file for a file of your own)")
        if args.file is None and args.sha256:
            parser.error("--sha256 goes with --file (a manifest pins its own files)")
        if args.gold_out is not None and args.gold_out.resolve() == args.out.resolve():
            parser.error("--gold-out must differ from --out")
        prepare(args)
    except BaseException:
        # all or nothing: neither a partial pair nor an earlier run's file may pass for this run's
        for output in outputs:
            output.unlink(missing_ok=True)
        raise
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
