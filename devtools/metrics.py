#!/usr/bin/env python3
"""Summarises the CloudWatch EMF metrics the local functions logged
(`make metrics`): the same documents CloudWatch turns into metrics when
deployed, read from .local/logs/*.log. Counts are summed, timings get
count / p50 / p99 / max."""

import json
import sys
from collections import defaultdict
from pathlib import Path

LOGS = Path(__file__).resolve().parent.parent / ".local" / "logs"


def values(v):
    if isinstance(v, (int, float)):
        return [v]
    if isinstance(v, list):
        return [x for x in v if isinstance(x, (int, float))]
    if isinstance(v, dict):  # {"Values": [...], "Counts": [...]}
        out = []
        for x, n in zip(v.get("Values", []), v.get("Counts", [])):
            out.extend([x] * int(n))
        return out
    return []


def pct(sorted_vals, p):
    if not sorted_vals:
        return 0.0
    i = min(len(sorted_vals) - 1, int(round(p / 100 * (len(sorted_vals) - 1))))
    return sorted_vals[i]


def main() -> int:
    if not LOGS.is_dir():
        print("no local logs yet: start the stack with `make run`", file=sys.stderr)
        return 1
    series = defaultdict(list)
    kinds = {}
    for path in sorted(LOGS.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if '"_aws"' not in line:
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                continue
            for directive in doc["_aws"].get("CloudWatchMetrics", []):
                dims = directive.get("Dimensions", [[]])[0]
                for metric in directive.get("Metrics", []):
                    name = metric["Name"]
                    key = (name, tuple(f"{d}={doc.get(d, '')}" for d in dims))
                    raw = doc.get(name)
                    series[key].extend(values(raw))
                    kinds[key] = "timing" if isinstance(raw, (list, dict)) else "count"
    if not series:
        print("no metrics logged yet: call the API first")
        return 0
    print(f"{'metric':<22} {'dimensions':<58} {'value':>30}")
    for (name, dims), vals in sorted(series.items()):
        if kinds[(name, dims)] == "timing":
            s = sorted(vals)
            value = f"n={len(s)} p50={pct(s, 50):.1f} p99={pct(s, 99):.1f} max={s[-1]:.1f}"
        else:
            value = f"{sum(vals):g}"
        print(f"{name:<22} {' '.join(dims):<58} {value:>30}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
