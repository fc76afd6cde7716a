"""The certificate admin's and operator's CLI, in process and as a real command."""

from __future__ import annotations

import json
import shlex
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support.processes import clean_env
from traffic_center.cli.main import main

R1, R2 = "00000007000012000001", "00000007000034000001"


def ca_issue(out: Path, *extra: str, routeringskenmerk: str = R1, name: str = "X") -> list[str]:
    """`ca issue` for school 12AB with the given extra flags."""
    return [
        "ca", "issue", "--routeringskenmerk", routeringskenmerk, "--brin", "12AB",
        "--name", name, *extra, "--out", str(out),
    ]  # fmt: skip


def endpoint_add(url: str, *extra: str, brin: str = "12AB") -> list[str]:
    """`endpoint add` of R1 to the given school."""
    return ["endpoint", "add", "--routeringskenmerk", R1, "--brin", brin, "--url", url, *extra]


def register(home: Path, *routeringskenmerken: str, brin: str = "12AB") -> None:
    """School ``brin`` and its endpoints, as `ca issue` needs them first (README order)."""
    base = ["--home", str(home)]
    assert main([*base, "school", "add", "--brin", brin, "--name", "X", "--sector", "PO"]) == 0
    for routeringskenmerk in routeringskenmerken:
        url = f"https://las-{routeringskenmerk}.example/oso"
        endpoint = ["endpoint", "add", "--routeringskenmerk", routeringskenmerk, "--brin", brin]
        assert main([*base, *endpoint, "--url", url]) == 0


def run_cli(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real command in a child process, with TC_* settings only from ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "traffic_center", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean_env(), **(env or {})},
        check=False,
    )


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*") if p.is_file()} if path.exists() else set()


def openssl_verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", "verify", *args], capture_output=True, text=True, check=False)


