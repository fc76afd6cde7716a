"""`ca issue*` refuses what would make a certificate no node accepts, or one that is lost: an
endpoint the registry does not know, files that cannot be written, bad host names and names,
a CA key that is not the CA's. Bad input: one line, exit 2, nothing written or recorded."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.test_cli import R1, R2, ca_issue, files_under, register, run_cli
from traffic_center.cli.main import main
from traffic_center.pki.inspect import organisational_unit_of


def refused(home: Path, *args: str, says: str) -> None:
    """The command exits 2 with one line saying ``says``, no traceback."""
    result = run_cli(home, *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def nothing_issued(home: Path) -> None:
    """No certificate in the inventory, none in the audit log."""
    listed = run_cli(home, "ca", "list", "--json")
    assert json.loads(listed.stdout) == []
    exported = run_cli(home, "audit", "export")
    assert exported.returncode == 0, exported.stderr
    assert "certificaatUitgegeven" not in exported.stdout


@pytest.fixture
def ca_home(home: Path) -> Path:
    """A CA, school 12AB with endpoint R1, school 34CD with endpoint R2."""
    assert main(["--home", str(home), "ca", "init"]) == 0
    register(home, R1)
    register(home, R2, brin="34CD")
    return home


# --- the registry -------------------------------------------------------------------------


def test_issue_refuses_an_unregistered_endpoint_or_another_school(
    ca_home: Path, tmp_path: Path
) -> None:
    unregistered = "00000007000099000001"
    before = files_under(tmp_path / "out")
    refused(
        ca_home,
        *ca_issue(tmp_path / "out" / "x", routeringskenmerk=unregistered),
        says="is not registered",
    )
    # R2 is 34CD's endpoint; ca_issue says 12AB.
    refused(
        ca_home,
        *ca_issue(tmp_path / "out" / "x", routeringskenmerk=R2),
        says="belongs to school 34CD, not 12AB",
    )
    assert files_under(tmp_path / "out") == before
    nothing_issued(ca_home)


def test_issue_takes_the_brin_from_the_registry_when_it_is_not_given(
    ca_home: Path, tmp_path: Path
) -> None:
    issue = ["ca", "issue", "--routeringskenmerk", R2, "--name", "Het College"]
    assert main(["--home", str(ca_home), *issue, "--out", str(tmp_path / "b")]) == 0
    certificate = x509.load_pem_x509_certificate((tmp_path / "b.pem").read_bytes())
    assert organisational_unit_of(certificate) == "34CD"


# --- where the files go -------------------------------------------------------------------


def test_an_unwritable_out_records_nothing(ca_home: Path, tmp_path: Path) -> None:
    not_a_directory = tmp_path / "a-file"
    not_a_directory.write_text("")
    refused(ca_home, *ca_issue(not_a_directory / "school"), says="cannot write")
    refused(ca_home, "ca", "issue-relay", "--out", str(not_a_directory / "relay"), says="cannot")
    nothing_issued(ca_home)


@pytest.mark.parametrize("directory", ["with-slash/", "existing"])
def test_out_naming_a_directory_is_refused(ca_home: Path, tmp_path: Path, directory: str) -> None:
    out = tmp_path / "out"
    (out / "existing").mkdir(parents=True)
    issue = ca_issue(out)[:-1]  # all but the --out value, given as typed
    refused(ca_home, *issue, f"{out}/{directory}", says="is a directory")
    # The trailing slash once wrote out/with-slash.pem beside the directory.
    assert files_under(out) == set()
    nothing_issued(ca_home)


def test_out_ending_in_pem_names_the_certificate_file(ca_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["--home", str(ca_home), *ca_issue(out / "school.pem")]) == 0
    assert files_under(out) == {out / "school.pem", out / "school.key"}


# --- server host names --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "says"),
    [
        ("bad host", "not a host name"),
        ("https://las.example", "not a host name"),
        ("-", "not a host name"),
        ("", "not a host name"),
        ("256.1.1.1", "not a valid IP address"),
        ("*.example.nl", "wildcards are not issued"),
        ("a" * 64 + ".example.nl", "not a host name"),  # a label is at most 63
    ],
)
def test_issue_server_refuses_what_is_not_a_host_name(
    ca_home: Path, tmp_path: Path, host: str, says: str
) -> None:
    out = tmp_path / "out"
    refused(ca_home, "ca", "issue-server", "--host", host, "--out", str(out / "s"), says=says)
    assert files_under(out) == set()
    nothing_issued(ca_home)


def san_and_subject(pem: Path) -> tuple[list[str], x509.Name, bool]:
    certificate = x509.load_pem_x509_certificate(pem.read_bytes())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return [str(name.value) for name in san.value], certificate.subject, san.critical


def test_issue_server_takes_long_and_international_names(ca_home: Path, tmp_path: Path) -> None:
    long_name = "las-" + "x" * 56 + ".example.nl"  # 72 characters: over the CN's 64
    hosts = ["--host", long_name, "--host", "ëxample.nl", "--host", "::1"]
    issue = ["ca", "issue-server", *hosts, "--out", str(tmp_path / "s")]
    assert main(["--home", str(ca_home), *issue]) == 0
    names, subject, critical = san_and_subject(tmp_path / "s.pem")
    assert names == [long_name, "xn--xample-ova.nl", "::1"]
    # No CN (it could not hold the name); the SAN is then the only name, so critical.
    assert list(subject) == []
    assert critical
    openssl = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca_home / "ca" / "ca.pem"), str(tmp_path / "s.pem")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert openssl.returncode == 0, openssl.stdout + openssl.stderr


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "says"), [("S" * 65, "at most 64"), ("A\nB", "one line")])
def test_issue_refuses_a_name_no_certificate_should_hold(
    ca_home: Path, tmp_path: Path, name: str, says: str
) -> None:
    refused(ca_home, *ca_issue(tmp_path / "x", name=name), says=says)
    nothing_issued(ca_home)


@pytest.mark.parametrize(("name", "says"), [("", "must not be empty"), ("C" * 65, "at most 64")])
def test_ca_init_refuses_a_name_no_certificate_can_hold(home: Path, name: str, says: str) -> None:
    refused(home, "ca", "init", "--name", name, says=says)
    assert not (home / "ca" / "ca.pem").exists()
    assert not (home / "ca" / "ca.key").exists()


# --- the CA's own files ---------------------------------------------------------------------


def test_a_ca_key_that_is_not_the_cas_is_refused(ca_home: Path, tmp_path: Path) -> None:
    other = ec.generate_private_key(ec.SECP384R1())
    key_file = ca_home / "ca" / "ca.key"
    key_file.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    refused(ca_home, *ca_issue(tmp_path / "out" / "x"), says="is not the key of")
    assert files_under(tmp_path / "out") == set()


def test_an_encrypted_ca_key_is_refused_clearly(ca_home: Path, tmp_path: Path) -> None:
    key_file = ca_home / "ca" / "ca.key"
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    out = tmp_path / "out"
    refused(ca_home, "ca", "issue-relay", "--out", str(out / "relay"), says="encrypted")
    assert files_under(out) == set()


# --- validity -------------------------------------------------------------------------------


def test_days_help_names_the_limit_and_the_default() -> None:
    result = run_cli(Path("unused"), "ca", "issue", "--help")
    assert "1 to 825 [365]" in " ".join(result.stdout.split())


def short_lived_ca(home: Path, *, days: int) -> dt.datetime:
    """A CA in ``home`` that expires in ``days``; its end."""
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Short-lived CA")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA384())
    )
    directory = home / "ca"
    directory.mkdir(parents=True)
    (directory / "ca.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "ca.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificate.not_valid_after_utc


def test_a_validity_shortened_to_the_cas_expiry_is_said(home: Path, tmp_path: Path) -> None:
    ends = short_lived_ca(home, days=30)
    result = run_cli(home, "ca", "issue-proxy", "--days", "365", "--out", str(tmp_path / "p"))
    assert result.returncode == 0, result.stderr
    assert f"valid only until {ends:%Y-%m-%d}, when the CA itself expires" in result.stderr
    full = run_cli(home, "ca", "issue-proxy", "--days", "7", "--out", str(tmp_path / "q"))
    assert "note:" not in full.stderr
