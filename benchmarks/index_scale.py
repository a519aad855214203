"""1:N search at scale: exact faiss search (the ``Gallery``'s ``IndexIDMap2`` over
``IndexFlatIP``) against approximate indexes, IVF (``IndexIVFFlat``, inner product, a few
``nprobe`` settings) and HNSW (``IndexHNSWFlat``), over galleries of random 128-d unit
templates, one probe at a time. Reports build time, index memory, p50/p99 latency and
recall@1 against the exact answer for two kinds of probe:

- *enrolled*: a template plus noise, at cosine ``--probe-cos`` to it (another photo of
  someone enrolled, the case a watch-list must not miss; 0.8 is a clear genuine match, 0.6 a
  weak one, as a small face gives);
- *stranger*: a random unit vector (nobody enrolled; the top-1 is whichever template happens
  to be nearest, a near tie that approximate search can break differently).

Everything is bounded: ``--queries`` probes per method, HNSW only up to ``--hnsw-max``
identities (its build is the slow part on a small CPU).

    python benchmarks/index_scale.py --sizes 100000,1000000
"""

from __future__ import annotations

import argparse
import os
import platform
import time


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,1000000", help="gallery sizes")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=300, help="probes per kind and method")
    parser.add_argument("--nprobes", default="8,32", help="IVF nprobe settings")
    parser.add_argument("--hnsw-max", type=int, default=100_000, help="largest HNSW gallery")
    parser.add_argument("--probe-cos", default="0.8,0.6", help="enrolled probes' cosines")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import faiss
    import numpy as np

    from lrface.machine import cpu_model
    from lrface.search.gallery import APPROXIMATE_FROM, Gallery, ivf_index, ivf_lists

    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        templates = rng.normal(size=(size, args.dim)).astype(np.float32)
        templates /= np.linalg.norm(templates, axis=1, keepdims=True)
        ids = np.arange(size, dtype=np.int64)
        probes = {}
        for cos in (float(c) for c in args.probe_cos.split(",")):
            owners = rng.integers(0, size, args.queries)
            noise = rng.normal(size=(args.queries, args.dim)).astype(np.float32)
            noise -= (noise * templates[owners]).sum(1, keepdims=True) * templates[owners]
            noise /= np.linalg.norm(noise, axis=1, keepdims=True)  # orthogonal to the template
            probes[f"cos {cos}"] = cos * templates[owners] + np.sqrt(1 - cos * cos) * noise
        strangers = rng.normal(size=(args.queries, args.dim)).astype(np.float32)
        probes["stranger"] = strangers / np.linalg.norm(strangers, axis=1, keepdims=True)

        start = time.perf_counter()
        gallery = Gallery("random", args.dim)
        for i in range(size):
            gallery.add(f"id{i}", templates[i : i + 1])
        gallery_s = time.perf_counter() - start
        print(f"{size:,}: Gallery (flat) built in {gallery_s:.1f} s", flush=True)

        methods: dict[str, tuple[object, float, int]] = {}
        start = time.perf_counter()
        flat = faiss.IndexIDMap2(faiss.IndexFlatIP(args.dim))
        flat.add_with_ids(templates, ids)
        methods["flat (exact)"] = (flat, time.perf_counter() - start, _bytes(faiss, flat))
        start = time.perf_counter()
        ivf = ivf_index(templates, ids, nprobe=1)
        ivf_s = time.perf_counter() - start
        for nprobe in (int(n) for n in args.nprobes.split(",")):
            methods[f"IVF{ivf_lists(size)} nprobe={nprobe}"] = (
                (ivf, nprobe),
                ivf_s,
                _bytes(faiss, ivf),
            )
        if size <= args.hnsw_max:
            start = time.perf_counter()
            hnsw = faiss.IndexHNSWFlat(args.dim, 32, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = 40
            hnsw.add(templates)
            hnsw.hnsw.efSearch = 64
            methods["HNSW32 efSearch=64"] = (hnsw, time.perf_counter() - start, _bytes(faiss, hnsw))
        print(f"{size:,}: indexes built", flush=True)

        exact = {kind: flat.search(p, 1)[1][:, 0] for kind, p in probes.items()}
        for name, (index, build_s, memory) in methods.items():
            if isinstance(index, tuple):
                index, nprobe = index
                index.nprobe = nprobe
            row = {"size": size, "method": name, "build_s": build_s, "memory_mb": memory / 2**20}
            for kind, queries in probes.items():
                for q in queries[:10]:
                    index.search(q[None], 5)  # warm-up
                times, top1 = [], []
                for q in queries:
                    start = time.perf_counter()
                    top1.append(index.search(q[None], 5)[1][0, 0])
                    times.append(time.perf_counter() - start)
                ms = np.array(times) * 1e3
                row[kind] = (
                    float(np.mean(np.array(top1) == exact[kind])),
                    float(np.median(ms)),
                    float(np.percentile(ms, 99)),
                )
            rows.append(row)
            print(row, flush=True)

        start = time.perf_counter()
        gallery.choose_index()
        print(
            f"{size:,}: Gallery.choose_index took {time.perf_counter() - start:.1f} s: "
            f"{gallery.index_kind}",
            flush=True,
        )
        del gallery, flat, methods

    print(
        f"\n{cpu_model()}, {os.cpu_count()} logical CPUs, {args.threads} thread(s), faiss "
        f"{faiss.__version__}, Python {platform.python_version()}, load average "
        f"{os.getloadavg()[0]:.2f}; {args.queries} single probes of each kind, top-5; "
        f"Gallery switches to IVF from {APPROXIMATE_FROM:,} identities\n"
    )
    kinds = [k for k in rows[0] if k not in ("size", "method", "build_s", "memory_mb")]
    print(
        "| identities | index | build s | memory MB | "
        + " | ".join(f"recall@1 {k} | p50 / p99 ms {k}" for k in kinds)
        + " |"
    )
    print("|---:|---|---:|---:|" + "---:|---:|" * len(kinds))
    for r in rows:
        cells = [f"{100 * r[k][0]:.1f}% | {r[k][1]:.3f} / {r[k][2]:.3f}" for k in kinds]
        print(
            f"| {r['size']:,} | {r['method']} | {r['build_s']:.1f} | {r['memory_mb']:.0f} | "
            + " | ".join(cells)
            + " |"
        )


def _bytes(faiss, index) -> int:
    """The index's size serialized (what it holds in memory, to a few percent)."""
    return int(faiss.serialize_index(index).nbytes)


if __name__ == "__main__":
    main()
