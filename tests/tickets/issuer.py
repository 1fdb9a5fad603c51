"""A foreign ticket issuer for tests/tickets.rs: PyJWT, as an operator's
backend in Python would use it, and the forgeries an attacker would try.

    python3 issuer.py keys DIR       # writes a secret and three key pairs
    python3 issuer.py sign DIR       # stdin: [{"name", "key", "claims", "headers"?, "forge"?}]
                                     # stdout: {"name": "ticket", ...}

key is hs (HS256), es (ES256), rs (RS256) or ed (EdDSA). forge is one of
"none" (alg none, no signature), "hs-with-pem" (HS256 whose HMAC key is
the public key's PEM: the algorithm-confusion attack), "tamper" (a valid
ticket whose payload is swapped for claims["tampered"] after signing).
"""

import base64
import hashlib
import hmac
import json
import os
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ALGORITHMS = {"hs": "HS256", "es": "ES256", "rs": "RS256", "ed": "EdDSA"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def write_keys(folder: str) -> None:
    with open(os.path.join(folder, "hs.secret"), "w") as f:
        f.write(base64.b64encode(os.urandom(32)).decode() + "\n")
    pairs = {
        "es": ec.generate_private_key(ec.SECP256R1()),
        "rs": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ed": ed25519.Ed25519PrivateKey.generate(),
    }
    for name, private in pairs.items():
        with open(os.path.join(folder, f"{name}.pem"), "wb") as f:
            f.write(
                private.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        with open(os.path.join(folder, f"{name}.pub.pem"), "wb") as f:
            f.write(
                private.public_key().public_bytes(
                    serialization.Encoding.PEM,
                    serialization.PublicFormat.SubjectPublicKeyInfo,
                )
            )


def signing_key(folder: str, key: str):
    if key == "hs":
        with open(os.path.join(folder, "hs.secret")) as f:
            return f.read().strip()
    with open(os.path.join(folder, f"{key}.pem"), "rb") as f:
        return f.read()


def sign(folder: str, spec: dict) -> str:
    key, claims = spec["key"], dict(spec["claims"])
    headers = spec.get("headers")
    forge = spec.get("forge")
    tampered = claims.pop("tampered", None)
    if forge == "none":
        header = {"alg": "none", "typ": "JWT"}
        return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}."
    if forge == "hs-with-pem":
        with open(os.path.join(folder, f"{key}.pub.pem"), "rb") as f:
            pem = f.read()
        header = {"alg": "HS256", "typ": "JWT"}
        message = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        mac = hmac.new(pem, message.encode(), hashlib.sha256).digest()
        return f"{message}.{b64(mac)}"
    ticket = jwt.encode(claims, signing_key(folder, key), algorithm=ALGORITHMS[key], headers=headers)
    if forge == "tamper":
        header, _, signature = ticket.split(".")
        ticket = f"{header}.{b64(json.dumps(tampered).encode())}.{signature}"
    return ticket


def main() -> None:
    command, folder = sys.argv[1], sys.argv[2]
    if command == "keys":
        write_keys(folder)
    elif command == "sign":
        specs = json.load(sys.stdin)
        json.dump({spec["name"]: sign(folder, spec) for spec in specs}, sys.stdout)
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
