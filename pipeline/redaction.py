"""Keeping secrets out of recorded configuration, metadata and messages.

Credentials reach kmseg through the environment (``AWS_*`` variables, ``~/.aws``, fsspec's own
configuration) and never through the job config, but a cluster block may still hold a password
or a token (Dask Gateway, say) and a URL may carry ``user:password@``. :func:`redact` replaces
those values before anything is written or printed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "***"

#: Mapping keys whose values are secrets (matched case-insensitively, anywhere in the key).
_SECRET_KEY = re.compile(
    r"(secret|passw|token|credential|private|api_?key|access_?key|session|auth|^key$)",
    re.IGNORECASE,
)
#: ``scheme://user:password@host`` in URLs.
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


def is_secret_key(key: str) -> bool:
    """True if a mapping key names a secret (``password``, ``token``, ``secret_key``...)."""
    return bool(_SECRET_KEY.search(str(key)))


def redact_url(text: str) -> str:
    """``s3://user:pass@bucket/x`` -> ``s3://***@bucket/x``; other text is unchanged."""
    return _URL_USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)


def redact(value: Any) -> Any:
    """A copy of ``value`` with secret-named mapping entries and URL passwords replaced."""
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if is_secret_key(k) and v not in (None, "") else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    if isinstance(value, str):
        return redact_url(value)
    return value
