#!/usr/bin/env python3
"""Allocations per request from a callgrind dump made with --separate-callers<N>=<entry>.

Usage: allocation_sites.py DUMP REQUESTS LABEL TOP ENTRY...

Every call into an allocator entry point (ENTRY, e.g. mi_malloc_aligned) is one allocation; with
--separate-callers each entry's context name carries its callers (`entry'caller1'caller2...`), so
the calls are grouped by the first caller that is not allocation glue (Box/Vec/RawVec/alloc
internals) and printed as a Markdown table, per request.
"""
import re
import sys

dump, reqs, label, top, entries = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5:]
names = {}          # compressed id -> name
calls = {}          # context name -> calls
cur_cfn = None
fn_re = re.compile(r"^c?fn=\((\d+)\)(?: (.*))?$")
with open(dump, errors="replace") as f:
    for line in f:
        if line.startswith("cfn="):
            m = fn_re.match(line.rstrip("\n"))
            if m:
                if m.group(2) is not None:
                    names[m.group(1)] = m.group(2)
                cur_cfn = names.get(m.group(1))
        elif line.startswith("fn="):
            m = fn_re.match(line.rstrip("\n"))
            if m and m.group(2) is not None:
                names[m.group(1)] = m.group(2)
            cur_cfn = None
        elif line.startswith("calls=") and cur_cfn is not None:
            n = int(line[6:].split()[0])
            base = cur_cfn.split("'", 1)[0]
            if base in entries:
                calls[cur_cfn] = calls.get(cur_cfn, 0) + n
            cur_cfn = None

GLUE = ("alloc::", "<alloc::", "__rust", "__rdl", "core::", "<core::", "hashbrown::raw", "<hashbrown",
        "mimalloc::", "<mimalloc::", "std::alloc", "bytes::bytes_mut::BytesMut::reserve", "mi_", "_mi_",
        "malloc", "calloc", "realloc", "<T as ")
def site(ctx):
    frames = ctx.split("'")[1:]
    for fr in frames:
        if not fr.startswith(GLUE):
            return fr
    return frames[-1] if frames else ctx

total = sum(calls.values())
by = {}
for ctx, n in calls.items():
    s = site(ctx)
    by[s] = by.get(s, 0) + n
print(f"### {label}: {total / reqs:.1f} allocations per request ({total:,} allocator calls, {reqs:,} requests)")
print()
print("| per request | first caller outside the allocation glue |")
print("|---:|---|")
for s, n in sorted(by.items(), key=lambda kv: -kv[1])[:top]:
    print(f"| {n / reqs:.2f} | `{s[:160]}` |")
print()

# The same calls by a longer chain (three frames from the first non-glue one), to tell apart the
# callers of generic sites such as Bytes::copy_from_slice or HeaderMap::try_grow.
def short(fr):
    fr = re.sub(r"<impl [^>]*>::", "", fr)
    fr = fr.replace("::{{closure}}", "{}")
    return fr[-70:]
def chain(ctx):
    frames = ctx.split("'")[1:]
    for i, fr in enumerate(frames):
        if not fr.startswith(GLUE):
            return " ← ".join(short(f) for f in frames[i:i + 3])
    return ctx
by = {}
for ctx, n in calls.items():
    c = chain(ctx)
    by[c] = by.get(c, 0) + n
print("| per request | chain (callee ← caller ← caller) |")
print("|---:|---|")
for c, n in sorted(by.items(), key=lambda kv: -kv[1])[:top + 10]:
    print(f"| {n / reqs:.2f} | `{c}` |")
print()

# And by the code that asked: the first frame outside the allocator, `bytes`, `http` and
# `pingora_http` (a header inserted by a hook is charged to the hook).
LIBS = GLUE + ("bytes::", "<bytes::", "http::", "<http::", "pingora_http::", "<pingora_http::")
def asker(ctx):
    frames = ctx.split("'")[1:]
    for fr in frames:
        if not fr.startswith(LIBS):
            return short(fr)
    return "(deeper than the recorded chain) " + short(frames[-1]) if frames else ctx
by = {}
for ctx, n in calls.items():
    a = asker(ctx)
    by[a] = by.get(a, 0) + n
print("| per request | the code that asked (first frame outside allocator, bytes, http, pingora_http) |")
print("|---:|---|")
for a, n in sorted(by.items(), key=lambda kv: -kv[1])[:top]:
    print(f"| {n / reqs:.2f} | `{a}` |")
print()
