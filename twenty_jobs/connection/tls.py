"""TLS to Redis: the CA that signs the server's certificate, an optional client certificate
(`tls-auth-clients yes`), and how strictly the server's certificate is checked.

Verification modes (docs/connections.md, "TLS"):
* `full`: the certificate must chain to the CA (the system's CAs when none is given) AND name the
  host connected to (a DNS name or IP address in its subjectAltName);
* `ca`: it must chain to the CA; the name is not checked (servers addressed by an IP their
  certificate does not list, e.g. behind a load balancer);
* `none`: no check at all; the connection is encrypted but anyone in the middle can read it.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Any, Literal, get_args

TlsVerify = Literal["full", "ca", "none"]
TLS_VERIFY_MODES: tuple[str, ...] = get_args(TlsVerify)


class _EncryptedKey(ValueError):
    pass


def _refuse_key_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key's passphrase.
    raise _EncryptedKey("the private key is encrypted; give an unencrypted key file")


@dataclass(frozen=True, slots=True)
class TlsOptions:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: TlsVerify = "full"

    def __post_init__(self) -> None:
        if self.verify not in TLS_VERIFY_MODES:
            raise ValueError(f"TLS verification must be one of {', '.join(TLS_VERIFY_MODES)}, got {self.verify!r}")
        if self.key_file and not self.cert_file:
            raise ValueError("a TLS client key needs its certificate (REDIS_TLS_CERT or ssl_certfile)")
        for what, path in (("CA file", self.ca_file), ("client certificate", self.cert_file),
                           ("client key", self.key_file)):
            if path and not os.path.isfile(path):
                raise ValueError(f"TLS {what} {path!r} does not exist or is not a file")
        # Load everything once now, so a wrong file is one line at start-up, not a failure on
        # every connect.
        self.context()

    def context(self) -> ssl.SSLContext:
        """An SSL context for a client connection with these options."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        try:
            if self.ca_file:
                ctx.load_verify_locations(cafile=self.ca_file)
            if self.cert_file:
                ctx.load_cert_chain(self.cert_file, self.key_file, password=_refuse_key_password)
        except _EncryptedKey as exc:
            raise ValueError(str(exc)) from None
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"cannot load the TLS certificates: {exc.strerror or exc}") from None
        if self.verify == "none":
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.verify == "ca":
            ctx.check_hostname = False
        return ctx

    def redis_py_kwargs(self) -> dict[str, Any]:
        """The same options as redis-py's connection keywords."""
        return {
            "ssl": True,
            "ssl_ca_certs": self.ca_file,
            "ssl_certfile": self.cert_file,
            "ssl_keyfile": self.key_file,
            "ssl_cert_reqs": "none" if self.verify == "none" else "required",
            "ssl_check_hostname": self.verify == "full",
        }

    def describe(self) -> str:
        parts = [f"verify {self.verify}"]
        if self.ca_file:
            parts.append(f"CA {self.ca_file}")
        if self.cert_file:
            parts.append("client certificate")
        return "TLS (" + ", ".join(parts) + ")"
