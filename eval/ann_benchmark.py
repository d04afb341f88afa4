"""Vector index benchmark on synthetic clustered vectors (no model needed): flat vs ivf_sq8
(vs hnsw_sq8 on request) at corpus sizes up to millions of chunks.

Data: a Gaussian mixture on the unit sphere, shaped like sentence embeddings: a few thousand
cluster centres grouped under broader topics, cluster sizes skewed (log-normal), and within a
cluster a low-rank spread (32 directions) plus a little isotropic noise, normalised. Queries are
new draws from the same clusters ("near the data"); uniform random queries would be
unrealistically hard for any approximate index. The report prints the cosine of each query
to its nearest neighbour and to random chunks, so the realism can be judged.

Per size and method: vector index bytes (serialised size) and the process RSS it added, build
time (train + add, the production code path ``rag.index.rebuild_vector_index`` for ivf_sq8),
single-query search p50/p95 with one thread (as ``search_threads=1``), and recall@k against
exact search. Filtered rows use ``rag.index.search_params`` with a random ``--filter-fractions``
share of the chunks allowed (an access-group filter), against exact filtered search.

Memory: vectors are generated in deterministic batches and regenerated when needed, never held
all at once; exact ground truth is computed in blocks. Peak RSS is about the largest index
(flat at 1M x 768: 3.1 GB) plus the k-means training sample (ivf: 50 x nlist x dim x 4 bytes,
0.6 GB at 1M) and ~0.5 GB of batches.

    python -m eval.ann_benchmark --sizes 20000,50000 --queries 200
    python -m eval.ann_benchmark --sizes 100000,1000000          # the full run, a quiet machine

Do not run it while another heavy job uses the cores: the latencies would be meaningless.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from rag.index import (
    REBUILD_BATCH,
    auto_nlist,
    id_selector,
    new_flat_index,
    rebuild_vector_index,
    search_params,
)

HERE = Path(__file__).resolve().parent
LOCAL_RANK = 32  # directions of spread within a cluster
N_SUBSPACES = 64  # distinct local bases shared by the clusters (keeps the generator small)


# --------------------------------------------------------------------------- data


class MixtureData:
    """Deterministic clustered unit vectors: row ``i`` is the same on every call."""

    def __init__(
        self, dim: int, n_clusters: int, seed: int = 0, local: float = 1.0, iso: float = 0.4, anisotropy: float = 1.0
    ) -> None:
        rng = np.random.default_rng([seed, 0])
        self.dim, self.seed = dim, seed
        n_topics = max(8, n_clusters // 64)
        topics = _normalise(rng.standard_normal((n_topics, dim), dtype=np.float32))
        # a direction shared by every vector: real EmbeddingGemma chunks have a mean cosine of
        # ~0.55 between unrelated chunks (anisotropy); weight 1.0 gives ~0.5 here
        self.mean = anisotropy * _normalise(rng.standard_normal((1, dim), dtype=np.float32))
        centres = topics[rng.integers(n_topics, size=n_clusters)] + 0.9 * _normalise(
            rng.standard_normal((n_clusters, dim), dtype=np.float32)
        )
        self.centres = _normalise(centres)
        bases = [np.linalg.qr(rng.standard_normal((dim, LOCAL_RANK)))[0].T for _ in range(N_SUBSPACES)]
        self.bases = np.stack(bases).astype(np.float32)  # (S, r, dim), orthonormal rows
        self.cluster_basis = rng.integers(N_SUBSPACES, size=n_clusters)
        self.cluster_scale = rng.uniform(0.6, 1.4, size=n_clusters).astype(np.float32)
        weights = rng.lognormal(0.0, 1.0, size=n_clusters)
        self.cluster_p = weights / weights.sum()
        self.local = local / np.sqrt(LOCAL_RANK)  # |local part| ~ local
        self.iso = iso / np.sqrt(dim)  # |isotropic part| ~ iso

    def _draw(self, rng: np.random.Generator, m: int) -> np.ndarray:
        clusters = rng.choice(len(self.centres), size=m, p=self.cluster_p)
        z = rng.standard_normal((m, LOCAL_RANK), dtype=np.float32)
        spread = np.empty((m, self.dim), dtype=np.float32)
        basis = self.cluster_basis[clusters]
        for s in np.unique(basis):
            rows = np.flatnonzero(basis == s)
            spread[rows] = z[rows] @ self.bases[s]
        spread *= self.local
        spread += self.iso * rng.standard_normal((m, self.dim), dtype=np.float32)
        spread *= self.cluster_scale[clusters, None]
        spread += self.centres[clusters]
        return _normalise(_normalise(spread) + self.mean)

    def batch(self, b: int, n: int, size: int = REBUILD_BATCH) -> np.ndarray:
        """Rows ``b*size`` .. ``min(n, (b+1)*size)``."""
        m = min(size, n - b * size)
        return self._draw(np.random.default_rng([self.seed, 1, b]), m)

    def batches(self, n: int, size: int = REBUILD_BATCH) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for b in range((n + size - 1) // size):
            x = self.batch(b, n, size)
            yield np.arange(b * size, b * size + len(x), dtype=np.int64), x

    def queries(self, nq: int) -> np.ndarray:
        return self._draw(np.random.default_rng([self.seed, 2]), nq)


class GeneratedSource:
    """Looks like a faiss index to ``rebuild_vector_index``: ``reconstruct_batch(ids)``
    regenerates the batches holding ``ids``, so no full copy of the data is ever held."""

    def __init__(self, data: MixtureData, n: int) -> None:
        self.data, self.n = data, n

    def reconstruct_batch(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        out = np.empty((len(ids), self.data.dim), dtype=np.float32)
        which = ids // REBUILD_BATCH
        for b in np.unique(which):
            rows = np.flatnonzero(which == b)
            out[rows] = self.data.batch(int(b), self.n)[ids[rows] - b * REBUILD_BATCH]
        return out


def _normalise(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def allowed_mask(ids: np.ndarray, fraction: float) -> np.ndarray:
    """A pseudo-random share of the ids, unrelated to the clusters (like an access group)."""
    return (ids * 2654435761) % 1_000_003 < fraction * 1_000_003


def allowed_ids(n: int, fraction: float) -> np.ndarray:
    ids = np.arange(n, dtype=np.int64)
    return ids[allowed_mask(ids, fraction)]


# --------------------------------------------------------------------------- ground truth


@dataclass
class Truth:
    ids: dict[str, np.ndarray]  # "all" and "filter 10%" ... -> (nq, k) exact neighbours
    top1_cos: float
    topk_cos: float
    random_cos: float
    seconds: float


def ground_truth(data: MixtureData, n: int, q: np.ndarray, k: int, fractions: list[float]) -> Truth:
    """Exact top-k by blocks (inner product = cosine), unfiltered and per filter fraction."""
    t0 = time.perf_counter()
    masks: dict[str, float | None] = {"all": None} | {_flabel(f): f for f in fractions}
    heaps = {name: faiss.ResultHeap(len(q), k, keep_max=True) for name in masks}
    random_cos: list[float] = []
    for ids, x in data.batches(n):
        scores = x @ q.T  # (m, nq)
        if not random_cos:
            random_cos = scores[:: max(1, len(x) // 1000)].ravel().tolist()
        for name, fraction in masks.items():
            s = scores
            if fraction is not None:
                s = np.where(allowed_mask(ids, fraction)[:, None], scores, np.float32(-np.inf))
            kk = min(k, len(x))
            top = np.argpartition(-s, kk - 1, axis=0)[:kk].T  # (nq, kk) rows of x
            d = np.take_along_axis(s.T, top, axis=1)
            heaps[name].add_result(np.ascontiguousarray(d, dtype=np.float32), ids[top])
    out: dict[str, np.ndarray] = {}
    for name, heap in heaps.items():
        heap.finalize()
        out[name] = heap.I.copy()
        if name == "all":
            top1, topk = float(heap.D[:, 0].mean()), float(heap.D[:, -1].mean())
    return Truth(out, top1, topk, float(np.mean(random_cos)), time.perf_counter() - t0)


def _flabel(fraction: float) -> str:
    return f"filter {fraction:.0%}" if fraction >= 0.01 else f"filter {fraction:.1%}"


# --------------------------------------------------------------------------- measuring


@dataclass
class Row:
    size: int
    dim: int
    method: str
    params: str
    build_s: float
    index_mb: float
    rss_mb: float
    p50_ms: float
    p95_ms: float
    recall: float
    extra: dict[str, Any] = field(default_factory=dict)


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # kB on Linux


def index_bytes(index: faiss.Index) -> int:
    """Serialised size, counted while writing (no copy in memory)."""
    total = 0

    def count(buf: bytes) -> int:
        nonlocal total
        total += len(buf)
        return len(buf)

    faiss.write_index(index, faiss.PyCallbackIOWriter(count))
    return total


def time_queries(
    index: faiss.Index, q: np.ndarray, k: int, params: Callable[[], faiss.SearchParameters | None]
) -> tuple[np.ndarray, list[float]]:
    """One query at a time, one thread; ``params()`` is built per query and timed with it,
    as the retriever builds its filter selector per query."""
    faiss.omp_set_num_threads(1)
    found = np.full((len(q), k), -1, dtype=np.int64)
    lat: list[float] = []
    for i in range(len(q)):
        t0 = time.perf_counter()
        _, ids = index.search(q[i : i + 1], k, params=params())
        lat.append((time.perf_counter() - t0) * 1000)
        found[i] = ids[0]
    return found, lat


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[f >= 0]) & set(t[t >= 0])) / k for f, t in zip(found, truth)]))


def build(method: str, data: MixtureData, n: int, nlist: int, build_threads: int) -> tuple[faiss.Index, float]:
    if build_threads:
        faiss.omp_set_num_threads(build_threads)
    else:
        faiss.omp_set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    if method == "flat":
        index = new_flat_index(data.dim)
        for ids, x in data.batches(n):
            index.add_with_ids(x, ids)
    elif method == "ivf_sq8":
        ids = np.arange(n, dtype=np.int64)
        index = rebuild_vector_index(GeneratedSource(data, n), ids, "ivf_sq8", data.dim, nlist, nprobe=1)
    elif method == "hnsw_sq8":  # not an index type of the service (no remove_ids): for comparison
        inner = faiss.IndexHNSWSQ(data.dim, faiss.ScalarQuantizer.QT_8bit, 32, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = 80
        index = faiss.IndexIDMap(inner)
        sample = np.sort(np.random.default_rng(0).choice(n, size=min(n, 100_000), replace=False))
        inner.train(GeneratedSource(data, n).reconstruct_batch(sample))
        for ids, x in data.batches(n):
            index.add_with_ids(x, ids)
    else:
        raise ValueError(f"unknown method '{method}'")
    return index, time.perf_counter() - t0


def sweep(method: str, index: faiss.Index, args: argparse.Namespace) -> list[tuple[str, Callable[..., Any]]]:
    """(label, params factory taking the allowed ids) per search setting of a method."""
    if method == "flat":
        return [("exact", lambda allowed: search_params(index, allowed))]
    if method == "ivf_sq8":
        return [(f"nprobe {p}", lambda allowed, p=p: search_params(index, allowed, p)) for p in args.nprobe]

    def hnsw(allowed: np.ndarray | None, ef: int) -> faiss.SearchParameters:
        # the selector object itself, so that the parameters keep it alive
        if allowed is None:
            return faiss.SearchParametersHNSW(efSearch=ef)
        return faiss.SearchParametersHNSW(efSearch=ef, sel=id_selector(allowed))

    return [(f"efSearch {ef}", lambda allowed, ef=ef: hnsw(allowed, ef)) for ef in args.ef_search]


def run_size(n: int, args: argparse.Namespace) -> tuple[list[Row], dict[str, Any]]:
    data = MixtureData(
        args.dim,
        args.clusters,
        seed=args.seed,
        local=args.local_spread,
        iso=args.iso_spread,
        anisotropy=args.anisotropy,
    )
    q = data.queries(args.queries)
    truth = ground_truth(data, n, q, args.k, args.filter_fractions)
    print(
        f"\n== {n:,} x {args.dim}: ground truth {truth.seconds:.1f}s; query cosine to nearest "
        f"{truth.top1_cos:.3f}, to {args.k}th {truth.topk_cos:.3f}, to random chunks {truth.random_cos:.3f}",
        flush=True,
    )
    nlist = args.nlist or auto_nlist(n)
    rows: list[Row] = []
    for method in args.methods:
        rows += measure_method(method, data, n, nlist, q, truth, args)
        gc.collect()  # the index is gone with measure_method's frame: the next one starts clean
    stats = {
        "size": n,
        "nlist": nlist,
        "ground_truth_s": truth.seconds,
        "query_cos_nearest": truth.top1_cos,
        f"query_cos_{args.k}th": truth.topk_cos,
        "query_cos_random": truth.random_cos,
    }
    return rows, stats


def measure_method(
    method: str, data: MixtureData, n: int, nlist: int, q: np.ndarray, truth: Truth, args: argparse.Namespace
) -> list[Row]:
    """Build one index, then time every search setting (and the filtered rows of one)."""
    gc.collect()
    before = rss_mb()
    index, build_s = build(method, data, n, nlist, args.build_threads)
    gc.collect()
    added = rss_mb() - before
    size_mb = index_bytes(index) / 1e6
    label = {"flat": "", "ivf_sq8": f"nlist {nlist}", "hnsw_sq8": "M 32"}[method]
    filters = [("all", None)] + [(_flabel(f), allowed_ids(n, f)) for f in args.filter_fractions]
    rows: list[Row] = []
    for setting, make in sweep(method, index, args):
        for name, allowed in filters:
            if name != "all" and setting != filtered_setting(method, args):
                continue
            found, lat = time_queries(index, q, args.k, functools.partial(make, allowed))
            row = Row(
                size=n,
                dim=args.dim,
                method=method,
                params=", ".join(p for p in (label, setting, "" if name == "all" else name) if p),
                build_s=build_s,
                index_mb=size_mb,
                rss_mb=added,
                p50_ms=float(np.percentile(lat, 50)),
                p95_ms=float(np.percentile(lat, 95)),
                recall=recall_at_k(found, truth.ids[name]),
            )
            rows.append(row)
            print(_line(row), flush=True)
    return rows


def filtered_setting(method: str, args: argparse.Namespace) -> str:
    """The one search setting per method that also gets the filtered rows."""
    return {
        "flat": "exact",
        "ivf_sq8": f"nprobe {args.filter_nprobe}",
        "hnsw_sq8": f"efSearch {max(args.filter_nprobe, 64)}",
    }[method]


def _line(r: Row) -> str:
    return (
        f"{r.method:9s} {r.params:36s} build {r.build_s:7.1f}s  index {r.index_mb:8.1f} MB  "
        f"rss +{r.rss_mb:8.1f} MB  p50 {r.p50_ms:7.2f} ms  p95 {r.p95_ms:7.2f} ms  recall@k {r.recall:.3f}"
    )


# --------------------------------------------------------------------------- report


TARGETS = {"p95_ms": 30.0, "recall": 0.95, "index_mb": 4000.0}


def meets(r: Row) -> bool:
    return r.p95_ms <= TARGETS["p95_ms"] and r.recall >= TARGETS["recall"] and r.index_mb <= TARGETS["index_mb"]


def markdown(rows: list[Row], stats: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    out = [
        "# Vector index benchmark (synthetic clustered vectors)",
        "",
        (
            f"`python -m eval.ann_benchmark {meta['argv']}` — faiss {meta['faiss']}, {meta['cpus']} CPUs, "
            f"{meta['machine']}; search with 1 thread, one query at a time; build with "
            f"{meta['build_threads']} thread(s); load average {meta['load_avg_at_start']:.1f} at the start "
            f"(latencies are only meaningful on a quiet machine). Targets (at 1M): p95 ≤ {TARGETS['p95_ms']:.0f} ms, "
            f"recall@{meta['k']} ≥ {TARGETS['recall']}, vectors ≤ {TARGETS['index_mb'] / 1000:.0f} GB; "
            "✓ = all three met."
        ),
        "",
        (
            f"Data: {meta['clusters']} clusters (Gaussian mixture on the unit sphere, low-rank spread), "
            f"{meta['queries']} queries drawn near the data. Filtered rows: a random share of the chunks "
            "allowed (like an access group), recall against exact filtered search."
        ),
        "",
        "| size | data: query cos to nearest / 10th / random | nlist | ground truth s |",
        "|---:|---|---:|---:|",
    ]
    for s in stats:
        cos_k = next(v for key, v in s.items() if key.startswith("query_cos_") and key.endswith("th"))
        out.append(
            f"| {s['size']:,} | {s['query_cos_nearest']:.3f} / {cos_k:.3f} / {s['query_cos_random']:.3f} "
            f"| {s['nlist']} | {s['ground_truth_s']:.1f} |"
        )
    out += [
        "",
        (
            f"| size | dim | method | parameters | build s | index MB | RSS added MB | p50 ms | p95 ms "
            f"| recall@{meta['k']} | targets |"
        ),
        "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|:-:|",
    ]
    for r in rows:
        out.append(
            f"| {r.size:,} | {r.dim} | {r.method} | {r.params} | {r.build_s:.1f} | {r.index_mb:.1f} | "
            f"{r.rss_mb:.0f} | {r.p50_ms:.2f} | {r.p95_ms:.2f} | {r.recall:.3f} | {'✓' if meets(r) else ''} |"
        )
    out += ["", f"Peak process RSS: {meta['peak_rss_mb']:.0f} MB; total time {meta['seconds']:.0f} s.", ""]
    return "\n".join(out)


def _ints(text: str) -> list[int]:
    return [int(float(v)) for v in text.split(",") if v.strip()]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--sizes", type=_ints, default=[100_000, 1_000_000], help="comma-separated (default 100000,1000000)"
    )
    ap.add_argument("--dim", type=int, default=768, help="768 = EmbeddingGemma; 256 = its Matryoshka cut")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--clusters", type=int, default=2000)
    ap.add_argument("--local-spread", type=float, default=1.0, help="norm of the low-rank spread within a cluster")
    ap.add_argument("--iso-spread", type=float, default=0.4, help="norm of the isotropic noise")
    ap.add_argument("--anisotropy", type=float, default=1.0, help="weight of the shared direction")
    ap.add_argument(
        "--methods",
        type=lambda t: t.split(","),
        default=["flat", "ivf_sq8"],
        help="flat, ivf_sq8, hnsw_sq8 (comma-separated; default flat,ivf_sq8)",
    )
    ap.add_argument("--nlist", type=int, default=0, help="IVF lists; 0 = the service's auto (4·sqrt(n))")
    ap.add_argument("--nprobe", type=_ints, default=[8, 16, 32, 64, 128])
    ap.add_argument("--ef-search", type=_ints, default=[16, 32, 64, 128])
    ap.add_argument(
        "--filter-fractions",
        type=_floats,
        default=[0.1, 0.01],
        help="shares of chunks allowed in the filtered rows ('' for none)",
    )
    ap.add_argument("--filter-nprobe", type=int, default=32, help="the nprobe (and efSearch) of the filtered rows")
    ap.add_argument("--build-threads", type=int, default=0, help="0 = all cores (as an ingest)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "reports" / "ann-benchmark", help="writes OUT.md and OUT.json")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    load = os.getloadavg()[0]
    rows: list[Row] = []
    stats: list[dict[str, Any]] = []
    for n in args.sizes:
        r, s = run_size(n, args)
        rows += r
        stats.append(s)
    meta = {
        "argv": " ".join(argv if argv is not None else sys.argv[1:]),
        "faiss": faiss.__version__,
        "cpus": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "build_threads": args.build_threads or os.cpu_count(),
        "k": args.k,
        "clusters": args.clusters,
        "queries": args.queries,
        "dim": args.dim,
        "load_avg_at_start": load,
        "peak_rss_mb": peak_rss_mb(),
        "seconds": time.perf_counter() - t0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(markdown(rows, stats, meta), encoding="utf-8")
    args.out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "data": stats, "targets": TARGETS, "results": [r.__dict__ for r in rows]}, indent=2),
        encoding="utf-8",
    )
    print(f"\npeak RSS {meta['peak_rss_mb']:.0f} MB, {meta['seconds']:.0f} s; wrote {args.out}.md/.json")


if __name__ == "__main__":
    main()
