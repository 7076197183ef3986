"""What ``ecrd check-config`` says about the files and devices a valid config names.

``config.load`` checks the file itself (types, ranges, rules); this looks at the machine,
as ``check-config`` runs on the box it checks (the unit runs it before every start):

* a CA bundle (``[cloud].ca_file``, a LAN terminal's ``ca_file`` with ``tls = true``) that
  is missing, not a file, unreadable or not PEM is an **error**: every TLS exchange with it
  would fail, and ``ecrd run`` could not even build the link;
* a serial ``device`` that is there but not a character device (a typo naming a file or a
  directory) is an **error**;
* a serial ``device`` that is not there is a **warning**: a USB-serial adapter may be
  unplugged while the config is checked (or the box boots before udev names it), and the
  serial link opens it whenever it appears, so refusing the config would stop every other
  terminal of the box for a cable;
* in store mode, ``[http].client_ca`` is such a CA bundle, and ``tls_cert`` with ``tls_key``
  must load as a certificate and its key: an **error** otherwise, as ``ecrd run`` could not
  listen;
* a device this user cannot open read-write, ``tls = true`` without a ``ca_file``, a
  ``ca_file`` that nothing uses, and a ``metrics_file`` whose directory is missing are
  warnings: ecrd runs, that part of it does not work until the machine is fixed.
"""

from __future__ import annotations

import os
import ssl
import stat

import attrs

from ecrd.config import Config, LanTerminal, SerialTerminal, TerminalConfig


@attrs.frozen
class Finding:
    key: str  # where in the config: "[cloud].ca_file", "terminal[1].device"
    message: str
    error: bool  # an error fails check-config (exit 2); a warning is said and passes


def findings(cfg: Config) -> list[Finding]:
    """Every problem of the files and devices ``cfg`` names, errors and warnings."""
    found: list[Finding] = []
    if cfg.cloud.ca_file is not None:
        found += _ca_file("[cloud].ca_file", cfg.cloud.ca_file, "the cloud gateway")
    for i, term in enumerate(cfg.terminals):
        found += _terminal(f"terminal[{i}]", term)
    http = cfg.http
    if http is not None and http.tls_cert and http.tls_key and http.client_ca:
        found += _ca_file("[http].client_ca", http.client_ca, "the tills' certificates")
        found += _cert_and_key(http.tls_cert, http.tls_key)
    metrics = cfg.daemon.metrics_file
    if metrics is not None and not os.path.isdir(os.path.dirname(os.path.abspath(metrics))):
        found.append(
            Finding(
                "[daemon].metrics_file",
                f"the directory of {metrics} does not exist: no metrics file is written "
                "until it does (node_exporter's textfile directory, writable by ecrd's user)",
                error=False,
            )
        )
    return found


def _terminal(where: str, term: TerminalConfig) -> list[Finding]:
    if isinstance(term, SerialTerminal):
        return _device(f"{where}.device", term.device)
    if not isinstance(term, LanTerminal):
        return []
    if term.ca_file is not None and term.tls:
        return _ca_file(f"{where}.ca_file", term.ca_file, f"terminal {term.id}")
    if term.ca_file is not None:
        return [Finding(f"{where}.ca_file", "not used with tls = false", error=False)]
    if term.tls:
        return [
            Finding(
                f"{where}.tls",
                "tls = true without ca_file: the terminal's certificate must then be signed "
                "by a public CA; for the terminal's own root set ca_file "
                "(docs/first-contact.md)",
                error=False,
            )
        ]
    return []


def _ca_file(key: str, path: str, what: str) -> list[Finding]:
    """A CA bundle must be a readable PEM file that Python's TLS loads."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return [Finding(key, f"{path} does not exist (the CA bundle {what} is checked with)", True)]
    except OSError as exc:
        return [Finding(key, f"{path}: {exc.strerror}", True)]
    if not stat.S_ISREG(st.st_mode):
        return [Finding(key, f"{path} is not a file (a PEM CA bundle)", True)]
    try:
        ssl.create_default_context(cafile=path)
    except PermissionError:
        return [Finding(key, f"{path} cannot be read by this user (ecrd's must read it)", True)]
    except (ssl.SSLError, OSError, ValueError) as exc:
        return [Finding(key, f"{path} is not a PEM CA certificate bundle ({exc})", True)]
    return []


def _cert_and_key(cert: str, key: str) -> list[Finding]:
    """Store mode's own certificate and key must load together, as the endpoint loads them."""
    for where, path in (("[http].tls_cert", cert), ("[http].tls_key", key)):
        if not os.path.isfile(path):
            return [Finding(where, f"{path} does not exist or is not a file", True)]
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except PermissionError:
        return [Finding("[http].tls_key", f"{cert} or {key} cannot be read by this user", True)]
    except (ssl.SSLError, OSError) as exc:
        why = f"{cert} and {key} are not a PEM certificate and its private key ({exc})"
        return [Finding("[http].tls_cert", why, True)]
    return []


def _device(key: str, path: str) -> list[Finding]:
    try:
        st = os.stat(path)  # through the /dev/serial/by-id/ link to the tty
    except FileNotFoundError:
        return [
            Finding(
                key,
                f"{path} is not there now: the USB-serial adapter is unplugged or the path "
                "is wrong (ls -l /dev/serial/by-id/); ecrd starts anyway and opens the port "
                "when it appears",
                error=False,
            )
        ]
    except OSError as exc:
        return [Finding(key, f"{path}: {exc.strerror}", True)]
    if not stat.S_ISCHR(st.st_mode):
        return [Finding(key, f"{path} is not a character device (a serial port)", True)]
    if not os.access(path, os.R_OK | os.W_OK):
        return [
            Finding(
                key,
                f"{path} cannot be opened read-write by this user; ecrd's user needs its "
                "group (dialout, which the unit gives it)",
                error=False,
            )
        ]
    return []
