"""The collector's personal-data steps: no e-mail or phone in clear gets past it.

1. ``pseudonymise_ids``: a ``user_id`` or ``anonymous_id`` that is (or holds) an
   e-mail or phone becomes its token (``[email:<keyed hash>]``), the same for the
   same person every time, before the consent store keys anything by it.
2. ``seal_identity_traits``: the documented ``identify`` traits that are e-mails
   or phones are replaced by their masked form (for people to recognise) and a
   keyed hash (for systems to match).
3. ``redact_events``: every other string the collector accepts — nested traits,
   lists, custom and consent properties, keys, search queries, URLs and their
   query strings, page titles, campaign fields — is searched by pattern
   (schemas/pii.py ``redact_text``, as Snowplow's PII enrichment and Segment's
   privacy tooling do) and each e-mail or phone found is replaced by its token; a
   field named like a phone (``tel``, ``whatsapp``, "Phone Number") is a phone if
   it holds 7 digits or more, whatever their format.

All before anything is produced: the immutable log never holds the identifier.
"""

from typing import Any

from schemas import pii
from schemas.events import Context, Event

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


def pseudonymise_ids(events: list[Event], master: pii.MasterKey) -> list[Event]:
    out = []
    for event in events:
        update = {}
        for name in ("user_id", "anonymous_id"):
            value = getattr(event, name)
            if value is not None:
                redacted = pii.redact_id(master, value)
                if redacted is not value:
                    update[name] = redacted
        out.append(event.model_copy(update=update) if update else event)
    return out


def _redact(value: Any, master: pii.MasterKey, phone_field: bool) -> Any:
    """``value`` with its e-mails and phones replaced; the same object when it holds none."""
    if isinstance(value, str):
        return pii.redact_text(master, value, phone_field)
    if isinstance(value, dict):
        changed = False
        out = {}
        for key, item in value.items():
            new_key = pii.redact_text(master, key) if isinstance(key, str) else key
            new_item = _redact(item, master, isinstance(key, str) and pii.is_phone_field(key))
            changed = changed or new_key is not key or new_item is not item
            out[new_key] = new_item
        return out if changed else value
    if isinstance(value, list):
        items = [_redact(item, master, phone_field) for item in value]
        changed = any(new is not old for new, old in zip(items, value, strict=True))
        return items if changed else value
    return value


def _context_strings(context: Context) -> str:
    parts = [context.user_agent, context.locale, context.timezone]
    for model in (context.page, context.campaign):
        if model is not None:
            parts.extend(model.__dict__.values())
    return "\x00".join(p for p in parts if isinstance(p, str))


def _redact_context(context: Context, master: pii.MasterKey) -> Context:
    # One first look at all its strings together (a separator no finding spans):
    # the context of most events holds nothing. Country and device are patterns
    # and choices: they cannot hold an identifier.
    if not pii.may_hold_personal(_context_strings(context)):
        return context
    update: dict[str, Any] = {}
    for name, model in (("page", context.page), ("campaign", context.campaign)):
        if model is not None:
            changes = _changed_strings(model, type(model).model_fields, master)
            if changes:
                update[name] = model.model_copy(update=changes)
    update.update(_changed_strings(context, ("user_agent", "locale", "timezone"), master))
    return context.model_copy(update=update) if update else context


def _changed_strings(model: Any, names: Any, master: pii.MasterKey) -> dict[str, str]:
    changed = {}
    for name in names:
        value = getattr(model, name)
        if isinstance(value, str):
            new = pii.redact_text(master, value)
            if new is not value:
                changed[name] = new
    return changed


def redact_events(events: list[Event], master: pii.MasterKey) -> list[Event]:
    out = []
    for event in events:
        update: dict[str, Any] = {}
        properties = _redact(event.properties, master, False)
        if properties is not event.properties:
            update["properties"] = properties
        context = _redact_context(event.context, master)
        if context is not event.context:
            update["context"] = context
        if event.session_id is not None:
            session = pii.redact_text(master, event.session_id)
            if session is not event.session_id:
                update["session_id"] = session
        out.append(event.model_copy(update=update) if update else event)
    return out
