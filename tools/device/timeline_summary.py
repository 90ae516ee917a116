#!/usr/bin/env python3
"""Summarises tools/device/timeline/kernel_timeline.cc's rows for the graph launched most often
with the most kernels (a captured decode step): its span, the time no kernel runs, and per kernel
the time it is alone on the GPU or shares it (each elementary interval divided among the kernels
running in it, so the shares add up to the busy time).

  timeline_summary.py ROWS.csv [--launch -1] [--sequence N] [--layers]

--sequence N also prints the first N kernels of the chosen launch in start order (offset, duration,
how many others overlap it), to read one layer's chain.
--layers splits every launch into the model's layers (a layer ends with its second
hc_post_collapse, the FFN's), groups the layers that run the same kernels (sliding, CSA, HCA), and
prints per group the median span and, per kernel in order of its median start, its median start
offset and exposed time: how far its end passes the latest end of the kernels that started before
it in the layer (in one layer the exposed times add up to the span, so they read as the layer's
critical chain; the medians only roughly)."""
import argparse
import collections
import csv
import re
import statistics


def short(name):
    name = name.replace("dsv4::cuda::detail::", "").replace("dsv4::cuda::", "")
    name = name.replace("(anonymous namespace)::", "").replace("void ", "")
    depth, cut = 0, len(name)
    for i, c in enumerate(name):  # drop the parameter list
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
        elif c == "(" and depth == 0:
            cut = i
            break
    name = re.sub(r"\s+", " ", name[:cut])
    return name[:90]


def load(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["start"] = int(r["start_ns"])
        r["end"] = int(r["end_ns"])
        r["short"] = short(r["name"])
    return rows


def shares(kernels):
    """Per kernel index: its share of the busy time; and the idle time inside the span."""
    events = []
    for i, k in enumerate(kernels):
        events.append((k["start"], 1, i))
        events.append((k["end"], -1, i))
    events.sort()
    running, share = set(), [0.0] * len(kernels)
    idle, last = 0, events[0][0]
    for t, kind, i in events:
        if t > last:
            if running:
                for j in running:
                    share[j] += (t - last) / len(running)
            else:
                idle += t - last
        last = t
        if kind == 1:
            running.add(i)
        else:
            running.discard(i)
    return share, idle


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rows")
    ap.add_argument("--launch", type=int, default=-1, help="which launch of the graph (default the last)")
    ap.add_argument("--sequence", type=int, default=0)
    ap.add_argument("--layers", action="store_true")
    a = ap.parse_args()
    rows = load(a.rows)
    launches = collections.defaultdict(list)
    for r in rows:
        if r["graph_id"] != "0":
            launches[(r["graph_id"], r["correlation"])].append(r)
    if not launches:
        print("no graph kernels in", a.rows)
        return
    per_graph = collections.defaultdict(list)
    for (g, _), ks in launches.items():
        per_graph[g].append(sorted(ks, key=lambda k: k["start"]))
    # The decode step: launched most often (cuda_forward_bench also replays its multi-token step
    # graphs, which have more kernels, a few times each).
    graph = max(per_graph, key=lambda g: (len(per_graph[g]), len(per_graph[g][0])))
    runs = sorted(per_graph[graph], key=lambda ks: ks[0]["start"])
    spans = [(ks[-1]["end"] - ks[0]["start"]) / 1e3 for ks in runs if ks]
    print("graph %s: %d launches of %d kernels; span per launch (us): median %.1f, min %.1f, max %.1f" %
          (graph, len(runs), len(runs[0]), statistics.median(spans), min(spans), max(spans)))
    totals = collections.defaultdict(lambda: [0, 0.0, 0.0])  # count, duration, share (us, all launches)
    idle_all, busy_all = 0.0, 0.0
    for ks in runs:
        sh, idle = shares(ks)
        idle_all += idle / 1e3
        for k, s in zip(ks, sh):
            t = totals[k["short"]]
            t[0] += 1
            t[1] += (k["end"] - k["start"]) / 1e3
            t[2] += s / 1e3
            busy_all += s / 1e3
    n = len(runs)
    print("per launch: busy %.1f us, idle (no kernel running) %.1f us" % (busy_all / n, idle_all / n))
    print("%8s %10s %10s %10s  %s" % ("count", "sum us", "share us", "share %", "kernel (per launch)"))
    for name, (c, d, s) in sorted(totals.items(), key=lambda kv: -kv[1][2]):
        print("%8.1f %10.1f %10.1f %9.1f%%  %s" % (c / n, d / n, s / n, 100.0 * s / busy_all, name))
    if a.layers:
        print_layers(runs)
    if a.sequence:
        ks = runs[a.launch]
        t0 = ks[0]["start"]
        print("\nlaunch %d, first %d kernels: offset us, duration us, overlapping kernels, stream, name" %
              (a.launch, a.sequence))
        for i, k in enumerate(ks[: a.sequence]):
            over = sum(1 for o in ks if o is not k and o["start"] < k["end"] and o["end"] > k["start"])
            print("%9.1f %7.1f %3d %6s  %s" % ((k["start"] - t0) / 1e3, (k["end"] - k["start"]) / 1e3, over,
                                              k["stream"], k["short"]))


def layer_chains(runs):
    """Layers grouped by the multiset of their kernels (the same kernels may start in another order
    from one replay to the next); per group the spans and, per kernel (name, k-th of that name in
    the layer), its exposed times and start offsets."""
    groups = collections.defaultdict(lambda: {"spans": [], "exposed": collections.defaultdict(list),
                                              "offset": collections.defaultdict(list), "count": 0})
    for ks in runs:
        collapses = [k for k in ks if "hc_post_collapse" in k["short"]]
        ends = [c["end"] for c in collapses[1::2]]
        begin = ks[0]["start"]
        for end in ends:
            layer = [k for k in ks if begin <= k["start"] < end]
            if not layer:
                continue
            g = groups[tuple(sorted(k["short"] for k in layer))]
            g["count"] += 1
            g["spans"].append((end - begin) / 1e3)
            reach, seen = begin, collections.Counter()
            for k in layer:
                key = (k["short"], seen[k["short"]])
                seen[k["short"]] += 1
                g["exposed"][key].append(max(0, k["end"] - reach) / 1e3)
                g["offset"][key].append((k["start"] - begin) / 1e3)
                reach = max(reach, k["end"])
            begin = end
    return groups


def print_layers(runs):
    n = len(runs)
    for sig, g in sorted(layer_chains(runs).items(), key=lambda kv: -kv[1]["count"]):
        print("\n%.1f layers per launch, %d kernels: median span %.1f us; per kernel in order of its median "
              "start: start, exposed (us)" % (g["count"] / n, len(sig), statistics.median(g["spans"])))
        keys = sorted(g["offset"], key=lambda key: statistics.median(g["offset"][key]))
        for key in keys:
            print("  %7.1f %7.1f  %s" % (statistics.median(g["offset"][key]), statistics.median(g["exposed"][key]),
                                        key[0]))


if __name__ == "__main__":
    main()
