"""A software WebAuthn authenticator for guard's tests: soft-webauthn's device (an
independent implementation, on python-fido2's CBOR and COSE), kept in a JSON file
between calls, speaking the JSON forms of the browser API.

    soft_authenticator.py DEVICE.json create ORIGIN < creation-options.json
    soft_authenticator.py DEVICE.json get ORIGIN < request-options.json

prints the PublicKeyCredential as JSON (binary members base64url, unpadded). The
device reports user verification (a PIN or biometric passed), as platform
authenticators do for passkeys; soft-webauthn itself only sets user presence, so
its answers get the UV flag (and, for assertions, a signature over the changed data).
"""

import base64
import json
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor
from fido2.utils import sha256
from soft_webauthn import SoftWebauthnDevice

USER_VERIFIED = 0x04


def b64url(data):
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load(path):
    device = SoftWebauthnDevice()
    try:
        with open(path) as f:
            saved = json.load(f)
    except FileNotFoundError:
        return device
    device.credential_id = unb64url(saved["credential_id"])
    device.private_key = serialization.load_pem_private_key(saved["private_key"].encode(), password=None)
    device.rp_id = saved["rp_id"]
    device.user_handle = unb64url(saved["user_handle"])
    device.sign_count = saved["sign_count"]
    return device


def save(path, device):
    pem = device.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    saved = {
        "credential_id": b64url(device.credential_id),
        "private_key": pem,
        "rp_id": device.rp_id,
        "user_handle": b64url(device.user_handle),
        "sign_count": device.sign_count,
    }
    with open(path, "w") as f:
        json.dump(saved, f)


def with_uv(auth_data):
    return auth_data[:32] + bytes([auth_data[32] | USER_VERIFIED]) + auth_data[33:]


def create(device, options, origin):
    public_key = dict(options["publicKey"])
    public_key["challenge"] = unb64url(public_key["challenge"])
    public_key["user"] = dict(public_key["user"], id=unb64url(public_key["user"]["id"]))
    made = device.create({"publicKey": public_key}, origin)
    attestation = cbor.decode(made["response"]["attestationObject"])
    attestation["authData"] = with_uv(attestation["authData"])
    return {
        "id": b64url(made["rawId"]),
        "rawId": b64url(made["rawId"]),
        "type": "public-key",
        "response": {
            "attestationObject": b64url(cbor.encode(attestation)),
            "clientDataJSON": b64url(made["response"]["clientDataJSON"]),
        },
        "clientExtensionResults": {},
    }


def get(device, options, origin):
    public_key = dict(options["publicKey"])
    public_key["challenge"] = unb64url(public_key["challenge"])
    made = device.get({"publicKey": public_key}, origin)
    response = made["response"]
    auth_data = with_uv(response["authenticatorData"])
    signature = device.private_key.sign(
        auth_data + sha256(response["clientDataJSON"]), ec.ECDSA(hashes.SHA256())
    )
    return {
        "id": b64url(made["rawId"]),
        "rawId": b64url(made["rawId"]),
        "type": "public-key",
        "response": {
            "authenticatorData": b64url(auth_data),
            "clientDataJSON": b64url(response["clientDataJSON"]),
            "signature": b64url(signature),
            "userHandle": b64url(response["userHandle"]),
        },
        "clientExtensionResults": {},
    }


def main():
    path, action, origin = sys.argv[1:4]
    options = json.load(sys.stdin)
    device = load(path)
    credential = (create if action == "create" else get)(device, options, origin)
    save(path, device)
    json.dump(credential, sys.stdout)


if __name__ == "__main__":
    main()
