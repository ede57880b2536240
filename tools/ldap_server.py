"""A private OpenLDAP server (Debian's slapd) for the directory sign-in's tests, over LDAPS with a
generated CA, with a small corp directory of users and groups.

Never the system's slapd (Debian's package may have started one): this one runs as the current user
from its own directory (`slapd.conf`, an mdb database loaded with `slapadd`, its certificates), on
free ports of 127.0.0.1, in the foreground, and dies with its parent. Members are added to and
removed from groups with `ldapmodify` (ldap-utils), as an administrator would in the directory.
No Django imports.

The directory (suffix dc=corp,dc=example; every password is `Passw0rd-<uid>`):
  ou=people:  ada (in Backup Admins), dana and hal (in Helpdesk), erin (in Auditors), nora (in no group)
  ou=groups:  Backup Admins, Helpdesk, Auditors (groupOfNames, `member` DNs, as Active Directory has;
              groupOfNames needs one member at least, hence two in Helpdesk, so dana can leave it)
  ou=service: svc-backup, the bind account (password SERVICE_PASSWORD)
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tools.services import ServiceError, _stop, _wait, child_process_options, free_port

SUFFIX = "dc=corp,dc=example"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-secret-for-tests"  # noqa: S105 (a test directory's, on 127.0.0.1)
SERVICE_DN = f"cn=svc-backup,ou=service,{SUFFIX}"
SERVICE_PASSWORD = "Bind-Secret-7f3a"  # noqa: S105
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
USERS = {"ada": "Backup Admins", "dana": "Helpdesk", "hal": "Helpdesk", "erin": "Auditors", "nora": None}
SLAPD = "/usr/sbin/slapd"
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")


def password_of(uid: str) -> str:
    return f"Passw0rd-{uid}"


def user_dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE}"


def group_dn(name: str) -> str:
    return f"cn={name},{GROUPS}"


def _ssha(password: str) -> str:
    # OpenLDAP's salted SHA-1 scheme, the one slapd verifies without extra modules.
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass
class CertificateAuthority:
    """A CA made for the tests: its certificate in `cert_file`, and `issue()` for server certificates."""

    directory: Path
    common_name: str = "VM Backup test CA"
    key: ec.EllipticCurvePrivateKey = field(init=False, repr=False)
    cert: x509.Certificate = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(self.common_name))
            .issuer_name(_name(self.common_name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_file.write_bytes(_pem(self.cert))

    @property
    def cert_file(self) -> Path:
        return self.directory / "ca.pem"

    def issue(self, host: str = "127.0.0.1") -> tuple[Path, Path]:
        """A server certificate for `host` (and localhost): (certificate file, key file)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(host))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        cert_file, key_file = self.directory / "server.pem", self.directory / "server.key"
        cert_file.write_bytes(_pem(cert))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        key_file.chmod(0o600)
        return cert_file, key_file


def directory_ldif() -> str:
    """The corp directory: organisational units, the bind account, users and groups."""
    entries = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: corp\no: Corp",
        *(f"dn: ou={ou},{SUFFIX}\nobjectClass: organizationalUnit\nou: {ou}" for ou in ("people", "groups", "service")),
        f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: svc-backup\nuserPassword: {_ssha(SERVICE_PASSWORD)}",
    ]
    for uid in USERS:
        entries.append(
            f"dn: {user_dn(uid)}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid.title()} Example\n"
            f"sn: Example\ngivenName: {uid.title()}\nmail: {uid}@corp.example\n"
            f"userPassword: {_ssha(password_of(uid))}"
        )
    for name in sorted({g for g in USERS.values() if g}):
        members = "".join(f"member: {user_dn(uid)}\n" for uid, g in USERS.items() if g == name)
        entries.append(f"dn: {group_dn(name)}\nobjectClass: groupOfNames\ncn: {name}\n{members}".rstrip("\n"))
    return "\n\n".join(entries) + "\n"


