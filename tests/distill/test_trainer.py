from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from embedkd.distill import DistillConfig, TrainingDivergedError, distill
from embedkd.distill import trainer as trainer_module
from embedkd.distill.targets import default_base_relation_weight, default_rank_base_mix
from embedkd.errors import InputError
from embedkd.models import Encoder
from embedkd.models.manifest import StudentManifest

from .conftest import BowData


def bow_config(bow: BowData, student: Path, out: Path, **overrides: object) -> DistillConfig:
    settings: dict[str, object] = dict(
        out=out,
        teacher="bow-teacher",
        student=str(student),
        teacher_embeddings=[bow.embeddings_path],
        teacher_texts=[bow.texts_path],
        max_steps=60,
        batch_size=16,
        lr=1e-3,
        head_lr=1e-2,
        eval_every=20,
        eval_texts=40,
        progress=False,
        seed=0,
        freeze_embeddings=False,  # a tiny random BERT must learn its token vectors to fit a bag of words
        frozen_layers=0,  # and every layer (the layer-cache path has its own tests)
        base_relation_weight=0.0,  # a tiny random base has no similarities worth keeping (the term has its own tests)
    )
    settings.update(overrides)
    return DistillConfig(**settings)  # type: ignore[arg-type]


def test_training_lowers_the_loss_and_saves_a_plain_st_folder(
    bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path
) -> None:
    result = distill(bow_config(bow_teacher, tiny_model_dir, tmp_path / "student"))
    history = result.history
    assert [h["step"] for h in history] == [0, 20, 40, 60]
    assert history[-1]["mse"] < 0.8 * history[0]["mse"], history
    assert 1 - history[-1]["cosine"] < 0.8 * (1 - history[0]["cosine"]), history

    out = result.out
    for name in ("modules.json", "1_Pooling", "2_Dense", "3_Normalize", "embedkd.json", "training_log.jsonl"):
        assert (out / name).exists(), name
    assert not (out / "checkpoints").exists()
    manifest = StudentManifest.read(out)
    assert manifest is not None and manifest.alignment is not None
    assert manifest.teacher.name == "bow-teacher" and manifest.teacher.dimension == 24
    assert manifest.teacher.fingerprint == "blackbox:bow-teacher"
    assert manifest.alignment.mean_cosine == pytest.approx(max(h["cosine"] for h in history))
    assert manifest.training["data"]["texts"] + manifest.alignment.texts == len(bow_teacher.texts)

    # The folder loads with sentence-transformers alone: importing embedkd is made impossible.
    expected = Encoder.load(out, device="cpu").encode(["apple river", "tiger"])
    script = (
        "import sys, json, numpy as np; sys.modules['embedkd'] = None\n"
        "from sentence_transformers import SentenceTransformer\n"
        f"m = SentenceTransformer({str(out)!r}, device='cpu')\n"
        "e = m.encode(['apple river', 'tiger'], convert_to_numpy=True)\n"
        "print(json.dumps(e.tolist()))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    plain = np.array(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert plain.shape == (2, 24)
    np.testing.assert_allclose(plain, expected, atol=1e-5)


def _distance_from(out: Path, base: Path) -> float:
    """Squared distance of a saved student's transformer weights from its base's."""
    trained = dict(SentenceTransformer(str(out), device="cpu")[0].auto_model.named_parameters())
    start = dict(SentenceTransformer(str(base), device="cpu")[0].auto_model.named_parameters())
    return sum(float((trained[name] - start[name]).detach().pow(2).sum()) for name in start)


def test_l2sp_keeps_the_backbone_near_its_start(
    bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path
) -> None:
    free = distill(bow_config(bow_teacher, tiny_model_dir, tmp_path / "free"))
    pulled = distill(bow_config(bow_teacher, tiny_model_dir, tmp_path / "pulled", l2sp_weight=10.0))
    free_distance = _distance_from(free.out, tiny_model_dir)
    pulled_distance = _distance_from(pulled.out, tiny_model_dir)
    assert free_distance > 0
    assert pulled_distance < 0.5 * free_distance, (pulled_distance, free_distance)
    assert pulled.history[-1]["cosine"] > pulled.history[0]["cosine"]  # the head still learns the teacher


def _interrupted_at_step_four(config: DistillConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ``config`` until its fifth batch raises KeyboardInterrupt (the last checkpoint is step 4)."""
    original = trainer_module._Distiller._batch_loss
    calls = {"n": 0}

    def interrupt_at_fifth(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(trainer_module._Distiller, "_batch_loss", interrupt_at_fifth)
        with pytest.raises(KeyboardInterrupt):
            distill(config)


def test_resume_continues_from_the_last_checkpoint_and_refuses_a_damaged_one(
    bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "student"
    config = bow_config(bow_teacher, tiny_model_dir, out, max_steps=6, eval_every=2)
    _interrupted_at_step_four(config, monkeypatch)
    last = out / "checkpoints" / "last"
    state = torch.load(last / "trainer_state.pt", weights_only=False)
    assert state["step"] == 4

    config.resume = True
    weights, saved_state = (last / "model.safetensors").read_bytes(), (last / "trainer_state.pt").read_bytes()
    (last / "model.safetensors").write_bytes(weights[:100])  # truncated: a SafetensorError before
    with pytest.raises(InputError, match=r"checkpoint .*last is damaged .*without --resume"):
        distill(config)
    (last / "model.safetensors").write_bytes(weights)
    (last / "trainer_state.pt").write_bytes(b"")  # empty: torch's EOFError ended as click's bare "Aborted."
    with pytest.raises(InputError, match=r"checkpoint .*last is damaged"):
        distill(config)
    (last / "trainer_state.pt").unlink()  # missing: once a fresh start that overwrote the checkpoint
    with pytest.raises(InputError, match=r"checkpoint .*last is damaged \(trainer_state.pt is missing\)"):
        distill(config)
    assert (last / "model.safetensors").read_bytes() == weights  # nothing of the run was removed
    (last / "trainer_state.pt").write_bytes(saved_state)

    result = distill(config)
    assert [h["step"] for h in result.history] == [0, 2, 4, 6]
    assert not (out / "checkpoints").exists()
    saved = (out / "model.safetensors").read_bytes()
    with pytest.raises(InputError, match="holds a finished student and no checkpoint .* --init-from"):
        distill(config)  # once a fresh run from the base, which replaced the finished student
    assert (out / "model.safetensors").read_bytes() == saved


def test_resume_pulls_towards_the_first_runs_start(
    bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "student"
    config = bow_config(bow_teacher, tiny_model_dir, out, max_steps=6, eval_every=2, l2sp_weight=1.0)
    _interrupted_at_step_four(config, monkeypatch)

    start = SentenceTransformer(str(tiny_model_dir), device="cpu")[0].auto_model
    layer = start.encoder.layer[0].attention.self.query.weight.detach()  # a backbone weight that trains
    seen: list[list[torch.Tensor]] = []
    real = trainer_module.losses.l2_sp_penalty

    def spy(params, reference):  # type: ignore[no-untyped-def]
        seen.append(list(reference))
        return real(params, reference)

    monkeypatch.setattr(trainer_module.losses, "l2_sp_penalty", spy)
    config.resume = True
    distill(config)
    assert len(seen) == 2  # steps 5 and 6
    assert any(r.shape == layer.shape and torch.equal(r, layer) for r in seen[0])  # the start, not step 4


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(
    bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "student"
    calls = {"n": 0}
    real = trainer_module.losses.leaf_loss

    def nan_after_three(student, teacher):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        value = real(student, teacher)
        return value * float("nan") if calls["n"] > 3 else value

    monkeypatch.setattr(trainer_module.losses, "leaf_loss", nan_after_three)
    with pytest.raises(TrainingDivergedError, match="nan at step 3") as info:
        distill(bow_config(bow_teacher, tiny_model_dir, out, max_steps=10, eval_every=2))
    assert info.value.exit_code != 0
    last = out / "checkpoints" / "last"
    assert torch.load(last / "trainer_state.pt", weights_only=False)["step"] == 2
    assert Encoder.load(last, device="cpu").encode(["apple"]).shape == (1, 24)
    assert not (out / "modules.json").exists()


def test_a_second_run_into_the_same_out_is_refused_until_the_first_process_ends(
    bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path
) -> None:
    out = tmp_path / "student"
    holder = subprocess.Popen(  # another process in the middle of a run into `out` (it holds the run's lock)
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from embedkd.distill.checkpoint import training_lock\n"
            "with training_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(600)",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=rf"being trained into by another run \(pid {holder.pid}\)") as info:
            distill(bow_config(bow_teacher, tiny_model_dir, out, max_steps=4, eval_every=2))
        assert info.value.exit_code == 2
        assert not out.exists()  # refused before it created, read or removed anything
    finally:
        holder.kill()  # killed outright: the kernel drops its lock
        holder.wait()
    result = distill(bow_config(bow_teacher, tiny_model_dir, out, max_steps=4, eval_every=2))
    assert (result.out / "embedkd.json").is_file()
    assert not (tmp_path / ".student.training.lock").exists()  # the killed run's file went with the next run


def test_dse_with_pair_scores_and_pruned_student(
    bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pairs = tmp_path / "pairs.jsonl"
    texts, emb = bow_teacher.texts, bow_teacher.embeddings
    lines = [
        json.dumps({"left": texts[i], "right": texts[i + 1], "score": float(emb[i] @ emb[i + 1])}) for i in range(50)
    ]
    pairs.write_text("\n".join(lines))
    calls = {"dse": 0, "pair": 0}
    real_dse, real_pair = trainer_module.losses.dse_loss, trainer_module.losses.pair_score_loss

    def dse(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["dse"] += 1
        return real_dse(*args, **kwargs)

    def pair(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["pair"] += 1
        return real_pair(*args, **kwargs)

    monkeypatch.setattr(trainer_module.losses, "dse_loss", dse)
    monkeypatch.setattr(trainer_module.losses, "pair_score_loss", pair)
    config = bow_config(
        bow_teacher, tiny_model_dir, tmp_path / "s", loss="dse", pairs=pairs, layers=1, max_steps=60, eval_every=20
    )
    result = distill(config)
    assert calls == {"dse": 60, "pair": 60}  # both terms, every step
    trained = [h["loss"] for h in result.history if "loss" in h]
    assert len(trained) == 3 and trained[-1] < trained[0], result.history
    assert result.manifest.layers == [1]
    config_json = json.loads((result.out / "config.json").read_text())
    assert config_json["num_hidden_layers"] == 1


def test_frozen_embeddings_do_not_move_and_a_time_budget_caps_the_steps(
    bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.numpy import load_file

    # A fake clock: every call advances 10 ms, so the 3-second budget binds however fast the machine is.
    ticks = iter(range(10**9))
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: next(ticks) / 100)
    config = bow_config(
        bow_teacher, tiny_model_dir, tmp_path / "s", freeze_embeddings=True, max_steps=10_000, max_minutes=0.05
    )
    result = distill(config)
    assert 20 <= result.history[-1]["step"] < 10_000  # the budget, not max_steps, ended the run
    before = load_file(str(tiny_model_dir / "model.safetensors"))
    after = load_file(str(result.out / "model.safetensors"))
    key = next(k for k in before if "word_embeddings" in k)
    np.testing.assert_array_equal(before[key], after[key])
    assert any(not np.array_equal(before[k], after[k]) for k in before if "layer.0" in k)


def test_frozen_layers_train_from_the_layer_cache_and_keep_the_lower_layers(
    bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path
) -> None:
    from safetensors.numpy import load_file

    result = distill(
        bow_config(bow_teacher, tiny_model_dir, tmp_path / "s", frozen_layers=1, max_steps=200, lr=3e-3, eval_every=100)
    )
    history = result.history
    assert history[-1]["mse"] < history[0]["mse"], history
    before = load_file(str(tiny_model_dir / "model.safetensors"))
    after = load_file(str(result.out / "model.safetensors"))
    lower = [k for k in before if "layer.0." in k or "embeddings" in k]
    upper = [k for k in before if "layer.1." in k]
    assert lower and upper
    for key in lower:
        np.testing.assert_array_equal(before[key], after[key])
    assert any(not np.array_equal(before[k], after[k]) for k in upper)
    assert "layer_cache_seconds" in result.manifest.training["timings"]


def test_resume_after_the_end_extends_the_run_with_a_new_lr_cycle(
    bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path
) -> None:
    out = tmp_path / "student"
    config = bow_config(bow_teacher, tiny_model_dir, out, max_steps=6, eval_every=3, keep_checkpoints=True)
    first = distill(config)
    assert [h["step"] for h in first.history] == [0, 3, 6]
    assert (out / "checkpoints" / "last").is_dir()
    config.resume = True
    config.keep_checkpoints = False
    second = distill(config)
    assert [h["step"] for h in second.history] == [0, 3, 6, 9, 12]
    state_free = not (out / "checkpoints").exists()
    assert state_free


def test_init_from_starts_where_a_trained_student_ended_and_refuses_another_teacher(
    bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path
) -> None:
    first = distill(bow_config(bow_teacher, tiny_model_dir, tmp_path / "first"))
    assert first.manifest.alignment is not None
    nowhere = tmp_path / "no-such-base"  # replaced by the student's own base
    adapted = distill(bow_config(bow_teacher, nowhere, tmp_path / "adapted", init_from=first.out, max_steps=20))
    # step 0 is the first student itself on the same held-out texts, not a fresh ridge projection
    best = first.manifest.alignment.mean_cosine
    assert abs(first.history[0]["cosine"] - best) > 3e-3, first.history  # a fresh start is told apart
    assert adapted.history[0]["cosine"] == pytest.approx(best, abs=1e-3)
    assert adapted.manifest.base == str(tiny_model_dir)
    assert adapted.manifest.training["config"]["init_from"] == str(first.out)

    with pytest.raises(InputError, match="also --out"):
        distill(bow_config(bow_teacher, nowhere, first.out, init_from=first.out))
    with pytest.raises(InputError, match="not an embedkd student"):
        distill(bow_config(bow_teacher, nowhere, tmp_path / "x", init_from=tiny_model_dir))
    other = tmp_path / "other-teacher"
    shutil.copytree(first.out, other)
    manifest = json.loads((other / "embedkd.json").read_text())
    manifest["teacher"]["fingerprint"] = "blackbox:another-teacher"
    (other / "embedkd.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="aligned to bow-teacher"):
        distill(bow_config(bow_teacher, nowhere, tmp_path / "y", init_from=other))
    assert not (tmp_path / "y").exists()


def spy_on_rank_loss(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """The keyword arguments of every call of the ranking loss while training (the loss still runs)."""
    seen: list[dict] = []
    real = trainer_module.losses.listwise_kl_loss

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module.losses, "listwise_kl_loss", spy)
    return seen


def test_rank_term_trains_against_anchor_documents_and_is_off_without_a_corpus(
    bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = trainer_module.losses.listwise_kl_loss

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module.losses, "listwise_kl_loss", spy)
    with_docs = bow_config(
        bow_teacher, tiny_model_dir, tmp_path / "a", rank_weight=0.5, anchor_data=bow_teacher.texts_path, max_steps=20
    )
    result = distill(with_docs)
    assert calls["n"] == 20 and np.isfinite(result.history[-1]["loss"])
    calls["n"] = 0
    distill(bow_config(bow_teacher, tiny_model_dir, tmp_path / "b", rank_weight=0.5, max_steps=5))
    assert calls["n"] == 0  # no BEIR folder in --data and no --anchor-data: the term is off, not an error


def test_rank_base_mix_adds_the_bases_own_ranking_to_the_target(
    bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = spy_on_rank_loss(monkeypatch)
    config = bow_config(
        bow_teacher,
        tiny_model_dir,
        tmp_path / "s",
        rank_weight=0.5,  # --rank-base-mix left at its default: 0.7 for a transformer base
        anchor_data=bow_teacher.texts_path,
        max_steps=6,
    )
    assert config.rank_base_mix is None
    result = distill(config)
    assert len(seen) == 6 and np.isfinite(result.history[-1]["loss"])
    first = seen[0]
    assert first["base_mix"] == 0.7
    base, anchors = first["base"], first["base_documents"]
    # the base's own vectors: its width (not the teacher's), one row per text and per anchor, unit length
    width = SentenceTransformer(str(tiny_model_dir)).get_embedding_dimension()
    assert base.shape == (config.batch_size, width) and anchors.shape[1] == width
    assert torch.allclose(anchors.norm(dim=-1), torch.ones(len(anchors)), atol=1e-2)
    assert result.manifest.training["config"]["rank_base_mix"] == 0.7  # recorded as resolved
    with pytest.raises(InputError, match="rank_base_mix"):
        bow_config(bow_teacher, tiny_model_dir, tmp_path / "x", rank_base_mix=1.0)
    seen.clear()
    off = bow_config(
        bow_teacher, tiny_model_dir, tmp_path / "off", rank_weight=0.5, rank_base_mix=0.0,
        anchor_data=bow_teacher.texts_path, max_steps=2,
    )  # fmt: skip
    assert distill(off).manifest.training["config"]["rank_base_mix"] == 0.0
    assert [kw["base"] for kw in seen] == [None, None] and [kw["base_mix"] for kw in seen] == [0.0, 0.0]


def test_base_relation_term_keeps_the_bases_in_batch_similarities_without_a_corpus(
    bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    real = trainer_module.losses.relation_kl_loss

    def spy(student, reference, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((student.detach(), reference))
        return real(student, reference, **kwargs)

    monkeypatch.setattr(trainer_module.losses, "relation_kl_loss", spy)
    config = bow_config(bow_teacher, tiny_model_dir, tmp_path / "s", base_relation_weight=0.5, max_steps=4)
    result = distill(config)  # no corpus: the ranking term is off, the relation term still has its base vectors
    assert len(seen) == 4 and np.isfinite(result.history[-1]["loss"])
    student, reference = seen[0]
    width = SentenceTransformer(str(tiny_model_dir)).get_embedding_dimension()
    # the student in the teacher's space, the reference in the base's own: same rows, each its own width
    assert reference.shape == (config.batch_size, width) and student.shape[0] == config.batch_size
    assert student.shape[1] != width
    assert torch.allclose(reference.norm(dim=-1), torch.ones(len(reference)), atol=1e-2)
    assert result.manifest.training["config"]["base_relation_weight"] == 0.5
    seen.clear()
    distill(bow_config(bow_teacher, tiny_model_dir, tmp_path / "off", max_steps=2))
    assert seen == []  # 0 turns it off
    on = distill(bow_config(bow_teacher, tiny_model_dir, tmp_path / "on", max_steps=2, base_relation_weight=None))
    assert len(seen) == 2 and on.manifest.training["config"]["base_relation_weight"] == 0.1  # the default, resolved
    with pytest.raises(InputError, match="base_relation_weight"):
        bow_config(bow_teacher, tiny_model_dir, tmp_path / "x", base_relation_weight=-1.0)
    with pytest.raises(InputError, match="batch_size must be 2"):
        bow_config(bow_teacher, tiny_model_dir, tmp_path / "x", base_relation_weight=0.5, batch_size=1)
    # a base without a space of its own is refused before any teacher targets are computed
    monkeypatch.setattr(trainer_module._Distiller, "_targets", lambda *a, **k: pytest.fail("computed targets"))
    with pytest.raises(InputError, match="base-relation-weight"):
        distill(bow_config(bow_teacher, Path("teacher"), tmp_path / "t", base_relation_weight=0.5, max_steps=2))
    assert not (tmp_path / "t").exists()  # and the folder it made is gone
    with pytest.raises(InputError, match=r"the teacher \(bow-teacher\) as the student base"):  # named as itself
        distill(bow_config(bow_teacher, Path("bow-teacher"), tmp_path / "t", base_relation_weight=0.5, max_steps=2))
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize(
    ("student", "mix", "expected"),
    [
        ("minilm-l6", None, 0.7),  # a transformer base with a ranking of its own
        ("some/folder", None, 0.7),
        ("teacher", None, 0.0),  # a cut of the teacher's own layers: the teacher's ranking again
        ("bow-teacher", None, 0.0),  # the teacher itself as the base
        ("static", None, 0.0),  # a static base has no ranking worth mixing in
        ("static:minilm-l6", None, 0.0),
        ("minilm-l6", 0.2, 0.2),  # an explicit value wins
        ("minilm-l6", 0.0, 0.0),
    ],
)
def test_the_base_ranking_mix_defaults_by_the_student_base(
    bow_teacher: BowData, tmp_path: Path, student: str, mix: float | None, expected: float
) -> None:
    config = bow_config(bow_teacher, Path(student), tmp_path / "s", rank_base_mix=mix)
    assert default_rank_base_mix(config) == expected


@pytest.mark.parametrize(
    ("student", "weight", "batch_size", "expected"),
    [
        ("minilm-l6", None, 32, 0.1),  # a transformer base with a space of its own
        ("some/folder", None, 32, 0.1),
        ("minilm-l6", None, 1, 0.0),  # a batch of one has nothing to compare with
        ("teacher", None, 32, 0.0),  # a cut of the teacher's own layers: no space of its own
        ("bow-teacher", None, 32, 0.0),  # the teacher itself as the base
        ("static", None, 32, 0.0),  # a static base
        ("static:minilm-l6", None, 32, 0.0),
        ("minilm-l6", 0.3, 32, 0.3),  # an explicit value wins
        ("minilm-l6", 0.0, 32, 0.0),
    ],
)
def test_the_base_relation_weight_defaults_by_the_student_base(
    bow_teacher: BowData, tmp_path: Path, student: str, weight: float | None, batch_size: int, expected: float
) -> None:
    config = bow_config(bow_teacher, Path(student), tmp_path / "s", base_relation_weight=weight, batch_size=batch_size)
    assert default_base_relation_weight(config) == expected


def test_a_static_student_is_distilled_by_model2vec_then_aligned(
    bow_teacher: BowData, tiny_model_factory, tmp_path: Path, isolated_cache: Path
) -> None:
    pytest.importorskip("model2vec")
    source = tiny_model_factory(hidden=32, seed=1)  # the black-box teacher cannot be distilled: another model is
    config = bow_config(
        bow_teacher,
        Path(f"static:{source}"),  # a static base distilled by model2vec from `source`
        tmp_path / "static",
        frozen_layers=None,  # the default: a static student has no layers to cache
        freeze_embeddings=True,  # the default; a static student's table stays trainable
    )
    result = distill(config)
    history = result.history
    assert 1 - history[-1]["cosine"] < 0.8 * (1 - history[0]["cosine"]), history  # the LEAF loss aligned it

    out = result.out
    modules = json.loads((out / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["StaticEmbedding", "Dense", "Normalize"]
    manifest = StudentManifest.read(out)
    assert manifest is not None and manifest.teacher.dimension == 24 and manifest.base.startswith("static:")
    script = (
        "import sys, json; sys.modules['embedkd'] = None\n"
        "from sentence_transformers import SentenceTransformer\n"
        f"m = SentenceTransformer({str(out)!r}, device='cpu')\n"
        "print(json.dumps(m.encode(['apple river']).shape))\n"
    )
    shape = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert json.loads(shape) == [1, 24]
    encoder = Encoder.load(out, device="cpu")
    assert encoder.max_seq_length is None and encoder.token_counts(["apple river"]) == [2]


def test_the_default_student_is_cut_from_the_teacher_and_needs_its_weights(
    bow_teacher: BowData, tiny_model_factory, tmp_path: Path, isolated_cache: Path
) -> None:
    with pytest.raises(InputError, match="black box"):
        distill(bow_config(bow_teacher, Path("teacher"), tmp_path / "a"))
    assert not (tmp_path / "a").exists()  # the failed run removes the folder it made, which holds no file
    teacher = tiny_model_factory(hidden=32, seed=1, layers=4)
    config = bow_config(
        bow_teacher, Path("teacher"), tmp_path / "b", teacher=str(teacher), teacher_embeddings=[], teacher_texts=[],
        data=[bow_teacher.texts_path], max_steps=4, eval_every=2,
    )  # fmt: skip
    result = distill(config)
    assert result.manifest.layers == [0, 2, 3]  # 3 evenly spaced layers of the teacher's 4, by default


def test_a_config_read_back_from_json_gets_its_data_options(tmp_path: Path) -> None:
    from embedkd.distill import DataOptions

    config = DistillConfig(out=tmp_path, data=[tmp_path / "t.txt"], data_options={"max_texts_per_source": 5})
    assert config.data_options == DataOptions(max_texts_per_source=5)
    again = DistillConfig(out=tmp_path, data=[tmp_path / "t.txt"], data_options=config.to_dict()["data_options"])
    assert again.data_options == config.data_options


def test_the_optimiser_is_fused_on_cpu_and_makes_adamw_s_update(tiny_model_dir: Path, tmp_path: Path) -> None:
    from embedkd.distill.optim import build_optimizer
    from embedkd.models.student import build_student

    # a fixed learning rate, not the default: float rounding between the fused and foreach kernels grows with it
    config = DistillConfig(out=tmp_path / "s", data=[tmp_path / "x.txt"], lr=2e-4, head_lr=2e-3)
    fused_model, _ = build_student(str(tiny_model_dir), teacher_dimension=24, device="cpu")
    plain_model, _ = build_student(str(tiny_model_dir), teacher_dimension=24, device="cpu")
    plain_model.load_state_dict(fused_model.state_dict())
    fused, _ = build_optimizer(fused_model, config)
    assert all(group["fused"] for group in fused.param_groups)
    plain = torch.optim.AdamW(
        [{"params": list(g["params"]), "lr": g["lr"]} for g in build_optimizer(plain_model, config)[0].param_groups],
        weight_decay=config.weight_decay,
        foreach=True,
    )
    features = fused_model.preprocess(["a short text", "another, somewhat longer text"])
    target = torch.randn(24, generator=torch.Generator().manual_seed(0))
    for model, optimizer in ((fused_model, fused), (plain_model, plain)):
        model.eval()  # no dropout: both see the same gradients
        for _ in range(3):
            optimizer.zero_grad()
            (model(dict(features))["sentence_embedding"] @ target).sum().backward()
            optimizer.step()
    for a, b in zip(fused_model.parameters(), plain_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dropout", [False, True])
def test_dropout_stays_as_set_across_checkpoints_and_resume(
    bow_teacher: BowData,
    tiny_model_dir: Path,
    tmp_path: Path,
    isolated_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    dropout: bool,
) -> None:
    modes: list[bool] = []
    real = trainer_module._Distiller._batch_loss

    def spy(self, model, *args, **kwargs):  # type: ignore[no-untyped-def]
        modes.append(model[0].auto_model.encoder.layer[-1].training)  # what dropout depends on
        return real(self, model, *args, **kwargs)

    monkeypatch.setattr(trainer_module._Distiller, "_batch_loss", spy)
    config = bow_config(
        bow_teacher, tiny_model_dir, tmp_path / "s", max_steps=6, eval_every=2, dropout=dropout, keep_checkpoints=True
    )
    distill(config)  # a checkpoint every 2 steps: sentence-transformers' save runs encode(), which sets eval
    assert modes == [dropout] * 6
    modes.clear()
    config.resume = True  # extends the finished run by a new cycle of 6 steps, from the saved folder
    distill(config)
    assert modes == [dropout] * 6


def test_checkpoints_save_the_students_own_length_not_the_training_one(
    bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path
) -> None:
    out = tmp_path / "student"
    config = bow_config(
        bow_teacher, tiny_model_dir, out, max_steps=6, eval_every=3, keep_checkpoints=True, max_seq_length=8
    )
    distill(config)
    assert SentenceTransformer(str(out)).max_seq_length == 64
    for name in ("last", "best"):  # loaded as plain students, they must not truncate documents to 8 tokens
        assert SentenceTransformer(str(out / "checkpoints" / name)).max_seq_length == 64
    state = torch.load(out / "checkpoints" / "last" / "trainer_state.pt", weights_only=False)
    assert state["base_max_seq_length"] == 64
    config.resume = True
    resumed = distill(config)
    assert resumed.history[-1]["step"] == 12
    assert resumed.model.max_seq_length == 8  # the resumed cycle still trains at the recipe's length
    assert SentenceTransformer(str(out)).max_seq_length == 64


def test_rank_source_mix_targets_each_texts_own_document(
    bow_teacher: BowData, tiny_model_dir: Path, tiny_model_factory, tmp_path: Path, isolated_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    texts = bow_teacher.texts
    docs = [
        {"_id": str(i), "title": texts[i], "text": f"{texts[i + 1].capitalize()}. {texts[i + 2].capitalize()}."}
        for i in range(0, 60, 3)
    ]
    (corpus / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    seen = spy_on_rank_loss(monkeypatch)
    teacher = tiny_model_factory(hidden=32, seed=1)
    config = bow_config(
        bow_teacher, tiny_model_dir, tmp_path / "s", teacher=str(teacher), teacher_embeddings=[], teacher_texts=[],
        data=[bow_teacher.texts_path, corpus], rank_weight=0.5, rank_base_mix=0.0, rank_source_mix=0.5,
        max_steps=8, eval_every=4,
    )  # fmt: skip
    result = distill(config)
    assert len(seen) == 8 and np.isfinite(result.history[-1]["loss"])
    sources = torch.cat([kw["source"] for kw in seen])
    assert all(kw["source_mix"] == 0.5 for kw in seen)
    assert (sources >= 0).any() and (sources == -1).any()  # corpus texts rank their document; the bag texts do not
    assert int(sources.max()) < len(docs)
    assert result.manifest.training["config"]["rank_source_mix"] == 0.5
    with pytest.raises(InputError, match="rank_source_mix"):
        bow_config(bow_teacher, tiny_model_dir, tmp_path / "x", rank_source_mix=1.0)
