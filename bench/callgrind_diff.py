#!/usr/bin/env python3
"""Function-by-function difference of two callgrind dumps, per request.

    bench/callgrind_diff.py A.out REQUESTS_A B.out REQUESTS_B [--top N] [--fn REGEX ...]

Reads the dumps bench/callgrind.sh keeps (CG_OUT/callgrind-<peer>.out) and the requests wrk
completed in each counted window, and prints, per request:

- self instructions by owner (the source file the instructions come from: a workspace crate, a
  vendored Pingora crate, a crates.io crate, the allocator, libc; code of the Rust standard library
  inlined into a function is given to that function's crate), A, B and A - B;
- the functions whose self cost differs most (A - B), with their inclusive cost in A and B;
- with --fn: the inclusive and self cost of every function whose name matches (e.g. the hooks).

Functions are keyed by their demangled name, summed over every file their instructions come from
(inlined code). Inclusive cost is self cost plus the cost of calls to functions of another name,
so a chain of nested `{{closure}}`s of one name is not counted twice; mutual recursion between
two names would be (none on the paths compared here).
"""

import argparse
import re
import sys
from collections import defaultdict

ALLOC_FILES = ("mimalloc", "/malloc/", "malloc.c", "arena.c")


def owner_of_file(path, fn):
    """Who the instructions at `path` inside function `fn` belong to."""
    if any(a in path for a in ALLOC_FILES):
        return "allocator"
    m = re.search(r"(?:^|/)(crates|bin)/([a-z0-9_-]+)/", path)
    if m and "registry" not in path:
        return m.group(2)
    m = re.search(r"(?:^|/)vendor/([a-z0-9_-]+)/", path)
    if m:
        return m.group(1) + " (vendored)"
    m = re.search(r"/registry/src/[^/]+/([A-Za-z0-9_.-]+?)-\d+\.\d+[^/]*/", path)
    if m:
        return m.group(1)
    if path.startswith("./") or "sysdeps" in path or path.startswith("???"):
        return "libc/kernel glue"
    # /rustc/... : std code inlined into `fn`; give it to fn's crate.
    return "std in " + crate_of_fn(fn)


def crate_of_fn(fn):
    s = fn.lstrip("<&* ")
    m = re.match(r"([A-Za-z0-9_]+)::", s)
    return m.group(1) if m else s.split(" ")[0][:30]


