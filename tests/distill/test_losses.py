from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from embedkd.distill import losses


def unit(*rows: list[float]) -> torch.Tensor:
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_leaf_known_values() -> None:
    s = unit([1, 0], [0, 1])
    t = unit([1, 0], [1, 0])
    # identical rows -> 0; orthogonal unit rows -> |a-b|^2 = 2; mean = 1
    assert losses.leaf_loss(s, t).item() == pytest.approx(1.0)
    assert losses.leaf_loss(t, t).item() == pytest.approx(0.0)
    # scale of the inputs does not matter: both sides are normalised
    assert losses.leaf_loss(3 * s, 0.5 * t).item() == pytest.approx(1.0)


def test_leaf_equals_two_minus_two_cosine() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(8, 16), torch.randn(8, 16)
    cos = F.cosine_similarity(s, t).mean()
    assert losses.leaf_loss(s, t).item() == pytest.approx((2 - 2 * cos).item(), rel=1e-5)
    assert losses.cosine_loss(s, t).item() == pytest.approx((1 - cos).item(), rel=1e-5)


def test_dse_known_values() -> None:
    s = unit([1, 0], [0, 1])
    teacher_scores = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    # student scores are [[1,0],[0,1]]: two off-diagonal errors of 1 over 4 entries
    assert losses.dse_loss(s, teacher_scores).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="teacher_scores"):
        losses.dse_loss(s, torch.zeros(3, 3))


def test_pair_and_anchor_known_values() -> None:
    a, b = unit([1, 0], [1, 0]), unit([1, 0], [0, 1])
    assert losses.pair_score_loss(a, b, torch.tensor([1.0, 0.0])).item() == pytest.approx(0.0)
    assert losses.pair_score_loss(a, b, torch.tensor([0.0, 1.0])).item() == pytest.approx(1.0)
    anchors = unit([0, 1])  # only the second coordinate matters
    s, t = unit([1, 0]), unit([0, 1])
    assert losses.anchor_score_loss(s, t, anchors).item() == pytest.approx(1.0)
    assert losses.anchor_score_loss(unit([1, 1]), unit([1, -1]), unit([1, 0])).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize(
    "loss",
    [
        lambda s, t: losses.leaf_loss(s, t),
        lambda s, t: losses.cosine_loss(s, t),
        lambda s, t: losses.dse_loss(s, F.normalize(t, dim=-1) @ F.normalize(t, dim=-1).T),
        lambda s, t: losses.anchor_score_loss(s, t, F.normalize(torch.randn(5, 16), dim=-1)),
        lambda s, t: losses.pair_score_loss(s[:4], s[4:], t[:4, 0]),
        lambda s, t: losses.listwise_kl_loss(s, t, F.normalize(torch.randn(5, 16), dim=-1)),
        lambda s, t: losses.listwise_kl_loss(
            s, t, F.normalize(torch.randn(5, 16), dim=-1), base=t[:, :8], base_documents=torch.randn(5, 8), base_mix=0.5
        ),
        lambda s, t: losses.relation_kl_loss(s, t[:, :8]),
    ],
)
def test_gradients_flow_to_the_student_only(loss) -> None:
    torch.manual_seed(1)
    s = torch.randn(8, 16, requires_grad=True)
    t = torch.randn(8, 16, requires_grad=True)  # tracked, to prove the loss sends it no gradient
    value = loss(s, t)
    assert value.ndim == 0 and value.item() > 0
    value.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert t.grad is None


def test_listwise_kl_is_zero_for_the_teacher_and_ranks_like_it() -> None:
    torch.manual_seed(0)
    docs = F.normalize(torch.randn(20, 16), dim=-1)
    teacher = torch.randn(4, 16)
    assert losses.listwise_kl_loss(teacher, teacher, docs).item() == pytest.approx(0.0, abs=1e-6)
    # a student that ranks the documents like the teacher scores lower than one that reverses the ranking
    assert losses.listwise_kl_loss(teacher * 2, teacher, docs) < losses.listwise_kl_loss(-teacher, teacher, docs)
    student = torch.randn(4, 16, requires_grad=True)
    losses.listwise_kl_loss(student, teacher, docs).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_listwise_kl_with_a_base_mix_targets_the_mixture_of_both_rankings() -> None:
    torch.manual_seed(0)
    docs = F.normalize(torch.randn(6, 16), dim=-1)
    teacher = torch.randn(3, 16)
    base, base_docs = torch.randn(3, 8), F.normalize(torch.randn(6, 8), dim=-1)
    plain = losses.listwise_kl_loss(teacher, teacher, docs)
    mixed = losses.listwise_kl_loss(teacher, teacher, docs, base=base, base_documents=base_docs, base_mix=0.5)
    assert plain.item() == pytest.approx(0.0, abs=1e-6) and mixed.item() > 0.01  # the teacher alone is off target
    assert losses.listwise_kl_loss(
        teacher, teacher, docs, base=base, base_documents=base_docs, base_mix=0.0
    ).item() == pytest.approx(0.0, abs=1e-6)
    # starting from the teacher, the student moves towards the mixture: its loss falls below the teacher's
    student = teacher.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([student], lr=0.02)
    for _ in range(200):
        optimizer.zero_grad()
        loss = losses.listwise_kl_loss(student, teacher, docs, base=base, base_documents=base_docs, base_mix=0.5)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.8 * mixed.item()
    with pytest.raises(ValueError, match="base"):
        losses.listwise_kl_loss(teacher, teacher, docs, base_mix=0.5)
    with pytest.raises(ValueError, match="below 1"):
        losses.listwise_kl_loss(teacher, teacher, docs, base=base, base_documents=base_docs, base_mix=1.0)


