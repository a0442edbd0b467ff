"""RFC 9162 §2.1 Merkle tree over the ledger's entries: tree hash, inclusion and consistency proofs.

Leaf hash ``SHA-256(0x00 || data)``, node hash ``SHA-256(0x01 || left || right)``, empty tree
``SHA-256("")``; a tree of n > 1 leaves splits at k, the largest power of two smaller than n.

:class:`MerkleTree` keeps every complete, aligned subtree hash (level by level, 32 bytes each, so
about 64 bytes per leaf in total) and adds a leaf in amortised O(1). Every subtree the RFC's MTH,
PATH and PROOF recursions visit is either such a complete subtree or lies on the right edge of
the tree, so a root or a proof costs O(log n) lookups plus at most O(log n) hashes per right-edge
subtree, and right-edge hashes are cached (leaves never change, so a cached range stays valid).
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_CACHE_LIMIT = 65536


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash: ``SHA-256(0x00 || data)``."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only list of leaf hashes with RFC 9162 roots and proofs for any prefix size."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        # _levels[k] holds, concatenated, the hashes of the complete subtrees of 2**k leaves
        # starting at leaf 0, 2**k, 2*2**k, ...
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0
        self._cache: dict[tuple[int, int], bytes] = {}
        for h in leaf_hashes:
            self.append(h)

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf: bytes) -> int:
        """Add a leaf *hash* (see :func:`leaf_hash`); returns its index."""
        if len(leaf) != HASH_SIZE:
            raise ValueError("a leaf hash has 32 bytes")
        index = self._size
        self._levels[0] += leaf
        self._size += 1
        i, k = index, 0
        while i & 1:  # this node completes a pair: hash it into the level above
            level = self._levels[k]
            right = bytes(level[-HASH_SIZE:])
            left = bytes(level[-2 * HASH_SIZE:-HASH_SIZE])
            if len(self._levels) == k + 1:
                self._levels.append(bytearray())
            self._levels[k + 1] += node_hash(left, right)
            i >>= 1
            k += 1
        return index

    def leaf(self, index: int) -> bytes:
        if not 0 <= index < self._size:
            raise IndexError(index)
        return bytes(self._levels[0][index * HASH_SIZE:(index + 1) * HASH_SIZE])

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all)."""
        size = self._check_size(size)
        return self._mth(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.3.1 PATH(index, D[0:size]), ordered from the leaf upwards."""
        size = self._check_size(size)
        if not 0 <= index < size:
            raise IndexError(f"leaf {index} is not in a tree of {size} leaves")
        path: list[bytes] = []
        start, n, m = 0, size, index
        while n > 1:
            k = _split(n)
            if m < k:
                path.append(self._mth(start + k, n - k))
                n = k
            else:
                path.append(self._mth(start, k))
                start, n, m = start + k, n - k, m - k
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.4.1 PROOF(old_size, D[0:size]), ordered from the bottom up; empty when the
        sizes are equal. It shows that the tree of ``old_size`` leaves is a prefix of this one."""
        size = self._check_size(size)
        if not 0 < old_size <= size:
            raise ValueError(f"no consistency proof from {old_size} to {size} leaves")
        proof: list[bytes] = []
        start, n, m, complete = 0, size, old_size, True
        while m != n:
            k = _split(n)
            if m <= k:
                proof.append(self._mth(start + k, n - k))
                n = k
            else:
                proof.append(self._mth(start, k))
                start, n, m, complete = start + k, n - k, m - k, False
        if not complete:
            proof.append(self._mth(start, n))
        proof.reverse()
        return proof

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return self._size
        if not 0 <= size <= self._size:
            raise ValueError(f"tree size {size} is not in 0..{self._size}")
        return size

    def _mth(self, start: int, n: int) -> bytes:
        """MTH of leaves ``start .. start+n-1``; ``start`` is a multiple of every power of two < 2n
        that the recursion splits at, as in every range the RFC recursions produce."""
        if n & (n - 1) == 0:  # complete, aligned subtree: stored
            k = n.bit_length() - 1
            i = start >> k
            return bytes(self._levels[k][i * HASH_SIZE:(i + 1) * HASH_SIZE])
        cached = self._cache.get((start, n))
        if cached is not None:
            return cached
        # n = k1 + k2 + ... (descending powers of two): fold the complete pieces from the right.
        pieces: list[bytes] = []
        s, rest = start, n
        while rest:
            k = 1 << (rest.bit_length() - 1)
            pieces.append(self._mth(s, k))
            s, rest = s + k, rest - k
        acc = pieces[-1]
        for piece in reversed(pieces[:-1]):
            acc = node_hash(piece, acc)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[(start, n)] = acc
        return acc


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` show ``leaf`` (a leaf hash) at ``index`` of the tree
    of ``size`` leaves whose MTH is ``root``?"""
    if not 0 <= index < size:
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


def verify_consistency(old_size: int, size: int, old_root: bytes, root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: does ``proof`` show that the tree of ``old_size`` leaves (``old_root``)
    is a prefix of the tree of ``size`` leaves (``root``)? Equal sizes need an empty proof and
    equal roots."""
    if not 0 < old_size <= size:
        return False
    if old_size == size:
        return not proof and old_root == root
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == root and sn == 0
