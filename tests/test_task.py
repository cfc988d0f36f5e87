"""The default training task (evolve/task): tokenizer, evaluator, splits, training, parquet path.

Real subprocesses on CPU. The shakespeare cache is built once per session in a temp dir
(EVOLVE_CACHE_DIR), by two concurrent `python prepare.py` processes, which also exercises the
build lock. Nothing here touches ~/.cache or the network beyond 127.0.0.1.
"""
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from operators.constants import rewrite_constants as _rewrite

torch = pytest.importorskip("torch")

TASK = Path(__file__).resolve().parents[1] / "evolve" / "task"
PY = sys.executable
SUMMARY_KEYS = ("val_bpb", "training_seconds", "total_seconds", "peak_vram_mb", "mfu_percent",
                "total_tokens_M", "num_steps", "num_params_M", "depth")

# The constant overrides that turn the shipped tiny task into the H100 preset (docs/task.md).
H100_OVERRIDES = {
    "prepare.py": {"DATA_SOURCE": "parquet", "VOCAB_SIZE": 8192, "MAX_SEQ_LEN": 2048, "EVAL_TOKENS": 20971520,
                   "PARQUET_NUM_SHARDS": 12},
    "train.py": {"DEPTH": 8, "MODEL_DIM": 512, "HEAD_DIM": 128, "BATCH_SIZE": 64, "GRAD_ACCUM_STEPS": 4,
                 "EVAL_BATCH_SIZE": 64, "MATRIX_LR": 0.04, "EMBED_LR": 0.6, "UNEMBED_LR": 0.004,
                 "WEIGHT_DECAY": 0.2, "COMPILE": True, "DTYPE": "bfloat16"},
}


def rewrite_constants(path, overrides):
    """Rewrite top-level constants as the presets do (operators.constants)."""
    Path(path).write_text(_rewrite(Path(path).read_text(), overrides))


def task_copy(tmp_path, train=None, prepare=None):
    d = tmp_path / "task"
    shutil.copytree(TASK, d, ignore=shutil.ignore_patterns("__pycache__"))
    if train:
        rewrite_constants(d / "train.py", train)
    if prepare:
        rewrite_constants(d / "prepare.py", prepare)
    return d


