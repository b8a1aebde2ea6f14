"""benchmarks/unseen_docstrings.py: the docstring summary-line task and its scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.unseen_docstrings import diagonal_gains, docstring_task
from embedkd.data.documents import Document

REST = "It does the thing described above, in more words than the summary line has room for."


def test_the_task_splits_the_first_sentence_from_the_rest_and_drops_what_cannot_be_one_to_one() -> None:
    docs = [
        Document(id="a", title="a", text=f"Return the number of items in the queue. {REST}"),
        Document(id="b", title="b", text=f"Open a file and read it! {REST} Then close it."),
        Document(id="short", title="s", text=f"Too short. {REST}"),  # a 2-word summary
        Document(id="bare", title="x", text="Return the number of items with no rest at all."),
        Document(id="tiny", title="t", text="Return the number of items here. Short rest."),
        Document(id="copy1", title="c", text=f"Same summary line for both copies. {REST} One."),
        Document(id="copy2", title="c", text=f"Same summary line for both copies. {REST} Two."),
    ]
    ids, queries, corpus = docstring_task(docs)
    assert ids == ["a", "b"]
    assert queries == ["Return the number of items in the queue.", "Open a file and read it!"]
    assert corpus == [REST, f"{REST} Then close it."]


def test_diagonal_gains_score_document_i_as_query_i_s_only_relevant_one() -> None:
    scores = np.zeros((3, 12), dtype=np.float32)
    scores[0, 0] = 1.0  # first
    scores[1, [0, 1]] = [0.9, 0.5]  # second
    scores[2, 3:] = 1.0  # nine documents above document 2, and two more (at 0) between: it ranks 12th
    scores[2, 2] = -1.0
    gains, top = diagonal_gains(scores)
    assert gains[0] == pytest.approx(1.0) and gains[1] == pytest.approx(1 / math.log2(3)) and gains[2] == 0.0
    assert top.shape == (3, 10) and top[0, 0] == 0 and top[1, 0] == 0 and top[1, 1] == 1
    assert (top < 12).all()  # the padding column never ranks
