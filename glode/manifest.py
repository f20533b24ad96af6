"""The benchmark data manifest (`MANIFEST.tsv`), sha256 checks and fetching the files.

`MANIFEST.tsv` lists every benchmark file with its sha256, its sentence and entity counts, a
public source URL pinned to a commit, and a free-text `format` column whose `;`-separated parts
name the tag scheme (`BIO` or `IOB1`) and the encoding (`UTF-8`, `ISO-8859-1`). A file is used
only after its sha256 matches, whether it was found under the data root or downloaded.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from glode.io import GlodeInputError, atomic_path

log = logging.getLogger(__name__)

COLUMNS = ("dataset", "lang", "split", "path", "sha256", "sentences", "docstart_lines", "entity_total", "entities", "source_url", "format")
SCHEMES = ("BIO", "IOB1")
DOWNLOAD_TIMEOUT_S = 120

_SEPARATOR = re.compile(r"\b(tab|space)-separated\s+(\d+)\s+columns?\b")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ManifestEntry:
    dataset: str
    lang: str
    split: str
    path: str  # relative to the data root, e.g. "conll/de/dev.txt"
    sha256: str
    sentences: int
    docstart_lines: int
    entity_total: int
    entities: dict[str, int] = field(hash=False)  # per-type counts, e.g. {"LOC": 4363, ...}
    source_url: str
    format: str
    encoding: str  # from `format`: "UTF-8" unless another codec is named there
    scheme: str  # from `format`: "BIO" or "IOB1"
    separator: str | None  # from `format`: "tab", "space", or None if not stated
    columns: int | None  # from `format`, or None
    line: int  # line of this entry in MANIFEST.tsv

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.dataset, self.lang, self.split)


def _parse_entities(text: str, where: Path, line: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in text.split():
        name, sep, value = item.partition("=")
        if not sep or not name or not value.isdigit():
            raise GlodeInputError(where, f"entities column: expected TYPE=COUNT items, found {item!r}", line)
        counts[name] = int(value)
    return counts


def _parse_format(text: str, where: Path, line: int) -> tuple[str, str, str | None, int | None]:
    """(encoding, scheme, separator, columns) from the free-text `format` column."""
    parts = [p.strip() for p in text.split(";")]
    schemes = [p for p in parts if p in SCHEMES]
    if len(schemes) > 1:
        raise GlodeInputError(where, f"format column names several tag schemes: {schemes}", line)
    encodings = []
    for part in parts:
        if part and " " not in part and part not in SCHEMES:
            try:
                codecs.lookup(part)
            except LookupError:
                continue
            encodings.append(part)
    if len(encodings) > 1:
        raise GlodeInputError(where, f"format column names several encodings: {encodings}", line)
    separator = _SEPARATOR.search(text)
    return (
        encodings[0] if encodings else "UTF-8",
        schemes[0] if schemes else "BIO",
        separator.group(1) if separator else None,
        int(separator.group(2)) if separator else None,
    )


def _int(value: str, column: str, where: Path, line: int) -> int:
    if not value.isdigit():
        raise GlodeInputError(where, f"column {column!r}: expected a non-negative integer, found {value!r}", line)
    return int(value)


def read_manifest(path: os.PathLike | str) -> list[ManifestEntry]:
    """All entries of a MANIFEST.tsv, in file order; malformed rows raise GlodeInputError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GlodeInputError(path, "manifest not found") from None
    lines = text.split("\n")
    header = lines[0].rstrip("\r").split("\t")
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise GlodeInputError(path, f"header lacks columns {missing}", 1)
    index = {name: i for i, name in enumerate(header)}
    entries: list[ManifestEntry] = []
    seen: dict[tuple[str, str, str], int] = {}
    for number, raw in enumerate(lines[1:], start=2):
        row = raw.rstrip("\r")
        if not row.strip():
            continue
        cells = row.split("\t")
        if len(cells) != len(header):
            raise GlodeInputError(path, f"expected {len(header)} tab-separated cells, found {len(cells)}", number)
        value = {name: cells[i].strip() for name, i in index.items()}
        encoding, scheme, separator, columns = _parse_format(value["format"], path, number)
        entities = _parse_entities(value["entities"], path, number)
        entry = ManifestEntry(
            dataset=value["dataset"],
            lang=value["lang"],
            split=value["split"],
            path=value["path"],
            sha256=value["sha256"].lower(),
            sentences=_int(value["sentences"], "sentences", path, number),
            docstart_lines=_int(value["docstart_lines"], "docstart_lines", path, number),
            entity_total=_int(value["entity_total"], "entity_total", path, number),
            entities=entities,
            source_url=value["source_url"],
            format=value["format"],
            encoding=encoding,
            scheme=scheme,
            separator=separator,
            columns=columns,
            line=number,
        )
        if not _SHA256.match(entry.sha256):
            raise GlodeInputError(path, f"sha256 {value['sha256']!r} is not 64 hex digits", number)
        if sum(entities.values()) != entry.entity_total:
            raise GlodeInputError(path, f"entity_total {entry.entity_total} != sum of entities {sum(entities.values())}", number)
        if entry.key in seen:
            raise GlodeInputError(path, f"{entry.key} is listed twice (first on line {seen[entry.key]})", number)
        seen[entry.key] = number
        entries.append(entry)
    return entries


