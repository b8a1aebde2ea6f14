"""Ray Data teacher encoding on a local Ray (2 CPUs): same vectors as one process, resumable, one build path."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from embedkd.data.documents import Document
from embedkd.distill.teacher import Teacher
from embedkd.index import IndexParams, build_index
from embedkd.index.shards import ShardManifest, ShardSet, build_from_embeddings, chunk_for_index, text_sha
from embedkd.models.encoder import Encoder

ray = pytest.importorskip("ray")

WORDS = "apple river stone cloud music engine doctor garden window planet silver market winter".split()


def make_docs(n: int) -> list[Document]:
    rng = np.random.default_rng(0)
    return [
        Document(id=f"d{i}", title=f"title {i}", text=" ".join(rng.choice(WORDS, size=int(rng.integers(3, 90)))))
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def local_ray():
    """Ray's session files (logs, sockets) go to a temporary folder of their own, removed afterwards, instead of
    /tmp/ray. Short, because Ray's socket paths must fit in 107 characters."""
    with (
        tempfile.TemporaryDirectory(prefix="ray", ignore_cleanup_errors=True) as folder,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setenv("RAY_TMPDIR", folder)
        yield
        ray.shutdown()


@pytest.mark.slow
def test_ray_encode_matches_one_process_resumes_and_builds_the_same_index(
    local_ray, tiny_model_factory, tmp_path: Path, isolated_cache: Path
) -> None:
    from embedkd.scale.ray_encode import encode_with_ray

    teacher = str(tiny_model_factory(hidden=32, seed=1))
    docs = make_docs(30)
    out = tmp_path / "emb"
    first = encode_with_ray(docs, out, teacher=teacher, workers=2, shard_size=8, batch_size=8, max_shards=2)
    assert first["shards_written"] == 2 and first["shards_total"] == 4
    assert len(ShardSet(out, ShardManifest.read(out)).missing()) == 2  # as if the run had been killed here
    second = encode_with_ray(docs, out, teacher=teacher, workers=2, shard_size=8, batch_size=8)
    assert second["shards_written"] == 2  # only the missing shards are encoded again

    manifest = ShardManifest.read(out)
    chunks = [c for doc_chunks in chunk_for_index(docs, manifest.teacher, manifest.chunking) for c in doc_chunks]
    assert len(chunks) > len(docs)  # long documents were chunked as an index chunks them
    reference = Encoder.load(teacher, device="cpu").encode([c.encode_text for c in chunks], role="document")
    got = dict(ShardSet(out, manifest).rows())
    diff = max(float(np.abs(got[text_sha(c.encode_text)] - r).max()) for c, r in zip(chunks, reference, strict=True))
    assert diff <= 1e-5, diff

    params = IndexParams(kind="ivf-flat", nlist=4, nprobe=4)  # type: ignore[arg-type]
    built = build_from_embeddings(tmp_path / "index", docs, out, params=params, teacher=teacher, progress=False)
    source = Teacher.from_model(teacher)
    direct = build_index(
        tmp_path / "direct",
        docs,
        teacher=source.ref,
        embed=lambda t: source.embeddings(t, progress=False),
        params=params,
        progress=False,
    )
    queries = source.embeddings(["apple river", "music engine"], progress=False)
    assert [[h.id for h in r] for r in built.search(queries, 5)] == [
        [h.id for h in r] for r in direct.search(queries, 5)
    ]
    assert built.info()["teacher"]["fingerprint"] == direct.info()["teacher"]["fingerprint"]
    built.close()
    direct.close()
