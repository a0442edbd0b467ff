"""Command-line parsing into unit configs: defaults, every source kind, fleet token files, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from field_client.cli import build_parser, configs_from_args, main
from field_client.config import UnitConfig
from field_client.fleet import read_token_file
from field_client.gps import GpsSpec
from field_client.sources import SourceSpec

SERVER = "http://127.0.0.1:8080"


def configs(*argv: str) -> list[UnitConfig]:
    return configs_from_args(build_parser().parse_args(["--server", SERVER, *argv]))


def test_defaults_publish_test_pattern_and_tone_over_socketio() -> None:
    [cfg] = configs("--unit", "bc-01", "--token", "t0k")
    assert (cfg.server, cfg.unit_id, cfg.token) == (SERVER, "bc-01", "t0k")
    assert cfg.video == SourceSpec("test-pattern")
    assert cfg.audio == SourceSpec("tone")
    assert cfg.codec == "vp8"
    assert cfg.gps == GpsSpec(kind="sim")
    assert cfg.signalling == "sio"
    assert cfg.applied_log is None
    assert (cfg.width, cfg.height, cfg.fps) == (640, 480, 30)
    assert cfg.label == "bc-01"
    assert cfg.ice_servers == ()


def test_every_option_reaches_the_config(tmp_path: Path) -> None:
    [cfg] = configs(
        "--unit", "car-7", "--token", "x", "--video", "file:/tmp/a.mp4", "--audio", "device:hw:1",
        "--codec", "h264", "--gps", "nmea:/tmp/route.nmea", "--signalling", "whip",
        "--applied-log", str(tmp_path / "applied.jsonl"), "--size", "320x240", "--fps", "15",
        "--ice-server", "stun:stun.example.org:3478", "--position-interval", "2.5",
    )
    assert cfg.video == SourceSpec("file", "/tmp/a.mp4")
    assert cfg.audio == SourceSpec("device", "hw:1")
    assert cfg.codec == "h264"
    assert cfg.gps == GpsSpec(kind="nmea", path=Path("/tmp/route.nmea"))
    assert cfg.signalling == "whip"
    assert cfg.applied_log == tmp_path / "applied.jsonl"
    assert (cfg.width, cfg.height, cfg.fps) == (320, 240, 15)
    assert cfg.ice_servers == ("stun:stun.example.org:3478",)
    assert cfg.position_interval_s == 2.5


@pytest.mark.parametrize(
    ("video", "audio", "gps"),
    [("none", "none", "none"), ("device:/dev/video0", "tone", "sim:48.1,11.5"),
     ("test-pattern", "file:x.wav", "sim:-33.9,151.2,1000")],
)
def test_source_and_gps_forms_parse(video: str, audio: str, gps: str) -> None:
    [cfg] = configs("--unit", "u", "--token", "t", "--video", video, "--audio", audio, "--gps", gps)
    assert str(cfg.video) == video
    assert str(cfg.audio) == audio
    assert cfg.gps.kind == gps.split(":")[0]


def test_sim_gps_centre_and_radius_are_read() -> None:
    [cfg] = configs("--unit", "u", "--token", "t", "--gps", "sim:-33.9,151.2,1000")
    assert (cfg.gps.lat, cfg.gps.lon, cfg.gps.radius_m) == (-33.9, 151.2, 1000.0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--token", "t"], "--unit is required"),
        (["--unit", "u"], "--token is required"),
        (["--unit", "u", "--token", "t", "--video", "camera"], "--video must be one of"),
        (["--unit", "u", "--token", "t", "--audio", "file:"], "--audio must be one of"),
        (["--unit", "u", "--token", "t", "--gps", "sim:91,0"], "out of range"),
        (["--unit", "u", "--token", "t", "--gps", "gpsd"], "--gps must be"),
        (["--unit", "u", "--token", "t", "--codec", "av1"], "invalid choice"),
        (["--unit", "u", "--token", "t", "--signalling", "whep"], "invalid choice"),
        (["--fleet", "3"], "--fleet needs --token-file"),
        (["--unit", "u", "--token", "t", "--size", "big"], "WIDTHxHEIGHT"),
    ],
)
def test_bad_arguments_exit_with_usage_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--server", SERVER, *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_server_must_be_an_http_url(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--server", "127.0.0.1:8080", "--unit", "u", "--token", "t"])
    assert "http(s) URL" in capsys.readouterr().err


def test_server_repeated_names_every_node_of_a_cluster_in_order(tmp_path: Path) -> None:
    [cfg] = configs("--server", "http://10.0.0.2:8080/", "--server", "http://10.0.0.3:8080", "--server", SERVER,
                    "--unit", "u", "--token", "t")
    assert cfg.servers == (SERVER, "http://10.0.0.2:8080", "http://10.0.0.3:8080")  # the same node once
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("sim-1 aaa\nsim-2 bbb\n", encoding="utf-8")
    fleet = configs("--server", "http://10.0.0.2:8080", "--fleet", "2", "--token-file", str(tokens))
    assert [c.servers for c in fleet] == [(SERVER, "http://10.0.0.2:8080")] * 2


def test_every_server_must_be_an_http_url(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--server", SERVER, "--server", "10.0.0.2:8080", "--unit", "u", "--token", "t"])
    assert "'10.0.0.2:8080'" in capsys.readouterr().err


def test_token_never_appears_in_repr() -> None:
    [cfg] = configs("--unit", "u", "--token", "very-secret-token")
    assert "very-secret-token" not in repr(cfg)


def test_fleet_uses_first_n_token_lines_and_shares_one_pattern(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("# fleet\nsim-1 aaa\n\nsim-2 bbb\nsim-3 ccc\n", encoding="utf-8")
    cfgs = configs("--fleet", "2", "--token-file", str(tokens), "--codec", "h264",
                   "--applied-log", str(tmp_path / "applied.jsonl"))
    assert [(c.unit_id, c.token) for c in cfgs] == [("sim-1", "aaa"), ("sim-2", "bbb")]
    assert {c.codec for c in cfgs} == {"h264"}
    assert len({c.label for c in cfgs}) == 1  # one label: one shared encoded loop
    assert [c.applied_log for c in cfgs] == [tmp_path / "applied.sim-1.jsonl", tmp_path / "applied.sim-2.jsonl"]


def test_fleet_larger_than_token_file_is_refused(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("sim-1 aaa\n", encoding="utf-8")
    with pytest.raises(ValueError, match="needs 5"):
        read_token_file(tokens, 5)
    tokens.write_text("sim-1 aaa extra\n", encoding="utf-8")
    with pytest.raises(ValueError, match="tokens.txt:1"):
        read_token_file(tokens, 1)


def test_single_unit_token_can_come_from_token_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("bc-01 one\nbc-02 two\n", encoding="utf-8")
    [cfg] = configs("--unit", "bc-02", "--token-file", str(tokens))
    assert cfg.token == "two"
    with pytest.raises(ValueError, match="no line for unit bc-03"):
        configs("--unit", "bc-03", "--token-file", str(tokens))
