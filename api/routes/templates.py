"""``/v1/templates``: message variants drafted by the optional language model (admin key).

``POST /v1/templates/{kind}/drafts`` asks the model configured in api/llm.py for
variants of a nudge kind's message, validates each exactly as the rules file will
(``schemas.variants.TemplateVariant``, placeholders limited to the kind's own,
the SMS carrying its link) and answers the valid ones as the YAML an operator pastes
under ``dispatch.templates.<kind>.variants``, with the rejected ones and why.
Nothing is applied here: the rules file is the approval. docs/dispatch.md.
"""

import re
import string
from typing import Annotated, Any, Literal

import yaml
from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field, ValidationError

from api.auth import AdminCaller
from api.deps import ClickHouseDep
from api.errors import json_safe
from api.llm import LanguageModelDep, ModelFailed
from api.privacy.audit import record_action
from api.routing import GuardedRoute
from schemas.messages import NudgeKind
from schemas.templates import TEMPLATES, placeholders_of
from schemas.variants import TemplateVariant

router = APIRouter(prefix="/v1/templates", tags=["templates"], route_class=GuardedRoute)

MAX_DRAFTS = 5
MAX_TEXT = 1000
DRAFTED = ("title", "body", "button", "sms")
_NOT_A_NAME = re.compile(r"[^a-z0-9_]+")
NO_MODEL = (
    "drafting is off: no language model is configured (INTENTFLOW_SEGMENT_LLM_URL, "
    "docs/dispatch.md)"
)


class DraftRequest(BaseModel):
    count: Annotated[int, Field(ge=1, le=MAX_DRAFTS)] = 3
    # What the operator wants of the variants (tone, angle); sent to the model as is.
    brief: Annotated[str, Field(max_length=500)] | None = None


class RejectedDraft(BaseModel):
    index: int
    draft: Any  # what the model proposed, bounded
    reason: str


class Drafts(BaseModel):
    kind: NudgeKind
    drafts: list[TemplateVariant]
    # The valid drafts as YAML list items, to paste under dispatch.templates.<kind>.variants.
    yaml: str
    rejected: list[RejectedDraft]
    applied: Literal[False] = False
    how_to_apply: str


def kind_placeholders(kind: str) -> set[str]:
    """The placeholders the kind's own message uses: all a variant of it may use."""
    own = TEMPLATES[kind]
    return set().union(*(placeholders_of(t) for t in (own.title, own.body, own.button, own.sms)))


def _instructions(kind: str, count: int) -> str:
    own = TEMPLATES[kind]
    allowed = ", ".join(f"{{{p}}}" for p in sorted(kind_placeholders(kind)))
    return (
        f"You write {count} alternative wordings of a store's '{kind}' message to a shopper. "
        f"Its current wording: title {own.title!r}; body {own.body!r}; button {own.button!r}; "
        f"SMS {own.sms!r}. Answer JSON only: "
        '{"variants": [{"name": "short_snake_case", "title": "...", "body": "...", '
        '"button": "...", "sms": "..."}]} '
        f"with exactly {count} items. Use only these placeholders, in braces: {allowed}; "
        "{name} is the shopper's first name, {product} the product, {discount} the "
        "percentage without the % sign, {cta} the link. The SMS must contain {cta}. "
        "No other braces. Keep the button under 20 characters and the SMS under 300."
    )


def _unique_name(raw: Any, index: int, taken: set[str]) -> str:
    base = _NOT_A_NAME.sub("_", str(raw or "").lower()).strip("_")[:60] or f"draft_{index + 1}"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def _reasons(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'draft'}: {e['msg']}" for e in exc.errors())


def check_draft(kind: str, raw: Any, index: int, taken: set[str]) -> TemplateVariant:
    """One drafted variant, validated as the rules file will; ValueError says why not."""
    if not isinstance(raw, dict):
        raise ValueError("not an object")
    extra = sorted(set(raw) - {"name", *DRAFTED})
    if extra:
        raise ValueError(
            f"fields {extra} are not drafted: only name, {', '.join(DRAFTED)}"
            " (a WhatsApp template must be approved in the account first)"
        )
    texts = {f: raw[f] for f in DRAFTED if raw.get(f) is not None}
    if not texts:
        raise ValueError("sets no text: it would be the kind's own message")
    long = [f for f, t in texts.items() if isinstance(t, str) and len(t) > MAX_TEXT]
    if long:
        raise ValueError(f"{', '.join(long)} longer than {MAX_TEXT} characters")
    try:
        variant = TemplateVariant(name=_unique_name(raw.get("name"), index, taken), **texts)
    except ValidationError as exc:
        raise ValueError(_reasons(exc)) from None
    allowed = kind_placeholders(kind)
    for field, text in variant.texts().items():
        foreign = sorted(placeholders_of(text) - allowed)
        if foreign:
            raise ValueError(f"{field}: placeholders {foreign} are not {kind}'s")
        if any(p and (spec or conv) for _, p, spec, conv in string.Formatter().parse(text)):
            raise ValueError(f"{field}: placeholders take no format spec or conversion")
    if variant.sms is not None and "cta" not in placeholders_of(variant.sms):
        raise ValueError("sms: has no {cta}: the shopper would get no link")
    return variant


def as_yaml(variants: list[TemplateVariant]) -> str:
    """The variants as YAML list items, as they are written in the rules file."""
    if not variants:
        return ""
    items = [v.model_dump(exclude_none=True) for v in variants]
    return yaml.safe_dump(items, sort_keys=False, allow_unicode=True, width=1000)


@router.post(
    "/{kind}/drafts",
    response_model=Drafts,
    responses={
        404: {"description": "No language model is configured: drafting is off."},
        502: {"description": "The language model failed, or answered no variants list."},
    },
)
async def draft_variants(
    kind: NudgeKind,
    request: DraftRequest,
    caller: AdminCaller,
    clickhouse: ClickHouseDep,
    model: LanguageModelDep,
) -> Drafts:
    """Variants of the kind's message drafted by the language model; nothing is applied."""
    if model is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_MODEL)
    asked = request.brief or "Vary the tone and the angle."
    try:
        answer = await model.ask_json(_instructions(kind, request.count), asked, temperature=0.7)
    except ModelFailed as exc:
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY, f"the language model failed: {exc}"
        ) from None
    proposed = answer.get("variants") if isinstance(answer, dict) else None
    if not isinstance(proposed, list) or not proposed:
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY, 'the language model answered no "variants" list'
        )
    drafts, rejected, taken = [], [], set()
    for index, raw in enumerate(proposed[: request.count]):
        try:
            drafts.append(check_draft(kind, raw, index, taken))
        except ValueError as exc:
            rejected.append(RejectedDraft(index=index, draft=json_safe(raw), reason=str(exc)))
    if len(proposed) > request.count:
        extra = len(proposed) - request.count
        reason = f"{extra} more than the {request.count} asked for, ignored"
        rejected.append(RejectedDraft(index=request.count, draft=None, reason=reason))
    await record_action(
        clickhouse,
        caller,
        "template_drafts",
        detail=f"{kind}: {len(drafts)} drafted, {len(rejected)} rejected",
    )
    return Drafts(
        kind=kind,
        drafts=drafts,
        yaml=as_yaml(drafts),
        rejected=rejected,
        how_to_apply=(
            f"Nothing is applied: the rules file is the approval. Paste the YAML under "
            f"dispatch.templates.{kind}.variants (two or more variants make a choice) "
            "and deploy the rules."
        ),
    )
