"""The URL a node advertises to the others: configured, or derived from where it listens."""

from __future__ import annotations

import dataclasses
import socket

from dispatch_server.config import ClusterConfig, Settings
from dispatch_server.node import advertised


def test_an_empty_advertise_url_is_derived_from_the_bound_address() -> None:
    assert advertised(Settings(), ("127.0.0.1", 41234)).cluster.advertise_url == "http://127.0.0.1:41234"
    assert advertised(Settings(), ("0.0.0.0", 8080)).cluster.advertise_url == f"http://{socket.gethostname()}:8080"
    assert advertised(Settings(), ("::1", 8080, 0, 0)[:2]).cluster.advertise_url == "http://[::1]:8080"


def test_a_configured_advertise_url_wins() -> None:
    s = dataclasses.replace(Settings(), cluster=ClusterConfig(advertise_url="http://10.0.0.5:8080"))
    assert advertised(s, ("127.0.0.1", 1)).cluster.advertise_url == "http://10.0.0.5:8080"
