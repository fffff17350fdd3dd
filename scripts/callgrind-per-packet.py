#!/usr/bin/env python3
"""Where the instructions of one packet go: the self cost of every source file and source
line, per packet, as the difference between two callgrind profiles of the same workload
over N and 2N packets (start-up, table set-up and the report cancel out).

  callgrind-per-packet.py N.out 2N.out N [LINES]

Reads callgrind's own output format (name compression, relative positions, inlined
files `fi=`/`fe=`, call cost lines after `calls=` left out so that costs are self costs).
A line's cost is charged to the file it was written in, so code inlined into the rx
core's closure is still seen where it lives. Prints the total, the files, then the
LINES costliest lines (default 40) with their text when the source is at hand.
"""
import collections
import re
import sys


def parse(path):
    names = {}
    cost = collections.Counter()
    fl = fi = None
    line = 0
    after_calls = False

    def name(text, kind):
        m = re.match(r"\((\d+)\)(?: (.*))?", text)
        if not m:
            return text
        key = (kind, m.group(1))
        if m.group(2):
            names[key] = m.group(2)
        return names.get(key, "?")

    with open(path) as f:
        for raw in f:
            raw = raw.rstrip("\n")
            if not raw:
                continue
            if raw.startswith("fl="):
                fl = fi = name(raw[3:], "file")
            elif raw.startswith(("fi=", "fe=")):
                fi = name(raw[3:], "file")
            elif raw.startswith("fn="):
                name(raw[3:], "fn")
                fi = fl
            elif raw.startswith(("cfi=", "cfl=")):
                name(raw[4:], "file")
            elif raw.startswith("cfn="):
                name(raw[4:], "fn")
            elif raw.startswith("calls="):
                after_calls = True
            elif raw[0].isdigit() or raw[0] in "+-*":
                parts = raw.split()
                pos = parts[0]
                if pos[0] in "+-":
                    line += int(pos)
                elif pos != "*":
                    line = int(pos)
                if after_calls:
                    after_calls = False  # the inclusive cost of a call: not self cost
                    continue
                if len(parts) > 1:
                    cost[(fi, line)] += int(parts[1])
    return cost


def source(cache, path, line):
    if path not in cache:
        try:
            with open(path) as f:
                cache[path] = f.read().split("\n")
        except OSError:
            cache[path] = []
    text = cache[path]
    return text[line - 1].strip()[:80] if 0 < line <= len(text) else ""


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    a, b, n = parse(sys.argv[1]), parse(sys.argv[2]), int(sys.argv[3])
    top = int(sys.argv[4]) if len(sys.argv) > 4 else 40
    per = {k: (b[k] - a.get(k, 0)) / n for k in set(a) | set(b)}
    print(f"total {sum(per.values()):.1f} instructions/packet")
    files = collections.Counter()
    for (path, _), v in per.items():
        files[path] += v
    print("by source file:")
    for path, v in files.most_common(20):
        if v >= 0.5:
            print(f"  {v:7.1f}  {path}")
    print(f"the {top} costliest lines:")
    cache = {}
    for (path, line), v in sorted(per.items(), key=lambda kv: -kv[1])[:top]:
        short = "/".join(str(path).split("/")[-2:])
        print(f"  {v:6.1f}  {short}:{line}  {source(cache, path, line)}")


if __name__ == "__main__":
    main()
