"""When each member's credentials in the controller's Secret expire: a bearer token's
JWT ``exp`` (TokenRequest tokens expire; legacy Secret tokens have no ``exp``) or a
client certificate's ``notAfter``. Expired is a problem; less than `SOON` left is a
warning."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mcs.status.diagnose.findings import Finding, ok, problem, unknown, warning
from mcs.status.diagnose.members import Member

CHECK = "credentials"
SOON = timedelta(days=7)


def jwt_expiry(token: str) -> datetime | None:
    """The ``exp`` of a JWT (its signature is not checked: the API server does that), or
    None when the token is not a JWT or has no ``exp``."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
        return datetime.fromtimestamp(float(claims["exp"]), UTC)
    except (binascii.Error, ValueError, KeyError, TypeError, OverflowError):
        return None


def certificate_expiry(pem: bytes) -> datetime | None:
    """The ``notAfter`` of the first certificate of ``pem``; None when it cannot be read
    (or the ``cryptography`` package is not installed)."""
    try:
        from cryptography import x509
    except ImportError:
        return None
    try:
        return x509.load_pem_x509_certificate(pem).not_valid_after_utc
    except ValueError:
        return None


def _renew(context: str) -> str:
    return (
        f"renew it: hack/make-remote-kubeconfig.sh {context} in that member, then replace "
        "the context in the Secret's key kubeconfig (manifests/README.md, Tokens and their "
        "rotation)"
    )


def decide(context: str, kind: str, expires: datetime | None, now: datetime) -> Finding:
    """The verdict on one credential of ``kind`` ("token", "client certificate")."""
    subject = f"member/{context}"
    if expires is None:
        return ok(CHECK, subject, f"{kind} has no expiry")
    left = expires - now
    when = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    if left <= timedelta(0):
        return problem(
            CHECK,
            subject,
            f"{kind} expired at {when}: the controller cannot read this member",
            _renew(context),
        )
    if left < SOON:
        hours = left.total_seconds() / 3600
        return warning(
            CHECK,
            subject,
            f"{kind} expires at {when} (in {hours:.0f}h)",
            _renew(context),
        )
    return ok(CHECK, subject, f"{kind} valid until {when}")


def _data(user: dict[str, Any], key: str, base: Path | None) -> bytes | None:
    """The bytes of ``key``-data (base64) or of the file ``key`` (relative to ``base``)."""
    if user.get(f"{key}-data"):
        try:
            return base64.b64decode(str(user[f"{key}-data"]))
        except binascii.Error:
            return None
    if user.get(key):
        path = Path(str(user[key]))
        try:
            return (path if path.is_absolute() or base is None else base / path).read_bytes()
        except OSError:
            return None
    return None


def check(member: Member, now: datetime, base: Path | None = None) -> list[Finding]:
    """The expiry of ``member``'s token and client certificate (files are read relative
    to ``base``, the directory of the written kubeconfig)."""
    user, found = member.user, []
    subject = f"member/{member.context}"
    if user.get("token"):
        found.append(decide(member.context, "token", jwt_expiry(str(user["token"])), now))
    elif user.get("tokenFile"):
        text = _data(user, "tokenFile", base)
        if text is None and member.in_cluster:
            found.append(
                ok(
                    CHECK,
                    subject,
                    "the Pod's projected ServiceAccount token (the kubelet renews it)",
                )
            )
        elif text is None:
            found.append(unknown(CHECK, subject, f"tokenFile {user['tokenFile']} cannot be read"))
        else:
            found.append(
                decide(member.context, "token", jwt_expiry(text.decode(errors="replace")), now)
            )
    cert = _data(user, "client-certificate", base)
    if cert is not None:
        expiry = certificate_expiry(cert)
        if expiry is None:
            found.append(unknown(CHECK, subject, "client certificate cannot be read"))
        else:
            found.append(decide(member.context, "client certificate", expiry, now))
    return found
