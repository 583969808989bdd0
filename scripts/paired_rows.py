#!/usr/bin/env python3
"""Paired comparison of models on the same evaluation rows (`cocola eval --rows rows.csv`).

For every test set and every model against a reference model: the change in K = 2 accuracy on the rows both
models were scored on (same window, same sub-mixes, same batch), its 95% interval (normal approximation over the
per-row differences), and how many rows were lost and gained. Pairing removes the spread of the test items,
which the unpaired intervals of eval.md carry.

    python3 scripts/paired_rows.py out/effects/rows.csv --reference effects_dry [--markdown]
    python3 scripts/paired_rows.py out/effects/rows.csv --across openmsx:openmsx-fx

With --across A:B it compares, for every model, test set B against test set A on the rows they share (the same
songs rendered twice, e.g. dry and through effects): what the rendering costs each model.

Only the standard library: runs with any python3.
"""
import argparse
import csv
import math
import sys
from collections import defaultdict


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rows", help="rows.csv written by `cocola eval --rows`")
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--reference", help="model name (as in the csv's model column) to compare against")
    group.add_argument("--across", help="A:B: every model on test set B against itself on test set A")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table instead of plain lines")
    args = ap.parse_args()

    # (model, dataset) -> {(batch, track, offset, anchor, positive): right}
    right = defaultdict(dict)
    try:
        with open(args.rows, newline="") as f:
            reader = csv.DictReader(f)
            need = {"model", "dataset", "batch", "track", "offset_s", "anchor", "positive", "right"}
            if not reader.fieldnames or not need <= set(reader.fieldnames):
                print(f"{args.rows}: not a `cocola eval --rows` file (needs columns {sorted(need)})", file=sys.stderr)
                return 1
            for r in reader:
                key = (r["batch"], r["track"], r["offset_s"], r["anchor"], r["positive"])
                right[(r["model"], r["dataset"])][key] = int(r["right"])
    except OSError as e:
        print(f"{args.rows}: {e.strerror}", file=sys.stderr)
        return 1
    models = sorted({m for m, _ in right})
    datasets = list(dict.fromkeys(d for _, d in right))
    comparisons = []  # (model label, test-set label, reference rows, compared rows)
    if args.across:
        a, sep, b = args.across.partition(":")
        if not sep or a not in datasets or b not in datasets:
            print(f"{args.rows}: --across wants A:B, two test sets of the file ({', '.join(datasets)})", file=sys.stderr)
            return 1
        comparisons = [(m, b + " vs " + a, right.get((m, a), {}), right.get((m, b), {})) for m in models]
    elif args.reference not in models:
        print(f"{args.rows}: no model named {args.reference} (models: {', '.join(models)})", file=sys.stderr)
        return 1
    else:
        comparisons = [(m + " vs " + args.reference, d, right.get((args.reference, d), {}), right.get((m, d), {}))
                       for m in models if m != args.reference for d in datasets]
    if args.markdown:
        print("| model | test set | rows | change (points) | lost | gained |")
        print("|---|---|---:|---:|---:|---:|")
    for m, d, ref, new in comparisons:
        # Rows pair up by their window and sub-mixes (the batch index too: the protocol's batches).
        keys = sorted(set(ref) & set(new))
        if not keys:
            continue
        diffs = [new[k] - ref[k] for k in keys]
        n = len(diffs)
        mean = sum(diffs) / n
        var = sum((x - mean) ** 2 for x in diffs) / (n - 1) if n > 1 else 0.0
        half = 1.96 * math.sqrt(var / n)
        lost, gained = diffs.count(-1), diffs.count(1)
        if args.markdown:
            print(f"| {m} | {d} | {n} | {100 * mean:+.2f} ± {100 * half:.2f} | {lost} | {gained} |")
        else:
            print(f"{m}, {d}: {100 * mean:+.2f} ± {100 * half:.2f} points "
                  f"({n} rows, {lost} lost, {gained} gained)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
