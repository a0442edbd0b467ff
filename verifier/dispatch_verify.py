#!/usr/bin/env python3
"""dispatch_verify.py: check an evidence archive or an export package of the court's dispatch
server, with nothing but Python 3 (3.8 or later) and its standard library.

Written from the specification alone (docs/archive-format.md, "Evidence archive and ledger
format"), independently of the server's own verifier (dispatch-audit), which must reach the same
verdicts. Ed25519 signatures are checked with the reference algorithm of RFC 8032 section 6.

    python3 dispatch_verify.py package PACKAGE.zip [--public-key COURT.pem] [--json]
    python3 dispatch_verify.py archive ARCHIVE_DIR [--public-key COURT.pem] [--known-head SOURCE ...]
                                       [--allow-unanchored] [--json]

Exit status: 0 verified (no failures), 1 failures, 2 usage error. Each failure is printed as
"FAIL <kind> <item>: <message>", each warning as "WARN ...", then a summary line.
"""

import argparse
import base64
import binascii
import hashlib
import io
import json
import os
import re
import struct
import sys
import zipfile
import zlib

# ---------------------------------------------------------------------------------------------
# Ed25519 verification (RFC 8032 section 6, the reference algorithm)

_P = 2 ** 255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P
_Q = 2 ** 252 + 27742317777372353535851937790883648493
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _add(pt1, pt2):
    x1, y1, z1, t1 = pt1
    x2, y2, z2, t2 = pt2
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = t1 * 2 * _D * t2 % _P
    d = z1 * 2 * z2 % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s, pt):
    q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            q = _add(q, pt)
        pt = _add(pt, pt)
        s >>= 1
    return q


def _equal(pt1, pt2):
    x1, y1, z1, _ = pt1
    x2, y2, z2, _ = pt2
    return (x1 * z2 - x2 * z1) % _P == 0 and (y1 * z2 - y2 * z1) % _P == 0


def _recover_x(y, sign):
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P)
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x


_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = _recover_x(_GY, 0)
_G = (_GX, _GY, 1, _GX * _GY % _P)


def _decompress(s):
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % _P)


