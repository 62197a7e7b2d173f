"""The one parser for durations, rates, percentages and sizes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emrops.errors import ExitCode, UsageError
from emrops.units import format_duration, parse_duration, parse_percent, parse_rate, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("26h", 93600),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("2d", 172800),
        ("1w", 604800),
        ("15", 15),
        ("0.5s", 0.5),
        (" 5m ", 300),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "5 parsecs", "h", "-5s", "5s3", "1.2.3s", "s5"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_duration(text, what="--max-backup-age")
    assert info.value.exit_code == ExitCode.USAGE
    assert "--max-backup-age" in info.value.message


@given(st.integers(min_value=1, max_value=10_000_000))
def test_format_then_parse_round_trips_whole_seconds(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("text", "per_s"), [("200/s", 200), ("30/m", 0.5), ("7200/h", 2), ("5/ms", 5000)]
)
def test_parse_rate(text: str, per_s: float) -> None:
    assert parse_rate(text) == pytest.approx(per_s)


@pytest.mark.parametrize("text", ["200", "/s", "0/s", "fast", "200/y"])
def test_bad_rates(text: str) -> None:
    with pytest.raises(UsageError, match="invalid rate"):
        parse_rate(text)


def test_parse_percent() -> None:
    assert parse_percent("10%") == pytest.approx(0.10)
    assert parse_percent("0.5 %") == pytest.approx(0.005)
    for bad in ("10", "%", "ten%"):
        with pytest.raises(UsageError, match="invalid percentage"):
            parse_percent(bad)


def test_parse_size() -> None:
    assert parse_size("512MB") == 512_000_000
    assert parse_size("2GiB") == 2 * 1024**3
    assert parse_size("10k") == 10_000
    assert parse_size("123") == 123
    with pytest.raises(UsageError, match="invalid size"):
        parse_size("lots")


def test_result_files_and_appended_lines_are_0600(tmp_path) -> None:
    import stat

    from emrops import atomic
    from emrops.cli.app import write_out

    out = tmp_path / "r" / "result.json"
    write_out(out, {"url": "postgresql://u:pw@h/db"})
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "pw" not in out.read_text()
    log = tmp_path / "a" / "rejects.jsonl"
    atomic.append_line(log, '{"n": 1}')
    atomic.append_line(log, '{"n": 2}\n')
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert log.read_text() == '{"n": 1}\n{"n": 2}\n'
