"""Referral links: a shopper's own link for bringing a new customer, and how a visit
through it is recognised.

A referrer's code is derived from their user id under ``link_secret`` (HMAC): the
same shopper always gets the same link, the link does not name them, and a code
cannot be guessed for someone else. ``referral_links`` maps each code back to its
referrer for attribution; it holds the referrer's ``user_key``, so erasing the
referrer removes the mapping (api/privacy/erasure.py finds tables by that column).

Following a link lands on the storefront with ``utm_source=referral``,
``utm_medium=link`` and ``utm_campaign=<code>``; the tracker sends those with the
visitor's events, which is all attribution needs (api/queries/referrals.py): no
lookup on the way, so a warehouse outage never stops a visitor landing. Pure.
"""

import base64
import hashlib
import hmac
import re
from urllib.parse import urlencode

REFERRAL_LINKS = "referral_links"
REFERRAL_COLUMNS = ("code", "user_key", "created_at", "created_by")
REFERRAL_SOURCE = "referral"
REFERRAL_MEDIUM = "link"
CODE_LENGTH = 12
CODE_PATTERN = re.compile(r"^[a-z2-7]{12}$")


def referral_code(secret: str, user_id: str) -> str:
    """The referrer's code: 60 bits of an HMAC of their id, in lower-case base32."""
    mac = hmac.new(secret.encode(), b"referral\x1f" + user_id.encode(), hashlib.sha256)
    return base64.b32encode(mac.digest()).decode().lower()[:CODE_LENGTH]


def referral_landing(storefront_url: str, code: str) -> str:
    """Where a visitor following a referral link lands: the storefront's home, tagged."""
    query = {"utm_source": REFERRAL_SOURCE, "utm_medium": REFERRAL_MEDIUM, "utm_campaign": code}
    return f"{storefront_url.rstrip('/')}/?{urlencode(query)}"
