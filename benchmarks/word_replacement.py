"""Word-replaced copies of generic training texts (TinyBERT-style augmentation), as a training file.

    python -m benchmarks.word_replacement --count 40000 --rate 0.3 --out augmented.jsonl
    embedkd train ... -i augmented.jsonl

Each copy is a generic query-like text (``train/queries.jsonl``, in a seeded shuffle) in which each word that
is a whole word of the student base's tokenizer (:func:`~embedkd.distill.data.vocabulary_words`) is replaced,
with probability ``--rate``, by one of its 10 nearest such words, nearest by the base's own embedding of the
word alone (MiniLM-L6 by default). A copy that changes nothing, or repeats a text, is skipped. The question it
answers is whether the teacher's view of more word-in-context combinations carries the student further into
domains its texts do not reach (``student_ablation_amd_bf16_seed1_wordswap16k.md``: it did not, enough).
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

import numpy as np

from benchmarks._report import run_main
from embedkd.data.jsonl import iter_jsonl
from embedkd.distill.data import vocabulary_words
from embedkd.models.loading import resolve_model_path

_NEIGHBOURS = 10
_PIECES = re.compile(r"[A-Za-z]+|[^A-Za-z]+")


def neighbours(vectors: np.ndarray, k: int = _NEIGHBOURS) -> np.ndarray:
    """Row i: the indices of the ``k`` rows nearest row i by cosine (``vectors`` normalised), i excluded."""
    out = np.zeros((len(vectors), k), dtype=np.int64)
    for start in range(0, len(vectors), 2048):
        sims = vectors[start : start + 2048] @ vectors.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -1.0  # below any other cosine of normalised vectors
        out[start : start + 2048] = np.argpartition(-sims, k, axis=1)[:, :k]
    return out


def replace_words(
    text: str, index: dict[str, int], words: list[str], near: np.ndarray, rate: float, rng: random.Random
) -> str:
    """``text`` with each known word replaced by a random one of its neighbours with probability ``rate``; a
    capitalised word stays capitalised."""
    pieces = _PIECES.findall(text)
    for i, piece in enumerate(pieces):
        row = index.get(piece.lower())
        if row is not None and rng.random() < rate:
            new = words[int(near[row, rng.randrange(near.shape[1])])]
            pieces[i] = new.capitalize() if piece[:1].isupper() else new
    return "".join(pieces)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--base", default="minilm-l6", help="The student base whose tokenizer and space are used.")
    parser.add_argument("--count", type=int, default=40000)
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    folder = str(resolve_model_path(args.base))
    words = sorted({w.lower() for w in vocabulary_words(AutoTokenizer.from_pretrained(folder).get_vocab())})
    vectors = SentenceTransformer(folder, device="cpu").encode(
        words, batch_size=256, normalize_embeddings=True, convert_to_numpy=True
    )
    near = neighbours(vectors)
    index = {w: i for i, w in enumerate(words)}
    texts = [str(record["text"]) for _, record in iter_jsonl(args.data_root / "train" / "queries.jsonl")]
    rng = random.Random(args.seed)
    rng.shuffle(texts)
    seen, written = set(texts), 0
    with args.out.open("w") as f:
        for text in texts:
            if written >= args.count:
                break
            new = replace_words(text, index, words, near, args.rate, rng)
            if new not in seen:
                seen.add(new)
                f.write(json.dumps({"text": new, "source": "word-replaced"}) + "\n")
                written += 1
    print(f"{written} word-replaced texts from {len(words)} words -> {args.out}")


if __name__ == "__main__":
    run_main(main)
