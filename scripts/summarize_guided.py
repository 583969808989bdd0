#!/usr/bin/env python3
"""Summary of scripts/eval_guided.sh: one row per setting, changes paired with the unguided baseline (s0).

Usage: summarize_guided.py OUT BASELINE SETTING...   (OUT/<setting>/items.csv, table.json, distances.json)
Standard library only. The judge is the default model (cocola_score), the guide's score is cocola_score_2.
"""
import csv
import json
import math
import os
import sys


def mean_ci(values):
    n = len(values)
    m = sum(values) / n
    if n < 2:
        return m, float("nan")
    var = sum((v - m) ** 2 for v in values) / (n - 1)
    return m, 1.96 * math.sqrt(var / n)


def items(folder):
    rows = {}
    with open(os.path.join(folder, "items.csv"), newline="") as f:
        for r in csv.DictReader(f):
            rows[(r["test_set"], r["task"], int(r["index"]), r["generator"])] = r
    return rows


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def kad(folder, embedding):
    path = os.path.join(folder, "distances.json")
    if not os.path.exists(path):
        return "-"
    for d in json.load(open(path)):
        # The row over both test sets together when there is one, else the only set.
        if d["generator"] == "componet" and d["embedding"] == embedding and d["test_set"] in ("all", "both", "*"):
            return "%.1f [%.1f, %.1f]" % (d["kad"], d["kad_low"], d["kad_high"])
    rows = [d for d in json.load(open(path)) if d["generator"] == "componet" and d["embedding"] == embedding]
    return "; ".join("%s %.1f [%.1f, %.1f]" % (d["test_set"], d["kad"], d["kad_low"], d["kad_high"]) for d in rows) or "-"


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, baseline = sys.argv[1], sys.argv[2]
    settings = []
    for s in sys.argv[2:]:
        if s not in settings:
            settings.append(s)
    base = items(os.path.join(out, baseline))
    keys = sorted(k for k in base if k[3] == "componet")
    truth = [number(base[k[:3] + ("truth",)]["cocola_score"]) for k in keys if k[:3] + ("truth",) in base]
    random = [number(base[k[:3] + ("random",)]["cocola_score"]) for k in keys if k[:3] + ("random",) in base]
    gap = (sum(truth) / len(truth) - sum(random) / len(random)) if truth and random else float("nan")
    print("| setting | items | judge: default model's score | judge, paired change from %s | change, points of Random -> Ground Truth "
          "| guide's own score | guide, paired change | KAD, COCOLA emb. [95%%] | KAD, VAE emb. [95%%] | log-mel L1 (dB) |" % baseline)
    print("|---|---|---|---|---|---|---|---|---|---|")
    for s in settings:
        folder = os.path.join(out, s)
        if not os.path.exists(os.path.join(folder, "items.csv")):
            print("| %s | not run | | | | | | | | |" % s)
            continue
        rows = items(folder)
        shared = [k for k in keys if k in rows]
        judge = [number(rows[k]["cocola_score"]) for k in shared]
        guide = [number(rows[k]["cocola_score_2"]) for k in shared]
        l1 = [number(rows[k]["log_mel_l1_db"]) for k in shared]
        dj = [number(rows[k]["cocola_score"]) - number(base[k]["cocola_score"]) for k in shared]
        dg = [number(rows[k]["cocola_score_2"]) - number(base[k]["cocola_score_2"]) for k in shared]
        jm, jc = mean_ci(judge)
        gm, gc = mean_ci(guide)
        lm, lc = mean_ci(l1)
        if s == baseline:
            change = gchange = points = "-"
        else:
            m, c = mean_ci(dj)
            change = "%+.2f ± %.2f (%d/%d up)" % (m, c, sum(d > 0 for d in dj), len(dj))
            points = "%+.0f ± %.0f" % (100 * m / gap, 100 * c / gap) if gap == gap and gap != 0 else "-"
            m, c = mean_ci(dg)
            gchange = "%+.2f ± %.2f (%d/%d up)" % (m, c, sum(d > 0 for d in dg), len(dg))
        print("| %s | %d | %.2f ± %.2f | %s | %s | %.2f ± %.2f | %s | %s | %s | %.2f ± %.2f |" % (
            s, len(shared), jm, jc, change, points, gm, gc, gchange, kad(folder, "cocola"), kad(folder, "vae"), lm, lc))
    for name, gen in (("Ground Truth", "truth"), ("Random", "random")):
        ks = [k[:3] + (gen,) for k in keys if k[:3] + (gen,) in base]
        if ks:
            jm, jc = mean_ci([number(base[k]["cocola_score"]) for k in ks])
            gm, gc = mean_ci([number(base[k]["cocola_score_2"]) for k in ks])
            lm, lc = mean_ci([number(base[k]["log_mel_l1_db"]) for k in ks])
            print("| %s | %d | %.2f ± %.2f | | | %.2f ± %.2f | | | | %.2f ± %.2f |" % (name, len(ks), jm, jc, gm, gc, lm, lc))


if __name__ == "__main__":
    main()
