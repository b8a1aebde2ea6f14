from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedkd.errors import InputError
from embedkd.models.student import (
    build_student,
    evenly_spaced_layers,
    fit_ridge_projection,
    pooled_embeddings,
    set_projection,
)


def test_evenly_spaced_layers() -> None:
    assert evenly_spaced_layers(6, 3) == [0, 2, 5]
    assert evenly_spaced_layers(12, 4) == [0, 4, 7, 11]
    assert evenly_spaced_layers(6, 6) == [0, 1, 2, 3, 4, 5]
    assert evenly_spaced_layers(6, 1) == [5]
    with pytest.raises(InputError):
        evenly_spaced_layers(6, 7)


def test_build_student_architecture(tiny_model_dir: Path) -> None:
    model, kept = build_student(tiny_model_dir, teacher_dimension=48, layers=1)
    assert kept == [1]
    names = [type(m).__name__ for m in model]
    assert names == ["Transformer", "Pooling", "Dense", "Normalize"]
    assert model[1].get_config_dict()["pooling_mode"] == "mean"
    out = model.encode(["hello there", "bye"], convert_to_numpy=True)
    assert out.shape == (2, 48)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_ridge_projection_recovers_a_linear_map_and_stays_bounded() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 8))
    true_w = rng.normal(size=(8, 5))
    y = x @ true_w + 0.3
    w, b = fit_ridge_projection(x, y, ridge=1e-6)
    np.testing.assert_allclose(w, true_w, atol=1e-3)
    np.testing.assert_allclose(b, 0.3, atol=1e-3)
    # Rank-deficient inputs (the trap in FINDINGS): least squares explodes, ridge does not.
    x_def = np.concatenate([x[:, :4], x[:, :4] + 1e-9 * rng.normal(size=(500, 4))], axis=1)
    w_def, _ = fit_ridge_projection(x_def, y, ridge=0.01)
    assert np.linalg.svd(w_def, compute_uv=False)[0] < 10
    # One text, or identical texts: nothing varies, so the map is the targets' mean (a singular solve before)
    w_one, b_one = fit_ridge_projection(np.ones((3, 8)), y[:3], ridge=0.01)
    assert not w_one.any()
    np.testing.assert_allclose(b_one, y[:3].mean(axis=0), rtol=1e-6)


def test_set_projection_matches_numpy(tiny_model_dir: Path) -> None:
    model, _ = build_student(tiny_model_dir, teacher_dimension=6)
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(32, 6)).astype(np.float32), rng.normal(size=6).astype(np.float32)
    set_projection(model, w, b)
    texts = ["a b c", "d e"]
    pooled = pooled_embeddings(model, texts)
    expected = pooled @ w + b
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(model.encode(texts, convert_to_numpy=True), expected, atol=1e-5)
