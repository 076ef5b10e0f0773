"""The one masker: credentials in URLs and known secret values never reach a message.

Every message that can carry a URL — check messages, `checks.message`, log lines, MLflow
reasons, errors on stderr — goes through `mask`. It hides the password of `user:password@`
(a password may contain `/`), a lone userinfo of an http(s) URL (a token), and the values
of secret-looking query parameters (`?password=…`, `&token=…`). Callers that know the
secrets themselves (a parsed URL's password) pass them too, so a driver message quoting the
bare value is cleaned as well. Where a URL must be named without any of its secrets (an alert
channel's webhook URL is a secret as a whole: Slack's path is the token), `host` and `origin`
keep only the server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"

# scheme://user[:password]@ — the user part stops at `:/@?#`, the password may hold `/`
# (SQLAlchemy parses it that way too) but not `@` or whitespace.
_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s?#]*)(?::(?P<password>[^@\s]*))?@"
)
SECRET_PARAMS = (
    "password", "passwd", "pwd", "pass", "secret", "client_secret", "token", "access_token", "auth",
    "auth_token", "api_key", "apikey", "key", "sig", "signature", "sslpassword",
)  # fmt: skip
_SECRET_QUERY = re.compile(rf"(?i)(?P<key>[?&;](?:{'|'.join(SECRET_PARAMS)})=)[^&;#\s'\"]*")


def _userinfo(match: re.Match[str]) -> str:
    scheme, user, password = match["scheme"], match["user"], match["password"]
    if password is not None:
        return f"{scheme}{user}:{MASK}@"
    if scheme.lower().startswith("http"):  # https://TOKEN@host: the user part is the secret
        return f"{scheme}{MASK}@"
    return match[0]  # a database user name alone is no secret, and helps to debug


def mask(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with URL credentials, secret query values and the given `secrets` replaced by ***."""
    if not text:
        return text
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _USERINFO.sub(_userinfo, text)
    return _SECRET_QUERY.sub(rf"\g<key>{MASK}", text)


def url_secrets(url: str) -> tuple[str, ...]:
    """The secret values a URL carries (password, secret query values), raw and percent-decoded,
    so a message quoting one of them bare can be cleaned with `mask(text, url_secrets(url))`."""
    found: list[str] = []
    match = _USERINFO.search(url)
    if match and match["password"]:
        found.append(match["password"])
    elif match and match["scheme"].lower().startswith("http") and match["user"]:
        found.append(match["user"])
    try:
        query = urlsplit(url).query
    except ValueError:
        query = url.partition("?")[2]
    for key, value in parse_qsl(query, keep_blank_values=False):
        if key.lower() in SECRET_PARAMS:
            found.append(value)
    return tuple(dict.fromkeys([*found, *(unquote(s) for s in found)]))


def literal_secret(value: str) -> str | None:
    """Why `value` (a raw YAML string, before `${VAR}` expansion) holds a written-in secret, or None.

    `${VAR}` references are fine: the secret then comes from the environment."""
    match = _USERINFO.search(value)
    if match and match["password"] and "${" not in match["password"]:
        return "a password is written into the YAML"
    for query in _SECRET_QUERY.finditer(value):
        secret = query[0][len(query["key"]) :]
        if secret and "${" not in secret:
            return f"a secret query parameter ({query['key'][1:-1]}=…) is written into the YAML"
    return None


def host(url: str) -> str:
    """`host[:port]` of `url`, the part of a secret URL that may be shown; "unknown" when none."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "unknown"
    if not parts.hostname:
        return "unknown"
    return f"{parts.hostname}:{port}" if port else parts.hostname


def origin(url: str) -> str:
    """`scheme://host[:port]/***` for a URL whose path and query may be secret."""
    scheme = url.partition("://")[0] if "://" in url else "unknown"
    return f"{scheme}://{host(url)}/{MASK}"


def url_parts(url: str) -> tuple[str, ...]:
    """`url` and each of its parts that may be secret on its own (path, query, userinfo), so an
    error body echoing any of them can be cleaned with `mask(text, url_parts(url))`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return (url,)
    userinfo = parts.netloc.rpartition("@")[0]
    return (url, parts.path, parts.query, userinfo, *url_secrets(url))
