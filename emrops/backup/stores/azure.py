"""A backup store under an Azure Blob Storage prefix (``azure://CONTAINER/PREFIX``).

Credentials: ``EMROPS_AZURE_STORAGE_CONNECTION_STRING`` (env only), or the account URL
(``azure.storage_account_url``) with ``DefaultAzureCredential`` (managed identity, CLI login).
Data is uploaded as blocks with per-block MD5 (``validate_content``); uncommitted blocks are
invisible (Azure drops them after 7 days), the block list is committed only when the
stream is complete, and the stored size is checked. The lock is a 60 s blob lease on
``PREFIX/.lock``, renewed in the background, with the holder in the blob's metadata.

Every blob of a backup carries the blob index tag ``emrops-pinned`` (``true`` while the
backup's ``pin.json`` exists, else ``false``), kept in step when pin.json is written or
deleted. The storage lifecycle rule (templates/bicep/modules/storage.bicep) deletes only
blobs tagged ``false``, so it never removes a pinned backup; untagged blobs (written before
tags, or by other tools) are never deleted by it either.
"""

from __future__ import annotations

import base64
import contextlib
import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import IO, Any
from urllib.parse import parse_qs

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, ExponentialRetry

from emrops import secrets
from emrops.backup.lock import Holder, busy, pid_alive
from emrops.backup.manifest import PIN
from emrops.backup.stores import (
    DeleteRefused,
    NotFound,
    Offline,
    Store,
    Warn,
    check_name,
    plain_part,
    too_large,
)
from emrops.errors import Busy, EmropsError, UsageError
from emrops.logs import get_logger

log = get_logger(__name__)
BLOCK_SIZE = 8 << 20
UPLOAD_THREADS = 4
LEASE_SECONDS = 60
DEFAULT_CONNECT_S, DEFAULT_READ_S, DEFAULT_BUDGET_S = 4.0, 5.0, 15.0


