"""Speed/quality frontier: which student to use, in one table and one plot.

    python -m benchmarks.frontier --student "default student=runs/student" --student "static=runs/static" \
        [--baseline "minilm-l6=minilm-l6"] [--baseline "static (model2vec)=static"] [--out benchmarks/results]
    python -m benchmarks.frontier --smoke --out /tmp/frontier       # tiny models, seconds, for CI

Rows: the teacher; every ``--student NAME=FOLDER`` (the first is the default one); every undistilled
``--baseline NAME=MODEL`` (``static`` is model2vec's distillation of the teacher, before any alignment);
the teacher index truncated to 512/256/128 dimensions (Matryoshka-style) and int8 (sq8) and binary
indexes, all queried by the first student. For each: SciFact nDCG@10 asymmetric (student queries, teacher index)
and symmetric (one model for both sides), STS-B Spearman, query-encode latency at batch 1 (p50/p99) and
throughput at batch 64 on this machine, model size and index memory. The plot is nDCG@10 against batch-1
query latency with the Pareto frontier drawn through the best points.
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks._report import cell, labelled, machine, markdown_table, run_main, write_json
from embedkd.data import load_beir
from embedkd.data.beir import BeirDataset
from embedkd.distill.teacher import Teacher, read_aligned_texts
from embedkd.evaluation import evaluate_run, load_sts, sts_spearman
from embedkd.index import FaissIndex, IndexKind, IndexParams
from embedkd.models import Encoder
from embedkd.models.static import static_base

LATENCY_QUERIES = 200


@dataclass
class Row:
    name: str
    ndcg_asym: float | None
    ndcg_sym: float | None
    sts: float | None
    p50_ms: float
    p99_ms: float
    qps_b64: float
    params_m: float
    index_mib: float
    is_teacher: bool = False
    is_baseline: bool = False  # an undistilled model on its own index: plotted at its symmetric score
    is_index_variant: bool = False  # another index kind for the first student: in the table, not the plot
    sym_source: str | None = None  # where a symmetric score measured elsewhere comes from


def encode_latency(encoder: Encoder, queries: list[str]) -> tuple[float, float, float]:
    """Batch-1 p50/p99 in ms and batch-64 throughput in queries/s."""
    encoder.encode_query(queries[:8], batch_size=8)
    times = []
    for q in queries[:LATENCY_QUERIES]:
        start = time.perf_counter()
        encoder.encode_query([q], batch_size=1)
        times.append(time.perf_counter() - start)
    batch = (queries * (512 // max(1, len(queries)) + 1))[:512]
    start = time.perf_counter()
    encoder.encode_query(batch, batch_size=64)
    qps = len(batch) / (time.perf_counter() - start)
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 99) * 1000), qps


def ndcg(dataset: BeirDataset, queries: np.ndarray, index: FaissIndex, docs: np.ndarray) -> float:
    doc_ids = dataset.doc_ids()
    _, ids = index.search(queries, 100, rescore=lambda rows: docs[rows])
    run = {
        qid: {doc_ids[i]: float(100 - rank) for rank, i in enumerate(row) if i >= 0}
        for qid, row in zip(dataset.queries, ids, strict=True)
    }
    return evaluate_run(dataset.qrels, run).ndcg_at_10


def make_index(docs: np.ndarray, params: IndexParams) -> FaissIndex:
    index = FaissIndex(docs.shape[1], params)
    index.build(docs, np.arange(len(docs)))
    return index


def frontier(
    dataset: BeirDataset,
    sts_path: Path,
    teacher: Encoder,
    teacher_docs: np.ndarray,
    students: dict[str, Encoder],
    baselines: dict[str, Encoder],
    known_sym: dict[str, tuple[float, str]] | None = None,
) -> list[Row]:
    queries = list(dataset.queries.values())
    sts = load_sts(sts_path)
    flat = make_index(teacher_docs, IndexParams())
    flat_mib = flat.memory_bytes() / 2**20

    def sts_of(encoder: Encoder) -> float:
        return sts_spearman(encoder.encode(sts.left), encoder.encode(sts.right), sts.gold)

    def sym(encoder: Encoder) -> tuple[float, float]:
        docs = encoder.encode_cached(dataset.doc_texts(), role="document", progress=False)
        index = make_index(docs, IndexParams())
        return ndcg(dataset, encoder.encode_query(queries), index, docs), index.memory_bytes() / 2**20

    rows: list[Row] = []
    q_t = teacher.encode_query(queries)
    p50, p99, qps = encode_latency(teacher, queries)
    teacher_ndcg = ndcg(dataset, q_t, flat, teacher_docs)
    rows.append(
        Row(
            f"teacher ({teacher.name})",
            teacher_ndcg,
            teacher_ndcg,
            sts_of(teacher),
            p50,
            p99,
            qps,
            teacher.parameters() / 1e6,
            flat_mib,
            is_teacher=True,
        )
    )
    default = next(iter(students.values()))
    for name, student in students.items():
        q_s = student.encode_query(queries)
        p50, p99, qps = encode_latency(student, queries)
        sym_ndcg: float | None
        source = None
        if known_sym and name in known_sym:  # the same folder's score from its learning curve, not re-encoded
            sym_ndcg, source = known_sym[name]
        else:
            sym_ndcg, _ = sym(student)
        rows.append(
            Row(
                name,
                ndcg(dataset, q_s, flat, teacher_docs),
                sym_ndcg,
                sts_of(student),
                p50,
                p99,
                qps,
                student.parameters() / 1e6,
                flat_mib,
                sym_source=source,
            )
        )
    for name, baseline in baselines.items():
        p50, p99, qps = encode_latency(baseline, queries)
        sym_ndcg, mib = sym(baseline)
        q_b = baseline.encode_query(queries)  # asymmetric only where it happens to share the teacher's width
        rows.append(
            Row(
                f"undistilled {name}",
                ndcg(dataset, q_b, flat, teacher_docs) if q_b.shape[1] == teacher_docs.shape[1] else None,
                sym_ndcg,
                sts_of(baseline),
                p50,
                p99,
                qps,
                baseline.parameters() / 1e6,
                mib,
                is_baseline=True,
            )
        )

    # Index variants, queried by the default student (its latency is what a query costs).
    q_s = default.encode_query(queries)
    base = rows[1]
    dims = teacher_docs.shape[1]
    sizes = [d for d in (512, 256, 128) if d < dims] or [dims // 2, dims // 4]  # tiny smoke teachers
    lead = next(iter(students))
    variants = [(f"{lead} + teacher index @{d} dims", IndexParams(dims=d)) for d in sizes]
    variants += [
        (f"{lead} + int8 (sq8) index", IndexParams(kind=IndexKind.SQ8)),
        (f"{lead} + binary index (rescored)", IndexParams(kind=IndexKind.BINARY)),
    ]
    for name, params in variants:
        index = make_index(teacher_docs, params)
        truncated_teacher = make_index(teacher_docs, IndexParams(dims=params.dims)) if params.dims else None
        sym_ndcg = ndcg(dataset, q_t, truncated_teacher, teacher_docs) if truncated_teacher else None
        rows.append(
            Row(
                name,
                ndcg(dataset, q_s, index, teacher_docs),
                sym_ndcg,
                base.sts,
                base.p50_ms,
                base.p99_ms,
                base.qps_b64,
                base.params_m,
                index.memory_bytes() / 2**20,
                is_index_variant=True,
            )
        )
    return rows


def spread_labels(points: list[tuple[float, float]], min_gap: float) -> list[float]:
    """Label heights for ``points`` (x, y) such that labels of points in the same column (x within 10%)
    are at least ``min_gap`` apart, each as close to its point as that allows."""
    heights = [y for _, y in points]
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    columns: list[list[int]] = []
    for i in order:
        if columns and points[i][0] <= points[columns[-1][0]][0] * 1.1:
            columns[-1].append(i)
        else:
            columns.append([i])
    for column in columns:
        column.sort(key=lambda i: points[i][1])
        for _ in range(len(column)):  # push up, then centre each cluster on its points; a few passes settle
            for below, above in zip(column, column[1:], strict=False):
                if heights[above] - heights[below] < min_gap:
                    heights[above] = heights[below] + min_gap
            shift = (sum(heights[i] for i in column) - sum(points[i][1] for i in column)) / len(column)
            if shift > 0:
                for i in column:
                    heights[i] -= shift
                for below, above in zip(column, column[1:], strict=False):
                    if heights[above] - heights[below] < min_gap - 1e-12:
                        heights[above] = heights[below] + min_gap
    return heights


def plot(rows: list[Row], path: Path, stamp: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points: list[tuple[float, float, Row]] = []
    for r in rows:
        if r.is_index_variant:
            continue
        y = r.ndcg_sym if r.is_baseline or r.ndcg_asym is None else r.ndcg_asym
        if y is not None:
            points.append((r.p50_ms, y, r))
    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=120)
    ys = [y for _, y, _ in points]
    labels = spread_labels([(x, y) for x, y, _ in points], min_gap=0.04 * (max(ys) - min(ys) or 1.0))
    for (x, y, r), label_y in zip(points, labels, strict=True):
        marker, color = ("*", "crimson") if r.is_teacher else ("s", "gray") if r.is_baseline else ("o", "tab:blue")
        ax.scatter([x], [y], marker=marker, s=220 if r.is_teacher else 60, color=color, zorder=3)
        ax.annotate(
            r.name + (" (teacher)" if r.is_teacher and "teacher" not in r.name else ""),
            (x, y),
            xytext=(x * 1.05, label_y),
            fontsize=8,
            va="center",
            arrowprops={"arrowstyle": "-", "color": "gray", "lw": 0.5} if abs(label_y - y) > 1e-9 else None,
        )
    best: list[tuple[float, float]] = []
    for x, y, _ in sorted(points, key=lambda p: (p[0], -p[1])):
        if not best or y > best[-1][1]:
            best.append((x, y))
    ax.step(
        [p[0] for p in best], [p[1] for p in best], where="post", color="tab:green", alpha=0.6, label="Pareto frontier"
    )
    ax.set_xscale("log")
    xs = [x for x, _, _ in points]
    ax.set_xlim(min(xs) / 1.3, max(xs) * 2.2)  # room for the rightmost label
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}" if str(v)[0] in "25" else ""))
    ax.set_xlabel("query-encode latency, batch 1, p50 (ms, log scale)")
    ax.set_ylabel("SciFact nDCG@10 (students: asymmetric; undistilled, gray: on their own index)")
    ax.set_title("embedkd speed / quality frontier")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.text(0.01, 0.01, stamp, fontsize=7, color="dimgray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path)
    plt.close(fig)


def write_table(rows: list[Row], path: Path, stamp: str) -> None:
    lines = [
        "# Speed / quality frontier",
        "",
        stamp,
        "",
    ]
    lines += markdown_table(
        ["model / index", "nDCG@10 asym", "nDCG@10 sym", "STS-B Spearman", "b1 p50 ms", "b1 p99 ms", "b64 q/s"]
        + ["params (M)", "faiss MiB"],
        (
            [r.name, cell(r.ndcg_asym, ".4f"), cell(r.ndcg_sym, ".4f") + ("*" if r.sym_source else "")]
            + [cell(r.sts, ".4f"), f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}"]
            + [f"{r.qps_b64:.0f}", f"{r.params_m:.1f}", f"{r.index_mib:.1f}"]
            for r in rows
        ),
    )
    lines += [
        "",
        "asym: queries by the model, documents by the teacher (its index). sym: one model for both. "
        "Index rows are queried by the first student; their 'sym' column is the teacher's own queries "
        "on that index. Latency is query encoding only; index search adds well under a millisecond "
        "at this size (see index.md). faiss MiB is the in-RAM faiss structure only: every index folder also "
        "keeps the float16 vectors (7.6 MiB for SciFact's 5,183 x 768, used for exact rescoring and "
        "upserts) and the SQLite document store (18.7 MiB here); see index.md's footprint table for the "
        "measured folder sizes (flat 41.5 MiB, binary 26.8 MiB).",
        "",
    ]
    sourced = [r for r in rows if r.sym_source]
    if sourced:
        lines += [
            "\\* symmetric score of the same student folder from its learning curve, with the same evaluator "
            "(not re-encoded here: a teacher-cut student takes over 10 minutes to embed the corpus on this CPU): "
            + "; ".join(f"{r.name}: {r.sym_source}" for r in sourced)
            + ".",
            "",
        ]
    path.write_text("\n".join(lines) + "\n")


def stamp_line(smoke: bool, concurrent: str = "nothing else") -> str:
    import faiss
    import sentence_transformers

    from embedkd import __version__

    return (
        f"{'SMOKE RUN (tiny random models) — ' if smoke else ''}Machine: {machine()}; embedkd {__version__}, "
        f"sentence-transformers {sentence_transformers.__version__}, faiss {faiss.__version__}. "
        f"Ran beside: {concurrent}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument(
        "--student", action="append", default=[], help="NAME=FOLDER of an aligned student; the first is the default."
    )
    parser.add_argument(
        "--sym-from",
        action="append",
        default=[],
        help="NAME=LEARNING_CURVE.json: take that student's symmetric score from the curve's last point.",
    )
    parser.add_argument(
        "--baseline",
        action="append",
        default=None,
        help="NAME=MODEL of an undistilled model used on its own (default: minilm-l6); MODEL 'static' is "
        "model2vec's distillation of the teacher.",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--smoke", action="store_true", help="Tiny random models and data, for CI.")
    parser.add_argument("--concurrent", default="nothing else", help="What else ran on the machine meanwhile.")
    args = parser.parse_args()
    named_students = labelled(args.student)
    sym_from = labelled(args.sym_from, option="--sym-from")
    named_baselines = labelled(args.baseline or ["minilm-l6=minilm-l6"], option="--baseline")
    args.out.mkdir(parents=True, exist_ok=True)

    if args.smoke:
        from embedkd.distill.teacher import Teacher as _Teacher
        from embedkd.models.manifest import StudentManifest
        from embedkd.testing import build_tiny_beir, build_tiny_encoder, build_tiny_sts

        work = Path(tempfile.mkdtemp(prefix="frontier-smoke-"))
        atexit.register(shutil.rmtree, work, True)  # its tiny models and data are of no use after the run
        beir = build_tiny_beir(work / "beir")
        sts_path = build_tiny_sts(work / "sts.tsv")
        teacher_dir = build_tiny_encoder(work / "teacher", hidden=48, seed=1)
        student_dirs = {
            "student (L2)": str(build_tiny_encoder(work / "student", hidden=32, seed=2, dense_to=48)),
            "student (L1)": str(build_tiny_encoder(work / "student1", hidden=32, layers=1, seed=3, dense_to=48)),
        }
        ref = _Teacher.from_model(str(teacher_dir)).ref
        for folder in student_dirs.values():
            StudentManifest(teacher=ref, base="tiny").write(Path(folder))
        baseline_models = {"tiny": str(build_tiny_encoder(work / "baseline", hidden=32, seed=4))}
    else:
        beir = args.data_root / "beir" / "scifact"
        sts_path = args.data_root / "sts" / "stsb-test.tsv"
        teacher_dir = None
        student_dirs = dict(named_students)
        if not student_dirs:
            raise SystemExit("give at least one --student NAME=FOLDER")
        baseline_models = dict(named_baselines)

    dataset = load_beir(beir, "test")
    teacher = Encoder.load(str(teacher_dir) if teacher_dir else "mpnet-base", device="cpu")
    cache = Teacher.from_model(str(teacher.path))
    precomputed = args.data_root / "embeddings" / "scifact-mpnet-base" / "corpus.f16.npy"
    if not args.smoke and precomputed.is_file():
        cache.import_embeddings(read_aligned_texts(beir, precomputed), precomputed)
    teacher_docs = cache.embeddings(dataset.doc_texts(), role="document", progress=False)
    students = {name: Encoder.load(path, device="cpu") for name, path in student_dirs.items() if path}
    baselines = {
        name: Encoder.load(str(static_base(str(teacher.path))) if model == "static" else model, device="cpu")
        for name, model in baseline_models.items()
    }
    known_sym = {}
    for name, path in sym_from:
        last = json.loads(Path(path).read_text())["points"][-1]
        known_sym[name] = (float(last["sym_ndcg10"]), f"{Path(path).name}, {last['train_minutes_budget']:g} min")
    rows = frontier(dataset, sts_path, teacher, teacher_docs, students, baselines, known_sym)

    stamp = stamp_line(args.smoke, args.concurrent)
    write_json(args.out / "frontier.json", {"stamp": stamp, "rows": [asdict(r) for r in rows]})
    write_table(rows, args.out / "frontier.md", stamp)
    plot(rows, args.out / "frontier.png", stamp)
    print((args.out / "frontier.md").read_text())


if __name__ == "__main__":
    run_main(main)
