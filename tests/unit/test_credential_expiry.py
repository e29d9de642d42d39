"""``mcs_member_credential_expiry_timestamp_seconds``: when a member's credential stops
working, read from the credential itself: a JWT's ``exp``, a client certificate's
``notAfter`` (checked against certificates written by ``cryptography``)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from mcs.runtime.credentials import (
    CredentialReloader,
    certificate_not_after,
    credential_expiry,
    token_expiry,
)
from mcs.runtime.kubeapi import new_client
from mcs.runtime.observability import REGISTRY

KEY = ec.generate_private_key(ec.SECP256R1())
METRIC = "mcs_member_credential_expiry_timestamp_seconds"


def jwt(claims: object) -> str:
    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'kid': 'k'})}.{part(claims)}.c2lnbmF0dXJl"


def certificate(not_after: datetime) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "system:serviceaccount:a:b")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(not_after)
    )
    return builder.sign(KEY, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@given(st.integers(min_value=0, max_value=2**40))
def test_a_jwt_gives_its_exp(exp: int) -> None:
    assert token_expiry(jwt({"iss": "k8s", "exp": exp})) == float(exp)
    assert token_expiry("Bearer " + jwt({"exp": exp})) == float(exp)


def test_a_token_without_a_readable_exp_has_no_expiry() -> None:
    for value in [
        "opaque-token",
        "Bearer abc.def",
        jwt({"sub": "x"}),
        jwt({"exp": "tomorrow"}),
        jwt({"exp": True}),
        jwt([1, 2]),
        "a.!!!not-base64!!!.c",
        "a." + base64.urlsafe_b64encode(b"\xff\xfe").decode() + ".c",
    ]:
        assert token_expiry(value) is None, value


@settings(max_examples=30, deadline=None)
@given(
    st.datetimes(min_value=datetime(2021, 1, 1), max_value=datetime(9999, 12, 31)).map(
        lambda d: d.replace(microsecond=0, tzinfo=UTC)
    )
)
def test_a_certificate_gives_its_not_after(not_after: datetime) -> None:
    """UTCTime before 2050, GeneralizedTime from 2050 (RFC 5280): both read right."""
    pem = certificate(not_after)
    assert certificate_not_after(pem) == not_after.timestamp()
    parsed = x509.load_pem_x509_certificate(pem).not_valid_after_utc
    assert certificate_not_after(pem) == parsed.timestamp()


def test_a_certificate_among_other_pem_blocks() -> None:
    when = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    key = KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert certificate_not_after(key + certificate(when)) == when.timestamp()


def test_what_is_not_a_certificate_has_no_expiry() -> None:
    pem = certificate(datetime(2031, 1, 1, tzinfo=UTC))
    body = b"".join(pem.split(b"\n")[1:-2])
    der = base64.b64decode(body)
    for broken in [
        b"",
        b"not pem",
        b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        b"-----BEGIN CERTIFICATE-----\n"
        + base64.b64encode(der[:40])
        + b"\n-----END CERTIFICATE-----\n",
        b"-----BEGIN CERTIFICATE-----\n"
        + base64.b64encode(b"\x30\x85" + der[2:])
        + b"\n-----END CERTIFICATE-----\n",
    ]:
        assert certificate_not_after(broken) is None, broken


def test_the_earlier_of_token_and_certificate(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_bytes(certificate(datetime(2030, 1, 1, tzinfo=UTC)))
    soon = datetime(2029, 1, 1, tzinfo=UTC).timestamp()

    def cfg(token: str | None, cert_file: str | None) -> SimpleNamespace:
        return SimpleNamespace(api_key={"BearerToken": token} if token else {}, cert_file=cert_file)

    assert credential_expiry(cfg(f"Bearer {jwt({'exp': int(soon)})}", str(cert))) == soon
    assert (
        credential_expiry(cfg("Bearer opaque", str(cert)))
        == datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    )
    assert credential_expiry(cfg(None, None)) is None
    assert credential_expiry(cfg("Bearer opaque", str(tmp_path / "gone"))) is None


def _kubeconfig(path: Path, token_file: Path) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"tokenFile": str(token_file)}}],
                "contexts": [{"name": "expiry-c1", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )


async def test_the_reloader_records_each_members_expiry_and_follows_a_rotation(
    tmp_path: Path,
) -> None:
    """Recorded on entering, updated by a re-read of a rotated token, removed when the
    new credential's expiry is unknown."""
    token, kubeconfig = tmp_path / "token", tmp_path / "kubeconfig"
    first = datetime.now(UTC) + timedelta(hours=1)
    token.write_text(jwt({"exp": int(first.timestamp())}))
    _kubeconfig(kubeconfig, token)
    api = await new_client(str(kubeconfig), "expiry-c1")
    labels = {"member": "expiry-c1"}
    try:
        async with CredentialReloader(str(kubeconfig), {"expiry-c1": api}, period=0) as r:
            assert REGISTRY.get_sample_value(METRIC, labels) == int(first.timestamp())
            token.write_text(jwt({"exp": int(first.timestamp()) + 720 * 3600}))
            await r.check()
            assert REGISTRY.get_sample_value(METRIC, labels) == int(first.timestamp()) + 2592000
            token.write_text("opaque")
            await r.check()
            assert REGISTRY.get_sample_value(METRIC, labels) is None
    finally:
        await api.close()