class BudgetedRetry(ExponentialRetry):
    """The storage SDK's exponential retry (1 s, then 3**n s), within a time budget per request:
    no retry starts that could end (backoff + one read timeout) after ``budget_s`` from the
    first try. An unreachable or silent endpoint fails in about ``budget_s``, not minutes."""

    def __init__(self, *, budget_s: float, read_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.budget_s = budget_s
        self.read_timeout_s = read_timeout_s

    def configure_retries(self, request: Any) -> dict[str, Any]:
        settings: dict[str, Any] = super().configure_retries(request)
        settings["emrops_started"] = time.monotonic()
        return settings

    def increment(
        self, settings: Any, request: Any, response: Any = None, error: Any = None
    ) -> Any:
        if not super().increment(settings, request, response=response, error=error):
            return False
        spent = time.monotonic() - settings.get("emrops_started", time.monotonic())
        # draw the jittered backoff once, so the check and the sleep use the same value
        settings["emrops_backoff"] = super().get_backoff_time(settings)
        return spent + settings["emrops_backoff"] + self.read_timeout_s <= self.budget_s

    def get_backoff_time(self, settings: Any) -> float:
        if "emrops_backoff" in settings:
            return float(settings["emrops_backoff"])
        return float(super().get_backoff_time(settings))


def _seconds(settings: Any, key: str, default: float) -> float:
    from emrops.units import parse_duration

    raw = settings.get(key) if settings else None
    return parse_duration(str(raw), what=key) if raw not in (None, "") else default


def _client_options(settings: Any) -> dict[str, Any]:
    retries = int(settings.get("azure.storage_retries") or 0) if settings else 3
    connect = _seconds(settings, "azure.storage_connect_timeout", DEFAULT_CONNECT_S)
    read = _seconds(settings, "azure.storage_read_timeout", DEFAULT_READ_S)
    budget = _seconds(settings, "azure.storage_retry_budget", DEFAULT_BUDGET_S)
    policy = BudgetedRetry(
        budget_s=budget,
        read_timeout_s=read,
        initial_backoff=1,
        increment_base=3,
        random_jitter_range=0.5,
        retry_total=retries,
    )
    return {"connection_timeout": connect, "read_timeout": read, "retry_policy": policy}


# The SAS permission (sp= letter) each kind of request needs, and its name.
PERMISSIONS = {"l": "list", "r": "read", "w": "write", "d": "delete", "t": "tag"}
IMMUTABLE_CODES = (
    "BlobImmutableDueToPolicy",
    "BlobImmutableDueToLegalHold",
    "ContainerImmutableDueToPolicy",
)


def azure_error(
    store: str, exc: Exception, endpoint: str | None = None, need: str = ""
) -> EmropsError:
    """Translate an Azure SDK failure into one clear message (naming the endpoint) and a hint.
    ``need``: the SAS permission letter the failed request needed (see PERMISSIONS)."""
    where = f"{store} at {endpoint}" if endpoint else store
    if isinstance(exc, ServiceRequestError):
        return EmropsError(
            f"cannot reach Azure Blob Storage for {where}: {str(exc).splitlines()[0]}",
            hint="check the network, the account URL or connection string, and the service "
            "(azure.storage_connect_timeout, azure.storage_retry_budget)",
        )
    if isinstance(exc, ServiceResponseError):
        return EmropsError(
            f"no answer from Azure Blob Storage for {where}: {str(exc).splitlines()[0]}",
            hint="the endpoint accepted the connection but did not answer: check it is Azure "
            "Storage (or Azurite) and reachable (azure.storage_read_timeout)",
        )
    if isinstance(exc, ClientAuthenticationError):
        return EmropsError(
            f"Azure refused the credentials for {store}",
            hint="check EMROPS_AZURE_STORAGE_CONNECTION_STRING or the managed identity's role",
        )
    text = secrets.mask((getattr(exc, "message", None) or str(exc)).splitlines()[0])
    if _code(exc) == "AuthorizationPermissionMismatch" and need in PERMISSIONS:
        # The credentials are good but may not do this kind of request: name the right.
        return EmropsError(
            f"Azure refused to {PERMISSIONS[need]} blobs in {store}: the credentials lack "
            f"the {PERMISSIONS[need]} permission (403 AuthorizationPermissionMismatch)",
            hint=f"give the SAS token the {PERMISSIONS[need]} permission ('{need}' in sp=; "
            "emrops needs r, w, d, l, a, c and t), or the managed identity the Storage Blob "
            "Data Contributor role",
        )
    if _code(exc) == "KeyBasedAuthenticationNotPermitted":
        # The account has shared-key access disabled (allowSharedKeyAccess: false, Azure's
        # security baseline): an account key or a key-signed SAS is refused whatever it holds.
        return EmropsError(
            f"Azure refused the account key for {store}: the storage account does not allow "
            "shared-key authorization (403 KeyBasedAuthenticationNotPermitted)",
            hint="unset EMROPS_AZURE_STORAGE_CONNECTION_STRING and set azure.storage_account_url "
            "(EMROPS_AZURE_STORAGE_ACCOUNT_URL) to use Entra ID (managed identity, az login) "
            "with the Storage Blob Data Contributor role, or a user delegation SAS",
        )
    if _code(exc) in IMMUTABLE_CODES:
        # A time-based retention policy or a legal hold on the container (WORM): nothing,
        # emrops included, may delete or overwrite the blob until it ends.
        return DeleteRefused(
            f"Azure refused to change a blob in {store}: it is immutable "
            f"(409 {_code(exc)}): {text}",
            hint="the container has an immutability policy or legal hold: the backup stays "
            "until the retention period ends or the hold is cleared; rotate cannot delete it",
        )
    if _code(exc) == "ContainerNotFound":
        return EmropsError(
            f"the container of {store} does not exist and these credentials may not create it",
            hint="create the container, or use credentials that may (an account key, or a SAS "
            "token for the account rather than the container)",
        )
    if getattr(exc, "status_code", None) == 403:
        # A wrong or expired SAS, a rotated key, a missing role: a configuration problem, not
        # a broken store (this is also what a SAS without list/write/delete rights gets).
        return EmropsError(
            f"Azure refused access to {store} (403 {_code(exc)}): {text}",
            hint="check EMROPS_AZURE_STORAGE_CONNECTION_STRING: the account key, or the SAS "
            "token's signature, expiry (se=) and permissions (sp= needs r, w, d, l, a, c and t), "
            "or the managed identity's role (Storage Blob Data Contributor)",
        )
    return EmropsError(f"Azure Blob Storage error on {store}: {text}")


# How far this host's clock may be from Azure's before a SAS time is judged here: within it,
# Azure's own answer decides (a token it accepts is never refused for a skewed clock).
SAS_SKEW = timedelta(minutes=5)


def check_sas_expiry(conn: str, store: str, now: datetime | None = None) -> None:
    """Refuse a connection string whose SAS token has expired (se= in the past) or is not
    valid yet (st= in the future) before any request: Azure would answer each one with a bare
    403. Names the time, never the token."""
    parts = dict(p.partition("=")[::2] for p in conn.split(";") if "=" in p)
    sas = next((v for k, v in parts.items() if k.lower() == "sharedaccesssignature"), "")
    query = parse_qs(sas.lstrip("?"))
    now = now or datetime.now(UTC)
    expiry, start = _sas_time(query, "se"), _sas_time(query, "st")
    where = "(EMROPS_AZURE_STORAGE_CONNECTION_STRING, {})"
    if expiry is not None and expiry[0] <= now - SAS_SKEW:
        raise EmropsError(
            f"the SAS token for {store} expired at {expiry[1]} {where.format('se=')}",
            hint="generate a new SAS token (or use the account key or a managed identity)",
        )
    if start is not None and start[0] > now + SAS_SKEW:
        raise EmropsError(
            f"the SAS token for {store} is not valid before {start[1]} {where.format('st=')}; "
            f"it is {now:%Y-%m-%dT%H:%M:%SZ} here",
            hint="wait until then, or generate one without a start time (st=); if the time "
            "here is wrong, fix this host's clock",
        )


def _sas_time(query: dict[str, list[str]], key: str) -> tuple[datetime, str] | None:
    """A SAS time field (se=, st=) and its text; None when absent or not a time we read
    (Azure answers for it then)."""
    text = query.get(key, [""])[0]
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)), text


