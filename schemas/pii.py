"""Phone numbers at rest: per-user AES-GCM data keys wrapped by the master key, and masking.

Envelope encryption: each user has a random 256-bit data key; only its wrapped
form (AES-GCM under a key derived from ``pii_master_key``) is stored. A phone is
encrypted with the user's data key, bound to the user and channel as associated
data so a ciphertext copied to another user does not decrypt. Erasure deletes
the wrapped key ("crypto-shredding"): any ciphertext left in an immutable log is
then unreadable. Pure: no I/O, randomness from ``os.urandom`` only.
"""

import base64
import functools
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE_BYTES = 12
_VERSION = b"\x01"
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
MASK_CHAR = "•"
# E.164 calling codes of two digits; "1" and "7" are the one-digit ones, the rest have three.
_TWO_DIGIT_CODES = frozenset(
    [
        "20",
        "27",
        "30",
        "31",
        "32",
        "33",
        "34",
        "36",
        "39",
        "40",
        "41",
        "43",
        "44",
        "45",
        "46",
        "47",
        "48",
        "49",
        "51",
        "52",
        "53",
        "54",
        "55",
        "56",
        "57",
        "58",
        "60",
        "61",
        "62",
        "63",
        "64",
        "65",
        "66",
        "81",
        "82",
        "84",
        "86",
        "90",
        "91",
        "92",
        "93",
        "94",
        "95",
        "98",
    ]
)


class PiiError(ValueError):
    """A ciphertext or wrapped key that does not open: wrong key, tampered, or shredded."""


@dataclass(frozen=True, slots=True)
class MasterKey:
    """The key-encryption key, derived once from the ``pii_master_key`` secret."""

    kek: bytes

    @classmethod
    def from_secret(cls, secret: str) -> "MasterKey":
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"intentflow-pii-kek-v1")
        return cls(hkdf.derive(secret.encode()))


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return _VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    if len(sealed) < 1 + _NONCE_BYTES + 16 or sealed[:1] != _VERSION:
        raise PiiError("not a sealed value of a known version")
    nonce, body = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, body, aad)
    except InvalidTag:
        raise PiiError("does not open with this key (wrong key or tampered)") from None


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def key_id_of(wrapped: bytes) -> str:
    """A stable id naming one wrapped key (ciphertexts record which key sealed them)."""
    return hashlib.sha256(wrapped).hexdigest()[:32]


def wrap_key(master: MasterKey, user_key: str, data_key: bytes) -> bytes:
    return _seal(master.kek, data_key, b"key:" + user_key.encode())


def unwrap_key(master: MasterKey, user_key: str, wrapped: bytes) -> bytes:
    return _open(master.kek, wrapped, b"key:" + user_key.encode())


def _phone_aad(user_key: str, channel: str) -> bytes:
    return f"phone:{user_key}:{channel}".encode()


def encrypt_phone(data_key: bytes, user_key: str, channel: str, phone: str) -> bytes:
    return _seal(data_key, phone.encode(), _phone_aad(user_key, channel))


def decrypt_phone(data_key: bytes, user_key: str, channel: str, sealed: bytes) -> str:
    return _open(data_key, sealed, _phone_aad(user_key, channel)).decode()


def to_text(sealed: bytes) -> str:
    """Sealed bytes as URL-safe base64 text, for String columns and JSON."""
    return base64.urlsafe_b64encode(sealed).decode()


def from_text(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode())


def calling_code(phone: str) -> str:
    """The E.164 country calling code of ``phone`` (without the plus)."""
    digits = phone[1:]
    if digits[0] in "17":
        return digits[0]
    if digits[:2] in _TWO_DIGIT_CODES:
        return digits[:2]
    return digits[:3]


def mask_phone(phone: str) -> str:
    """``+919876549721`` → ``+91 ••••••9721``: the calling code and the last four digits only."""
    if not _E164.match(phone):
        raise ValueError("not an E.164 phone number")
    code = calling_code(phone)
    rest = phone[1 + len(code) :]
    visible = rest[-4:] if len(rest) > 4 else rest[-2:]
    return f"+{code} {MASK_CHAR * (len(rest) - len(visible))}{visible}"


# --- identifiers in free-form traits ------------------------------------------------

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,63}$")


def is_e164(value: str) -> bool:
    return bool(_E164.match(value))


def looks_like_email(value: str) -> bool:
    return bool(_EMAIL.match(value))


