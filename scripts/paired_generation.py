#!/usr/bin/env python3
"""Paired differences of COCOLA scores between generators on the same items (`cocola eval-generation`'s items.csv).

For every test set (and all sets together) and every pair asked for: the mean difference of the COCOLA score over
the items both rows made, its 95% interval (normal approximation over the per-item differences) and how many
items the first row won. Pairing removes the spread of the items, which the unpaired intervals of table.md carry.

    python3 scripts/paired_generation.py out/table3/items.csv componet-msdm msdm-random componet-random truth-componet
    python3 scripts/paired_generation.py out/new/items.csv --against out/old/items.csv componet msdm

With --against OLD: each named generator of the first evaluation against the same generator of OLD, item by item
(the same items when both ran with the same --data, --n, --seed and generators).

Only the standard library: runs with any python3.
"""
import argparse
import csv
import math
import sys
from collections import defaultdict


def read(path):
    scores = defaultdict(dict)  # (set, task, index) -> generator -> score
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                value = float(row["cocola_score"])
            except ValueError:
                continue
            if math.isfinite(value):
                scores[(row["test_set"], row["task"], row["index"])][row["generator"]] = value
    return scores


def summary(diffs):
    n = len(diffs)
    mean = sum(diffs) / n
    half = 1.96 * math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) if n > 1 else float("nan")
    wins = sum(d > 0 for d in diffs)
    return f"{mean:+.2f} ± {half:.2f} ({wins}/{n})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("items", help="items.csv written by cocola eval-generation")
    ap.add_argument("pairs", nargs="+", help="A-B generator pairs, or generator names with --against")
    ap.add_argument("--against", help="another evaluation's items.csv: each named generator against itself there")
    args = ap.parse_args()
    try:
        new = read(args.items)
        old = read(args.against) if args.against else None
    except (OSError, KeyError, csv.Error) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    columns = []
    for p in args.pairs:
        if old is not None:
            columns.append((p, lambda k, g=p: (new.get(k, {}).get(g), old.get(k, {}).get(g))))
        elif "-" in p:
            a, b = p.split("-", 1)
            columns.append((p, lambda k, a=a, b=b: (new[k].get(a), new[k].get(b))))
        else:
            print(f"error: {p}: give pairs as A-B (or generator names with --against)", file=sys.stderr)
            return 2
    sets = sorted({k[0] for k in new})
    header = "| test set | " + " | ".join(name + (" (new - old)" if old is not None else "") for name, _ in columns) + " |"
    print(header)
    print("|---" * (len(columns) + 1) + "|")
    for s in sets + (["all"] if len(sets) > 1 else []):
        cells = []
        for _, get in columns:
            diffs = []
            for k in new:
                if s != "all" and k[0] != s:
                    continue
                a, b = get(k)
                if a is not None and b is not None:
                    diffs.append(a - b)
            cells.append(summary(diffs) if diffs else "-")
        print(f"| {s} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
