"""Semantic textual similarity: Spearman correlation of cosine similarity with gold scores."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedkd.data.jsonl import file_lines
from embedkd.errors import InputError

__all__ = ["StsPairs", "load_sts", "sts_spearman"]


@dataclass
class StsPairs:
    left: list[str]
    right: list[str]
    gold: np.ndarray


def load_sts(path: Path) -> StsPairs:
    """A tab-separated file with the header ``sentence1  sentence2  score``."""
    rows = list(csv.reader(file_lines(Path(path)), delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or [c.strip().lower() for c in rows[0][:3]] != ["sentence1", "sentence2", "score"]:
        raise InputError(f"{path}: expected the header 'sentence1<TAB>sentence2<TAB>score'")
    left, right, gold = [], [], []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) < 3:
            raise InputError(f"{path}:{number}: expected three tab-separated columns")
        left.append(row[0])
        right.append(row[1])
        gold.append(float(row[2]))
    return StsPairs(left, right, np.asarray(gold))


def sts_spearman(left: np.ndarray, right: np.ndarray, gold: np.ndarray) -> float:
    """Spearman correlation between the pairs' cosine similarities and the gold scores."""
    from scipy.stats import spearmanr

    a = left / np.linalg.norm(left, axis=1, keepdims=True)
    b = right / np.linalg.norm(right, axis=1, keepdims=True)
    return float(spearmanr((a * b).sum(1), gold).statistic)