def mask_email(email: str) -> str:
    """``shopper@example.com`` → ``s•••@example.com``: the first letter and the domain only."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}{MASK_CHAR * 3}@{domain}"


def pseudonym(master: MasterKey, kind: str, value: str) -> str:
    """A keyed hash of an identifier: equal values match, nobody can read it back."""
    digest = hmac.new(master.kek, f"{kind}\x1f{value.strip().lower()}".encode(), "sha256")
    return digest.hexdigest()[:32]


# --- e-mails and phones anywhere in free text -----------------------------------------
# One compiled pattern, one pass per string (the collector's hot path). What it finds:
# - e-mail addresses, also URL-encoded (``%40``) and inside display forms
#   (``Alice <alice@example.com>``, ``mailto:``);
# - international phones: ``+`` (or ``%2B``) and 7–15 digits, with spaces, dots,
#   dashes, slashes or brackets between them (``+1 (415) 555-0142``), ``tel:`` URIs;
# - North-American formatted numbers (``(415) 555-0142``, ``415.555.0142``);
# - the value of a URL query parameter whose name says phone (``?tel=4155550142``).
# Not found: national numbers without ``+`` in free text outside these shapes (they
# look like order ids and versions); fields named like phones catch them
# (``phone_field``).
_LOCAL_CHAR = r"[A-Za-z0-9.!#$%'*+^_`{|}~\-]"
# Starts only where a run of such characters starts: a pass stays linear.
_LOCAL = rf"(?<!{_LOCAL_CHAR}){_LOCAL_CHAR}+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_PHONE_NAME = r"(?:phone|tel|mobile|whatsapp|msisdn|cell|sms)"
_PERSONAL = re.compile(
    rf"(?P<email>{_LOCAL}(?:@|%40)(?:{_LABEL}\.)+[A-Za-z][A-Za-z0-9\-]{{1,62}})"
    r"|(?P<intl>(?:\+|%2[Bb])[1-9](?:(?:[ .()/\-]|%20){0,3}[0-9]){6,14})"
    r"|(?P<tel>\btel:[0-9(][0-9 .()/\-]{5,24}[0-9])"
    # Not inside a longer run of letters, digits or dashes: a UUID's "730214-9067"
    # is no phone.
    r"|(?P<nanp>(?<![0-9A-Za-z\-])\(?[2-9][0-9]{2}\)?[ .\-]?[0-9]{3}[ .\-][0-9]{4}"
    r"(?![0-9A-Za-z\-]))"
    rf"|(?P<query>[?&;][^=&#\s]*?{_PHONE_NAME}[^=&#\s]*=)(?P<value>[^&#\s]+)",
    re.IGNORECASE,
)
# Every finding holds one of these; most strings hold none, and ruling that out with
# ``in`` and one digit pattern costs a fraction of the full pattern's pass.
_DIGITS_HINT = re.compile(r"[0-9]{3}(?:\)|[0-9]{4}|[ .\-][0-9]{3}[ .\-][0-9]{4})")


def may_hold_personal(text: str) -> bool:
    """False when ``text`` certainly holds no e-mail or phone ``redact_text`` would find."""
    return (
        "@" in text
        or "+" in text
        or "%40" in text
        or "%2" in text
        or _DIGITS_HINT.search(text) is not None
    )


_NOT_DIGITS = re.compile(r"[^0-9]")
# Digits and what people write between them (an extension at most): not a hash or id.
_PHONE_SHAPED = re.compile(r"^[\s+()./\-0-9]*(?:(?:ext|x)\.?\s*[0-9]+)?\s*$", re.IGNORECASE)
_PHONE_FIELD_WORDS = frozenset(
    {"phone", "tel", "telephone", "mobile", "whatsapp", "msisdn", "cell", "cellphone", "sms"}
)
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z])(?=[A-Z])")
MIN_PHONE_DIGITS = 7


def _phone_key(text: str) -> str:
    digits = _NOT_DIGITS.sub("", text)
    plus = text.lstrip()[:1] == "+" or text.lstrip()[:3].upper() == "%2B"
    return f"+{digits}" if plus else digits


def personal_token(master: MasterKey, kind: str, value: str) -> str:
    """What stands in for an e-mail or phone: its kind and keyed hash, e.g. ``[email:9f86…]``.

    Equal identifiers give equal tokens (an e-mail case-insensitively, a phone by its
    digits), so systems can still match a person without anybody reading them back.
    """
    if kind == "email":
        value = value.replace("%40", "@")
    else:
        kind, value = "phone", _phone_key(value)
    return f"[{kind}:{pseudonym(master, kind, value)}]"


@functools.lru_cache(maxsize=4096)
def is_phone_field(name: str) -> bool:
    """Whether a field's name says it holds a phone (``tel``, ``phone_e164``, "Phone Number")."""
    words = _WORD_SPLIT.split(name.strip()) if name else []
    return any(w.lower() in _PHONE_FIELD_WORDS for w in words if w)


def redact_id(master: MasterKey, value: str) -> str:
    """An id with its e-mails and phones replaced; an id that is only a phone (digits and
    what people write between them, in any format) is one token."""
    return redact_text(master, value, phone_field=True)


def redact_text(master: MasterKey, text: str, phone_field: bool = False) -> str:
    """``text`` with every e-mail and phone replaced by its token; the same object if none.

    ``phone_field``: the text is the value of a field named like a phone, so a run of
    7 digits or more is a phone whatever its format.
    """
    if (
        phone_field
        and _PHONE_SHAPED.match(text)
        and len(_NOT_DIGITS.sub("", text)) >= MIN_PHONE_DIGITS
    ):
        return personal_token(master, "phone", text)

    def token(match: re.Match) -> str:
        kind = match.lastgroup
        if kind == "value":
            value = match.group("value")
            if len(_NOT_DIGITS.sub("", value)) < MIN_PHONE_DIGITS:
                return match.group(0)
            return match.group("query") + personal_token(master, "phone", value)
        return personal_token(master, kind or "phone", match.group(0))

    if not may_hold_personal(text):
        return text
    return _PERSONAL.sub(token, text)
