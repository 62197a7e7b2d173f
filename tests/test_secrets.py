"""Masking: case-insensitive key names, PGPASSWORD, tokens, connection strings, bearer tokens."""

from __future__ import annotations

import pytest

from emrops.secrets import mask


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PGPASSWORD=hunter2 pg_dump: error", "PGPASSWORD=*** pg_dump: error"),
        ("pgpassword=hunter2", "pgpassword=***"),
        ("host=db PASSWORD=hunter2 user=app", "host=db PASSWORD=*** user=app"),
        ("host=db password='two words' user=app", "host=db password='***' user=app"),
        (
            "DefaultEndpointsProtocol=https;AccountName=acct;ACCOUNTKEY=abc+/==;EndpointSuffix=x",
            "DefaultEndpointsProtocol=https;AccountName=acct;ACCOUNTKEY=***;EndpointSuffix=x",
        ),
        (
            "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=abc=",
            "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=***",
        ),
        ("https://a.blob/c?sv=2024&SIG=abc%2Fdef&se=1", "https://a.blob/c?sv=2024&SIG=***&se=1"),
        ("EMROPS_SIM_TOKEN=s3cr3t-value", "EMROPS_SIM_TOKEN=***"),
        ("access_token=abc123&x=1", "access_token=***&x=1"),
        ('{"client_secret": "abc\\"def", "n": 1}', '{"client_secret": "***", "n": 1}'),
        ("Authorization: Bearer eyJhbGciOi.abc.def", "Authorization: Bearer ***"),
        ("postgresql://app:hunter2@db/emrsim", "postgresql://app:***@db/emrsim"),
    ],
)
def test_mask(text: str, expected: str) -> None:
    assert mask(text) == expected


@pytest.mark.parametrize(
    "text",
    ["token count 5", "password authentication failed for user app", "keys=3 tokens: 4"],
)
def test_plain_text_is_left_alone(text: str) -> None:
    assert mask(text) == text