def _code(exc: Exception) -> str:
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "no error code")


class _BlockWriter:
    """A write-only stream that stages 8 MiB blocks (MD5-validated) in parallel."""

    def __init__(self, blob: Any):
        self.blob = blob
        self.buffer = bytearray()
        self.blocks: list[str] = []
        self.pending: list[Future[Any]] = []
        self.pool = ThreadPoolExecutor(UPLOAD_THREADS)
        self.slots = threading.BoundedSemaphore(UPLOAD_THREADS * 2)
        self.written = 0

    def write(self, data: bytes) -> int:
        self.buffer += data
        self.written += len(data)
        while len(self.buffer) >= BLOCK_SIZE:
            self._stage(bytes(self.buffer[:BLOCK_SIZE]))
            del self.buffer[:BLOCK_SIZE]
        return len(data)

    def _stage(self, chunk: bytes) -> None:
        block_id = base64.b64encode(uuid.uuid4().hex.encode()).decode()
        self.blocks.append(block_id)
        self.slots.acquire()

        def upload() -> None:
            try:
                self.blob.stage_block(block_id, chunk, validate_content=True)
            finally:
                self.slots.release()

        self.pending.append(self.pool.submit(upload))
        done = [f for f in self.pending if f.done()]
        for future in done:
            future.result()
            self.pending.remove(future)

    def flush(self) -> None:
        pass

    def commit(self, tags: dict[str, str] | None = None) -> None:
        if self.buffer or not self.blocks:
            self._stage(bytes(self.buffer))
            self.buffer.clear()
        for future in self.pending:
            future.result()
        self.blob.commit_block_list(self.blocks, validate_content=True, tags=tags)
        size = self.blob.get_blob_properties().size
        if size != self.written:
            raise EmropsError(
                f"upload of {self.blob.blob_name} is {size} bytes, expected {self.written}"
            )

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


PIN_TAG = "emrops-pinned"  # blob index tag the lifecycle rule filters on


# A container name never holds these; a prefix is used as written ("#", "?", "%" included)
# except for parts Azure cannot hold as written: "." and ".." (HTTP clients resolve them, and
# the request goes elsewhere or fails its signature), a backslash (Azure turns it into "/")
# or a control character.
BAD_CONTAINER = re.compile(r"[?#/\\\x00-\x1f\x7f]|^\.{1,2}$")
BAD_PART = re.compile(r"[\\\x00-\x1f\x7f]|^\.{1,2}$")