@dataclass
class Slapd:
    """A private slapd answering LDAPS on `uri` and plain LDAP (for StartTLS) on `starttls_uri`."""

    directory: Path
    ldaps_port: int = 0
    ldap_port: int = 0
    ca: CertificateAuthority | None = field(default=None, repr=False)
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def uri(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def starttls_uri(self) -> str:
        return f"ldap://127.0.0.1:{self.ldap_port}"

    @property
    def ca_file(self) -> Path:
        assert self.ca is not None, "start() first"
        return self.ca.cert_file

    def start(self) -> Slapd:
        for program in (SLAPD, "/usr/sbin/slapadd", "/usr/bin/ldapmodify"):
            if not os.access(program, os.X_OK):
                raise ServiceError(f"{program} is missing: install the Debian packages slapd and ldap-utils")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca = CertificateAuthority(self.directory / "tls")
        cert_file, key_file = self.ca.issue()
        database = self.directory / "db"
        shutil.rmtree(database, ignore_errors=True)
        database.mkdir()
        conf = self.directory / "slapd.conf"
        conf.write_text(self._config(cert_file, key_file, database))
        (self.directory / "corp.ldif").write_text(directory_ldif())
        self._run(["/usr/sbin/slapadd", "-f", str(conf), "-l", str(self.directory / "corp.ldif")])
        self.ldaps_port = self.ldaps_port or free_port()
        self.ldap_port = self.ldap_port or free_port()
        urls = f"ldaps://127.0.0.1:{self.ldaps_port}/ ldap://127.0.0.1:{self.ldap_port}/"
        with open(self.directory / "slapd.log", "ab") as log:
            # -d 0: stay in the foreground (no fork), so the process is ours to stop.
            self.process = subprocess.Popen(
                [SLAPD, "-d", "0", "-h", urls, "-f", str(conf)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **child_process_options(),
            )  # fmt: skip
        _wait(self._answers, "slapd", 30, self.process)
        return self

    def _config(self, cert_file: Path, key_file: Path, database: Path) -> str:
        schemas = "".join(f"include /etc/ldap/schema/{name}.schema\n" for name in SCHEMAS)
        return (
            f"{schemas}modulepath /usr/lib/ldap\nmoduleload back_mdb\n"
            f"pidfile {self.directory}/slapd.pid\nargsfile {self.directory}/slapd.args\n"
            f"TLSCACertificateFile {self.ca_file}\nTLSCertificateFile {cert_file}\n"
            f"TLSCertificateKeyFile {key_file}\n"
            # Passwords only ever serve binds; the bind account and users read the rest.
            "access to attrs=userPassword by self write by anonymous auth by * none\n"
            "access to * by users read by * none\n"
            f'database mdb\nmaxsize 104857600\nsuffix "{SUFFIX}"\nrootdn "{ROOT_DN}"\n'
            f"rootpw {_ssha(ROOT_PASSWORD)}\ndirectory {database}\nindex objectClass eq\nindex uid,member eq\n"
        )

    def _answers(self) -> bool:
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file))
            with (
                socket.create_connection(("127.0.0.1", self.ldaps_port), timeout=1) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1"),
            ):
                return True
        except OSError:
            return False

    def _run(self, command: list[str], stdin: str | None = None) -> None:
        env = {**os.environ, "LDAPTLS_CACERT": str(self.ca_file) if self.ca else "", "LDAPTLS_REQCERT": "demand"}
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise ServiceError(f"{command[0]} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")

    def modify(self, ldif: str) -> None:
        """Apply an LDIF change as the directory's administrator (ldapmodify over LDAPS)."""
        self._run(["/usr/bin/ldapmodify", "-x", "-H", self.uri, "-D", ROOT_DN, "-w", ROOT_PASSWORD], ldif)

    def add_member(self, group: str, uid: str, *, dn: str = "") -> None:
        """Add user `uid` (or the entry `dn`, a group say) to `group`."""
        self.modify(f"dn: {group_dn(group)}\nchangetype: modify\nadd: member\nmember: {dn or user_dn(uid)}\n")

    def remove_member(self, group: str, uid: str, *, dn: str = "") -> None:
        self.modify(f"dn: {group_dn(group)}\nchangetype: modify\ndelete: member\nmember: {dn or user_dn(uid)}\n")

    def stop(self) -> None:
        _stop(self.process)
        self.process = None