def test_ca_lifecycle_verified_by_openssl(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["--home", str(home), "ca", "init", "--name", "Test CA"]) == 0
    register(home, R1, R2)
    assert oct((home / "ca" / "ca.key").stat().st_mode & 0o777) == "0o600"
    assert (
        main(
            [
                "--home",
                str(home),
                "ca",
                "issue-server",
                "--host",
                "127.0.0.1",
                "--host",
                "tc.test",
                "--out",
                str(out / "server"),
            ]
        )
        == 0
    )
    for name, routeringskenmerk in (("a", R1), ("b", R2)):
        assert (
            main(
                [
                    "--home",
                    str(home),
                    *ca_issue(
                        out / name, routeringskenmerk=routeringskenmerk, name=f"School {name}"
                    ),
                ]
            )
            == 0
        )
    assert oct((out / "a.key").stat().st_mode & 0o777) == "0o600"
    ca_pem = str(home / "ca" / "ca.pem")
    for name in ("server", "a", "b"):
        assert openssl_verify("-CAfile", ca_pem, str(out / f"{name}.pem")).returncode == 0
    purpose = openssl_verify("-CAfile", ca_pem, "-purpose", "sslclient", str(out / "server.pem"))
    assert purpose.returncode != 0  # one role per certificate

    capsys.readouterr()
    assert main(["--home", str(home), "ca", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {c["status"] for c in listed} == {"valid"}
    serial_a = next(c["serial"] for c in listed if c["routeringskenmerk"] == R1)
    assert {"serial", "routeringskenmerk", "subject", "not_after", "status"} <= set(listed[0])

    assert main(["--home", str(home), "ca", "revoke", serial_a, "--reason", "keyCompromise"]) == 0
    assert main(["--home", str(home), "ca", "crl", "--out", str(out / "crl.pem")]) == 0
    crl = ["-crl_check", "-CAfile", ca_pem, "-CRLfile", str(out / "crl.pem")]
    revoked = openssl_verify(*crl, str(out / "a.pem"))
    assert revoked.returncode != 0
    assert "revoked" in (revoked.stdout + revoked.stderr)
    assert openssl_verify(*crl, str(out / "b.pem")).returncode == 0
    assert openssl_verify(*crl, str(out / "server.pem")).returncode == 0

    capsys.readouterr()
    main(["--home", str(home), "ca", "list", "--json"])
    statuses = {c["serial"]: c["status"] for c in json.loads(capsys.readouterr().out)}
    assert statuses[serial_a] == "revoked"


def test_ca_init_refuses_to_touch_an_existing_ca(home: Path) -> None:
    assert main(["--home", str(home), "ca", "init"]) == 0
    before = (home / "ca" / "ca.pem").read_bytes()
    result = run_cli(home, "ca", "init")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "already exists" in result.stderr
    assert (home / "ca" / "ca.pem").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--routeringskenmerk", R1, "--brin", "12ab", "--name", "X"], "not a BRIN"),
        (["--routeringskenmerk", "123", "--brin", "12AB", "--name", "X"], "20 digits"),
        (
            [
                "--routeringskenmerk",
                R1,
                "--brin",
                "12AB",
                "--name",
                "X",
                "--csr",
                "/nonexistent.csr",
            ],
            "cannot read",
        ),
        (["--routeringskenmerk", R1, "--brin", "12AB", "--name", "X", "--days", "0"], "--days"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    home: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    assert main(["--home", str(home), "ca", "init"]) == 0
    register(home, R1)
    before = files_under(home)
    result = run_cli(home, "ca", "issue", *args, "--out", str(tmp_path / "x"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.pem").exists()
    assert not (tmp_path / "x.key").exists()
    assert files_under(home) - before == set()
    assert main(["--home", str(home), "ca", "list", "--json"]) == 0


def test_unreadable_csr_and_missing_ca(home: Path, tmp_path: Path) -> None:
    missing = run_cli(home, *ca_issue(tmp_path / "x"))
    assert missing.returncode == 2
    assert "ca init" in missing.stderr
    assert not home.exists() or not (home / "traffic-center.db").exists()
    assert main(["--home", str(home), "ca", "init"]) == 0
    register(home, R1)
    garbage = tmp_path / "garbage.csr"
    garbage.write_text(
        "-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----\n"
    )
    bad = run_cli(home, *ca_issue(tmp_path / "x", "--csr", str(garbage)))
    assert bad.returncode == 2
    assert "signing request" in bad.stderr
    assert not (tmp_path / "x.pem").exists()
    # A node's home holds ca.pem alone: said so, not "run ca init" (which would then say
    # a CA already exists).
    (home / "ca" / "ca.key").unlink()
    node_home = run_cli(home, *ca_issue(tmp_path / "x"))
    assert node_home.returncode == 2
    assert "no CA key" in node_home.stderr
    assert "ca init" not in node_home.stderr


def test_issue_from_a_csr_keeps_the_key_at_the_school(home: Path, tmp_path: Path) -> None:
    key, csr = tmp_path / "school.key", tmp_path / "school.csr"
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(csr),
            "-subj",
            "/CN=ignored",
        ],
        check=True,
        capture_output=True,
    )
    assert main(["--home", str(home), "ca", "init"]) == 0
    register(home, R1)
    assert (
        main(
            [
                "--home",
                str(home),
                *ca_issue(tmp_path / "issued", "--csr", str(csr), name="De School"),
            ]
        )
        == 0
    )
    assert not (tmp_path / "issued.key").exists()
    pub_cert = subprocess.run(
        ["openssl", "x509", "-in", str(tmp_path / "issued.pem"), "-noout", "-pubkey"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pub_key = subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-pubout"], capture_output=True, text=True, check=True
    ).stdout
    assert pub_cert == pub_key
    subject = subprocess.run(
        [
            "openssl",
            "x509",
            "-in",
            str(tmp_path / "issued.pem"),
            "-noout",
            "-subject",
            "-ext",
            "extendedKeyUsage,subjectAltName",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"serialNumber = {R1}" in subject or f"serialNumber={R1}" in subject
    assert "O = De School" in subject or "O=De School" in subject
    assert "TLS Web Client Authentication" in subject
    assert "Server Authentication" not in subject
    assert f"URI:urn:oso:aanleverpunt:12AB:{R1}" in subject


def test_school_and_endpoint_registry(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--home", str(home)]
    assert (
        main([*base, "school", "add", "--brin", "12AB", "--name", "De Regenboog", "--sector", "PO"])
        == 0
    )
    assert main([*base, *endpoint_add("https://las.example/oso")]) == 0
    capsys.readouterr()
    assert main([*base, "school", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"brin": "12AB", "name": "De Regenboog", "sector": "PO", "board": None, "active": True}
    ]
    assert main([*base, "endpoint", "deactivate", R1]) == 0
    assert main([*base, "school", "deactivate", "12AB"]) == 0
    capsys.readouterr()
    assert main([*base, "endpoint", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {
            "routeringskenmerk": R1,
            "brin": "12AB",
            "url": "https://las.example/oso",
            "kind": "OV",
            "active": False,
        }
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["school", "add", "--brin", "1AB", "--name", "X", "--sector", "PO"],
        ["school", "add", "--brin", "12AB", "--name", "X", "--sector", "HBO"],
        endpoint_add("http://plain.example"),
        endpoint_add("https://las.example", brin="99ZZ"),
        endpoint_add("https://las.example", "--kind", "XX"),
        ["school", "deactivate", "77QQ"],
    ],
)
def test_registry_bad_input_exits_2_with_one_line(home: Path, args: list[str]) -> None:
    existing = ["school", "add", "--brin", "12AB", "--name", "Bestaand", "--sector", "VO"]
    assert main(["--home", str(home), *existing]) == 0
    result = run_cli(home, *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_invalid_settings_stop_with_one_clear_line(home: Path) -> None:
    result = run_cli(home, "school", "list", env={"TC_SESSION_TTL_SECONDS": "soon"})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "TC_SESSION_TTL_SECONDS" in result.stderr


@pytest.mark.parametrize(
    "command",
    [["school", "list"], ["endpoint", "list"], ["ca", "list"], ["audit", "verify"],
     ["audit", "export"]],
)  # fmt: skip
def test_a_command_that_only_reads_refuses_a_home_that_is_not_there(
    tmp_path: Path, command: list[str]
) -> None:
    """A mistyped --home (or TC_HOME) showed an empty registry, exit 0, and left a new
    installation, secret and all, where the admin did not mean one."""
    mistyped = tmp_path / "traffic-centre"
    result = run_cli(mistyped, *command)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert str(mistyped) in result.stderr
    assert not mistyped.exists()


def test_files_an_admin_makes_keep_their_modes_under_a_permissive_umask(tmp_path: Path) -> None:
    """Under `umask 000` a new home and its ca/ were 0777 and ca.pem 0666: anyone on the host
    could replace the trust anchor (which is also TC_CLIENT_CA) or the issued certificates."""
    home = tmp_path / "new" / "home"
    for command in (["ca", "init"], ["ca", "issue-relay", "--out", str(home / "out" / "relay")]):
        cli = shlex.join([sys.executable, "-m", "traffic_center", "--home", str(home), *command])
        subprocess.run(
            ["sh", "-c", f"umask 000 && exec {cli}"],
            env=clean_env(), check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    modes = {
        path.relative_to(tmp_path).as_posix(): path.stat().st_mode & 0o777
        for path in (home.parent, home, home / "ca", home / "out", *home.rglob("*.*"))
    }
    assert modes == {
        "new": 0o755,
        "new/home": 0o755,
        "new/home/ca": 0o755,
        "new/home/out": 0o755,
        "new/home/ca/ca.pem": 0o644,
        "new/home/ca/ca.key": 0o600,
        "new/home/out/relay.pem": 0o644,
        "new/home/out/relay.key": 0o600,
        "new/home/traffic-center.db": 0o600,
        "new/home/secret.key": 0o600,
    }


def test_a_second_revocation_changes_nothing_and_says_so(home: Path, tmp_path: Path) -> None:
    """Revoked again with another reason, the inventory and the CRL kept the first reason
    while the audit log recorded the second, exit 0. Now the same reason again is a no-op
    (exit 0, said), another is refused (exit 2); the log holds the one revocation."""
    assert main(["--home", str(home), "ca", "init"]) == 0
    register(home, R1)
    issued = run_cli(home, *ca_issue(tmp_path / "a"))
    serial = issued.stdout.strip()
    assert run_cli(home, "ca", "revoke", serial, "--reason", "superseded").returncode == 0
    again = run_cli(home, "ca", "revoke", serial, "--reason", "superseded")
    assert (again.returncode, "already revoked" in again.stderr) == (0, True), again.stderr
    other = run_cli(home, "ca", "revoke", serial, "--reason", "keyCompromise")
    assert (other.returncode, other.stderr.count("\n")) == (2, 1), other.stderr
    assert "(superseded); nothing changed" in other.stderr
    [listed] = json.loads(run_cli(home, "ca", "list", "--json").stdout)
    assert listed["status"] == "revoked"
    for no_serial in ("", "xyz!"):  # was "no certificate with serial 0" / "… XYZ!"
        refused = run_cli(home, "ca", "revoke", no_serial)
        assert refused.returncode == 2
        assert "not a certificate serial" in refused.stderr
    exported = run_cli(home, "audit", "export").stdout.splitlines()
    revocations = [json.loads(line) for line in exported if "certificaatIngetrokken" in line]
    assert [r["result"] for r in revocations] == ["superseded"]


def test_db_upgrade_brings_an_empty_database_to_head(home: Path) -> None:
    database = home / "elsewhere.db"
    result = run_cli(
        home, "db", "upgrade", env={"TC_DATABASE_URL": f"sqlite+aiosqlite:///{database}"}
    )
    assert result.returncode == 0, result.stderr
    assert "at head" in result.stderr
    tables = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sqlite3,sys; print(sorted(r[0] for r in sqlite3.connect(sys.argv[1]).execute(\"select name from sqlite_master where type='table'\")))",
            str(database),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for table in (
        "alembic_version",
        "certificates",
        "endpoints",
        "rate_limits",
        "schools",
        "sessions",
    ):
        assert table in tables


# --- a LAS server certificate from the vendor's CSR ------------------------------------------


def openssl_csr(directory: Path, name: str, *newkey: str, san: str | None = None) -> Path:
    """A key and a CSR made the way a LAS vendor makes them; returns the CSR's path."""
    extra = ["-addext", f"subjectAltName={san}"] if san else []
    subprocess.run(
        [
            "openssl", "req", "-new", "-newkey", *newkey, "-nodes",
            "-keyout", str(directory / f"{name}.key"), "-out", str(directory / f"{name}.csr"),
            "-subj", "/CN=evil.example", *extra,
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return directory / f"{name}.csr"


def issue_server(home: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--home", str(home), "ca", "issue-server",
        "--host", "las.example", "--host", "127.0.0.1", *extra, "--out", str(out),
    ]  # fmt: skip


def certificate_text(pem: Path, *args: str) -> str:
    return subprocess.run(
        ["openssl", "x509", "-in", str(pem), "-noout", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_issue_server_from_a_csr_keeps_the_key_at_the_las_and_takes_hosts_from_the_admin(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    # The CSR asks for other names; the admin's --host flags decide what the certificate covers.
    csr = openssl_csr(
        vendor, "las", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", san="DNS:evil.example"
    )
    out = tmp_path / "issued" / "las"
    assert main(["--home", str(home), "ca", "init"]) == 0

    assert main(issue_server(home, out, "--csr", str(csr))) == 0

    assert not out.with_name("las.key").exists()  # the private key never left the vendor
    pem = out.with_name("las.pem")
    key_of_certificate = certificate_text(pem, "-pubkey")
    vendor_key = subprocess.run(
        ["openssl", "pkey", "-in", str(vendor / "las.key"), "-pubout"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert key_of_certificate == vendor_key
    names = certificate_text(pem, "-subject", "-ext", "extendedKeyUsage,subjectAltName")
    assert "DNS:las.example, IP Address:127.0.0.1" in names
    assert "evil.example" not in names
    assert "TLS Web Server Authentication" in names
    assert "Client Authentication" not in names
    ca_pem = str(home / "ca" / "ca.pem")
    assert openssl_verify("-CAfile", ca_pem, "-purpose", "sslserver", str(pem)).returncode == 0
    # The vendor's key and the issued certificate make a working TLS server identity.
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(pem, vendor / "las.key")

    capsys.readouterr()
    assert main(["--home", str(home), "ca", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [c["role"] for c in listed] == ["server"]


@pytest.mark.parametrize(
    "newkey",
    [
        ("rsa:1024",),
        ("ec", "-pkeyopt", "ec_paramgen_curve:P-521"),
        ("ed25519",),
    ],
)
def test_issue_server_refuses_a_csr_with_a_weak_or_unaccepted_key(
    home: Path, tmp_path: Path, newkey: tuple[str, ...]
) -> None:
    csr = openssl_csr(tmp_path, "weak", *newkey)
    assert main(["--home", str(home), "ca", "init"]) == 0
    before = files_under(home)

    result = run_cli(home, *issue_server(home, tmp_path / "x", "--csr", str(csr))[2:])

    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert "RSA of at least 2048 bits or EC P-256/P-384" in result.stderr
    assert not (tmp_path / "x.pem").exists()
    assert not (tmp_path / "x.key").exists()
    assert files_under(home) - before == set()


def test_issue_server_refuses_an_unreadable_or_broken_csr(home: Path, tmp_path: Path) -> None:
    assert main(["--home", str(home), "ca", "init"]) == 0
    garbage = tmp_path / "garbage.csr"
    garbage.write_text(
        "-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----\n"
    )
    for csr, said in ((tmp_path / "missing.csr", "cannot read"), (garbage, "signing request")):
        result = run_cli(home, *issue_server(home, tmp_path / "x", "--csr", str(csr))[2:])
        assert result.returncode == 2
        assert said in result.stderr
        assert not (tmp_path / "x.pem").exists()


@pytest.mark.parametrize(
    "url", ["not a url", "ldap://tc.example/cn=crl", "https://", "tc.example/v1/crl"]
)
def test_a_crl_url_that_is_not_http_is_refused_before_anything_is_issued(
    home: Path, tmp_path: Path, url: str
) -> None:
    """TC_CRL_URL goes into every certificate issued: refused in one line, nothing written."""
    assert main(["--home", str(home), "ca", "init"]) == 0
    before = files_under(home)
    result = run_cli(home, *ca_issue(tmp_path / "a"), env={"TC_CRL_URL": url})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "TC_CRL_URL" in result.stderr
    assert "http(s) URL" in result.stderr
    assert files_under(home) == before
    assert not files_under(tmp_path / "a")


def test_an_https_crl_url_is_named_in_the_issued_certificate(home: Path, tmp_path: Path) -> None:
    assert main(["--home", str(home), "ca", "init"]) == 0
    register(home, R1)
    url = "https://tc.example/v1/crl"
    assert run_cli(home, *ca_issue(tmp_path / "a"), env={"TC_CRL_URL": url}).returncode == 0
    assert url.encode() in x509.load_pem_x509_certificate(
        (tmp_path / "a.pem").read_bytes()
    ).public_bytes(serialization.Encoding.DER)
