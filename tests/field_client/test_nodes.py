"""The nodes a unit knows: it stays with one until connecting to it fails, then goes round."""

from __future__ import annotations

from field_client.nodes import ServerNodes

A, B, C = "http://10.0.0.1:8080", "http://10.0.0.2:8080", "http://10.0.0.3:8080"


def test_an_unreachable_node_moves_the_unit_to_the_next_round_robin() -> None:
    nodes = ServerNodes("bc-01", [A, B, C])
    assert nodes.current == A and not nodes.moved.is_set()
    nodes.unreachable(A)
    assert nodes.current == B and nodes.moved.is_set()
    nodes.unreachable(B)
    nodes.unreachable(C)
    assert nodes.current == A


def test_a_late_failure_of_a_node_already_left_changes_nothing() -> None:
    nodes = ServerNodes("bc-01", [A, B, C])
    nodes.unreachable(A)
    nodes.moved.clear()
    nodes.unreachable(A)  # e.g. the WHIP session's report after the link had moved on
    assert nodes.current == B and not nodes.moved.is_set()


def test_a_single_node_is_retried_for_ever() -> None:
    nodes = ServerNodes("bc-01", [A])
    nodes.unreachable(A)
    assert nodes.current == A and not nodes.moved.is_set()
