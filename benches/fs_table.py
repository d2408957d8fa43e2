#!/usr/bin/env python3
"""Tables from `holt-fs bench --json` outputs, as Markdown.

    fs_table.py [--cpu] [--ratio SPEC]... [--geomean PHASES] LABEL=FILE[,FILE...] ...

Each LABEL names one filesystem (or build); several FILEs of a label are
repeated runs: the cell shows their median ops/s with (min-max). With
--cpu the cells are CPU microseconds per operation instead (the bench's
plus the daemon's, when it was run with --daemon-pid; lower is better). A ratio
SPEC `A/B` divides A's median by B's; `A/B|C` divides by the best of B and
C ("the best peer", shown as `A/best(B,C)`). --geomean PHASES (a comma
list) adds a row per thread count with the geometric mean of each ratio
over those phases. A `-` cell: the phase did not run for that label.
"""
import json
import math
import statistics
import sys


def value(r, cpu):
    if not cpu:
        return r["ops_per_s"]
    return r["client_cpu_us_per_op"] + r.get("daemon_cpu_us_per_op", 0.0)


def load(spec, cpu):
    label, _, files = spec.partition("=")
    if not files:
        sys.exit(f"fs_table.py: expected LABEL=FILE[,FILE...], got {spec!r}")
    runs = []
    for path in files.split(","):
        with open(path) as f:
            doc = json.load(f)
        runs.append({(r["phase"], r["threads"]): value(r, cpu) for r in doc["results"]})
    return label, runs


def fmt(v):
    if v < 100:
        return f"{v:.3g}"
    if v >= 100_000:
        return f"{v / 1000:.0f} k"
    if v >= 10_000:
        return f"{v / 1000:.1f} k"
    return f"{v:.0f}"


def cell(values):
    if not values:
        return "-"
    med = fmt(statistics.median(values))
    if len(values) == 1:
        return med
    return f"{med} ({fmt(min(values))}–{fmt(max(values))})"


def ratio(spec, medians):
    """A's median over the best of the others, or None if one is missing."""
    num, _, dens = spec.partition("/")
    top = medians.get(num)
    bottom = [medians[d] for d in dens.split("|") if medians.get(d)]
    if not top or not bottom:
        return None
    return top / max(bottom)


def ratio_header(spec):
    num, _, dens = spec.partition("/")
    return spec if "|" not in dens else f"{num}/best({dens.replace('|', ',')})"


def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}"


def geomean_rows(phases, ratios, ratio_of, n_labels):
    """One row per thread count: each ratio's geometric mean over `phases`."""
    for threads in sorted({t for _, t in ratio_of}):
        row = [f"geomean({','.join(phases)})", str(threads)] + ["-"] * n_labels
        for r in ratios:
            got = [ratio_of[(p, threads)][r] for p in phases if (p, threads) in ratio_of]
            got = [g for g in got if g is not None]
            row.append(fmt_ratio(math.exp(statistics.fmean(map(math.log, got))) if got else None))
        print("| " + " | ".join(row) + " |")


def main(argv):
    ratios, specs, cpu, geomean = [], [], False, []
    it = iter(argv)
    for arg in it:
        if arg == "--cpu":
            cpu = True
        elif arg == "--ratio":
            ratios.append(next(it))
        elif arg == "--geomean":
            geomean = next(it).split(",")
        else:
            specs.append(arg)
    labels = [load(s, cpu) for s in specs]
    keys = []
    for _, runs in labels:
        for run in runs:
            keys += [k for k in run if k not in keys]
    headers = [l for l, _ in labels] + [ratio_header(r) for r in ratios]
    print("| phase | threads | " + " | ".join(headers) + " |")
    print("|---|---:|" + "---:|" * len(headers))
    ratio_of = {}
    for phase, threads in keys:
        values = {l: [run[(phase, threads)] for run in runs if (phase, threads) in run] for l, runs in labels}
        medians = {l: statistics.median(v) for l, v in values.items() if v}
        ratio_of[(phase, threads)] = {r: ratio(r, medians) for r in ratios}
        row = [phase, str(threads)] + [cell(values[l]) for l, _ in labels]
        print("| " + " | ".join(row + [fmt_ratio(ratio_of[(phase, threads)][r]) for r in ratios]) + " |")
    if geomean:
        geomean_rows(geomean, ratios, ratio_of, len(labels))


if __name__ == "__main__":
    main(sys.argv[1:])
