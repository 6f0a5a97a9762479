"""How the operator's own API client trusts the server: insecure, CA file, CA data (PEM or base64)."""

from __future__ import annotations

import base64
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from newbank_operator.kube import KubeConnection, _verify


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not found")
    folder = tmp_path_factory.mktemp("ca")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            str(folder / "ca.key"),
            "-out",
            str(folder / "ca.crt"),
        ],
        check=True,
        capture_output=True,
    )
    return (folder / "ca.crt").read_bytes()


def test_insecure_and_plain_http_skip_verification() -> None:
    assert _verify(KubeConnection("https://k", insecure=True)) is False
    assert _verify(KubeConnection("http://127.0.0.1:1234")) is False
    assert _verify(KubeConnection("https://k")) is True


def test_ca_data_pem_or_base64_and_ca_file(ca_pem: bytes, tmp_path: Path) -> None:
    for data in (ca_pem, base64.b64encode(ca_pem)):
        context = _verify(KubeConnection("https://k", ca_data=data))
        assert isinstance(context, ssl.SSLContext) and context.cert_store_stats()["x509_ca"] == 1
    (tmp_path / "ca.crt").write_bytes(ca_pem)
    assert isinstance(_verify(KubeConnection("https://k", ca_path=str(tmp_path / "ca.crt"))), ssl.SSLContext)


def test_token_file_is_read_on_every_request(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    conn = KubeConnection("https://k", token_path=str(token))
    assert conn.bearer() == "first"
    token.write_text("rotated")
    assert conn.bearer() == "rotated"
