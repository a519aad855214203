"""1:N search latency: faiss (the ``Gallery``'s ``IndexIDMap2`` over ``IndexFlatIP``, and a bare
``IndexFlatIP``) against NumPy brute force (matrix-vector product + ``argpartition``), one probe
at a time, over a gallery of random unit vectors. Checks that all three return the same top-k.

    python benchmarks/gallery_search.py --size 100000
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from lrface.machine import cpu_model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=100_000, help="gallery identities")
    parser.add_argument("--dim", type=int, default=128, help="embedding dimension")
    parser.add_argument("--queries", type=int, default=1000, help="single-probe searches timed")
    parser.add_argument("-k", type=int, default=5, help="top-k")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy/faiss load their thread pools

    import faiss
    import numpy as np

    from lrface.search.gallery import Gallery

    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    vectors = rng.normal(size=(args.size, args.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    probes = rng.normal(size=(args.queries, args.dim)).astype(np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)

    start = time.perf_counter()
    gallery = Gallery("random", args.dim)
    for i, v in enumerate(vectors):
        gallery.add(f"id{i}", v[None])
    build_s = time.perf_counter() - start
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(vectors)
    names = {f"id{i}": i for i in range(args.size)}

    def numpy_topk(q):
        scores = vectors @ q
        top = np.argpartition(-scores, args.k)[: args.k]
        return top[np.argsort(-scores[top])]

    methods = {
        "Gallery.search (faiss IndexIDMap2+IndexFlatIP)": lambda q: [
            names[m.name] for m in gallery.search(q[None], args.k)[0]
        ],
        "faiss IndexFlatIP": lambda q: flat.search(q[None], args.k)[1][0].tolist(),
        "NumPy brute force": lambda q: numpy_topk(q).tolist(),
    }
    timings, answers = {}, {}
    for name, fn in methods.items():
        for q in probes[:10]:
            fn(q)  # warm-up
        times, out = [], []
        for q in probes:
            start = time.perf_counter()
            out.append(fn(q))
            times.append(time.perf_counter() - start)
        timings[name], answers[name] = np.array(times) * 1e3, out
    reference = answers["NumPy brute force"]
    agree = {
        n: np.mean([a == b for a, b in zip(ans, reference, strict=True)])
        for n, ans in answers.items()
    }

    cpu = cpu_model()
    print(
        f"Gallery of {args.size:,} random {args.dim}-d unit vectors, {args.queries} single probes, "
        f"top-{args.k}, {args.threads} thread(s); building the Gallery took {build_s:.1f} s.\n"
    )
    print(
        f"Machine: {cpu}, {os.cpu_count()} logical CPUs, faiss {faiss.__version__}, "
        f"NumPy {np.__version__}, Python {platform.python_version()}\n"
    )
    print("| method | median ms | p99 ms | same top-k as NumPy |\n|---|---|---|---|")
    for name, t in timings.items():
        median, p99 = np.median(t), np.percentile(t, 99)
        print(f"| {name} | {median:.3f} | {p99:.3f} | {100 * agree[name]:.1f}% |")


if __name__ == "__main__":
    main()