def parse_store_url(url: str) -> tuple[str, str]:
    """(container, prefix) of ``azure://CONTAINER/PREFIX``; UsageError (exit 2) for a name Azure
    would resolve elsewhere, or a URL holding a secret (a SAS URL pasted as the store): it
    would be printed with every result and end up in every blob name. Shown masked."""
    container, _, prefix = url[len("azure://") :].partition("/")
    prefix = prefix.strip("/")
    shown = secrets.mask(url)
    if shown != url:
        raise UsageError(
            f"invalid Azure store {shown!r}: it holds a secret (a SAS token?)",
            hint="use azure://CONTAINER/PREFIX; credentials go in "
            "EMROPS_AZURE_STORAGE_CONNECTION_STRING, never in the store",
        )
    if not container or BAD_CONTAINER.search(container):
        raise UsageError(
            f"invalid Azure store {shown!r}: the container name is missing or not a plain name",
            hint="use azure://CONTAINER/PREFIX (a container name is lowercase letters, digits "
            "and hyphens)",
        )
    parts = prefix.split("/") if prefix else []
    if len(prefix) > 256 or any(not part or BAD_PART.search(part) for part in parts):
        raise UsageError(
            f"invalid Azure store {shown!r}: the prefix must be plain folder names",
            hint="use azure://CONTAINER/PREFIX with no '.', '..', '\\' or empty parts",
        )
    return container, prefix