def ed25519_verify(public, message, signature):
    """True if ``signature`` (64 bytes) is a valid Ed25519 signature of ``message`` by ``public``
    (32 bytes)."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a = _decompress(public)
    r = _decompress(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _Q:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % _Q
    return _equal(_mul(s, _G), _add(r, _mul(h, a)))


_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")  # SubjectPublicKeyInfo of an Ed25519 key


def load_key(pem):
    """The raw 32-byte key of a SubjectPublicKeyInfo PEM; ValueError unless it is Ed25519."""
    text = pem.decode("ascii", "replace")
    m = re.search(r"-----BEGIN PUBLIC KEY-----(.*?)-----END PUBLIC KEY-----", text, re.S)
    if not m:
        raise ValueError("not a PEM public key")
    try:
        der = base64.b64decode("".join(m.group(1).split()), validate=True)
    except binascii.Error:
        raise ValueError("not a PEM public key (bad base64)") from None
    if len(der) != 44 or not der.startswith(_SPKI_PREFIX):
        raise ValueError("not an Ed25519 public key")
    return der[12:]


def key_id(raw):
    return hashlib.sha256(raw).hexdigest()


# ---------------------------------------------------------------------------------------------
# Canonical JSON (RFC 8785), and the form of format 1 (Python's json.dumps with sorted keys)


def _es_number(x):
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError("no JSON form")
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    mantissa, _, exp = repr(abs(x)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    exponent = (int(exp) if exp else 0) - len(frac)
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    digits = stripped or "0"
    k = len(digits)
    n = exponent + k
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    return sign + digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e >= 0 else "-") + str(abs(e))


def _jcs(obj, out):
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        out.append(json.dumps(obj, ensure_ascii=False))
    elif isinstance(obj, int):
        out.append(str(obj))
    elif isinstance(obj, float):
        out.append(_es_number(obj))
    elif isinstance(obj, dict):
        out.append("{")
        for i, key in enumerate(sorted(obj, key=lambda k: k.encode("utf-16-be", "surrogatepass"))):
            out.append(("," if i else "") + json.dumps(key, ensure_ascii=False) + ":")
            _jcs(obj[key], out)
        out.append("}")
    else:
        out.append("[")
        for i, item in enumerate(obj):
            if i:
                out.append(",")
            _jcs(item, out)
        out.append("]")


def canonical(obj):
    out = []
    _jcs(obj, out)
    return "".join(out).encode("utf-8")


def is_canonical(obj, line):
    try:
        if canonical(obj) == line:
            return True
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8") == line
    except (ValueError, TypeError, UnicodeEncodeError):
        return False


# ---------------------------------------------------------------------------------------------
# RFC 9162 Merkle tree


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class Tree:
    """Leaf hashes with MTH, PATH and PROOF of any prefix (memoised per range)."""

    def __init__(self, leaves):
        self.leaves = leaves
        self.memo = {}

    def mth(self, start, n):
        if n == 0:
            return hashlib.sha256(b"").digest()
        if n == 1:
            return self.leaves[start]
        got = self.memo.get((start, n))
        if got is None:
            k = _split(n)
            got = node_hash(self.mth(start, k), self.mth(start + k, n - k))
            self.memo[(start, n)] = got
        return got

    def path(self, m, n, start=0):
        if n <= 1:
            return []
        k = _split(n)
        if m < k:
            return self.path(m, k, start) + [self.mth(start + k, n - k)]
        return self.path(m - k, n - k, start + k) + [self.mth(start, k)]

    def proof(self, m, n, start=0, complete=True):
        if m == n:
            return [] if complete else [self.mth(start, n)]
        k = _split(n)
        if m <= k:
            return self.proof(m, k, start, complete) + [self.mth(start + k, n - k)]
        return self.proof(m - k, n - k, start + k, False) + [self.mth(start, k)]


def verify_inclusion(leaf, index, size, proof, root):
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_hash, second_hash, proof):
    if first == second:
        return not proof and first_hash == second_hash
    if first == 0 or first > second:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_hash)
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


# ---------------------------------------------------------------------------------------------
# Findings

class Findings:
    def __init__(self):
        self.failures, self.warnings = [], []

    def fail(self, kind, item, message):
        self.failures.append((kind, item, message))

    def warn(self, kind, item, message):
        self.warnings.append((kind, item, message))


HEX64 = re.compile(r"^[0-9a-f]{64}$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ENTRY_KEYS = {"index", "prev", "time", "type", "actor", "where", "outcome", "data"}
STH_KEYS = {"tree_size", "root_hash", "timestamp", "key_id", "signature"}
OUTCOMES = {"ok", "denied", "failed", "recovered"}
STH_CONTEXT = "dispatch-ledger-sth:v1"


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def sth_problem(sth, raw):
    """None if ``sth`` is a well-formed tree head signed by the raw key ``raw``."""
    if not isinstance(sth, dict) or set(sth) != STH_KEYS:
        return "not a tree head (wrong keys)"
    if not _int(sth["tree_size"]) or sth["tree_size"] < 1:
        return "tree_size is not a positive integer"
    if not all(isinstance(sth[k], str) and HEX64.match(sth[k]) for k in ("root_hash", "key_id")):
        return "root_hash and key_id must be hex SHA-256"
    if not isinstance(sth["timestamp"], str) or not TIME.match(sth["timestamp"]):
        return "timestamp is not in the time format"
    try:
        sig = base64.b64decode(sth["signature"], validate=True)
    except (binascii.Error, ValueError, TypeError):
        return "signature is not base64"
    if len(sig) != 64 or base64.b64encode(sig).decode() != sth["signature"]:
        return "signature is not the canonical base64 of 64 bytes"
    if sth["key_id"] != key_id(raw):
        return "signed by key id %s..., not %s..." % (sth["key_id"][:16], key_id(raw)[:16])
    message = ("%s\n%d\n%s\n%s" % (STH_CONTEXT, sth["tree_size"], sth["root_hash"], sth["timestamp"])).encode()
    if not ed25519_verify(raw, message, sig):
        return "the Ed25519 signature does not verify"
    return None


# ---------------------------------------------------------------------------------------------
# Archives


def _span(a, b):
    return "entry %d" % a if a == b else "entries %d..%d" % (a, b)


def _entry_problem(line):
    """(entry or None when unusable, problem or None)."""
    try:
        entry = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, "not JSON"
    if not isinstance(entry, dict) or set(entry) != ENTRY_KEYS:
        return None, "not an object with exactly the entry keys"
    if not _int(entry["index"]) or entry["index"] < 0:
        return None, "index is not a non-negative integer"
    p = entry["prev"]
    if not (p == "" or (isinstance(p, str) and HEX64.match(p))):
        return entry, "prev is not a hex SHA-256"
    if not all(isinstance(entry[k], str) and entry[k] for k in ("type", "actor", "where")):
        return entry, "type, actor and where must be non-empty strings"
    if entry["outcome"] not in OUTCOMES:
        return entry, "outcome is not one of ok, denied, failed, recovered"
    if not isinstance(entry["data"], dict):
        return entry, "data is not an object"
    if not isinstance(entry["time"], str) or not TIME.match(entry["time"]):
        return entry, "time is not in the time format"
    if not is_canonical(entry, line):
        return entry, "not in canonical form"
    return entry, None


def _read_lines(path):
    data = path_bytes(path)
    parts = data.split(b"\n")
    torn = parts.pop()
    return parts, (torn or None)


def path_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def _sha256_file(path):
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                return h.hexdigest(), n
            h.update(chunk)
            n += len(chunk)


def _size(path):
    try:
        return os.path.getsize(path) if os.path.isfile(path) else None
    except OSError:
        return None


SEGMENT_PATH = re.compile(r"^recordings/([^/]+)/[^/]+$")
STILL_PATH = re.compile(r"^snapshots/\d{8}/(snap-\d{8}T\d{6}Z-[0-9a-f]{8})\.jpg$")
EXPORT_PATH = re.compile(r"^exports/([A-Za-z0-9_-]+)/[A-Za-z0-9_.-]+$")


def verify_archive(archive, pinned=None, known=(), allow_unanchored=False):
    r = Findings()
    ledger_dir = os.path.join(archive, "ledger")
    if not os.path.isdir(ledger_dir):
        raise ValueError("%s: not an evidence archive (no ledger/ directory)" % archive)
    # 1. key and anchor
    key = None
    archive_key = None
    pem_path = os.path.join(ledger_dir, "public_key.pem")
    if os.path.isfile(pem_path):
        try:
            archive_key = load_key(path_bytes(pem_path))
        except ValueError as exc:
            r.fail("bad_key", "ledger/public_key.pem", str(exc))
    if pinned is not None:
        key = pinned
        if not os.path.isfile(pem_path):
            r.fail("missing", "ledger/public_key.pem", "the archive has no public key")
        elif archive_key is not None and archive_key != pinned:
            r.fail("bad_key", "ledger/public_key.pem", "not the pinned key")
    else:
        key = archive_key
        if not os.path.isfile(pem_path):
            r.fail("missing", "ledger/public_key.pem", "the archive has no public key")
        r.warn("unpinned_key", "ledger/public_key.pem", "the key was taken from the archive itself")
        if not known:
            (r.warn if allow_unanchored else r.fail)("unanchored", "archive",
                                                     "no pinned key and no tree head kept elsewhere")
    # 2. lines (tree heads are read first, as on a live archive)
    sth_path = os.path.join(ledger_dir, "sth.jsonl")
    sth_lines, sth_torn = _read_lines(sth_path) if os.path.isfile(sth_path) else ([], None)
    entries_path = os.path.join(ledger_dir, "entries.jsonl")
    if not os.path.isfile(entries_path):
        r.fail("missing", "ledger/entries.jsonl", "the archive has no ledger")
        return r
    lines, torn = _read_lines(entries_path)
    n = len(lines)
    parsed = []
    for p, line in enumerate(lines):
        entry, problem = _entry_problem(line)
        parsed.append(entry)
        if problem:
            r.fail("bad_entry", "entry %d" % p, "line %d: %s" % (p + 1, problem))
    if torn is not None:
        m = re.search(rb'"index":(\d+)', torn)
        r.fail("bad_entry", "entry %s" % (m.group(1).decode() if m else n),
               "line %d has no newline at its end: a torn write" % (n + 1))
    # 3. order
    indices = [e["index"] if e is not None else p for p, e in enumerate(parsed)]
    counts = {}
    for i in indices:
        counts[i] = counts.get(i, 0) + 1
    names = ["entry %d" % i if counts[i] == 1 else "entry %d" % p for p, i in enumerate(indices)]
    if sorted(indices) == list(range(n)):
        order = [0] * n
        for p, i in enumerate(indices):
            order[i] = p
            if i != p:
                r.fail("out_of_order", "entry %d" % i, "found at line %d" % (p + 1))
    else:
        order = list(range(n))
        for i in sorted(set(range(n)) - set(indices)):
            r.fail("missing", "entry %d" % i, "no line carries this index")
        for i in sorted(i for i, c in counts.items() if c > 1):
            r.fail("bad_entry", "entry %d" % i, "the index appears on more than one line")
        for p in range(1, n):
            if indices[p] < indices[p - 1]:
                r.fail("out_of_order", "entry %d" % indices[p], "comes after entry %d" % indices[p - 1])
    # 4. tree, 5. chain
    tree = Tree([leaf_hash(lines[p]) for p in order])
    broken = [False] * (n + 1)
    for k, p in enumerate(order):
        e = parsed[p]
        if e is None:
            continue
        if k == 0:
            if e["prev"] != "":
                r.fail("chain_broken", names[p], "the first entry's prev must be empty")
        elif parsed[order[k - 1]] is not None:
            broken[k] = e["prev"] != tree.leaves[k - 1].hex()
    # 6. tree heads
    latest, latest_ok, authenticated, prev_size, reported = None, False, 0, 0, 0
    first_mismatch = None
    if sth_torn is not None:
        r.fail("bad_entry", "sth line %d" % (len(sth_lines) + 1), "no newline at its end: a torn write")
    if key is None and sth_lines:
        r.fail("bad_signature", "ledger/sth.jsonl", "no usable public key")
    for number, line in enumerate(sth_lines if key is not None else [], 1):
        item = "sth line %d" % number
        try:
            sth = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            r.fail("bad_entry", item, "not JSON")
            continue
        problem = sth_problem(sth, key)
        if problem:
            kind = "bad_signature" if ("key id" in problem or "signature does not" in problem) else "bad_entry"
            r.fail(kind, item, problem)
            continue
        if not is_canonical(sth, line):
            r.fail("bad_entry", item, "not in canonical form")
            continue
        size = sth["tree_size"]
        if size < prev_size:
            r.fail("out_of_order", item, "smaller than an earlier tree head")
        prev_size = max(prev_size, size)
        latest = sth
        if size > n:
            if size > reported:
                r.fail("missing", _span(max(n, reported), size - 1), "signed but absent: the ledger was cut short")
                reported = size
            latest_ok = False
            continue
        latest_ok = tree.mth(0, size).hex() == sth["root_hash"]
        if latest_ok:
            authenticated = max(authenticated, size)
        else:
            if first_mismatch is None or size < first_mismatch[1]:
                first_mismatch = (authenticated if authenticated < size else 0, size)
            r.fail("root_mismatch", item, "the signed root is not the Merkle root of the entries it covers")
    # 5. chain, reported
    k = 1
    while k < n:
        if not broken[k]:
            k += 1
            continue
        here, before = names[order[k]], names[order[k - 1]]
        if broken[k + 1]:
            r.fail("chain_broken", here, "altered")
            k += 2
            continue
        if k == n - 1 and k - 1 >= authenticated:
            r.fail("chain_broken", before, "altered, or the prev of the last entry")
            r.fail("chain_broken", here, "altered, or the entry before it")
        elif k - 1 < authenticated:
            r.fail("chain_broken", here, "altered")
        else:
            r.fail("chain_broken", before, "altered")
        k += 1
    # 7. localising a root mismatch
    if first_mismatch is not None:
        a, b = first_mismatch
        if all(parsed[p] is not None for p in order[a:b]) and not any(broken[a + 1:b]):
            r.fail("altered", names[order[b - 1]], "the chain is intact but a signed root no longer matches")
    # 8. coverage
    covered = latest["tree_size"] if latest else 0
    if key is not None and covered < n:
        r.fail("uncovered", _span(covered, n - 1), "not covered by the latest signed tree head")
    # 9. inclusion, 10. files (walking the entries in order)
    sealed, deleted, closed, stills, exports = {}, {}, {}, {}, {}
    key_ids, last_seq = [], 0
    for i, p in enumerate(order):
        e = parsed[p]
        if e is None:
            continue
        d, name, t = e["data"], names[p], e["type"]
        if not isinstance(d, dict):
            continue
        if t in ("segment_sealed", "snapshot_sealed") and latest is not None and latest_ok \
                and i < latest["tree_size"]:
            if not verify_inclusion(tree.leaves[i], i, latest["tree_size"], tree.path(i, latest["tree_size"]),
                                    bytes.fromhex(latest["root_hash"])):
                r.fail("not_included", name, "the inclusion proof does not verify")
        if t == "segment_sealed":
            rel, m = d.get("path"), None
            if isinstance(rel, str):
                m = SEGMENT_PATH.match(rel)
            if not (m and ".." not in rel.split("/") and m.group(1) == d.get("recording_id")
                    and isinstance(d.get("sha256"), str) and HEX64.match(d["sha256"])
                    and _int(d.get("bytes")) and d["bytes"] >= 0):
                r.fail("bad_entry", name, "segment_sealed needs path recordings/<recording_id>/<file>, sha256, bytes")
                continue
            if rel in sealed and rel not in deleted:
                r.fail("bad_entry", name, "sealed twice")
            sealed[rel] = (i, d)
            deleted.pop(rel, None)
        elif t == "snapshot_sealed":
            rel = d.get("path")
            m = STILL_PATH.match(rel) if isinstance(rel, str) else None
            if not (m and m.group(1) == d.get("snapshot_id") and isinstance(d.get("sha256"), str)
                    and HEX64.match(d["sha256"]) and _int(d.get("bytes")) and d["bytes"] >= 0):
                r.fail("bad_entry", name, "snapshot_sealed needs path snapshots/<day>/<snapshot_id>.jpg, sha256, bytes")
                continue
            if rel in stills:
                r.fail("bad_entry", name, "sealed twice")
            stills[rel] = (i, d)
        elif t == "segment_deleted":
            rel = d.get("path")
            if rel not in sealed or rel in deleted:
                r.fail("bad_entry", name, "deletes a segment no earlier entry sealed")
                continue
            if d.get("sha256") != sealed[rel][1]["sha256"] or d.get("recording_id") != sealed[rel][1]["recording_id"]:
                r.fail("bad_entry", name, "not the segment that entry %d sealed" % sealed[rel][0])
            deleted[rel] = i
        elif t == "recording_closed":
            rid, sha = d.get("recording_id"), d.get("metadata_sha256")
            if not (isinstance(rid, str) and rid not in ("", ".", "..") and "/" not in rid
                    and isinstance(sha, str) and HEX64.match(sha)):
                r.fail("bad_entry", name, "recording_closed needs recording_id and metadata_sha256")
                continue
            closed[rid] = (i, sha)
        elif t == "key_created" and isinstance(d.get("key_id"), str):
            key_ids.append((i, d["key_id"]))
        elif t == "operator_action":
            seq = d.get("seq")
            if not (_int(seq) and isinstance(d.get("verb"), str) and isinstance(d.get("subject"), str)):
                r.fail("bad_entry", name, "operator_action needs seq, verb and subject")
                continue
            if seq <= last_seq:
                r.fail("bad_entry", name, "operator action out of sequence")
            last_seq = max(last_seq, seq)
        elif t == "audit_gap":
            r.warn("audit_gap", name, "audit rows were deleted before they reached the ledger")
        elif t == "exported" and e["outcome"] == "ok" and "package_path" in d:
            files = [(d.get("export_path"), d.get("export_sha256"), d.get("export_bytes")),
                     (d.get("package_path"), d.get("package_sha256"), d.get("package_bytes"))]
            good = True
            for rel, sha, size in files:
                m = EXPORT_PATH.match(rel) if isinstance(rel, str) else None
                if not (m and m.group(1) == d.get("request_id") and isinstance(sha, str) and HEX64.match(sha)
                        and _int(size) and size >= 0):
                    good = False
            if not good:
                r.fail("bad_entry", name, "exported needs paths exports/<request_id>/<file>, sha256 and bytes")
                continue
            for rel, sha, size in files:
                exports[rel] = (i, sha, size)
    if key is not None and key_ids and key_ids[-1][1] != key_id(key):
        r.fail("bad_key", "ledger/public_key.pem", "not the key of the key_created entry")
    _check_files(archive, r, sealed, deleted, closed, stills, exports)
    # 11. known heads
    for source, head in known:
        item = "known head %s" % source
        if key is None:
            r.fail("bad_signature", item, "no usable public key")
            continue
        problem = sth_problem(head, key)
        if problem:
            r.fail("bad_signature", item, problem)
            continue
        size, root = head["tree_size"], bytes.fromhex(head["root_hash"])
        if size > n:
            r.fail("rolled_back", item, "signed for %d entries, the ledger holds %d" % (size, n))
            continue
        top = latest["tree_size"] if latest else 0
        if latest is None or top < size or top > n:
            if tree.mth(0, size) != root:
                r.fail("inconsistent", item, "the entries it signed were rewritten")
            elif top < size:
                r.fail("rolled_back", item, "the archive's tree heads end before it")
            continue
        if not verify_consistency(size, top, root, bytes.fromhex(latest["root_hash"]), tree.proof(size, top)):
            r.fail("inconsistent", item, "the consistency proof to the latest tree head fails")
    return r


def _check_files(archive, r, sealed, deleted, closed, stills, exports):
    def check(rel, sha, size, source):
        found = _size(os.path.join(archive, rel))
        if found is None:
            r.fail("missing", rel, "named by %s" % source)
            return
        if size is not None and found != size:
            r.fail("altered", rel, "its size is not the one %s records" % source)
            return
        if _sha256_file(os.path.join(archive, rel))[0] != sha:
            r.fail("altered", rel, "its SHA-256 is not the one %s records" % source)

    for rel, (i, d) in sealed.items():
        if rel in deleted:
            if _size(os.path.join(archive, rel)) is not None:
                r.warn("not_deleted", rel, "deleted by entry %d but present" % deleted[rel])
        else:
            check(rel, d["sha256"], d["bytes"], "entry %d" % i)
    live = {rel.split("/")[1] for rel in sealed if rel not in deleted}
    for rid, (i, sha) in closed.items():
        rel = "recordings/%s/recording.json" % rid
        if _size(os.path.join(archive, rel)) is None and rid not in live:
            r.warn("missing", rel, "every segment of the recording was deleted")
        else:
            check(rel, sha, None, "entry %d" % i)
    for rel, (i, d) in stills.items():
        check(rel, d["sha256"], d["bytes"], "entry %d" % i)
    for rel, (i, sha, size) in exports.items():
        check(rel, sha, size, "entry %d" % i)
    for top, named in (("recordings", sealed), ("snapshots", stills), ("exports", exports)):
        base = os.path.join(archive, top)
        for dirpath, _dirs, files in os.walk(base):
            for fname in files:
                rel = os.path.relpath(os.path.join(dirpath, fname), archive).replace(os.sep, "/")
                parts = rel.split("/")
                if rel in named:
                    continue
                if fname.endswith(".part") or (top == "exports" and len(parts) > 2 and parts[1].endswith(".part")):
                    r.warn("unsealed", rel, "being written, or left by a crash")
                elif top == "recordings" and fname == "recording.json" and len(parts) == 3:
                    if parts[1] not in closed:
                        r.warn("unclosed", rel, "metadata of a recording not closed")
                else:
                    r.fail("extra", rel, "not named by the ledger")


def load_known(source):
    """Tree heads from a file of tree-head lines, one JSON head, a JSON list, an export package,
    a witness or archive directory."""
    path = source
    if os.path.isdir(source):
        for candidate in ("heads.jsonl", os.path.join("ledger", "sth.jsonl"), "sth.jsonl"):
            if os.path.isfile(os.path.join(source, candidate)):
                path = os.path.join(source, candidate)
                break
        else:
            raise ValueError("%s: no heads.jsonl or ledger/sth.jsonl" % source)
    data = path_bytes(path)
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return [(source + " (manifest)", json.loads(z.read("manifest.json")).get("sth"))]
    text = data.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        return [(source, doc)]
    if isinstance(doc, list):
        return [("%s#%d" % (source, i), h) for i, h in enumerate(doc, 1)]
    out = []
    for i, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                out.append(("%s#%d" % (source, i), json.loads(line)))
            except ValueError:
                out.append(("%s#%d" % (source, i), None))
    return out


# ---------------------------------------------------------------------------------------------
# Export packages

MEMBERS = ("manifest.json", "manifest.sig", "public_key.pem", "README.txt")
LIMITS = {"manifest.json": 64 << 20, "manifest.sig": 1024, "public_key.pem": 16 << 10, "README.txt": 1 << 20}
EXPORT_NAME = re.compile(r"^export\.[a-z0-9]{1,8}$")
MANIFEST_KEYS = {"format", "version", "package_id", "created", "server_key_id", "request", "export", "readme", "sth",
                 "sources", "redactions", "completeness"}
SOURCE_FIELDS = ("recording_id", "seq", "sha256", "bytes", "start", "end")
ZIP64 = 0xFFFFFFFF


def _layout(members, dos):
    """The canonical ZIP bytes around the members: [(local header)], central directory + end."""
    headers, offset, central = [], 0, b""
    for name, size, crc in members:
        raw = name.encode("ascii")
        big = size >= ZIP64
        extra = struct.pack("<HHQQ", 1, 16, size, size) if big else b""
        s32 = ZIP64 if big else size
        version = 45 if big or offset >= ZIP64 else 10
        headers.append(struct.pack("<IHHHHHIIIHH", 0x04034B50, version, 0, 0, dos[0], dos[1], crc, s32, s32,
                                   len(raw), len(extra)) + raw + extra)
        far = offset >= ZIP64
        fields = ([size, size] if big else []) + ([offset] if far else [])
        cextra = struct.pack("<HH%dQ" % len(fields), 1, 8 * len(fields), *fields) if fields else b""
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x032D, 45 if fields else 10, 0, 0, dos[0], dos[1],
                               crc, s32, s32, len(raw), len(cextra), 0, 0, 0, 0o100644 << 16,
                               ZIP64 if far else offset) + raw + cextra
        offset += len(headers[-1]) + size
    end = b""
    if offset >= ZIP64 or len(central) >= ZIP64:
        end += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x032D, 45, 0, 0, len(members), len(members),
                           len(central), offset)
        end += struct.pack("<IIQI", 0x07064B50, 0, offset + len(central), 1)
    end += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), min(len(central), ZIP64),
                       min(offset, ZIP64), 0)
    return headers, central + end


def _stream_crc_sha(f, size):
    crc, h, left = 0, hashlib.sha256(), size
    while left:
        chunk = f.read(min(left, 1 << 20))
        if not chunk:
            return None, None
        crc = zlib.crc32(chunk, crc)
        h.update(chunk)
        left -= len(chunk)
    return crc, h.hexdigest()


def verify_package(path, pinned=None):
    r = Findings()
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            names = [i.filename for i in infos]
            exports = [x for x in names if EXPORT_NAME.match(x)]
            expected = list(MEMBERS) + exports[:1]
            for x in MEMBERS:
                if x not in names:
                    r.fail("missing", x, "no such member")
            if not exports:
                r.fail("missing", "export.*", "no export member")
            for x in names:
                if x not in expected or names.count(x) > 1:
                    r.fail("extra", x, "unexpected or repeated member")
            if r.failures:
                return r
            for x, limit in LIMITS.items():
                if infos[names.index(x)].file_size > limit:
                    r.fail("bad_package", x, "larger than this member may be")
            if r.failures:
                return r
            if names != expected:
                r.fail("bad_package", "package", "members not in the order of the format")
            for i in infos:
                if i.compress_type != zipfile.ZIP_STORED or i.flag_bits or i.compress_size != i.file_size:
                    r.fail("bad_package", i.filename, "not stored plainly")
            small = {x: z.read(x) for x in LIMITS}
            export_name = exports[0]
            with z.open(export_name) as m:
                h, export_size = hashlib.sha256(), 0
                while True:
                    chunk = m.read(1 << 20)
                    if not chunk:
                        break
                    h.update(chunk)
                    export_size += len(chunk)
                export_sha = h.hexdigest()
    except Exception as exc:  # every way a hostile file can make zipfile give up
        r.fail("bad_package", "package", "not a readable ZIP file (%s)" % type(exc).__name__)
        return r
    if not r.failures:
        # the canonical layout, byte for byte, and every member's CRC-32
        d = infos[0].date_time
        dos = ((d[3] << 11) | (d[4] << 5) | (d[5] // 2), ((d[0] - 1980) << 9) | (d[1] << 5) | d[2])
        members = [(i.filename, i.file_size, i.CRC) for i in infos]
        headers, tail = _layout(members, dos)
        with open(path, "rb") as f:
            for (name, size, crc), header in zip(members, headers):
                if f.read(len(header)) != header:
                    r.fail("bad_package", "package", "the local header of %s differs from the layout" % name)
                got, _ = _stream_crc_sha(f, size)
                if got is None:
                    r.fail("bad_package", name, "the file ends inside this member")
                    return r
                if got != crc:
                    r.fail("bad_package", name, "CRC-32 mismatch: the member was altered")
            if f.read(len(tail)) != tail:
                r.fail("bad_package", "package", "the central directory or the end records differ from the layout")
            if f.read(1):
                r.fail("bad_package", "package", "bytes follow the end of the ZIP")
    # key
    embedded = None
    try:
        embedded = load_key(small["public_key.pem"])
    except ValueError as exc:
        r.fail("bad_key", "public_key.pem", str(exc))
    if pinned is not None:
        key = pinned
        if embedded is not None and embedded != pinned:
            r.fail("bad_key", "public_key.pem", "not the pinned key")
    else:
        key = embedded
        r.warn("unpinned_key", "public_key.pem", "the key was taken from the package itself")
    raw, sig = small["manifest.json"], small["manifest.sig"]
    if key is not None:
        try:
            signature = base64.b64decode(sig.rstrip(b"\n"), validate=True)
            good = (len(signature) == 64 and base64.b64encode(signature) + b"\n" == sig
                    and ed25519_verify(key, b"dispatch-export-manifest:v1\n" + raw, signature))
        except (binascii.Error, ValueError):
            good = False
        if not good:
            r.fail("bad_signature", "manifest.sig", "manifest.json is not what the key signed")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        r.fail("bad_manifest", "manifest.json", "not JSON")
        return r
    if not isinstance(manifest, dict) or set(manifest) != MANIFEST_KEYS:
        r.fail("bad_manifest", "manifest.json", "not an object with exactly the manifest keys")
        return r
    if not is_canonical(manifest, raw):
        r.fail("bad_manifest", "manifest.json", "not in canonical form")
    if manifest["format"] != "dispatch-export-package" or manifest["version"] != 1:
        r.fail("bad_manifest", "manifest.json", "unknown format or version")
    if not (isinstance(manifest["created"], str) and TIME.match(manifest["created"])):
        r.fail("bad_manifest", "manifest.json", "created is not in the time format")
    req = manifest["request"]
    if not (isinstance(req, dict) and all(k in req for k in ("id", "case_number", "action_id", "recipient",
                                                             "approved_by", "from", "to", "reason"))):
        r.fail("bad_manifest", "manifest.json", "request lacks keys")
    if not isinstance(manifest["redactions"], list) or not isinstance(manifest["completeness"], dict):
        r.fail("bad_manifest", "manifest.json", "redactions must be a list and completeness an object")
    if key is not None and manifest["server_key_id"] != key_id(key):
        r.fail("bad_key", "manifest.json", "server_key_id is not the key's id")
    readme = small["README.txt"]
    for field, name, sha, size in (("export", export_name, export_sha, export_size),
                                   ("readme", "README.txt", hashlib.sha256(readme).hexdigest(), len(readme))):
        meta = manifest[field]
        if not (isinstance(meta, dict) and all(k in meta for k in ("name", "sha256", "bytes"))):
            r.fail("bad_manifest", "manifest.json", "%s needs name, sha256 and bytes" % field)
            continue
        if meta["name"] != name:
            r.fail("bad_manifest", "manifest.json", "%s.name is not the member" % field)
        if meta["sha256"] != sha or meta["bytes"] != size:
            r.fail("altered", name, "its SHA-256 or size is not the manifest's")
    sth = manifest["sth"]
    if key is None or not isinstance(sth, dict):
        r.fail("bad_sth", "manifest.json", "no tree head to check")
        return r
    problem = sth_problem(sth, key)
    if problem:
        r.fail("bad_sth", "sth", problem)
        return r
    sources = manifest["sources"]
    if not isinstance(sources, list) or not sources:
        r.fail("bad_manifest", "manifest.json", "no sources")
        return r
    root, seen = bytes.fromhex(sth["root_hash"]), set()
    for n, s in enumerate(sources):
        item = "source %s" % (s.get("index", n) if isinstance(s, dict) else n)
        if not (isinstance(s, dict) and _int(s.get("index")) and isinstance(s.get("entry"), str)
                and isinstance(s.get("inclusion_proof"), list)):
            r.fail("bad_source", item, "needs index, entry and inclusion_proof")
            continue
        if s["index"] in seen:
            r.fail("bad_source", item, "listed twice")
        seen.add(s["index"])
        line = s["entry"].encode("utf-8", "surrogatepass")
        try:
            entry = json.loads(line)
        except ValueError:
            r.fail("bad_source", item, "the entry is not JSON")
            continue
        if not (isinstance(entry, dict) and isinstance(entry.get("data"), dict)):
            r.fail("bad_source", item, "the entry is not a ledger entry")
            continue
        data_ = entry["data"]
        if entry.get("index") != s["index"] or entry.get("type") != "segment_sealed" \
                or not (isinstance(data_.get("sha256"), str) and HEX64.match(data_["sha256"])):
            r.fail("bad_source", item, "not the segment_sealed entry of that index")
        if any(s.get(k) != data_.get(k) for k in SOURCE_FIELDS):
            r.fail("bad_source", item, "the copied fields differ from the entry's")
        proof = s["inclusion_proof"]
        if not all(isinstance(h, str) and HEX64.match(h) for h in proof) or not verify_inclusion(
                leaf_hash(line), s["index"], sth["tree_size"], [bytes.fromhex(h) for h in proof], root):
            r.fail("not_included", item, "the entry and its proof do not reproduce the signed root")
    return r


# ---------------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(prog="dispatch_verify.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("archive", "package"))
    parser.add_argument("path")
    parser.add_argument("--public-key", metavar="FILE", help="the court's public key (PEM), obtained separately")
    parser.add_argument("--known-head", metavar="SOURCE", action="append", default=[],
                        help="archive: tree heads kept elsewhere (file, package, witness directory); repeatable")
    parser.add_argument("--allow-unanchored", action="store_true")
    parser.add_argument("--json", action="store_true")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    try:
        pinned = load_key(path_bytes(args.public_key)) if args.public_key else None
        if args.what == "package":
            if not os.path.isfile(args.path):
                raise ValueError("%s: not a file" % args.path)
            report = verify_package(args.path, pinned)
        else:
            known = [h for source in args.known_head for h in load_known(source)]
            report = verify_archive(args.path, pinned, known, args.allow_unanchored)
    except (OSError, ValueError) as exc:
        print("dispatch_verify.py: error: %s" % exc, file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"ok": not report.failures,
                          "failures": [dict(zip(("kind", "item", "message"), f)) for f in report.failures],
                          "warnings": [dict(zip(("kind", "item", "message"), w)) for w in report.warnings]},
                         ensure_ascii=False, indent=2))
    else:
        for f in report.failures:
            print("FAIL %s %s: %s" % f)
        for w in report.warnings:
            print("WARN %s %s: %s" % w)
        n = len(report.failures)
        print(("OK" if not n else "FAILED (%d failure%s)" % (n, "" if n == 1 else "s"))
              + ": %s %s, %d warnings" % (args.what, args.path, len(report.warnings)))
    return 0 if not report.failures else 1


if __name__ == "__main__":
    sys.exit(main())
