"""Audit keys: an HMAC secret or an Ed25519 key; signing an entry's hash and checking a signature."""

import hashlib
import hmac
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

AuditKey = bytes | Ed25519PrivateKey | Ed25519PublicKey


def check_key(field_name: str, key) -> None:
    """Refuse what is not an audit key (bytes of 16 or more, or an Ed25519 key), naming ``field_name``."""
    if key is not None and not isinstance(key, (bytes, Ed25519PrivateKey, Ed25519PublicKey)):
        raise ValueError(f"{field_name}: expected bytes (an HMAC secret) or an Ed25519 key from "
                         f"cryptography, got {type(key).__name__}")
    if isinstance(key, bytes) and len(key) < 16:
        raise ValueError(f"{field_name}: an HMAC secret needs at least 16 bytes, got {len(key)}")


def key_id(key: AuditKey) -> str:
    if isinstance(key, bytes):
        material = b"hmac:" + hashlib.sha256(key).digest()
    else:
        public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
        material = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(material).hexdigest()[:16]


def sign(key: AuditKey, hashed: str) -> dict:
    if isinstance(key, bytes):
        value = hmac.new(key, hashed.encode(), hashlib.sha256).hexdigest()
        return {"alg": "hmac-sha256", "key_id": key_id(key), "value": value}
    if isinstance(key, Ed25519PublicKey):
        raise ValueError("audit_key: signing needs the Ed25519 private key (the public key only verifies)")
    return {"alg": "ed25519", "key_id": key_id(key), "value": key.sign(hashed.encode()).hex()}


def signature_ok(key: AuditKey, key_id: str, hashed: str, sig: dict) -> bool:
    """Whether ``sig`` is exactly the signature ``key`` (id ``key_id``) makes of the hash ``hashed``."""
    if sig["key_id"] != key_id:
        return False
    if isinstance(key, bytes):
        expected = hmac.new(key, hashed.encode(), hashlib.sha256).hexdigest()
        return sig["alg"] == "hmac-sha256" and hmac.compare_digest(expected.encode(), sig["value"].encode())
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    try:
        value = bytes.fromhex(sig["value"])
        public.verify(value, hashed.encode())
    except (InvalidSignature, ValueError):
        return False
    return sig["alg"] == "ed25519" and value.hex() == sig["value"]  # fromhex also reads "AB cd"


def load_key(path: str | os.PathLike) -> AuditKey:
    """A key file: a PEM Ed25519 key (private signs and verifies, public verifies), else an HMAC secret."""
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"key: cannot read {str(path)!r} ({error.strerror})") from None
    if b"-----BEGIN" in raw:
        try:
            key = (serialization.load_pem_public_key(raw) if b"PUBLIC KEY" in raw
                   else serialization.load_pem_private_key(raw, password=None))
        except (ValueError, TypeError) as error:
            raise ValueError(f"key: {str(path)!r} is not a readable PEM key ({error})") from None
        if not isinstance(key, (Ed25519PrivateKey, Ed25519PublicKey)):
            raise ValueError(f"key: {str(path)!r} holds a {type(key).__name__}; expected an Ed25519 key")
        return key
    secret = raw.strip()
    check_key("key", secret)
    return secret
