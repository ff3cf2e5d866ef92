"""Optional bearer-token authentication of the V2 endpoint. Pure: no Ray, no web framework.

With ``tuner promote --auth-token-file FILE`` every replica requires ``Authorization: Bearer
<token>`` on every route but ``/v2/health/live`` and ``/v2/health/ready`` (Kubernetes probes
and load balancers call those without credentials; they tell nothing about the model). The
Serve config carries only the token's SHA-256 hex digest (``user_config.auth_token_sha256``):
the YAML is shared, shown in Ray's dashboard and stored in the study, so the token itself never
goes into it. A replica hashes the token a request presents and compares digests in constant time
(`hmac.compare_digest`).

Exposure rule: a server that binds anything but a loopback address without a token needs an
explicit opt-out (``--no-auth`` to ``tuner promote`` and to ``tuner serve``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.args import IMPORT_PATH
from tuner.errors import field_error

#: Routes a replica answers without a token (probes and load balancers have none).
OPEN_PATHS = frozenset({("v2", "health", "live"), ("v2", "health", "ready")})
MIN_TOKEN_CHARS = 16
MAKE_TOKEN = ('python -c "import secrets; print(secrets.token_urlsafe(32))" > token.txt; '
              "chmod 600 token.txt")
#: The challenge of a 401 (RFC 6750).
CHALLENGE = 'Bearer realm="tuner"'


@dataclass(frozen=True)
class BearerToken:
    """A client's token; its repr hides the value, so a logged object never leaks it."""

    value: str = field(repr=False)

    @property
    def sha256(self) -> str:
        """The hex digest a Serve config stores (``user_config.auth_token_sha256``)."""
        return token_sha256(self.value)

    @property
    def authorization(self) -> str:
        """The value of the ``Authorization`` header."""
        return f"Bearer {self.value}"


def token_sha256(token: str) -> str:
    """The SHA-256 hex digest (64 lowercase hex characters) of `token` as UTF-8."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def read_token_file(path: Path) -> BearerToken:
    """The token in `path`: the file's content without surrounding whitespace.

    Raises:
        TunerError: the file is missing or unreadable, others may read it (mode & 0o077), or
            the token is shorter than `MIN_TOKEN_CHARS` or has whitespace inside. The message
            names the file and never shows the token.
    """
    name = "--auth-token-file"
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise field_error(name, str(path), "The token file does not exist.", f"Create one: {MAKE_TOKEN}") from None
    except OSError as exc:
        raise field_error(name, str(path), f"The token file cannot be read ({exc.strerror}).",
                          f"Pass a readable file, e.g. made with: {MAKE_TOKEN}") from None
    if not stat.S_ISREG(mode):  # not a FIFO or a device, which reading could block on
        raise field_error(name, str(path), "The token file must be a regular file.",
                          f"Pass a file, e.g. made with: {MAKE_TOKEN}")
    if mode & 0o077:
        raise field_error(name, str(path), f"Others can read or write the token file (mode "
                          f"{stat.S_IMODE(mode):o}); a token must be private to its owner.", f"Run: chmod 600 {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise field_error(name, str(path), f"The token file cannot be read ({why}).",
                          f"Pass a readable UTF-8 file, e.g. made with: {MAKE_TOKEN}") from None
    token = text.strip()
    if len(token) < MIN_TOKEN_CHARS:
        raise field_error(name, str(path), f"The token in it has {len(token)} characters; at least "
                          f"{MIN_TOKEN_CHARS} are needed, so it cannot be guessed.", f"Make a new one: {MAKE_TOKEN}")
    if any(c.isspace() for c in token):
        raise field_error(name, str(path), "The token in it has whitespace inside; a bearer token is one "
                          "word (it goes into an HTTP header).", f"Make a new one: {MAKE_TOKEN}")
    return BearerToken(token)


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def endpoint_token(token_file: Path | None, no_auth: bool) -> BearerToken | None:
    """The token of ``--auth-token-file`` (None without one); refuses it with ``--no-auth``.

    Raises:
        TunerError: both were given, or the token file breaks a rule (`read_token_file`).
    """
    if token_file is not None and no_auth:
        raise field_error("--auth-token-file with --no-auth", str(token_file), "They contradict each other: "
                          "one requires a token, the other serves without one.", "Pass only one of them.")
    return None if token_file is None else read_token_file(token_file)


def check_exposure(host: str, authenticated: bool, no_auth: bool, *, host_field: str, fix: str) -> None:
    """Refuse to serve a non-loopback `host` without a token unless `no_auth` says so.

    Args:
        host: the address the HTTP proxy binds.
        authenticated: whether the deployment requires a token.
        no_auth: the user's explicit ``--no-auth``.
        host_field: where `host` came from, for the message (e.g. ``--host``).
        fix: how to add a token in this context.

    Raises:
        TunerError: `host` is not loopback, no token is required and `no_auth` is False.
    """
    if authenticated or no_auth or is_loopback(host):
        return
    raise field_error(host_field, host, "A server reachable from other machines must require a bearer token, "
                      "or be told explicitly that it need not.", f"{fix}, or pass --no-auth to serve without one "
                      "(e.g. behind an authenticating proxy), or bind 127.0.0.1.")


def check_config_exposure(config: Mapping[str, Any], config_path: Path, no_auth: bool) -> None:
    """`check_exposure` for a loaded Serve config: every tuner application in it must require
    a token (``user_config.auth_token_sha256``) when ``http_options.host`` is not loopback.

    Raises:
        TunerError: the config binds another address and a deployment has no token digest.
    """
    host = str((config.get("http_options") or {}).get("host", "0.0.0.0"))  # Ray's default binds all
    ours = [app for app in config.get("applications") or [] if app.get("import_path") == IMPORT_PATH]
    authenticated = all(app.get("deployments") and all((d.get("user_config") or {}).get("auth_token_sha256")
                                                       for d in app["deployments"]) for app in ours)
    check_exposure(host, authenticated, no_auth, host_field=f"http_options.host in {config_path}",
                   fix="Regenerate the config with tuner promote --auth-token-file FILE")


def unauthorized_reason(authorization: str | None, expected_sha256: str) -> str | None:
    """Why a request's ``Authorization`` header does not authenticate it; None when it does.

    The token presented is hashed and its digest compared with `expected_sha256` in constant
    time. The reason says what was wrong and how to fix it, never the token sent.
    """
    how = ("Send the header 'Authorization: Bearer TOKEN' with the token of the file given to "
           "tuner promote --auth-token-file (e.g. curl -H \"Authorization: Bearer $(cat token.txt)\").")
    if not authorization:
        return f"This endpoint requires a bearer token and the request has no Authorization header. {how}"
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return f"The Authorization header is not of the form 'Bearer TOKEN'. {how}"
    if not hmac.compare_digest(token_sha256(credentials), expected_sha256.lower()):
        return ("The bearer token does not match this deployment's (user_config.auth_token_sha256). Send the "
                "token of the file its Serve config was promoted with; after a new token, promote again.")
    return None
