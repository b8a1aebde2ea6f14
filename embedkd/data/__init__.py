"""Readers for the data formats embedkd accepts."""

from __future__ import annotations

from embedkd.data.beir import BeirDataset, doc_text, is_beir_folder, load_beir
from embedkd.data.texts import read_texts

__all__ = ["BeirDataset", "doc_text", "is_beir_folder", "load_beir", "read_texts"]
