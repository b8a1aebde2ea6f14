"""benchmarks/unseen_alignment.py: the STS-B paraphrase task and its scoring."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks.unseen_alignment import ParaphraseJudge, agreement, paraphrase_task, rank_scores


def test_the_paraphrase_task_keeps_close_pairs_and_points_at_each_side(tmp_path: Path) -> None:
    sts = tmp_path / "sts.tsv"
    rows = [
        ("a cat sits", "a cat is sitting", 4.6),
        ("a dog runs", "the stock fell", 0.2),
        ("a man sings", "a man is singing", 4.0),
        ("a cat sits", "a cat is sitting", 4.6),  # a repeated pair counts once
        ("same text", "same text", 5.0),  # identical sides: nothing to find
    ]
    sts.write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in rows))
    queries, corpus, relevant, own = paraphrase_task(sts)
    assert queries == ["a cat sits", "a man sings"]
    assert len(corpus) == len(set(corpus)) == 7
    assert [corpus[i] for i in relevant] == ["a cat is sitting", "a man is singing"]
    assert [corpus[i] for i in own] == queries


def test_rank_scores_leave_the_query_out_and_give_one_relevant_document_its_gain() -> None:
    docs = np.eye(12, dtype=np.float32)
    queries = np.zeros((2, 12), dtype=np.float32)
    queries[0, :2] = [1.0, 0.9]
    queries[1, [1, 3]] = [0.1, 1.0]
    # query 0 is document 0 itself (left out), so document 1 ranks first; query 1 finds document 1 second
    ndcg, top = rank_scores(queries, docs, relevant=np.array([1, 1]), own=np.array([0, 2]))
    assert top[0, 0] == 1 and 0 not in top[0] and top[1, 0] == 3 and top[1, 1] == 1
    assert ndcg == pytest.approx((1.0 + 1 / math.log2(3)) / 2)


class OneHot:
    """A stand-in teacher (and student): every distinct text gets its own axis, its paraphrase a nearby one."""

    def __init__(self, texts: list[str], pairs: dict[str, str]) -> None:
        self.axis = {t: i for i, t in enumerate(texts)}
        self.pairs = pairs

    def embeddings(self, texts: list[str], role: str = "document") -> np.ndarray:
        out = np.zeros((len(texts), len(self.axis)), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row, self.axis[text]] = 1.0
            if text in self.pairs:  # a query leans towards its paraphrase
                out[row, self.axis[self.pairs[text]]] = 0.5
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def encode_query(self, texts: list[str]) -> np.ndarray:
        return self.embeddings(texts)


def test_the_paraphrase_judge_scores_the_teacher_itself_as_the_teacher(tmp_path: Path) -> None:
    sts = tmp_path / "sts.tsv"
    rows = [("a cat sits", "a cat is sitting", 4.6), ("a man sings", "a man is singing", 4.2)]
    rows += [(f"filler {i}", f"other {i}", 0.1) for i in range(5)]  # a corpus of more than 10 sentences
    sts.write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in rows))
    _, corpus, _, _ = paraphrase_task(sts)
    teacher = OneHot(corpus, {a: b for a, b, s in rows if s >= 4})
    judge = ParaphraseJudge(sts, teacher)  # type: ignore[arg-type]
    assert judge.teacher_ndcg10 == pytest.approx(1.0)
    same = judge(teacher)
    assert same == pytest.approx({"sts_cosine": 1.0, "paraphrase_ndcg10": 1.0, "paraphrase_agreement10": 1.0})
    blind = OneHot(corpus, {})  # knows no paraphrases: its top 10 is the rest in any order, its cosine lower
    scores = judge(blind)
    assert scores["sts_cosine"] < 1.0


def test_agreement_is_the_share_of_the_reference_top_found() -> None:
    reference = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    assert agreement(np.array([[4, 3, 9, 9], [5, 6, 7, 8]]), reference) == pytest.approx((0.5 + 1.0) / 2)
