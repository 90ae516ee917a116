#!/usr/bin/env python3
"""Summary of an `ncu --page source --csv --print-source sass` export (plain or .gz).

Usage: ncu_source_summary.py FILE [--section I] [--units N] [--top K] [--levels] [--lines MIN]

An export of several profiled results (ncu --launch-count) holds one section per result, each a
line naming the kernel, then its header and instructions; every section is summarised in turn, or
only section I (0-based) with --section. Prints, for each section as a whole and for each warp
role of a warp-specialised kernel (the code after `USETMAXREG.TRY_ALLOC` is the consumers', after
`USETMAXREG.DEALLOC` the producers'; a kernel without them is one region):
  - its share of the warp-stall samples and its leading stall reasons;
  - executed warp instructions and shared-memory wavefronts per unit of work (--units N: e.g.
    CTAs × k-steps, so that figures read per step), for the opcodes with the most stall samples
    and those with the most wavefronts;
  - the K instructions with the most stall samples, with their two leading reasons.
--levels also groups the instructions by how often each ran per unit (to 0.1): with --units the
items of work, code that runs once per item reads 1.0 and a warp's set-up 1 / (items per warp)
(session 20 split the 2-bit matvecs' per-warp set-up from their dot this way).
--lines MIN also lists, in address order, every instruction that ran at least MIN times per unit.
Run here on a file fetched from the GPU machine (session 15 worked this out by hand three times).
"""
import argparse
import collections
import csv
import gzip
import sys

SAMPLES = "Warp Stall Sampling (All Samples)"


def read_sections(path):
    """[(kernel name, instruction rows)] per section of the export."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        lines = f.read().splitlines()
    sections, name, start = [], "?", None
    for i, line in enumerate(lines):
        if line.startswith('"Kernel Name"'):
            if start is not None:
                sections.append((name, list(csv.DictReader(lines[start:i]))))
            name, start = next(csv.reader([line]))[1], None
        elif line.startswith('"Address"'):
            start = i
    if start is not None:
        sections.append((name, list(csv.DictReader(lines[start:]))))
    return sections


def number(row, key):
    value = row.get(key, "") or "0"
    return float(value.replace(",", ""))


def opcode(source):
    words = [w for w in source.split() if not w.startswith("@")]
    return words[0] if words else "?"


def regions(rows):
    consumer = next((i for i, r in enumerate(rows) if "TRY_ALLOC" in r["Source"]), None)
    producer = next((i for i, r in enumerate(rows) if "DEALLOC" in r["Source"]), None)
    if consumer is None or producer is None:
        return [("kernel", 0, len(rows))]
    first, second = sorted([("consumers", consumer), ("producers", producer)], key=lambda x: x[1])
    return [("prologue", 0, first[1]), (first[0], first[1], second[1]), (second[0], second[1], len(rows))]


def summarise(rows, args):
    stalls = [k for k in rows[0] if k.startswith("stall_") and "Not Issued" not in k]
    total = sum(number(r, SAMPLES) for r in rows) or 1.0
    print("%d instructions, %.0f stall samples" % (len(rows), total))
    for name, lo, hi in regions(rows):
        part = rows[lo:hi]
        samples = sum(number(r, SAMPLES) for r in part)
        reasons = collections.Counter()
        ops = collections.defaultdict(lambda: [0.0, 0.0, 0.0])  # executed, wavefronts, samples
        for r in part:
            for k in stalls:
                reasons[k] += number(r, k)
            o = ops[opcode(r["Source"])]
            o[0] += number(r, "Instructions Executed")
            o[1] += number(r, "L1 Wavefronts Shared")
            o[2] += number(r, SAMPLES)
        reason_total = sum(reasons.values()) or 1.0
        executed = sum(o[0] for o in ops.values())
        wavefronts = sum(o[1] for o in ops.values())
        print("\n== %s: %.1f %% of the samples; %.1f warp instructions and %.1f shared wavefronts per unit"
              % (name, 100 * samples / total, executed / args.units, wavefronts / args.units))
        print("   stalls: " + ", ".join("%s %.1f %%" % (k[6:], 100 * v / reason_total)
                                        for k, v in reasons.most_common(8)))
        print("   %-28s %12s %12s %9s" % ("opcode", "instr/unit", "wavef/unit", "samples%"))
        by_samples = sorted(ops, key=lambda op: -ops[op][2])[:args.top]
        by_wavefronts = [op for op in sorted(ops, key=lambda op: -ops[op][1]) if ops[op][1] > 0][:args.top]
        for op in by_samples + [op for op in by_wavefronts if op not in by_samples]:
            ex, wf, sm = ops[op]
            print("   %-28s %12.1f %12.1f %8.1f%%" % (op, ex / args.units, wf / args.units, 100 * sm / total))
    print("\n== top instructions by stall samples")
    for i, r in sorted(enumerate(rows), key=lambda ir: -number(ir[1], SAMPLES))[:args.top]:
        top = sorted(((number(r, k), k[6:]) for k in stalls), reverse=True)[:2]
        print("%5d %-58s %6.1f%%  %s" % (i, r["Source"][:58], 100 * number(r, SAMPLES) / total,
                                          ", ".join("%s %.0f" % (n, v) for v, n in top if v > 0)))


def levels(rows, args):
    count, executed = collections.Counter(), collections.Counter()
    for r in rows:
        per_unit = number(r, "Instructions Executed") / args.units
        if per_unit > 0:
            level = round(per_unit, 1)
            count[level] += 1
            executed[level] += per_unit
    print("\n== instructions by how often each ran per unit")
    print("   %8s %12s %14s" % ("runs", "instructions", "executed/unit"))
    for level in sorted(count):
        print("   %8.1f %12d %14.1f" % (level, count[level], executed[level]))


def lines(rows, args):
    print("\n== instructions run at least %g times per unit" % args.lines)
    for i, r in enumerate(rows):
        per_unit = number(r, "Instructions Executed") / args.units
        if per_unit >= args.lines:
            print("%5d %9.2f  %s" % (i, per_unit, r["Source"].strip()[:100]))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--section", type=int, help="only this section of the export (0-based)")
    parser.add_argument("--units", type=float, default=1.0, help="divide counts by this (e.g. CTAs × steps)")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--levels", action="store_true", help="group instructions by how often each ran per unit")
    parser.add_argument("--lines", type=float, help="list the instructions run at least this often per unit")
    args = parser.parse_args()
    sections = read_sections(args.file)
    first = 0
    if args.section is not None:
        if not 0 <= args.section < len(sections):
            sys.exit("%s holds %d sections" % (args.file, len(sections)))
        first, sections = args.section, [sections[args.section]]
    if not any(rows for _, rows in sections):
        sys.exit("no instructions in " + args.file)
    for i, (name, rows) in enumerate(sections):
        if len(sections) > 1:
            print("%s######## section %d: %s" % ("\n" if i else "", first + i, name))
        summarise(rows, args)
        if args.levels:
            levels(rows, args)
        if args.lines is not None:
            lines(rows, args)


if __name__ == "__main__":
    main()
