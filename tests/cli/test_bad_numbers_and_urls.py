"""Option values found by a sweep over every command with out-of-range numbers and broken
URLs: each was an "unexpected ..." error (a traceback's last line) and is now a usage error
(exit 2) naming the option."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # urlsplit raises ValueError on an unclosed IPv6 bracket
        (["loadtest", "run", "--url", "http://[::1", "--rate", "1/s", "--duration", "1s"],
         "invalid --url 'http://[::1': Invalid IPv6 URL"),
        (["sockets", "probe", "--url", "http://[::1", "--clients", "1", "--duration", "1s"],
         "invalid --url 'http://[::1': Invalid IPv6 URL"),
        (["sockets", "probe", "--url", "ftp://x", "--clients", "1", "--duration", "1s"],
         "invalid --url 'ftp://x'"),
        # MemoryError building the clients
        (["benchmark", "run", "--db", "sqlite:///b.db", "--clients", "99999999999"],
         "at most 10,000 clients"),
        # OverflowError while seeding
        (["sim", "seed", "--db", "sqlite:///s.db", "--sessions", "99999999999999999999"],
         "'--sessions'"),
    ],
    ids=["loadtest-ipv6", "probe-ipv6", "probe-scheme", "benchmark-clients", "seed-sessions"],
)  # fmt: skip
def test_bad_values_are_usage_errors(cli, args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr
    assert "unexpected" not in result.stderr


def test_a_postgresql_url_libpq_cannot_parse_is_a_usage_error(cli, tmp_path) -> None:
    # %00 in the database or user name: "unexpected ProgrammingError: forbidden value %00"
    source = tmp_path / "s.db"
    source.write_bytes(b"")
    url = "postgresql+psycopg://po%00stgres:secretpw@127.0.0.1/x"
    for args in (["migrate-db", "status", "--to", url],
                 ["migrate-db", "plan", "--from", str(source), "--to", url]):  # fmt: skip
        result = cli(*args)
        assert result.exit_code == 2, result.stderr
        assert "invalid PostgreSQL URL" in result.stderr and "secretpw" not in result.stderr
