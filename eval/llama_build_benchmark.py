"""Prefill and decode speed of llama.cpp builds on this machine: what portability costs.

    .venv/bin/python eval/llama_build_benchmark.py \\
        --build portable=~/.cache/vraagbaak/wheels/llama-<key>/llama_cpp_python-0.3.36-*.whl \\
        --build native=/tmp/native/llama_cpp_python-0.3.36-*.whl [--prefill 512 --decode 64 --repeat 3]

Each build (a llama-cpp-python wheel) is unpacked into its own folder and run by the smoke
test's child (rag/llm/smoke.py: load the default GGUF, time a prefill of N prompt tokens and
N decoded tokens) in turns, so drift of the machine falls on every build alike; the table
gives the median of the repeats, the instruction-set extensions each build's libggml-cpu
uses, and this CPU's flags. Time it on a quiet machine: 2 cores, nothing else running.
"""

from __future__ import annotations

import argparse
import glob
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from rag.llm.smoke import scan_library, smoke_test, vector_flags
    from rag.models import resolve_llm
    from rag.settings import Settings

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", action="append", required=True, help="NAME=WHEEL (a glob is expanded)")
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--decode", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)

    model = resolve_llm(Settings())
    work = Path(tempfile.mkdtemp(prefix="llama-builds-"))
    builds: dict[str, Path] = {}
    for spec in args.build:
        name, _, pattern = spec.partition("=")
        wheels = sorted(glob.glob(str(Path(pattern).expanduser())))
        if len(wheels) != 1:
            ap.error(f"{spec}: {len(wheels)} wheels match")
        target = work / name
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), wheels[0]], check=True
        )
        builds[name] = target

    runs: dict[str, list[dict]] = {n: [] for n in builds}
    for i in range(args.repeat):
        for name, target in builds.items():
            r = smoke_test(
                model,
                prefill=args.prefill,
                decode=args.decode,
                threads=args.threads,
                pythonpath=[str(target)],
                timeout=900,
                variant="portable",
            )
            if not r.ok:
                print(f"{name}: {r.message()}", file=sys.stderr)
                return 1
            runs[name].append(r.detail)
            print(
                f"run {i + 1} {name}: prefill {r.detail['prefill_tokens_per_s']} tok/s, "
                f"decode {r.detail['decode_tokens_per_s']} tok/s",
                flush=True,
            )

    print(
        f"\nCPU vector flags: {' '.join(vector_flags())}; model {Path(model).name}; "
        f"{args.prefill} prompt tokens, {args.decode} decoded, median of {args.repeat}\n"
    )
    print("| build | libggml-cpu uses | prefill tokens/s | decode tokens/s |")
    print("|---|---|---:|---:|")
    for name, target in builds.items():
        lib = next(iter(sorted((target / "llama_cpp" / "lib").glob("libggml-cpu*.so*"))), None)
        uses = ", ".join(sorted(scan_library(lib).uses)) if lib else "?"
        pre = statistics.median(d["prefill_tokens_per_s"] for d in runs[name])
        dec = statistics.median(d["decode_tokens_per_s"] for d in runs[name])
        print(f"| {name} | {uses} | {pre:.1f} | {dec:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
