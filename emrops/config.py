"""Settings: flag > EMROPS_* environment > emrops.toml > default.

The config file is found via ``--config``, then ``EMROPS_CONFIG``, then
``./emrops.toml``, then the user config dir (``~/.config/emrops/emrops.toml``).
Relative paths in the file resolve against the file's folder, so cron and
systemd jobs behave like a person at a terminal; relative paths from flags and
environment variables resolve against the working directory.

Other concerns register their settings by appending :class:`Field` objects to
:data:`FIELDS` (one line each) before settings are loaded.
"""

from __future__ import annotations

import difflib
import errno
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import platformdirs

from emrops import secrets
from emrops.db import azure_auth
from emrops.errors import ConfigError, UsageError
from emrops.paths import user_path

CONFIG_NAME = "emrops.toml"
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Field:
    """One setting: its dotted key in the file, its env var, its kind and default."""

    key: str
    kind: str  # str | int | float | bool | path | db_url | store | secret
    default: Any = None  # a value, or a callable taking the base folder
    help: str = ""
    env: str | None = None  # defaults to EMROPS_<KEY with dots as underscores>
    file_allowed: bool = True  # secrets are never read from the file
    multiline: bool = False  # a list one per line (recipients): line breaks allowed, NUL not

    @property
    def env_name(self) -> str:
        return self.env or "EMROPS_" + self.key.replace(".", "_").upper()


def _default_db(base: Path) -> str:
    return f"sqlite:///{base / 'var' / 'emrsim.db'}"


FIELDS: list[Field] = [
    Field(
        "db_url", "db_url", _default_db, "database URL (sqlite:///path or postgresql+psycopg://...)"
    ),
    Field(
        "db_password", "secret", None, "database password injected into db_url", file_allowed=False
    ),
    Field("db_auth", "str", "password", "PostgreSQL auth: password, or azure (Entra ID token)"),
    Field(
        "state_dir",
        "path",
        lambda base: base / ".emrops",
        "where emrops keeps run records and status",
    ),
    Field("log_format", "str", "text", "log format on stderr: text or json"),
    Field("log_level", "str", "info", "log level: debug, info, warning, error"),
    Field(
        "backup.store",
        "store",
        lambda base: str(base / "backups"),
        "backup store: folder or azure://",
    ),
    Field("sim.host", "str", "127.0.0.1", "address the simulation server binds"),
    Field("sim.port", "int", 8000, "port the simulation server listens on"),
    Field("sim.url", "str", "http://127.0.0.1:8000", "URL of a running simulation server"),
    Field("sim.token", "secret", None, "bearer token the sim API requires", file_allowed=False),
    Field(
        "sim.max_body",
        "int",
        64 * 1024,
        "largest request body and WebSocket frame the sim server accepts, in bytes (413 above)",
    ),
    # provisioning and deployment (emrops/provision, emrops/deploy)
    Field("azure.subscription_id", "str", None, "Azure subscription", env="AZURE_SUBSCRIPTION_ID"),
    Field("azure.location", "str", "westeurope", "Azure region for resource groups"),
    Field("azure.resource_group_prefix", "str", "emrsim", "resource groups are PREFIX-ENV-rg"),
    Field("azure.arm_endpoint", "str", None, "Resource Manager endpoint (default: public cloud)"),
    Field("azure.app_endpoint", "str", None, "send App Service traffic here (Host header kept)"),
    Field(
        "azure.access_token",
        "secret",
        None,
        "bearer token instead of DefaultAzureCredential",
        file_allowed=False,
    ),
    Field("provision.templates", "path", None, "Bicep folder (default: the bundled templates)"),
    Field("provision.bicep", "str", None, "bicep CLI to run", env="EMROPS_BICEP"),
    Field("provision.checkov", "str", None, "checkov executable (default: .venv-checkov)"),
    Field("deploy.probe_window", "str", "60s", "how long production is probed after a swap"),
    Field("deploy.probe_interval", "str", "2s", "pause between health probes"),
    Field("deploy.ready_timeout", "str", "5m", "how long to wait for a slot to become ready"),
    # backups (emrops/backup)
    Field(
        "backup.recipient",
        "str",
        None,
        "age recipient(s) (public keys) for --encrypt, one per line",
        multiline=True,
    ),
    Field("backup.compression_level", "int", 3, "zstd level for backups (1 fastest, 19 smallest)"),
    Field("azure.storage_account_url", "str", None, "https://ACCOUNT.blob.core.windows.net"),
    Field("azure.storage_retries", "int", 3, "retries of a failed Azure Storage request"),
    Field("azure.storage_connect_timeout", "str", "4s", "Azure Storage: TCP/TLS connect timeout"),
    Field(
        "azure.storage_read_timeout", "str", "5s", "Azure Storage: longest silence within a request"
    ),
    Field(
        "azure.storage_retry_budget",
        "str",
        "15s",
        "Azure Storage: no retry starts that could end after this much time on one request",
    ),
    Field(
        "azure.storage_connection_string",
        "secret",
        None,
        "Azure Storage connection string (backup stores)",
        file_allowed=False,
    ),
    # scheduled jobs and health (emrops/schedule, emrops/health); cron times are UTC, "off" disables
    Field("schedule.backup", "str", "0 2 * * *", "cron expression (UTC) of the backup job"),
    Field("schedule.verify", "str", "30 2 * * *", "cron expression (UTC) of verify --latest"),
    Field("schedule.rotate", "str", "0 3 * * *", "cron expression (UTC) of the rotate job"),
    Field("schedule.drill", "str", "0 4 * * sun", "cron expression (UTC) of the restore drill"),
    Field("schedule.keep_last", "int", 3, "rotate job: keep the N newest verified backups"),
    Field("schedule.keep_daily", "int", 7, "rotate job: newest of each of N days"),
    Field("schedule.keep_weekly", "int", 4, "rotate job: newest of each of N ISO weeks"),
    Field("schedule.keep_monthly", "int", 12, "rotate job: newest of each of N months"),
    Field("schedule.status_dir", "path", None, "status JSON + .prom (default: state_dir/status)"),
    Field("schedule.misfire_grace", "str", "1h", "a run late by less than this still runs"),
    Field("schedule.heartbeat_interval", "str", "30s", "scheduler heartbeat period"),
    Field("health.max_backup_age", "str", "26h", "max age of the newest verified backup"),
    Field("health.max_heartbeat_age", "str", "5m", "scheduler heartbeat must be younger than this"),
    Field("health.min_free_disk", "str", "1GB", "free space the backup store needs"),
    Field(
        "health.alert_webhook",
        "secret",
        None,
        "URL that receives a JSON alert when a health check fails (may hold a token)",
        file_allowed=False,
    ),
]


