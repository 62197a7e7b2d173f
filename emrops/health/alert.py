"""Alerts: a JSON POST to a webhook when health checks fail.

The body carries ``text`` (one line, which Slack and Teams incoming webhooks display) and the
full report for tools that parse it. The webhook URL may hold a token: it is registered as a
secret, so it is masked in every log line, error and JSON output.
"""

from __future__ import annotations

from typing import Any

from emrops import secrets
from emrops.health.checks import HealthReport
from emrops.logs import get_logger

log = get_logger(__name__)


def alert_body(report: HealthReport) -> dict[str, Any]:
    failed = [c for c in report.checks if not c.ok]
    summary = "; ".join(f"{c.name}: {c.detail}" for c in failed)
    return {
        "source": "emrops",
        "event": "health_failed",
        "host": report.host,
        "checked_at": report.checked_at,
        "failed": [c.name for c in failed],
        "text": f"emrops health on {report.host}: {len(failed)} check(s) failed: {summary}",
        "checks": [
            {"name": c.name, "ok": c.ok, "detail": c.detail, "skipped": c.skipped}
            for c in report.checks
        ],
    }


def post_alert(url: str, report: HealthReport, timeout_s: float = 10.0) -> dict[str, Any]:
    """POST the alert; returns {"sent", "status", "error"}. Never raises: a failed alert is
    reported (and logged) but does not hide the failed checks behind another error."""
    import requests

    secrets.register_secret(url)
    try:
        response = requests.post(url, json=alert_body(report), timeout=timeout_s)
    except requests.RequestException as exc:
        log.warning("alert webhook %s failed: %s", secrets.mask(url), type(exc).__name__)
        return {"sent": False, "status": None, "error": f"{type(exc).__name__}"}
    sent = 200 <= response.status_code < 300
    if not sent:
        log.warning("alert webhook answered %s", response.status_code)
    return {
        "sent": sent,
        "status": response.status_code,
        "error": None if sent else f"HTTP {response.status_code}",
    }