def test_listwise_kl_with_a_source_mix_moves_mass_onto_each_texts_own_document() -> None:
    torch.manual_seed(0)
    docs = F.normalize(torch.randn(6, 16), dim=-1)
    teacher = torch.randn(3, 16)
    source = torch.tensor([2, -1, 5])  # the second text has no document of its own
    kl = losses.listwise_kl_loss(teacher, teacher, docs, source=source, source_mix=0.4)
    expected = torch.softmax(F.normalize(teacher, dim=-1) @ docs.T / 0.05, dim=-1)
    mixed = expected.clone()
    for row, doc in ((0, 2), (2, 5)):
        mixed[row] = 0.6 * expected[row] + 0.4 * F.one_hot(torch.tensor(doc), 6)
    manual = F.kl_div(torch.log(expected), mixed, reduction="batchmean")
    assert kl.item() == pytest.approx(manual.item(), rel=1e-4) and kl.item() > 0.01
    # a text with no source keeps the teacher's target: alone, the teacher is exactly on it
    alone = losses.listwise_kl_loss(teacher[1:2], teacher[1:2], docs, source=source[1:2], source_mix=0.4)
    assert alone.item() == pytest.approx(0.0, abs=1e-6)
    # training on it raises the student's score of the source document above the teacher's
    student = teacher.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([student], lr=0.02)
    for _ in range(100):
        optimizer.zero_grad()
        losses.listwise_kl_loss(student, teacher, docs, source=source, source_mix=0.4).backward()
        optimizer.step()
    trained = torch.softmax(F.normalize(student.detach(), dim=-1) @ docs.T / 0.05, dim=-1)
    assert trained[0, 2] > expected[0, 2] and trained[2, 5] > expected[2, 5]
    with pytest.raises(ValueError, match="source"):
        losses.listwise_kl_loss(teacher, teacher, docs, source_mix=0.4)
    with pytest.raises(ValueError, match="below 1"):
        losses.listwise_kl_loss(teacher, teacher, docs, source=source, source_mix=1.0)


def test_relation_kl_matches_in_batch_similarities_in_any_space() -> None:
    torch.manual_seed(0)
    reference = torch.randn(6, 8)
    # the same relations in another space (a rotation, a wider width, another scale) cost nothing
    rotation = torch.linalg.qr(torch.randn(12, 12))[0]
    same = 3 * torch.cat([reference, torch.zeros(6, 4)], dim=1) @ rotation
    assert losses.relation_kl_loss(same, reference).item() == pytest.approx(0.0, abs=1e-5)
    # a student that keeps the reference's neighbours costs less than one with random relations
    assert losses.relation_kl_loss(reference + 0.1 * torch.randn(6, 8), reference) < losses.relation_kl_loss(
        torch.randn(6, 8), reference
    )
    # two texts: each one's only neighbour is the other, so any pair of vectors matches
    assert losses.relation_kl_loss(torch.randn(2, 4), torch.randn(2, 3)).item() == pytest.approx(0.0, abs=1e-6)
    # a known value at temperature 1: three texts, each row a softmax over the other two
    reference = unit([1, 0], [1, 0], [0, 1])
    student = unit([1, 0], [0, 1], [-1, 0])
    value = losses.relation_kl_loss(student, reference, temperature=1.0)
    p0 = torch.softmax(torch.tensor([1.0, 0.0]), 0)  # the reference's row 0 over texts 1 and 2
    q0 = torch.softmax(torch.tensor([0.0, -1.0]), 0)  # the student's row 0 over texts 1 and 2
    p1 = torch.softmax(torch.tensor([1.0, 0.0]), 0)  # row 1 over texts 0 and 2
    q1 = torch.softmax(torch.tensor([0.0, 0.0]), 0)
    p2 = torch.softmax(torch.tensor([0.0, 0.0]), 0)  # row 2 over texts 0 and 1
    q2 = torch.softmax(torch.tensor([-1.0, 0.0]), 0)
    expected = sum((p * (p.log() - q.log())).sum() for p, q in ((p0, q0), (p1, q1), (p2, q2))) / 3
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="two texts"):
        losses.relation_kl_loss(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="rows"):
        losses.relation_kl_loss(torch.randn(3, 4), torch.randn(2, 4))


def test_l2_sp_penalty_is_the_squared_distance_to_the_start() -> None:
    start = [torch.tensor([1.0, 2.0]), torch.tensor([[0.0, -1.0]])]
    params = [torch.tensor([2.0, 2.0], requires_grad=True), torch.tensor([[0.0, 1.0]], requires_grad=True)]
    penalty = losses.l2_sp_penalty(params, start)
    assert penalty.item() == pytest.approx(1.0 + 4.0)
    penalty.backward()
    assert params[0].grad is not None and params[1].grad is not None
    assert params[0].grad.tolist() == [2.0, 0.0]  # 2 (p - start): a pull back towards the start
    assert params[1].grad.tolist() == [[0.0, 4.0]]
    assert losses.l2_sp_penalty(start, start).item() == 0.0
    with pytest.raises(ValueError, match="reference"):
        losses.l2_sp_penalty(params, start[:1])