class AzureStore(Store):
    def __init__(self, container: ContainerClient, prefix: str, url: str):
        self.container = container
        self.prefix = prefix.strip("/")
        self.url = url
        self._lease: Any = None  # while this object holds the store lock
        self._lease_lost = threading.Event()
        self._container_ready = False

    @classmethod
    def from_url(cls, url: str, settings: Any) -> AzureStore:
        container, prefix = parse_store_url(url)
        conn = settings.get("azure.storage_connection_string") if settings else None
        account = settings.get("azure.storage_account_url") if settings else None
        if conn:
            check_sas_expiry(conn, url)
            try:
                service = BlobServiceClient.from_connection_string(
                    conn, **_client_options(settings)
                )
            except ValueError as exc:
                raise UsageError(
                    "invalid EMROPS_AZURE_STORAGE_CONNECTION_STRING",
                    hint="copy it from the storage account's Access keys page",
                ) from exc
        elif account:
            from azure.identity import DefaultAzureCredential

            service = BlobServiceClient(
                account, credential=DefaultAzureCredential(), **_client_options(settings)
            )
        else:
            raise UsageError(
                f"no Azure credentials for {url}",
                hint="set EMROPS_AZURE_STORAGE_CONNECTION_STRING, or azure.storage_account_url "
                "(EMROPS_AZURE_STORAGE_ACCOUNT_URL) for a managed identity",
            )
        return cls(service.get_container_client(container), prefix, url)

    def _name(self, name: str) -> str:
        """The blob name of ``name``, refused unless it stays under the store's prefix."""
        check_name(name, self.url)
        return f"{self.prefix}/{name}" if self.prefix else name

    def _blob(self, name: str) -> Any:
        return self.container.get_blob_client(self._name(name))

    @contextlib.contextmanager
    def _errors(self, need: str) -> Iterator[None]:
        """Azure failures as EmropsError; ``need``: the SAS permission the requests need."""
        try:
            yield
        except (NotFound, EmropsError):
            raise
        except AzureError as exc:
            raise azure_error(self.url, exc, self.endpoint, need) from exc

    def _ensure_container(self) -> None:
        """Create the container unless it exists. Credentials scoped to the container (a
        container SAS) may not create one (403): the container then exists or the next
        request says it does not (ContainerNotFound)."""
        if self._container_ready:
            return
        try:
            self.container.create_container()
        except ResourceExistsError:
            pass
        except HttpResponseError as exc:
            if exc.status_code != 403:
                raise
        self._container_ready = True

    @property
    def endpoint(self) -> str:
        return str(getattr(self.container, "primary_endpoint", "") or self.container.url)

    def _list(self, under: str) -> list[str]:
        return list(self._list_sizes(under))

    def _list_sizes(self, under: str) -> dict[str, int]:
        if under:
            check_name(under.rstrip("/"), self.url)
        start = f"{self.prefix}/{under}" if self.prefix else under
        with self._errors("l"):
            try:
                return {
                    b.name[len(start) :]: int(b.size or 0)
                    for b in self.container.list_blobs(name_starts_with=start)
                }
            except ResourceNotFoundError as exc:
                # Only Azure's own "no such container" means "no backups yet". A bare 404 (a
                # proxy, a wrong URL, something that is not Azure Storage) is an error: an
                # empty listing would read as "no backups" and hide the misconfiguration.
                if getattr(exc, "error_code", None) == "ContainerNotFound":
                    return {}
                raise EmropsError(
                    f"{self.endpoint} answered 404 without an Azure Storage error code for "
                    f"{self.url}: it does not look like Azure Blob Storage",
                    hint="check azure.storage_account_url / the connection string's "
                    "BlobEndpoint (a proxy or a wrong path answers like this)",
                ) from exc

    def backup_ids(self) -> list[str]:
        ids = {n.split("/", 1)[0] for n in self._list("") if "/" in n}
        return sorted(i for i in ids if not i.startswith("."))

    def names(self, backup_id: str) -> list[str]:
        # A blob nested deeper (<id>/sub/x), named with a trailing slash or otherwise not
        # plain was not written by emrops and is no name of the backup (check_name refuses it).
        return sorted(n for n in self._list(f"{backup_id}/") if plain_part(n))

    def sizes(self, backup_id: str) -> dict[str, int]:
        return {n: size for n, size in self._list_sizes(f"{backup_id}/").items() if plain_part(n)}

    def exists(self, name: str) -> bool:
        with self._errors("r"):
            return bool(self._blob(name).exists())

    def read_bytes(self, name: str, limit: int | None = None) -> bytes:
        if limit is None:
            with self.open_read(name) as stream:
                return stream.read()
        with self._errors("r"):
            try:
                data = self._blob(name).download_blob(offset=0, length=limit + 1).readall()
            except ResourceNotFoundError:
                raise NotFound(f"{name} is missing from backup store {self.url}") from None
            except HttpResponseError as exc:
                if _code(exc) != "InvalidRange":  # what a range read of an empty blob gets
                    raise self._offline(name, exc) from None
                data = b""
        if len(data) > limit:
            raise too_large(name, self.url, limit)
        return bytes(data)

    @contextlib.contextmanager
    def open_read(self, name: str) -> Iterator[IO[bytes]]:
        with self._errors("r"):
            try:
                downloader = self._blob(name).download_blob(max_concurrency=4)
            except ResourceNotFoundError:
                raise NotFound(f"{name} is missing from backup store {self.url}") from None
            except HttpResponseError as exc:
                raise self._offline(name, exc) from None
            yield downloader  # type: ignore[misc]  # has read(size)

    @contextlib.contextmanager
    def writer(self, name: str) -> Iterator[IO[bytes]]:
        with self._errors("w"):
            self._ensure_container()
            sink = _BlockWriter(self._blob(name))
            try:
                yield sink  # type: ignore[misc]
                tags = self._tags_for(name)
                self._still_holding()  # committing the block list publishes the blob
                sink.commit(tags)
            finally:
                sink.close()
            backup_id, _, rest = name.partition("/")
            if rest == PIN:
                self._retag(backup_id, pinned=True)

    def delete(self, name: str) -> None:
        self._still_holding()
        with self._errors("d"), contextlib.suppress(ResourceNotFoundError):
            self._blob(name).delete_blob()
        backup_id, _, rest = name.partition("/")
        if rest == PIN:
            self._retag(backup_id, pinned=False)

    def _tags_for(self, name: str) -> dict[str, str] | None:
        """The pin tag of a blob inside a backup folder; None outside one (lock, staging)."""
        backup_id, _, rest = name.partition("/")
        if not rest or backup_id.startswith("."):
            return None
        pinned = rest == PIN or self.exists(f"{backup_id}/{PIN}")
        return {PIN_TAG: "true" if pinned else "false"}

    def _retag(self, backup_id: str, pinned: bool) -> None:
        """Set the pin tag on every blob of a backup (after pin.json was written or deleted)."""
        self._still_holding()
        with self._errors("t"):
            for rest in self.names(backup_id):
                with contextlib.suppress(ResourceNotFoundError):
                    self._blob(f"{backup_id}/{rest}").set_blob_tags(
                        {PIN_TAG: "true" if pinned else "false"}
                    )

    def pin_tags(self, backup_id: str) -> dict[str, str]:
        """Each blob of a backup and its pin tag ("" when untagged): for checks and tests."""
        with self._errors("t"):
            return {
                rest: self._blob(f"{backup_id}/{rest}").get_blob_tags().get(PIN_TAG, "")
                for rest in self.names(backup_id)
            }

    def _still_holding(self) -> None:
        """Before changing the store under the lock, renew the lease: it is then ours for
        another LEASE_SECONDS. A lease that expired while this run stalled may have been taken
        over by another run (which then holds the lock); this run must stop, not write on."""
        if self._lease is None:
            return
        if not self._lease_lost.is_set():
            try:
                self._lease.renew()
            except HttpResponseError as exc:
                if exc.status_code not in (409, 412):
                    raise azure_error(self.url, exc) from exc
                self._lease_lost.set()
        if self._lease_lost.is_set():
            raise Busy(
                f"lost the lock on backup store {self.url}: its lease expired and another run "
                "took it over; this run stopped before changing the store",
                hint="run it again once the other run is done",
            )

    def cleanup_staging(self) -> list[str]:
        return []  # uncommitted blocks are invisible and expire on their own

    def _busy(self, me: Holder, holder: Holder | None) -> Busy:
        """Busy naming the holder; a holder on this host that is no longer running (killed)
        keeps the lock until its lease runs out: say so, and when."""
        error = busy(self.url, holder)
        if holder is None or holder.host != me.host or pid_alive(holder.pid):
            return error
        return Busy(
            f"{error.message} (pid {holder.pid} is no longer running on this host: its lease "
            f"runs out within {LEASE_SECONDS} s, then the lock is taken over)",
            hint=f"run it again in {LEASE_SECONDS} s",
        )

    def _offline(self, name: str, exc: HttpResponseError) -> Exception:
        """Offline for a blob in the Archive tier (unreadable until rehydrated), else ``exc``."""
        if _code(exc) != "BlobArchived":
            return exc
        return Offline(
            f"{name} in backup store {self.url} is in the Archive tier: it cannot be read until "
            "it is rehydrated",
            hint="rehydrate it (az storage blob set-tier --tier Cool --rehydrate-priority "
            "Standard ...; this takes hours) and run the command again",
        )

    def _lock_holder(self, blob: Any) -> Holder | None:
        with self._errors("r"):
            return _holder(blob.get_blob_properties().metadata)

    def _acquire(self, blob: Any, me: Holder) -> Any:
        """The lease on the lock blob, or Busy naming its holder. A holder writes its metadata
        just after taking the lease and clears it just before releasing it: a lease held with
        no metadata is one of those moments, so it is tried again for a second before the
        holder is called "another process"."""
        for attempt in range(20):
            try:
                return blob.acquire_lease(lease_duration=LEASE_SECONDS)
            except HttpResponseError as exc:
                if exc.status_code != 409:
                    raise
            holder = self._lock_holder(blob)
            if holder is not None or attempt == 19:
                raise self._busy(me, holder) from None
            time.sleep(0.05)
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def lock(
        self, operation: str, warn: Warn | None = None, *, read_only_ok: bool = False
    ) -> Iterator[Holder]:
        me = Holder.me(operation)
        blob = self._blob(".lock")
        with self._errors("w"):
            self._ensure_container()
            with contextlib.suppress(ResourceExistsError, HttpResponseError):
                blob.upload_blob(b"", overwrite=False)
            lease = self._acquire(blob, me)
        try:
            previous = self._lock_holder(blob)
            if previous is not None:
                message = (
                    f"taking over a stale lock on {self.url}: {previous.describe()} (lease expired)"
                )
                log.warning(message)
                if warn:
                    warn(message)
            with self._errors("w"):
                blob.set_blob_metadata(_metadata(me), lease=lease)
        except BaseException:
            # e.g. credentials that may take a lease but not read: no lease held for a minute
            with contextlib.suppress(AzureError):
                lease.release()
            raise
        stop = threading.Event()
        self._lease_lost.clear()
        self._lease = lease

        def renew() -> None:
            while not stop.wait(LEASE_SECONDS / 3):
                try:
                    lease.renew()
                except HttpResponseError as exc:
                    if exc.status_code in (409, 412):  # taken over: every write now refuses
                        self._lease_lost.set()
                    log.warning("could not renew the lease on %s: %s", self.url, exc)
                except AzureError as exc:  # the next write renews again and fails loudly
                    log.warning("could not renew the lease on %s: %s", self.url, exc)

        thread = threading.Thread(target=renew, name="emrops-lease", daemon=True)
        thread.start()
        try:
            yield me
        finally:
            stop.set()
            thread.join()
            self._lease = None
            with contextlib.suppress(AzureError):
                blob.set_blob_metadata({}, lease=lease)
                lease.release()


def _metadata(holder: Holder) -> dict[str, str]:
    return {
        "host": holder.host,
        "pid": str(holder.pid),
        "operation": holder.operation,
        "since": holder.since,
    }


def _holder(meta: dict[str, str] | None) -> Holder | None:
    if not meta or "pid" not in meta:
        return None
    try:
        return Holder(
            meta.get("host", "?"),
            int(meta["pid"]),
            meta.get("operation", "?"),
            meta.get("since", "?"),
        )
    except ValueError:
        return None
