"""A local fake of the Azure Load Testing data-plane API, served over TLS with a test CA.

The SDK (azure-developer-loadtesting) insists on https and azure-core sends bearer tokens
only over TLS, so the fake has its own CA (written to ``ca.pem``; point REQUESTS_CA_BUNDLE
at it). It pins the api-version, checks the token, keeps tests, files and runs, moves a run
ACCEPTED -> EXECUTING -> DONE over a few polls, and evaluates the pass/fail criteria against
the statistics the test sets, as the service does.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from emrops.loadtest.cloud import API_VERSION

TOKEN = "alt-test-token"
_AGG = {"p50": "medianResTime", "p90": "pct1ResTime", "p95": "pct2ResTime", "p99": "pct3ResTime"}


def make_certs(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost: (ca.pem, cert.pem, key.pem)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "emrops test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class FakeLoadTesting:
    def __init__(self, folder: Path):
        self.ca, cert, key = make_certs(folder)
        self.tests: dict[str, dict[str, Any]] = {}
        self.files: dict[tuple[str, str], bytes] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.polls: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
        # per request name (and "Total"): what the engines "measured"
        self.statistics: dict[str, dict[str, float]] = {}
        self.validation = "VALIDATION_SUCCESS"
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeLoadTesting:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def finish(self, run_id: str) -> dict[str, Any]:
        run = self.runs[run_id]
        test = self.tests[run["testId"]]
        run["testRunStatistics"] = {
            name: {"transaction": name, **stats} for name, stats in self.statistics.items()
        }
        metrics = json.loads(
            json.dumps((test.get("passFailCriteria") or {}).get("passFailMetrics") or {})
        )
        failed = False
        for criterion in metrics.values():
            stats = self.statistics.get(criterion.get("requestName") or "Total") or {}
            metric, aggregate = criterion["clientMetric"], criterion["aggregate"]
            if metric == "response_time_ms":
                actual = stats.get(
                    _AGG.get(aggregate) or {"avg": "meanResTime", "max": "maxResTime"}[aggregate]
                )
            elif metric == "error":
                actual = stats.get("errorPct")
            else:
                actual = stats.get("throughput")
            broken = (
                actual > criterion["value"]
                if criterion["condition"] == ">"
                else actual < criterion["value"]
            )
            criterion.update(actualValue=actual, result="failed" if broken else "passed")
            failed = failed or broken
        run["passFailCriteria"] = {"passFailMetrics": metrics}
        run["testResult"] = "FAILED" if failed else "PASSED"
        run["status"] = "DONE"
        return run


def _handler(fake: FakeLoadTesting) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, code: str, message: str) -> None:
            self._send(status, {"error": {"code": code, "message": message}})

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            fake.requests.append((method, parts.path))
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if query.get("api-version") != [API_VERSION]:
                return self._error(
                    400, "InvalidApiVersion", f"api-version {query.get('api-version')}"
                )
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._error(401, "Unauthorized", "bad or missing token")
            segs = parts.path.strip("/").split("/")
            if segs[0] == "tests" and len(segs) == 2 and method == "PATCH":
                if self.headers.get("Content-Type") != "application/merge-patch+json":
                    return self._error(415, "UnsupportedMediaType", "merge-patch+json expected")
                body = json.loads(raw)
                created = segs[1] not in fake.tests
                test = fake.tests.setdefault(segs[1], {"testId": segs[1]})
                test.update(body)
                return self._send(201 if created else 200, test)
            if segs[0] == "tests" and len(segs) == 4 and segs[2] == "files":
                key = (segs[1], segs[3])
                if method == "PUT":
                    if segs[1] not in fake.tests:
                        return self._error(404, "NotFound", f"test {segs[1]}")
                    fake.files[key] = raw
                    return self._send(
                        201,
                        {
                            "fileName": segs[3],
                            "fileType": query["fileType"][0],
                            "validationStatus": "VALIDATION_INITIATED",
                        },
                    )
                if key not in fake.files:
                    return self._error(404, "NotFound", "file")
                return self._send(200, {"fileName": segs[3], "validationStatus": fake.validation})
            if segs[0] == "test-runs" and len(segs) == 2:
                if method == "PATCH":
                    body = json.loads(raw)
                    if body.get("testId") not in fake.tests:
                        return self._error(404, "NotFound", "test")
                    fake.runs[segs[1]] = {**body, "testRunId": segs[1], "status": "ACCEPTED"}
                    fake.polls[segs[1]] = 0
                    return self._send(201, fake.runs[segs[1]])
                if segs[1] not in fake.runs:
                    return self._error(404, "NotFound", "run")
                fake.polls[segs[1]] += 1
                if fake.polls[segs[1]] == 2:
                    fake.runs[segs[1]]["status"] = "EXECUTING"
                elif fake.polls[segs[1]] >= 3 and fake.runs[segs[1]]["status"] != "DONE":
                    fake.finish(segs[1])
                return self._send(200, fake.runs[segs[1]])
            return self._error(404, "NotFound", parts.path)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def do_PATCH(self) -> None:
            self._handle("PATCH")

    return Handler
