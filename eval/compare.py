"""Compare two runs: a diff table that flags regressions beyond noise.

    python -m eval compare eval/runs/<A> eval/runs/<B> [--min-delta 0.02] [--fail-on-regression]

Only questions present in both runs are compared (paired). For every metric the difference B − A
of the means gets a 95 % paired-bootstrap interval (2,000 resamples of the common questions, fixed
seed). A change is flagged

- ``REGRESSION`` when it is worse by at least ``min_delta`` (absolute, 0.02 by default) AND the whole
  interval lies on the worse side of 0 — i.e. beyond resampling noise;
- ``improved`` symmetrically; otherwise ``~`` (within noise).

Latency metrics are compared on their medians (p50) with a relative threshold (``min_rel_latency``,
20 % by default) and the same bootstrap rule. Single questions that flipped from passing to failing
(their issue list went from empty to non-empty) are listed too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .run import HIGHER_IS_BETTER, LATENCY, load_results


@dataclass
class Diff:
    metric: str
    a: float | None
    b: float | None
    delta: float | None
    lo: float | None
    hi: float | None
    n: int
    flag: str  # REGRESSION | improved | ~ | n/a


def bootstrap_ci(
    a: Sequence[float], b: Sequence[float], stat=np.mean, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Paired bootstrap interval of stat(b) - stat(a) over the common items."""
    xa = np.asarray(a, dtype=float)
    xb = np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(xa), size=(n_boot, len(xa)))
    if stat is np.mean:
        d = xb[idx].mean(axis=1) - xa[idx].mean(axis=1)
    else:
        d = np.array([stat(xb[i]) - stat(xa[i]) for i in idx])
    return float(np.quantile(d, alpha / 2)), float(np.quantile(d, 1 - alpha / 2))


def _flag(delta: float, lo: float, hi: float, higher_better: bool, threshold: float) -> str:
    worse = -delta if higher_better else delta
    if worse >= threshold and (hi < 0 if higher_better else lo > 0):
        return "REGRESSION"
    better = delta if higher_better else -delta
    if better >= threshold and (lo > 0 if higher_better else hi < 0):
        return "improved"
    return "~"


def compare_results(ra: dict, rb: dict, min_delta: float = 0.02, min_rel_latency: float = 0.2) -> dict:
    rows_a = {r["id"]: r for r in ra["rows"] if not r.get("error")}
    rows_b = {r["id"]: r for r in rb["rows"] if not r.get("error")}
    common = [i for i in rows_a if i in rows_b]
    diffs: list[Diff] = []
    names = sorted(
        {k for i in common for k in rows_a[i]["metrics"]} | {k for i in common for k in rows_b[i]["metrics"]},
        key=lambda k: (list(HIGHER_IS_BETTER).index(k) if k in HIGHER_IS_BETTER else 999, k),
    )
    for k in names:
        pairs = [(rows_a[i]["metrics"].get(k), rows_b[i]["metrics"].get(k)) for i in common]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        if not pairs:
            diffs.append(Diff(k, None, None, None, None, None, 0, "n/a"))
            continue
        a, b = zip(*pairs)
        ma, mb = float(np.mean(a)), float(np.mean(b))
        lo, hi = bootstrap_ci(a, b)
        diffs.append(
            Diff(
                k, ma, mb, mb - ma, lo, hi, len(pairs), _flag(mb - ma, lo, hi, HIGHER_IS_BETTER.get(k, True), min_delta)
            )
        )
    for k, higher_better in LATENCY.items():
        pairs = [(rows_a[i].get("latency", {}).get(k), rows_b[i].get("latency", {}).get(k)) for i in common]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        if len(pairs) < 2:
            continue
        a, b = zip(*pairs)
        ma, mb = float(np.median(a)), float(np.median(b))
        lo, hi = bootstrap_ci(a, b, stat=np.median, n_boot=1000)
        thr = abs(ma) * min_rel_latency
        diffs.append(
            Diff(f"{k} (p50)", ma, mb, mb - ma, lo, hi, len(pairs), _flag(mb - ma, lo, hi, higher_better, thr))
        )
    flips = []
    for i in common:
        ia, ib = rows_a[i].get("issues", []), rows_b[i].get("issues", [])
        if not ia and ib:
            flips.append({"id": i, "question": rows_b[i]["question"], "issues": ib})
    return {
        "a": ra.get("config", {}).get("run", {}),
        "b": rb.get("config", {}).get("run", {}),
        "common": len(common),
        "only_a": len(rows_a) - len(common),
        "only_b": len(rows_b) - len(common),
        "diffs": [d.__dict__ for d in diffs],
        "regressions": [d.metric for d in diffs if d.flag == "REGRESSION"],
        "new_failures": flips,
    }


def compare(run_a: Path, run_b: Path, **kw) -> dict:
    return compare_results(load_results(run_a), load_results(run_b), **kw)


def format_table(cmp: dict) -> str:
    def f(v, d=3):
        return "–" if v is None else f"{v:.{d}f}"

    lines = [f"{cmp['common']} common questions (only in A: {cmp['only_a']}, only in B: {cmp['only_b']})", ""]
    lines.append(f"{'metric':28s} {'A':>9s} {'B':>9s} {'B-A':>9s} {'95% CI':>21s} {'n':>4s}  flag")
    for d in cmp["diffs"]:
        ci = f"[{f(d['lo'])}, {f(d['hi'])}]" if d["lo"] is not None else ""
        lines.append(
            f"{d['metric']:28s} {f(d['a']):>9s} {f(d['b']):>9s} {f(d['delta']):>9s} {ci:>21s} {d['n']:>4d}  {d['flag']}"
        )
    if cmp["new_failures"]:
        lines += ["", f"{len(cmp['new_failures'])} question(s) passed in A and fail in B:"]
        for fl in cmp["new_failures"][:30]:
            lines.append(f"  {fl['id']}: {fl['question'][:70]} — {'; '.join(fl['issues'])[:120]}")
    lines += ["", "regressions: " + (", ".join(cmp["regressions"]) or "none")]
    return "\n".join(lines)
