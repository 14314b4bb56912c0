"""The collector's identity step: no e-mail or phone in clear leaves it in ``identify`` traits.

A storefront's ``identify`` often carries the shopper's e-mail or phone among
its traits. Each such value is replaced by its masked form (for people to
recognise) and a keyed hash (for systems to match), before anything is
produced: the immutable log never holds the identifier itself.
"""

from schemas import pii
from schemas.events import Event

PHONE_TRAITS = frozenset({"phone", "phone_number", "mobile", "mobile_phone"})


def _sealed_traits(traits: dict, master: pii.MasterKey) -> dict:
    out = {}
    for name, value in traits.items():
        if not isinstance(value, str):
            out[name] = value
        elif pii.looks_like_email(value):
            out[f"{name}_masked"] = pii.mask_email(value)
            out[f"{name}_hash"] = pii.pseudonym(master, "email", value)
        elif name.lower() in PHONE_TRAITS:
            masked = pii.mask_phone(value) if pii.is_e164(value) else pii.MASK_CHAR * 4
            out[f"{name}_masked"] = masked
            out[f"{name}_hash"] = pii.pseudonym(master, "phone", value)
        else:
            out[name] = value
    return out


def seal_identity_traits(events: list[Event], master: pii.MasterKey) -> list[Event]:
    sealed = []
    for event in events:
        traits = event.properties.get("traits") if event.name == "identify" else None
        if isinstance(traits, dict) and traits:
            properties = {**event.properties, "traits": _sealed_traits(traits, master)}
            event = event.model_copy(update={"properties": properties})
        sealed.append(event)
    return sealed
