"""A disk cache of tokenised splits, so a sweep's second cell does not tokenise again.

The key covers everything the token ids depend on: the data's fingerprint (every split's texts
and labels, `datamodule.fingerprint`), the tokenizer itself (a hash of its serialised vocabulary,
merges and normaliser, not just its name), the maximum length and the text fields. Entries are
written atomically (a temporary file renamed over the target), so concurrent cells never read
half a file; an unreadable entry is ignored and rewritten.

Location: `$LORA_EXP_CACHE/tokenized` (default `~/.cache/lora_exp/tokenized`); `LORA_EXP_CACHE=off`
turns the cache off.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tempfile
from pathlib import Path

log = logging.getLogger("lora_exp")
FORMAT = 1  # bump when what is stored changes


def cache_dir() -> Path | None:
    """The cache directory, or None when `LORA_EXP_CACHE=off`."""
    root = os.environ.get("LORA_EXP_CACHE", str(Path.home() / ".cache" / "lora_exp"))
    if root.lower() in ("off", "0", "none", ""):
        return None
    return Path(root).expanduser() / "tokenized"


def tokenizer_digest(tokenizer) -> str:
    """sha256 of the tokenizer's full serialisation (fast tokenizers), else of its vocabulary."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    slow = backend is None
    text = repr(sorted(tokenizer.get_vocab().items())) if slow else backend.to_str()
    extra = f"{type(tokenizer).__name__}|{tokenizer.padding_side}|{tokenizer.model_max_length}"
    return hashlib.sha256((text + extra).encode()).hexdigest()[:16]


def cache_key(fingerprint: str, tokenizer, max_len: int, fields: list[str]) -> str:
    parts = [str(FORMAT), fingerprint, tokenizer_digest(tokenizer), str(max_len), ",".join(fields)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def load(key: str):
    """The cached splits for `key`, or None."""
    directory = cache_dir()
    if directory is None:
        return None
    path = directory / f"{key}.pkl"
    if not path.exists():
        return None
    try:
        with path.open("rb") as handle:
            return pickle.load(handle)
    except Exception as err:  # a torn or foreign file: tokenise again and overwrite it
        log.warning("ignoring an unreadable tokenisation cache entry %s (%s)", path, err)
        return None


def store(key: str, splits) -> None:
    """Write `splits` for `key` atomically; a cache that cannot be written is skipped."""
    directory = cache_dir()
    if directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{key}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            pickle.dump(splits, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, directory / f"{key}.pkl")
    except OSError as err:
        log.warning("could not write the tokenisation cache in %s (%s)", directory, err)