def field_for(key: str) -> Field:
    for item in FIELDS:
        if item.key == key:
            return item
    raise KeyError(key)


@dataclass
class Settings:
    """Effective settings with the source of each value (flag, env, file or default)."""

    values: dict[str, Any]
    sources: dict[str, str]
    config_file: Path | None
    base_dir: Path

    def get(self, key: str) -> Any:
        return self.values[key]

    @property
    def db_url(self) -> str:
        return str(self.values["db_url"])

    @property
    def state_dir(self) -> Path:
        """The state folder; ConfigError when it names a file or lies under one."""
        folder = Path(self.values["state_dir"])
        loop = next((p for p in reversed((folder, *folder.parents)) if _link_loop(p)), None)
        if loop is not None:  # was: every run file "not found", status files "damaged"
            raise ConfigError(
                f"state_dir {folder}: {loop} is a symbolic link loop",
                hint="fix the link, or point state_dir (EMROPS_STATE_DIR or emrops.toml) "
                "at a real folder",
            )
        blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise ConfigError(
                f"state_dir {folder}: {blocker} is a file, not a folder",
                hint="point state_dir (EMROPS_STATE_DIR or emrops.toml) at a folder",
            )
        return folder

    def masked(self) -> dict[str, dict[str, Any]]:
        """Every setting with its source; secrets and passwords masked."""
        out: dict[str, dict[str, Any]] = {}
        for item in FIELDS:
            value = self.values.get(item.key)
            if item.kind == "secret" and value:
                shown: Any = secrets.MASK
            elif isinstance(value, str | Path):
                shown = secrets.mask(value)
            else:
                shown = value
            out[item.key] = {"value": shown, "source": self.sources.get(item.key, "default")}
        return out


