"""Alerts: a JSON POST to a webhook when health checks fail.

The body carries ``text`` (one line, which Slack and Teams incoming webhooks display) and the
full report for tools that parse it. The webhook URL may hold a token: it is registered as a
secret, so it is masked in every log line, error and JSON output.
"""

from __future__ import annotations

import threading
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
    reported (and logged) but does not hide the failed checks behind another error.

    Redirects are never followed (a 3xx is a failure: the body would otherwise go wherever the
    answer points), and ``timeout_s`` bounds the whole exchange, not each socket read: a
    webhook that trickles its answer cannot hold the health run (and its cron slot) hostage.
    """
    secrets.register_secret(url)
    outcome: dict[str, Any] = {}
    worker = threading.Thread(
        target=_post, args=(url, alert_body(report), timeout_s, outcome), daemon=True
    )
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():  # the daemon thread is abandoned; its socket closes at exit
        log.warning("alert webhook %s: no answer within %gs", secrets.mask(url), timeout_s)
        return {"sent": False, "status": None, "error": f"no answer within {timeout_s:g}s"}
    return outcome


def _post(url: str, body: dict[str, Any], timeout_s: float, outcome: dict[str, Any]) -> None:
    import requests

    try:
        response = requests.post(url, json=body, timeout=timeout_s, allow_redirects=False)
        response.close()
    except requests.Timeout:  # the same deadline as the caller's, whichever noticed first
        log.warning("alert webhook %s: no answer within %gs", secrets.mask(url), timeout_s)
        outcome.update(sent=False, status=None, error=f"no answer within {timeout_s:g}s")
        return
    except requests.RequestException as exc:
        log.warning("alert webhook %s failed: %s", secrets.mask(url), type(exc).__name__)
        outcome.update(sent=False, status=None, error=f"{type(exc).__name__}")
        return
    sent = 200 <= response.status_code < 300
    error = None
    if response.is_redirect or 300 <= response.status_code < 400:
        error = f"HTTP {response.status_code} (redirects are not followed)"
    elif not sent:
        error = f"HTTP {response.status_code}"
    if not sent:
        log.warning("alert webhook answered %s", response.status_code)
    outcome.update(sent=sent, status=response.status_code, error=error)
