"""RFC 9162 Merkle tree: published vectors, a brute-force tree for random sizes, tampered proofs,
consistency proofs between tree sizes (§2.1.4)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from recordings.merkle import EMPTY_ROOT, MerkleTree, leaf_hash, node_hash, verify_consistency, verify_inclusion

# Certificate Transparency's reference leaves and roots for sizes 1..8 (RFC 6962 = RFC 9162 §2.1).
CT_LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                         "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def brute_mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while 2 * k < len(leaves):
        k *= 2
    return node_hash(brute_mth(leaves[:k]), brute_mth(leaves[k:]))


def brute_path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n <= 1:
        return []
    k = 1
    while 2 * k < n:
        k *= 2
    if m < k:
        return brute_path(m, leaves[:k]) + [brute_mth(leaves[k:])]
    return brute_path(m - k, leaves[k:]) + [brute_mth(leaves[:k])]


# Certificate Transparency's consistency proofs over the same leaves (merkle_tree_test.cc).
CT_CONSISTENCY = {
    (1, 1): [],
    (1, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (6, 8): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
}


def brute_subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [brute_mth(leaves)]
    k = 1
    while 2 * k < n:
        k *= 2
    if m <= k:
        return brute_subproof(m, leaves[:k], complete) + [brute_mth(leaves[k:])]
    return brute_subproof(m - k, leaves[k:], False) + [brute_mth(leaves[:k])]


def test_roots_match_the_certificate_transparency_vectors() -> None:
    tree = MerkleTree(leaf_hash(d) for d in CT_LEAVES)
    assert tree.root(0) == EMPTY_ROOT
    assert [tree.root(n).hex() for n in range(1, 9)] == CT_ROOTS


def test_inclusion_proofs_match_the_certificate_transparency_vectors() -> None:
    tree = MerkleTree(leaf_hash(d) for d in CT_LEAVES)
    assert [h.hex() for h in tree.inclusion_proof(0, 8)] == [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]
    assert [h.hex() for h in tree.inclusion_proof(5, 8)] == [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]


@pytest.mark.parametrize("seed", range(6))
def test_proofs_equal_a_brute_force_tree_for_random_sizes(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 300)
    leaves = [leaf_hash(rng.randbytes(rng.randint(0, 40))) for _ in range(n)]
    tree = MerkleTree(leaves)
    for _ in range(40):
        size = rng.randint(1, n)
        m = rng.randrange(size)
        root = brute_mth(leaves[:size])
        assert tree.root(size) == root
        proof = tree.inclusion_proof(m, size)
        assert proof == brute_path(m, leaves[:size])
        assert verify_inclusion(leaves[m], m, size, proof, root)
        old = rng.randint(1, size)
        cproof = tree.consistency_proof(old, size)
        assert cproof == brute_subproof(old, leaves[:size], True)
        assert verify_consistency(old, size, brute_mth(leaves[:old]), root, cproof)


def test_consistency_proofs_match_the_certificate_transparency_vectors() -> None:
    tree = MerkleTree(leaf_hash(d) for d in CT_LEAVES)
    for (old, size), expected in CT_CONSISTENCY.items():
        proof = tree.consistency_proof(old, size)
        assert [h.hex() for h in proof] == expected, (old, size)
        assert verify_consistency(old, size, bytes.fromhex(CT_ROOTS[old - 1]), bytes.fromhex(CT_ROOTS[size - 1]),
                                  proof)


def test_every_pair_of_small_tree_sizes_is_consistent_and_a_rewritten_history_is_not() -> None:
    leaves = [leaf_hash(bytes([i])) for i in range(20)]
    tree = MerkleTree(leaves)
    for size in range(1, 21):
        for old in range(1, size + 1):
            proof = tree.consistency_proof(old, size)
            assert verify_consistency(old, size, tree.root(old), tree.root(size), proof)
            forged = MerkleTree(leaves[:old - 1] + [leaf_hash(b"forged")] + leaves[old:])
            assert not verify_consistency(old, size, forged.root(old), tree.root(size), proof)
            assert not verify_consistency(old, size, tree.root(old), forged.root(size), proof)


def test_every_leaf_of_every_small_tree_verifies() -> None:
    leaves = [leaf_hash(bytes([i])) for i in range(33)]
    tree = MerkleTree(leaves)
    for size in range(1, 34):
        for m in range(size):
            assert verify_inclusion(leaves[m], m, size, tree.inclusion_proof(m, size), tree.root(size))


def test_tampered_proofs_and_wrong_positions_are_rejected() -> None:
    rng = random.Random(7)
    leaves = [leaf_hash(rng.randbytes(8)) for _ in range(100)]
    tree = MerkleTree(leaves)
    root = tree.root()
    proof = tree.inclusion_proof(37)
    assert verify_inclusion(leaves[37], 37, 100, proof, root)
    assert not verify_inclusion(leaves[38], 37, 100, proof, root)  # another leaf
    assert not verify_inclusion(leaves[37], 36, 100, proof, root)  # another index
    assert not verify_inclusion(leaves[37], 37, 64, proof, root)  # another tree shape
    assert not verify_inclusion(leaves[37], 37, 100, proof[:-1], root)  # short proof
    assert not verify_inclusion(leaves[37], 37, 100, proof + [root], root)  # long proof
    bad = list(proof)
    bad[2] = bytes([bad[2][0] ^ 1]) + bad[2][1:]
    assert not verify_inclusion(leaves[37], 37, 100, bad, root)
    old_root = tree.root(60)
    cproof = tree.consistency_proof(60)
    assert verify_consistency(60, 100, old_root, root, cproof)
    assert not verify_consistency(60, 100, tree.root(59), root, cproof)
    assert not verify_consistency(59, 100, old_root, root, cproof)
    assert not verify_consistency(60, 100, old_root, root, cproof[:-1])
    assert not verify_consistency(60, 60, old_root, old_root, cproof)
    assert not verify_consistency(61, 60, old_root, root, cproof)


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert leaf_hash(a + b) != node_hash(a, b)  # a leaf can never pose as an interior node


def test_a_large_tree_gives_proofs_quickly() -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(100_000)]
    tree = MerkleTree(leaves)
    root = tree.root()
    rng = random.Random(3)
    for m in rng.sample(range(100_000), 500):
        assert verify_inclusion(leaves[m], m, 100_000, tree.inclusion_proof(m), root)
    assert tree.root(65_536) == tree.root(65_536)  # complete subtree: stored, no recomputation


def test_the_format_documents_test_vectors_the_code_reproduces() -> None:
    """docs/archive-format.md lists full vectors for third parties: they must be the code's."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "archive-format.md").read_text(encoding="utf-8")
    block = doc[doc.index("# leaves (hex):"):]
    block = block[:block.index("```")]
    tree = MerkleTree(leaf_hash(d) for d in CT_LEAVES)
    seen = set()
    for line in block.splitlines()[1:]:
        kind, *fields = line.split()
        seen.add(kind)
        if kind == "leaf":
            assert tree.leaf(int(fields[0])).hex() == fields[1], line
        elif kind == "root":
            assert tree.root(int(fields[0])).hex() == fields[1], line
        elif kind == "inclusion":
            m, n, proof = int(fields[0]), int(fields[1]), fields[2:]
            assert [h.hex() for h in tree.inclusion_proof(m, n)] == proof, line
            assert verify_inclusion(tree.leaf(m), m, n, [bytes.fromhex(h) for h in proof], tree.root(n))
        else:
            m, n, proof = int(fields[0]), int(fields[1]), fields[2:]
            assert [h.hex() for h in tree.consistency_proof(m, n)] == proof, line
            assert verify_consistency(m, n, tree.root(m), tree.root(n), [bytes.fromhex(h) for h in proof])
    assert seen == {"leaf", "root", "inclusion", "consistency"}