class Profile:
    """Self and inclusive Ir per function name, self Ir per owner."""

    def __init__(self, path):
        self.self_ir = defaultdict(int)
        self.calls_out = defaultdict(int)  # cost of calls to functions of another name
        self.owner_ir = defaultdict(int)
        self.edges = defaultdict(int)  # (caller, callee) -> inclusive cost of the calls
        self.total = 0
        names = {"fl": {}, "fn": {}, "cfn": {}}
        fl = fi = fn = cfn = ""
        pending_call = False
        pos_re = re.compile(r"^[+\-*0-9]")
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.rstrip("\n")
                if not line:
                    continue
                if pos_re.match(line):
                    parts = line.split()
                    if len(parts) < 2:
                        continue
                    try:
                        cost = int(parts[1])
                    except ValueError:
                        continue
                    if pending_call:
                        if cfn != fn:
                            self.calls_out[fn] += cost
                            self.edges[(fn, cfn)] += cost
                        pending_call = False
                    else:
                        self.self_ir[fn] += cost
                        self.owner_ir[owner_of_file(fi or fl, fn)] += cost
                        self.total += cost
                    continue
                key, _, rest = line.partition("=")
                if key in ("fl", "fi", "fe", "fn", "cfn", "cfl", "cfi"):
                    table = {"fi": "fl", "fe": "fl", "cfl": "fl", "cfi": "fl"}.get(key, key)
                    table = "fn" if key == "cfn" else table
                    m = re.match(r"\((\d+)\)(?: (.*))?$", rest)
                    if m:
                        ident, name = m.group(1), m.group(2)
                        if name is not None:
                            names[table][ident] = name
                        name = names[table].get(ident, ident)
                    else:
                        name = rest
                    if key == "fl":
                        fl, fi = name, ""
                    elif key in ("fi", "fe"):
                        fi = "" if name == fl else name
                    elif key == "fn":
                        fn = name
                        fi = ""
                    elif key == "cfn":
                        cfn = name
                elif key == "calls":
                    pending_call = True

    def inclusive(self, fn):
        return self.self_ir.get(fn, 0) + self.calls_out.get(fn, 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a")
    ap.add_argument("reqs_a", type=float)
    ap.add_argument("b")
    ap.add_argument("reqs_b", type=float)
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--fn", action="append", default=[])
    ap.add_argument("--calls", action="append", default=[],
                    help="REGEX: the callees of matching functions in A, by inclusive cost")
    ap.add_argument("--callers", action="append", default=[],
                    help="REGEX: the callers of matching functions, in A and B")
    ap.add_argument("--labels", default="A,B")
    args = ap.parse_args()
    la, lb = args.labels.split(",")
    a, b = Profile(args.a), Profile(args.b)
    ra, rb = args.reqs_a, args.reqs_b

    print(f"total per request: {la} {a.total / ra:,.0f}  {lb} {b.total / rb:,.0f}  "
          f"{la}-{lb} {a.total / ra - b.total / rb:+,.0f}\n")
    print(f"| owner (self instructions) | {la} | {lb} | {la} − {lb} |")
    print("|---|---:|---:|---:|")
    owners = set(a.owner_ir) | set(b.owner_ir)
    rows = sorted(owners, key=lambda o: -abs(a.owner_ir[o] / ra - b.owner_ir[o] / rb))
    for o in rows:
        va, vb = a.owner_ir[o] / ra, b.owner_ir[o] / rb
        if abs(va) < 20 and abs(vb) < 20:
            continue
        print(f"| {o} | {va:,.0f} | {vb:,.0f} | {va - vb:+,.0f} |")

    print(f"\n| function (self, per request) | {la} self | {lb} self | Δ self | {la} incl | {lb} incl |")
    print("|---|---:|---:|---:|---:|---:|")
    fns = set(a.self_ir) | set(b.self_ir)
    diff = sorted(fns, key=lambda f: -abs(a.self_ir[f] / ra - b.self_ir[f] / rb))
    for f in diff[: args.top]:
        va, vb = a.self_ir[f] / ra, b.self_ir[f] / rb
        print(f"| `{f[:110]}` | {va:,.0f} | {vb:,.0f} | {va - vb:+,.0f} | "
              f"{a.inclusive(f) / ra:,.0f} | {b.inclusive(f) / rb:,.0f} |")

    for pat in args.fn:
        rx = re.compile(pat)
        print(f"\n| function matching `{pat}` | {la} incl | {la} self | {lb} incl | {lb} self |")
        print("|---|---:|---:|---:|---:|")
        for f in sorted(fns, key=lambda f: -a.inclusive(f)):
            if rx.search(f):
                print(f"| `{f[:110]}` | {a.inclusive(f) / ra:,.0f} | {a.self_ir[f] / ra:,.0f} | "
                      f"{b.inclusive(f) / rb:,.0f} | {b.self_ir[f] / rb:,.0f} |")
    queries = [(p, 0, "calls made by") for p in args.calls]
    queries += [(p, 1, "callers of") for p in args.callers]
    for pat, side, what in queries:
        rx = re.compile(pat)
        for prof, label, reqs in ((a, la, ra), (b, lb, rb)):
            rows = [(c, k) for k, c in prof.edges.items() if rx.search(k[side])]
            if not rows:
                continue
            print(f"\n| {label}: {what} `{pat}`: caller | callee | per request |")
            print("|---|---|---:|")
            for c, (caller, callee) in sorted(rows, reverse=True)[: args.top]:
                print(f"| `{caller[:70]}` | `{callee[:100]}` | {c / reqs:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
