#!/usr/bin/env python3
"""Attribute a `perf record --call-graph dwarf` profile of the benches'
profile driver to the functions of src/.

    perf script -i perf.data -F ip,sym --no-inline | python3 benches/perf_attr.py [ROOT]

ROOT (default wic_tna::context::Context::verify) selects the samples taken
inside that function. Prints, as shares of those samples:
  * "owner": each sample charged to the innermost wic_tna:: frame on its
    stack (that function's own code plus the library code it calls:
    serde_json, base64, malloc, aws-lc ...),
  * "inclusive": every wic_tna:: function on the stack,
  * "leaf": what the CPU was executing, grouped (crypto, JSON, base64,
    allocator, libc string functions, other).
"""
import collections
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "wic_tna::context::Context::verify"


def clean(sym):
    sym = re.sub(r"\+0x[0-9a-f]+$", "", sym.strip())
    return sym


def samples(lines):
    cur = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if cur:
                yield cur
            cur = []
            continue
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and re.fullmatch(r"[0-9a-f]+", parts[0]):
            cur.append(clean(parts[1]))
        else:
            # header line of a sample (comm/pid), ignore
            pass
    if cur:
        yield cur


def leaf_group(sym):
    s = sym
    if "aws_lc" in s or "sha256" in s.lower() or "bn_" in s or "ecp_nistz" in s or "x25519" in s or "ed25519" in s.lower() or "rsa" in s.lower():
        return "crypto (aws-lc)"
    if s.startswith("serde_json") or "serde_json::" in s or "serde_core" in s or "StrictObject" in s:
        return "JSON (serde_json, StrictObject)"
    if "base64" in s:
        return "base64 decode"
    if s in ("malloc", "free", "cfree@GLIBC_2.2.5", "_int_free", "_int_malloc", "_int_realloc", "realloc",
             "__libc_calloc", "calloc", "malloc_consolidate", "unlink_chunk.constprop.0") or "__rust_alloc" in s \
            or "__rust_dealloc" in s or "__rust_realloc" in s or "__rdl_" in s or s.startswith("alloc::raw_vec") \
            or "tcache" in s:
        return "allocator (malloc/free)"
    if s.startswith("__mem") or s.startswith("__str") or "memchr" in s or "memrchr" in s or s.startswith("core::str") \
            or "from_utf8" in s or "CharSearcher" in s:
        return "string search/compare (memcmp, memchr, from_utf8)"
    if s.startswith("wic_tna::"):
        return "src/ own code"
    return "other"


owner = collections.Counter()
inclusive = collections.Counter()
leaf = collections.Counter()
total = 0
for frames in samples(sys.stdin):
    if not any(f == root for f in frames):
        continue
    total += 1
    own = next((f for f in frames if f.startswith("wic_tna::")), root)
    owner[own] += 1
    for f in set(frames):
        if f.startswith("wic_tna::"):
            inclusive[f] += 1
    leaf[leaf_group(frames[0])] += 1

if total == 0:
    print(f"no sample under {root}")
    sys.exit(1)
print(f"{total} samples under {root}")
print("\nowner (innermost src/ function, with the library code it calls):")
for f, n in owner.most_common(25):
    print(f"  {100.0 * n / total:6.1f}%  {f}")
print("\ninclusive:")
for f, n in inclusive.most_common(25):
    print(f"  {100.0 * n / total:6.1f}%  {f}")
print("\nleaf (what the CPU executed):")
for f, n in leaf.most_common():
    print(f"  {100.0 * n / total:6.1f}%  {f}")