def find_config_file(
    explicit: str | os.PathLike[str] | None, env: Mapping[str, str]
) -> Path | None:
    """Locate the config file by the documented search order; None when there is none."""
    if explicit is not None and not str(explicit).strip():
        # `--config "$CONFIG"` with CONFIG unset went on with ./emrops.toml or the user's
        # config: whatever file was found there, possibly another deployment's
        raise ConfigError(
            "--config is empty", hint="give the config file's path, or leave --config out"
        )
    if explicit:
        path = user_path(explicit)
        if path.is_dir():
            raise ConfigError(
                f"config file {path} is a folder", hint=f"use --config {path / CONFIG_NAME}"
            )
        if not path.is_file():
            raise ConfigError(
                f"config file not found: {path}{_dangling(path)}", hint="check the --config path"
            )
        return path.resolve()
    if env.get("EMROPS_CONFIG"):
        path = user_path(env["EMROPS_CONFIG"])
        if path.is_dir():
            raise ConfigError(
                f"config file {path} (from EMROPS_CONFIG) is a folder",
                hint=f"set EMROPS_CONFIG={path / CONFIG_NAME}",
            )
        if not path.is_file():
            raise ConfigError(
                f"config file not found: {path}{_dangling(path)} (from EMROPS_CONFIG)",
                hint="fix or unset EMROPS_CONFIG",
            )
        return path.resolve()
    for candidate in (
        Path.cwd() / CONFIG_NAME,
        Path(platformdirs.user_config_dir("emrops")) / CONFIG_NAME,
    ):
        if candidate.is_file():
            return candidate.resolve()
    return None


def _link_loop(path: Path) -> bool:
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def _dangling(path: Path) -> str:
    """Why a path that names a symbolic link is not a file: a loop, or a missing target."""
    if _link_loop(path):
        return " (a symbolic link loop)"
    if path.is_symlink():
        return f" (a symbolic link to the missing {os.readlink(path)})"
    return ""


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


