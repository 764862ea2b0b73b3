"""The local broker's SASL_SSL listener: a throwaway CA, the broker's keystore, SCRAM users.

At the first start with ``sasl_ssl=True``, :func:`make_tls` fills ``DIR/tls``::

    ca.pem         the CA clients trust (``ssl_cafile``)
    server.p12     the broker's keystore (PKCS12): a certificate for 127.0.0.1 and
                   localhost, signed by the CA
    secrets.json   mode 0600: the keystore password and the SCRAM password

The SCRAM-SHA-512 and SCRAM-SHA-256 credentials of one user (:data:`SASL_USERNAME`) go
into the metadata log when the storage is formatted (:func:`scram_arguments`).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from pathlib import Path

from streams.kafka.local.jars import KafkaLocalError
from streams.kafka.local.process import LOOPBACK

__all__ = ["SASL_MECHANISMS", "SASL_USERNAME", "make_tls", "read_secrets", "scram_arguments"]

SASL_USERNAME = "meterstream"
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
_CERT_DAYS = 30
MASK = "**********"


def read_secrets(tls_dir: Path) -> dict[str, str]:
    """``keystore_password`` and ``sasl_password`` from ``tls_dir/secrets.json``."""
    try:
        loaded = json.loads((tls_dir / "secrets.json").read_text())
    except (OSError, ValueError) as exc:
        raise KafkaLocalError(
            f"no SASL_SSL credentials in {tls_dir}; start with sasl_ssl=True"
        ) from exc
    return {str(k): str(v) for k, v in loaded.items()}


def scram_arguments(password: str) -> list[str]:
    """kafka-storage ``format`` arguments that add the SCRAM user for each mechanism."""
    args = []
    for mechanism in SASL_MECHANISMS:
        args += ["--add-scram", f"{mechanism}=[name={SASL_USERNAME},password={password}]"]
    return args


def make_tls(tls_dir: Path, *, java: str) -> None:
    """A throwaway CA and a broker keystore (PKCS12) signed by it, with keytool."""
    keytool = shutil.which("keytool") or str(Path(java).parent / "keytool")
    tls = tls_dir
    shutil.rmtree(tls, ignore_errors=True)
    tls.mkdir(parents=True)
    tls.chmod(0o700)
    store_password = secrets.token_hex(16)
    creds = tls / "secrets.json"
    creds.touch(mode=0o600)
    creds.write_text(json.dumps({"keystore_password": store_password,
                                 "sasl_password": secrets.token_hex(16)}))
    ca_pem, ca, server = str(tls / "ca.pem"), str(tls / "ca.p12"), str(tls / "server.p12")
    pw = ["-storepass", store_password, "-keypass", store_password]
    common = ["-storetype", "PKCS12", "-keyalg", "EC", "-groupname", "secp256r1"]
    steps = [
        ["-genkeypair", "-alias", "ca", "-dname", "CN=meterstream-kafka-local-ca",
         "-ext", "bc:c", "-validity", str(_CERT_DAYS), "-keystore", ca, *common, *pw],
        ["-exportcert", "-rfc", "-alias", "ca", "-keystore", ca, "-file", ca_pem, *pw],
        ["-genkeypair", "-alias", "broker", "-dname", f"CN={LOOPBACK}",
         "-validity", str(_CERT_DAYS), "-keystore", server, *common, *pw],
        ["-certreq", "-alias", "broker", "-keystore", server,
         "-file", str(tls / "server.csr"), *pw],
        ["-gencert", "-rfc", "-alias", "ca", "-keystore", ca,
         "-infile", str(tls / "server.csr"), "-outfile", str(tls / "server.pem"),
         "-validity", str(_CERT_DAYS),
         "-ext", f"SAN=ip:{LOOPBACK},dns:localhost", "-ext", "KU=digitalSignature",
         "-ext", "EKU=serverAuth", *pw],
        ["-importcert", "-noprompt", "-alias", "ca", "-file", ca_pem, "-keystore", server, *pw],
        ["-importcert", "-noprompt", "-alias", "broker", "-file", str(tls / "server.pem"),
         "-keystore", server, *pw],
    ]
    for step in steps:
        done = subprocess.run(
            [keytool, *step], stdin=subprocess.DEVNULL, capture_output=True, text=True,
            check=False, cwd=tls,
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).replace(store_password, MASK)
            raise KafkaLocalError(f"keytool {step[0]} failed (exit {done.returncode}):\n"
                                  f"{output[-4000:]}")