def run_py(args, cwd, cache, timeout=180, **env):
    full = dict(os.environ, EVOLVE_CACHE_DIR=str(cache), **{k: str(v) for k, v in env.items()})
    return subprocess.run([PY, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout)


def summary(stdout):
    assert "\n---\n" in stdout, stdout[-2000:]
    out = {}
    for line in stdout.split("\n---\n")[-1].strip().splitlines():
        k, v = line.split(": ", 1)
        out[k.strip()] = float(v)
    return out


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def cache(task_cache):
    return task_cache


@pytest.fixture(scope="module")
def prep(cache):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EVOLVE_CACHE_DIR", str(cache))
        yield load_module(TASK / "prepare.py", "evolve_task_prepare")


# --------------------------------------------------------------------------------------------
# the constants presets and offline operators rewrite

def literal_constants(path):
    import ast
    out = {}
    for node in ast.parse(Path(path).read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


def test_constants_are_plain_literals():
    train = literal_constants(TASK / "train.py")
    prep = literal_constants(TASK / "prepare.py")
    for name in H100_OVERRIDES["train.py"]:
        assert name in train, name
    for name in H100_OVERRIDES["prepare.py"]:
        assert name in prep, name
    for name in ("SEED", "WARMUP_FRAC", "WARMDOWN_FRAC", "FINAL_LR_FRAC", "MUON_MOMENTUM", "SOFTCAP", "SCALAR_LR"):
        assert name in train, name
    for name in ("PARQUET_URL_TEMPLATE", "PARQUET_TEXT_COLUMN", "VAL_WORKS", "TEST_WORKS"):
        assert name in prep, name
    assert prep["DATA_SOURCE"] == "shakespeare" and train["COMPILE"] is False  # the tiny preset ships


# --------------------------------------------------------------------------------------------
# tokenizer

def test_tokenizer_roundtrip_and_specials(prep):
    enc = prep.get_tokenizer()
    assert enc.n_vocab == prep.VOCAB_SIZE
    for text in ["To be, or not to be: that is the question.\n", "  Enter HAMLET.\n\n[Exit.]",
                 "naïve café – “quoted” ſ æ 日本語 🎭\t\r\n", "", "1234567 + 89 = 1234656"]:
        assert enc.decode(enc.encode_ordinary(text)) == text
    bos = prep.get_bos_id()
    assert bos == prep.VOCAB_SIZE - 4
    assert enc.encode("<|bos|>hi", allowed_special="all")[0] == bos
    tb = prep.get_token_bytes()
    assert tb.dtype == torch.int64 and tb.shape == (prep.VOCAB_SIZE,)
    specials = [enc.encode_single_token(t) for t in prep.SPECIAL_TOKENS]
    assert specials == list(range(prep.VOCAB_SIZE - 4, prep.VOCAB_SIZE))
    assert all(tb[i].item() == 0 for i in specials)
    for i in range(prep.VOCAB_SIZE - 4):
        assert tb[i].item() == len(enc.decode_single_token_bytes(i)) > 0


def test_saved_ranks_reload_identically(prep):
    folder = prep.prepare()
    ranks = prep._read_ranks(folder / "tokenizer.tiktoken")
    assert len(ranks) == prep.VOCAB_SIZE - 4
    assert sorted(ranks.values()) == list(range(prep.VOCAB_SIZE - 4))
    assert all(bytes([b]) in ranks for b in range(256))  # byte-level: every byte is a token


# --------------------------------------------------------------------------------------------
# evaluator

class ConstLogits(torch.nn.Module):
    """Logits independent of the input: a fixed vector over the vocabulary."""

    def __init__(self, vec):
        super().__init__()
        self.vec = vec

    def forward(self, x):
        return self.vec.expand(x.size(0), x.size(1), -1).clone()


def expected_bpb(prep, vec):
    """By hand, with numpy: the evaluated targets, their CE under a fixed logit vector."""
    tokens = np.asarray(prep.load_tokens("val"))
    tb = prep.get_token_bytes().numpy()
    logp = vec.double().numpy() - np.log(np.exp(vec.double().numpy()).sum())
    nats = nbytes = 0.0
    n_targets = 0
    for s in prep.eval_windows("val"):
        y = tokens[s:s + prep.MAX_SEQ_LEN].astype(np.int64)
        keep = tb[y] > 0
        nats += -logp[y[keep]].sum()
        nbytes += tb[y[keep]].sum()
        n_targets += keep.sum()
    return nats / (math.log(2) * nbytes), n_targets, nbytes


def test_bpb_uniform_logits_by_hand(prep):
    V = prep.VOCAB_SIZE
    want, n_targets, nbytes = expected_bpb(prep, torch.zeros(V))
    assert want == pytest.approx(math.log(V) / math.log(2) * n_targets / nbytes, rel=1e-12)
    n_rows = prep.EVAL_TOKENS // prep.MAX_SEQ_LEN
    assert n_targets < n_rows * prep.MAX_SEQ_LEN  # the stream's BOS tokens were targets, excluded
    for bs in (1, 7, n_rows):  # independent of the batch size, padding included
        got = prep.evaluate_bpb(ConstLogits(torch.zeros(V)), bs, device="cpu")
        assert got == pytest.approx(want, rel=1e-6)  # CE is computed in float32


def test_bpb_nonuniform_logits_and_specials_excluded(prep):
    V = prep.VOCAB_SIZE
    vec = torch.arange(V, dtype=torch.float32) % 7 / 3.0
    vec[prep.get_bos_id()] = 25.0  # a model that bets on BOS gains nothing: BOS targets are not scored
    want, _, _ = expected_bpb(prep, vec)
    got = prep.evaluate_bpb(ConstLogits(vec), 16, device="cpu")
    assert got == pytest.approx(want, rel=1e-6)  # CE is computed in float32


def test_test_split_and_windows(prep):
    starts = prep.eval_windows("val")
    assert len(starts) == prep.EVAL_TOKENS // prep.MAX_SEQ_LEN
    assert starts[0] == 0 and np.all(np.diff(starts) >= prep.MAX_SEQ_LEN)  # non-overlapping
    assert starts[-1] == len(prep.load_tokens("val")) - prep.MAX_SEQ_LEN  # spread over all works
    v = prep.evaluate_bpb(ConstLogits(torch.zeros(prep.VOCAB_SIZE)), 32, split="test")
    assert 2.0 < v < 6.0


def test_noncausal_model_is_rejected(prep):
    V = prep.VOCAB_SIZE

    class Peek(torch.nn.Module):
        def forward(self, x):  # predicts x[t+1], which is the target of position t
            nxt = torch.roll(x, -1, dims=1)
            return torch.nn.functional.one_hot(nxt, V).float() * 10

    with pytest.raises(RuntimeError, match="not causal"):
        prep.evaluate_bpb(Peek(), 8, device="cpu")


def test_bad_logit_shape_is_rejected(prep):
    with pytest.raises(RuntimeError, match="logits of shape"):
        prep.evaluate_bpb(ConstLogits(torch.zeros(prep.VOCAB_SIZE - 4)), 8, device="cpu")


# --------------------------------------------------------------------------------------------
# splits and data

def test_splits_by_work_no_leak(prep):
    works = prep.split_works()
    files = prep.split_files()
    assert works["val"] and works["test"] and works["train"]
    seen = {}
    for split, ws in works.items():
        for w in ws:
            assert w not in seen, f"{w} in {seen.get(w)} and {split}"
            seen[w] = split
    assert set(seen) == set(prep.WORKS)
    # every text file of the package belongs to exactly one work (both editions of a play pair up)
    on_disk = {p.name for p in prep.shakespeare_dir().glob("*.txt")} - {"metadata.txt"}
    in_table = [f for pair in prep.WORKS.values() for f in pair if f]
    assert sorted(in_table) == sorted(on_disk)
    # a held-out play is nowhere in train, in neither edition
    all_train = set(files["train"])
    for split in ("val", "test"):
        for w in works[split]:
            modern, folio = prep.WORKS[w]
            assert modern in files[split] and modern not in all_train
            assert folio not in all_train and folio not in files["val"] + files["test"]
    assert set(files["val"]).isdisjoint(files["test"])
    # deterministic
    assert prep.split_files() == files and prep.cache_dir() == prep.cache_dir()


def test_build_is_deterministic(prep, cache, tmp_path):
    r = run_py(["prepare.py"], TASK, tmp_path / "other-cache", timeout=120)
    assert r.returncode == 0, r.stderr
    a, b = prep.prepare(), tmp_path / "other-cache" / prep.cache_dir().name
    for name in ("tokenizer.tiktoken", "token_bytes.npy", "train.bin", "val.bin", "test.bin"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_gutenberg_boilerplate_is_stripped(prep):
    raw = ("The Project Gutenberg EBook of X\r\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\r\n"
           "ACT I.\r\nEnter Ghost.\r\n*** END OF THIS PROJECT GUTENBERG EBOOK X ***\r\nlicence text\r\n")
    assert prep.clean_text(raw) == "ACT I.\nEnter Ghost.\n"
    assert prep.clean_text("plain\n") == "plain\n"


def test_dataloader_deterministic(prep):
    a = prep.make_dataloader("train", 4, 64, seed=3)
    b = prep.make_dataloader("train", 4, 64, seed=3)
    c = prep.make_dataloader("train", 4, 64, seed=4)
    xa, ya = next(a)
    xb, yb = next(b)
    xc, _ = next(c)
    assert xa.dtype == torch.int64 and xa.shape == ya.shape == (4, 64)
    assert torch.equal(xa, xb) and torch.equal(ya, yb) and not torch.equal(xa, xc)
    assert torch.all(xa[:, 0] == prep.get_bos_id())
    assert torch.equal(xa[:, 1:], ya[:, :-1])
    assert not torch.equal(next(a)[0], xa)


# --------------------------------------------------------------------------------------------
# training

def test_tiny_training_lowers_val_bpb(cache, tmp_path):
    d = task_copy(tmp_path)
    r0 = run_py(["train.py"], d, cache, EVOLVE_BUDGET_S=0)
    assert r0.returncode == 0, r0.stdout[-2000:] + r0.stderr[-2000:]
    r1 = run_py(["train.py"], d, cache, EVOLVE_BUDGET_S=4)
    assert r1.returncode == 0, r1.stdout[-2000:] + r1.stderr[-2000:]
    s0, s1 = summary(r0.stdout), summary(r1.stdout)
    for s in (s0, s1):
        assert all(k in s for k in SUMMARY_KEYS), s
    assert re.search(r"^val_bpb: \d+\.\d{6}$", r1.stdout, re.M)
    assert s0["num_steps"] == 0 and s0["training_seconds"] == 0
    assert s1["num_steps"] >= 3 and 4.0 <= s1["training_seconds"] < 15
    assert s1["mfu_percent"] == 0.0 and s1["depth"] == 3 and s1["peak_vram_mb"] > 0
    assert 3.0 < s0["val_bpb"] < 5.0, s0
    assert s1["val_bpb"] < s0["val_bpb"] - 0.3, (s0, s1)


def test_heldout_score_only_when_asked(cache, tmp_path):
    d = task_copy(tmp_path)
    plain = run_py(["train.py"], d, cache, EVOLVE_BUDGET_S=0)
    heldout = run_py(["train.py"], d, cache, EVOLVE_BUDGET_S=0, EVOLVE_HELDOUT=1)
    assert plain.returncode == 0 and heldout.returncode == 0, heldout.stderr[-2000:]
    assert "test_bpb" not in plain.stdout
    before_summary = heldout.stdout.split("\n---\n")[0]
    test_bpb = float(re.search(r"^test_bpb: (\d+\.\d+)$", before_summary, re.M).group(1))
    val = summary(heldout.stdout)["val_bpb"]
    assert 3.0 < test_bpb < 5.0 and test_bpb != val
    assert summary(plain.stdout)["val_bpb"] == val  # the search's number is unchanged


def test_nan_fast_fail(cache, tmp_path):
    d = task_copy(tmp_path, train={"MATRIX_LR": 1e30, "EMBED_LR": 1e30, "UNEMBED_LR": 1e30, "SCALAR_LR": 1e30})
    r = run_py(["train.py"], d, cache, EVOLVE_BUDGET_S=10, timeout=60)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    assert "FAIL" in r.stdout.splitlines()
    assert "\n---\n" not in r.stdout


def test_h100_overrides_run_on_cpu(tmp_path):
    """The H100 preset's model (depth 8, width 512, vocab 8192, ~50M parameters), 3 steps on CPU:
    batch 1, no compile, rows of 1024 instead of 2048 (halves the time; the code path is the
    same), shakespeare data (no parquet here), a one-row evaluation. ~15-25 s on 2 cores."""
    train = dict(H100_OVERRIDES["train.py"], BATCH_SIZE=1, GRAD_ACCUM_STEPS=1, EVAL_BATCH_SIZE=1, COMPILE=False)
    prep_over = dict(H100_OVERRIDES["prepare.py"], DATA_SOURCE="shakespeare", MAX_SEQ_LEN=1024, EVAL_TOKENS=1024)
    d = task_copy(tmp_path, train=train, prepare=prep_over)
    # 900 s, not 300: on 2026-12-08 this VM spent over 100 s in prepare's shakespeare-v8192 build alone
    # and the test timed out at 300 s (it took 15-25 s before); the cause is not found yet
    r = run_py(["train.py"], d, tmp_path / "cache", EVOLVE_BUDGET_S=0.01, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    s = summary(r.stdout)
    assert s["depth"] == 8 and 1 <= s["num_steps"] <= 4
    assert 40 < s["num_params_M"] < 60, s
    assert 2.5 < s["val_bpb"] < 5.0  # near-untrained: about log2(8192) bits / 3.6 bytes per token


# --------------------------------------------------------------------------------------------
# parquet path, offline, over real HTTP on 127.0.0.1

class ShardServer(BaseHTTPRequestHandler):
    files: dict = {}
    fail_once: set = set()  # answer 500 once
    cut_once: set = set()  # send half the body once, then close
    log: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        name = self.path.lstrip("/")
        rng = self.headers.get("Range")
        self.log.append((name, rng))
        if name not in self.files:
            self.send_error(404)
            return
        if name in self.fail_once:
            self.fail_once.discard(name)
            self.send_error(500)
            return
        data = self.files[name]
        start = int(re.match(r"bytes=(\d+)-", rng).group(1)) if rng else 0
        body = data[start:]
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if name in self.cut_once:
            self.cut_once.discard(name)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def shard_server(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    words = ("thou art more lovely and more temperate rough winds do shake the darling buds of may "
             "summer lease hath all too short a date 0123 ünïcödé").split()
    rng = np.random.default_rng(0)
    docs = {}
    files = {}
    src = tmp_path / "shards"
    src.mkdir()
    for i in range(4):
        texts = [" ".join(rng.choice(words, size=rng.integers(20, 200))) + "." for _ in range(150)]
        texts.insert(5, None)  # a null row is skipped
        docs[i] = [t for t in texts if t]
        path = src / f"shard_{i:05d}.parquet"
        pq.write_table(pa.table({"id": list(range(len(texts))), "text": texts}), path, row_group_size=40)
        files[path.name] = path.read_bytes()
    ShardServer.files = files
    ShardServer.fail_once = {"shard_00001.parquet"}
    ShardServer.cut_once = {"shard_00002.parquet"}
    ShardServer.log = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ShardServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", docs, src
    finally:
        server.shutdown()
        server.server_close()


def test_parquet_download_tokenize_train_offline(shard_server, tmp_path):
    base, docs, src = shard_server
    prep_over = {"DATA_SOURCE": "parquet", "VOCAB_SIZE": 320, "MAX_SEQ_LEN": 64, "EVAL_TOKENS": 1024,
                 "PARQUET_NUM_SHARDS": 4, "TOKENIZER_MAX_CHARS": 20000, "TOKENIZER_DOC_CAP": 300,
                 "DOWNLOAD_BACKOFF_S": 0.05, "DOWNLOAD_TIMEOUT_S": 10.0}
    train_over = {"DEPTH": 1, "MODEL_DIM": 32, "HEAD_DIM": 16, "BATCH_SIZE": 4, "EVAL_BATCH_SIZE": 4}
    d = task_copy(tmp_path, train=train_over, prepare=prep_over)
    cache = tmp_path / "cache"
    r = run_py(["prepare.py"], d, cache, EVOLVE_PARQUET_URL=base + "/", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    log = ShardServer.log
    assert [n for n, _ in log].count("shard_00001.parquet") == 2  # 500, then success
    assert ("shard_00002.parquet", None) in log
    resumed = [rg for n, rg in log if n == "shard_00002.parquet" and rg]
    assert len(resumed) == 1 and int(resumed[0].split("=")[1].rstrip("-")) > 0  # resumed mid-way
    shards = list((cache / "parquet").glob("*/shard_*.parquet"))
    assert sorted(p.name for p in shards) == [f"shard_{i:05d}.parquet" for i in range(4)]
    for p in shards:
        assert p.read_bytes() == (src / p.name).read_bytes()
    assert not list((cache / "parquet").glob("*/*.part"))

    # the token streams decode back to the documents: last shard val, the one before test
    env = {"EVOLVE_CACHE_DIR": str(cache), "EVOLVE_PARQUET_URL": base + "/"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mod = load_module(d / "prepare.py", "evolve_task_prepare_parquet")
        enc, bos = mod.get_tokenizer(), mod.get_bos_id()
        assert enc.n_vocab == 320
        meta = json.loads((mod.prepare() / "meta.json").read_text())
        assert meta["splits"]["train"]["docs"] == len(docs[0]) + len(docs[1])
        for split, shard in (("val", 3), ("test", 2)):
            toks = np.asarray(mod.load_tokens(split)).tolist()
            assert toks[0] == bos
            pieces, cur = [], []
            for t in toks[1:] + [bos]:
                if t == bos:
                    pieces.append(enc.decode(cur))
                    cur = []
                else:
                    cur.append(t)
            assert pieces == docs[shard]

    # a second run downloads nothing; train.py runs end to end on this data
    n_requests = len(log)
    r = run_py(["train.py"], d, cache, EVOLVE_PARQUET_URL=base + "/", EVOLVE_BUDGET_S=1, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert len(ShardServer.log) == n_requests
    assert 0 < summary(r.stdout)["val_bpb"] < 10


def test_download_file_url_and_permanent_error(shard_server, tmp_path):
    base, _, src = shard_server
    mod = load_module(TASK / "prepare.py", "evolve_task_prepare_dl")
    mod.DOWNLOAD_BACKOFF_S = 0.01
    dest = mod.download((src / "shard_00000.parquet").as_uri(), tmp_path / "a.parquet")
    assert dest.read_bytes() == (src / "shard_00000.parquet").read_bytes()
    t0 = time.time()
    with pytest.raises(RuntimeError, match="HTTP 404"):
        mod.download(base + "/missing.parquet", tmp_path / "b.parquet")
    assert time.time() - t0 < 5  # a 404 is not retried