# A config file is a few hundred bytes. Every command reads it, and a 50 MB file (a log or a
# dump given as --config) took 5 s and 130 MB before any work: refused at once instead.
MAX_CONFIG_BYTES = 1024 * 1024
_BOM = b"\xef\xbb\xbf"


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"config file {path} is larger than {MAX_CONFIG_BYTES // 1024 // 1024} MB: "
                "not an emrops config",
                hint="an emrops.toml is a few lines of TOML; check --config / EMROPS_CONFIG",
            )
        # Windows editors (Notepad) start UTF-8 files with a byte order mark, which tomllib
        # reads as "Invalid statement (at line 1, column 1)" in a file that looks right
        text = raw.removeprefix(_BOM).decode("utf-8")
        return _flatten(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not valid TOML: {exc}", hint=_toml_hint(str(exc))
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text: {exc}", hint="save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except RecursionError:  # arrays nested thousands deep
        raise ConfigError(f"config file {path} is nested too deeply to read") from None


# tomllib's messages, and what they mean in an emrops.toml ("fix the syntax" did not say
# that `Cannot overwrite a value` is a key written twice, or `Invalid value` a bare word)
_TOML_HINTS = (
    ("Cannot overwrite a value", "a key is set twice: keep one of the two lines"),
    ("Cannot declare", "a [table] is written twice (or a key above already set it): merge them"),
    ("Invalid value", 'text values need quotes: db_url = "sqlite:///var/emrsim.db"'),
    ("Illegal character '\\n'", "a string is not closed before the end of the line"),
)


def _toml_hint(message: str) -> str:
    hints = (hint for start, hint in _TOML_HINTS if message.startswith(start))
    return next(hints, "fix the syntax")


def _with_suggestion(key: str, known: set[str]) -> str:
    """``key``, and the known setting it is probably a typo of."""
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
    if not close:  # a misspelt table: [shedule] backup = ... -> schedule.backup
        head, _, leaf = key.rpartition(".")
        same_leaf = [k for k in known if k.rpartition(".")[2] == leaf and head]
        close = difflib.get_close_matches(key, same_leaf, n=1, cutoff=0.5)
    return f"{key} (did you mean {close[0]}?)" if close else key


def _known_hint(key: str, known: set[str]) -> str:
    """The settings of ``key``'s table (or the top level), to fix a typo from."""
    table = key.rpartition(".")[0]
    names = sorted(k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == table)
    if not names:
        tables = sorted({k.rpartition(".")[0] for k in known if "." in k})
        return "tables emrops knows: " + ", ".join(f"[{t}]" for t in tables)
    where = f"[{table}]" if table else "the top level"
    return f"fix the spelling; settings in {where}: {', '.join(names)}"


def _env_value(item: Field, env: Mapping[str, str]) -> str | None:
    """The variable's value; None when unset, empty or only whitespace (an exported but blank
    variable must not become a folder named " "). Surrounding whitespace is dropped, except
    from secrets (a password may end in a space)."""
    value = env.get(item.env_name)
    if value is None or not value.strip():
        return None
    return value if item.kind == "secret" else value.strip()


def _resolve_path(value: str, base: Path, where: str = "") -> Path:
    try:
        path = user_path(value)
    except UsageError as exc:  # "~nosuchuser/x": was "unexpected RuntimeError"
        raise ConfigError(f"{where}: {exc.message}" if where else exc.message, exc.hint) from None
    return path if path.is_absolute() else (base / path)


def _resolve_db_url(value: str, base: Path, where: str = "") -> str:
    if value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
        rest = value[len("sqlite:///") :]
        if rest and not rest.startswith(":memory:"):
            path, sep, query = rest.partition("?")
            return f"sqlite:///{_resolve_path(path, base, where)}{sep}{query}"
    return value


def _coerce(
    item: Field, value: Any, base: Path, origin: str, env: Mapping[str, str] | None = None
) -> Any:
    """``value`` as ``item``'s kind. ``env``: expand ``$NAME`` in paths from it (values from
    the file and the environment; a flag was expanded by the shell, a default is literal)."""
    where = f"{item.key} (from {origin})"
    try:
        if item.kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError  # not 1.5 read as 1
            return int(value)
        if item.kind == "float":
            return float(value)
        if item.kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(
            f"invalid value {value!r} for {where}: expected {item.kind}", hint=item.help or None
        ) from None
    if not isinstance(value, str | Path):
        raise ConfigError(f"invalid value {value!r} for {where}: expected a string")
    text = str(value)
    if env is not None:  # from the file or a variable, not a flag or a default
        _refuse_control_characters(item, text, where)
    if item.kind == "path":
        return _resolve_path(_expand_variables(text, where, env), base, where)
    if item.kind == "db_url":  # only a SQLite path: a password may hold a "$"
        if text.startswith("sqlite:///"):
            text = "sqlite:///" + _expand_variables(text[len("sqlite:///") :], where, env)
        return _resolve_db_url(text, base, where)
    if item.kind == "store":
        if "://" in text:
            return text
        return str(_resolve_path(_expand_variables(text, where, env), base, where))
    return text


_CONTROL = re.compile("[\x00\n\r]")  # other control characters are shown inert
_NUL = re.compile("\x00")
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _refuse_control_characters(item: Field, text: str, where: str) -> None:
    """A line break (or NUL) in a setting is a mistake (a variable set from
    a file's two lines, a TOML "\\n"): a folder named "a\\nb" created, or a URL that every
    HTTP client refuses later with a message naming neither the setting nor the variable."""
    if item.kind == "secret":
        return  # never named in a message, and checked by what uses it
    bad = (_NUL if item.multiline else _CONTROL).search(text)
    if bad:
        raise ConfigError(
            f"{where} holds a control character ({bad.group()!r}) at position {bad.start()}",
            hint="set it on one line",
        )


def _expand_variables(text: str, where: str, env: Mapping[str, str] | None) -> str:
    """``$NAME`` / ``${NAME}`` in a path or URL from the environment (``~`` is expanded too).
    A file's ``state_dir = "$HOME/emrops"`` made a folder literally named "$HOME"; systemd's
    Environment= does not expand them either. An unset variable is an error."""
    if env is None:
        return text
    variables = env

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        found = variables.get(name)
        if found is None:
            raise ConfigError(
                f"{where} uses ${name}, which is not set",
                hint=f"set {name} in the environment, or write the path out",
            )
        return found

    return _VARIABLE.sub(value, text)


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build the effective settings. ``flags`` maps dotted keys to values given on the command line
    (None means "not given"). Raises ConfigError for an unreadable or invalid file or value."""
    env = os.environ if env is None else env
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    path = find_config_file(config_file, env)
    file_values = _read_file(path) if path else {}
    file_base = path.parent if path else Path.cwd()
    cwd = Path.cwd()
    known = {item.key for item in FIELDS}
    unknown = sorted(set(file_values) - known)
    if unknown:
        named = [_with_suggestion(key, known) for key in unknown]
        raise ConfigError(
            f"unknown setting{'s' if len(unknown) > 1 else ''} in {path}: {', '.join(named)}",
            hint=_known_hint(unknown[0], {f.key for f in FIELDS if f.file_allowed}),
        )
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for item in FIELDS:
        if item.key in flags:
            values[item.key] = _coerce(item, flags[item.key], cwd, "flag")
            sources[item.key] = "flag"
        elif _env_value(item, env) is not None:
            values[item.key] = _coerce(item, _env_value(item, env), cwd, item.env_name, env)
            sources[item.key] = f"env {item.env_name}"
        elif item.key in file_values:
            if not item.file_allowed:
                raise ConfigError(
                    f"{item.key} must not be stored in {path}: it is a secret",
                    hint=f"remove it from the file and set {item.env_name} in the environment",
                )
            values[item.key] = _coerce(item, file_values[item.key], file_base, str(path), env)
            sources[item.key] = f"file {path}"
        else:
            default = item.default(file_base) if callable(item.default) else item.default
            values[item.key] = (
                _coerce(item, default, file_base, "default") if default is not None else None
            )
            sources[item.key] = "default"
        if item.kind == "secret":
            secrets.register_secret(values[item.key])
    if sources["db_url"].startswith("file") and (
        secrets.url_has_password(values["db_url"]) or _query_password(values["db_url"])
    ):
        raise ConfigError(
            f"db_url in {path} contains a password",
            hint="remove the password from the file and set EMROPS_DB_PASSWORD (or PGPASSWORD)",
        )
    _refuse_at_in_password(values["db_url"], sources["db_url"])
    values["db_url"] = _inject_password(values["db_url"], values.get("db_password"))
    values["db_url"] = azure_auth.with_auth(values["db_url"], values.get("db_auth"))
    _register_url_password(values["db_url"])
    if values["log_format"] not in ("text", "json"):
        raise ConfigError(f"invalid log_format {values['log_format']!r}", hint="use text or json")
    if str(values["log_level"]).lower() not in LOG_LEVELS:  # was read as "info" unseen
        raise ConfigError(
            f"invalid log_level {values['log_level']!r} (from {sources['log_level']})",
            hint=f"use one of {', '.join(LOG_LEVELS)}",
        )
    return Settings(values=values, sources=sources, config_file=path, base_dir=file_base)


def _register_url_password(url: str) -> None:
    """Register the database password, as written in the URL and decoded, as a secret. The
    URL pattern of secrets.mask stops at a space, and EMROPS_DB_PASSWORD is injected
    percent-encoded: `config show` printed 'p%40ss word' in clear for 'p@ss word'."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    userinfo, at, _host = authority.rpartition("@")
    if at and ":" in userinfo:
        written = userinfo.split(":", 1)[1]
        # only when the URL pattern misses it: registering "postgres" (a dev password) masked
        # every "postgres" in every line, scheme and user included
        if f":{written}@" in secrets.mask(url):
            secrets.register_secret(written)
            secrets.register_secret(unquote(written))


def _query_password(url: str) -> bool:
    """A password given in the query string (``?password=...``: libpq takes it there too)."""
    from urllib.parse import parse_qsl

    query = url.partition("?")[2]
    return any(
        key.lower() in ("password", "sslpassword") and value
        for key, value in parse_qsl(query, keep_blank_values=True)
    )


def _refuse_at_in_password(url: str, source: str) -> None:
    """A raw ``@`` in a URL's password makes the rest of the password the host name: the
    connection fails and the error shows that part of the password as a host."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith("postgres"):
        return
    authority = rest.split("/", 1)[0]
    userinfo, _, _ = authority.rpartition("@")
    if ":" in userinfo and "@" in userinfo.split(":", 1)[1]:
        raise ConfigError(
            f"db_url (from {source}) has an unescaped '@' in its password",
            hint="percent-encode the password's special characters: @ as %40, : as %3A, "
            "/ as %2F, % as %25 (or give the password as EMROPS_DB_PASSWORD)",
        )


def _inject_password(url: str, password: str | None) -> str:
    """Put EMROPS_DB_PASSWORD into a PostgreSQL URL that has a user but no password."""
    if not password or not url.startswith("postgresql") or secrets.url_has_password(url):
        return url
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed.set(password=password).render_as_string(hide_password=False)


@dataclass
class ConfigContext:
    """What the CLI root collects before any command runs (global flags)."""

    config_file: str | None = None
    debug: bool = False
    log_format: str | None = None
    run_id: str = ""
    # called with the first settings loaded: the CLI applies log_format and log_level from
    # the file there (the root command only sees flags and the environment)
    on_first_load: Callable[[Settings], None] | None = None
    _cache: dict[tuple[Any, ...], Settings] = field(default_factory=dict)

    def settings(self, **flags: Any) -> Settings:
        """Load settings once per distinct set of flag overrides."""
        merged = {"log_format": self.log_format, **flags}
        key = tuple(sorted((k, str(v)) for k, v in merged.items()))
        if key not in self._cache:
            first = not self._cache
            self._cache[key] = load_settings(self.config_file, merged)
            if first and self.on_first_load is not None:
                self.on_first_load(self._cache[key])
        return self._cache[key]


SettingsFactory = Callable[..., Settings]