def find_entry(entries: list[ManifestEntry], dataset: str, lang: str, split: str) -> ManifestEntry:
    for entry in entries:
        if entry.key == (dataset, lang, split):
            return entry
    known = ", ".join("/".join(e.key) for e in entries)
    raise KeyError(f"no manifest entry for {dataset}/{lang}/{split}; known: {known}")


def sha256_of(path: os.PathLike | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksum(path: os.PathLike | str, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected.lower():
        raise GlodeInputError(path, f"sha256 mismatch: expected {expected.lower()}, found {actual} (corrupt or a different version of the file)")


def _download(url: str, target: Path) -> None:
    """Copy `url` into `target` (a temporary path the caller renames)."""
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(target, "wb") as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError) as err:
        raise GlodeInputError(url, f"download failed: {err}") from None


def _extract_member(archive: Path, member: str, target: Path, url: str) -> None:
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(member) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
    except KeyError:
        raise GlodeInputError(url, f"the zip archive has no member {member!r}") from None
    except zipfile.BadZipFile as err:
        raise GlodeInputError(url, f"not a valid zip archive: {err}") from None


def _download_entry(entry: ManifestEntry, target: Path) -> None:
    """Download `entry` to `target` atomically; the sha256 is checked before the rename."""
    url, _, member = entry.source_url.partition("#")
    with atomic_path(target) as tmp:
        if member:
            # the zip itself goes to a scratch file that is always removed: only the member stays
            fd, scratch = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".zip.tmp", dir=target.parent)
            os.close(fd)
            try:
                _download(url, Path(scratch))
                _extract_member(Path(scratch), urllib.parse.unquote(member), tmp, entry.source_url)
            finally:
                Path(scratch).unlink(missing_ok=True)
        else:
            _download(url, tmp)
        verify_checksum(tmp, entry.sha256)
    log.info("downloaded %s -> %s (sha256 ok)", entry.source_url, target)


def fetch(
    entry: ManifestEntry,
    data_root: os.PathLike | str,
    download_dir: os.PathLike | str | None = None,
    allow_download: bool = False,
) -> Path:
    """The verified local path of `entry`'s file.

    Looks for `data_root/entry.path`, then `download_dir/entry.path` (an earlier download). If
    neither exists and `allow_download`, downloads `entry.source_url` into `download_dir`
    (default: `data_root`); a URL `...zip#member/path` names a member of a zip archive. The
    sha256 is checked in every case, and a download lands only if it matches.
    """
    data_root = Path(data_root)
    download_dir = Path(download_dir) if download_dir is not None else data_root
    candidates = [data_root / entry.path]
    if download_dir != data_root:
        candidates.append(download_dir / entry.path)
    for candidate in candidates:
        if candidate.is_file():
            verify_checksum(candidate, entry.sha256)
            return candidate
    if not allow_download:
        looked = ", ".join(str(c) for c in candidates)
        raise GlodeInputError(
            candidates[0],
            f"{entry.dataset}/{entry.lang}/{entry.split} not found (looked at {looked}); pass --download "
            f"(and optionally --download-dir) to fetch it from {entry.source_url}, or point --data-root at the data",
        )
    target = download_dir / entry.path
    _download_entry(entry, target)
    return target
