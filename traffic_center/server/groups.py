"""The TLS key-exchange groups of a serving process: X25519, P-256 and P-384 only.

Python 3.11's ``ssl`` has no call for a group list (``set_ecdh_curve`` picks one curve and leaves
TLS 1.3 with that one alone). OpenSSL reads its configuration once, when the library first
initialises — in a Python process at the first import of ``ssl`` or ``hashlib``, long before a
command runs — and applies its ``system_default`` section to every TLS context. So a serving
command makes sure its process *starts* with ``OPENSSL_CONF`` naming ``openssl-groups.cnf``: if
it does not, the command re-executes itself, same pid and arguments, with the variable set.
Setting the variable from inside the process would depend on import order and silently do
nothing; a re-exec is one extra interpreter start and cannot be too late. uvicorn's worker
processes inherit the variable. Servers started inside another program (the tests' threads)
have whatever groups that program's OpenSSL was started with.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

GROUPS = ("X25519", "P-256", "P-384")
OPENSSL_CONF = Path(__file__).with_name("openssl-groups.cnf")


def group_policy_active() -> bool:
    """Whether this process started with our OpenSSL configuration."""
    return os.environ.get("OPENSSL_CONF") == str(OPENSSL_CONF)


def restart_with_group_policy() -> None:
    """Re-execute this command with ``OPENSSL_CONF`` set; returns only when no restart is due.

    An operator's own ``OPENSSL_CONF`` is respected (it may hold a FIPS provider, say), with a
    warning: that file then decides the groups (docs/security.md says what to put in it).
    """
    current = os.environ.get("OPENSSL_CONF")
    if current == str(OPENSSL_CONF):
        return
    if current:
        print(
            f"traffic-center: warning: OPENSSL_CONF={current} decides the TLS key-exchange "
            f"groups; add `Groups = {':'.join(GROUPS)}` to its system_default section",
            file=sys.stderr,
        )
        return
    sys.stdout.flush()
    sys.stderr.flush()
    environment = {**os.environ, "OPENSSL_CONF": str(OPENSSL_CONF)}
    # sys.orig_argv: the interpreter's own command line, so `python -m traffic_center …` and the
    # console script both come back as they were started.
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environment)  # noqa: S606
