"""``/v1/segments``: rule-built audiences over the warehouse's profiles (admin key).

Rules are the JSON tree of schemas/segments.py, validated against its field
whitelist (422 naming the field and reason); previews count and sample the
``profiles`` view with masked contact data; ``parse`` reads an English phrase
into a rule tree, or says which words it did not understand. docs/segments.md.
"""

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from api.auth import AdminCaller
from api.deps import ClickHouseDep
from api.llm import LanguageModelDep, ModelFailed
from api.lookalikes import Lookalikes, TooFewToLearn, rank_lookalikes
from api.params import SegmentIdPath, TagQuery
from api.privacy.audit import actor_of, record_action
from api.queries.lookalikes import profile_features
from api.queries.segments import (
    StoredSegment,
    list_segments,
    load_segment,
    mask_identifier,
    preview,
    save_segment,
)
from api.routing import GuardedRoute
from schemas.segment_phrases import parse_phrase
from schemas.segments import FIELDS, MAX_LIST, OPERATORS, Condition, Group, load_rule
from schemas.tags import segment_tags
from schemas.time import from_ms, now_ms

router = APIRouter(prefix="/v1/segments", tags=["segments"], route_class=GuardedRoute)


class SegmentRequest(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    description: Annotated[str, Field(max_length=1000)] = ""
    rules: Group


class SegmentResponse(BaseModel):
    segment_id: str
    name: str
    description: str
    rules: Group
    created_at: datetime
    # Derived from the rule each time (schemas/tags.py): e.g. win-back, high-value.
    tags: list[str]


class SegmentList(BaseModel):
    segments: list[SegmentResponse]


class MaskedProfile(BaseModel):
    # The user key, masked when it is an e-mail address or a phone number.
    user: str
    total_spend: float
    orders: int
    visits: int
    first_seen: str | None
    last_seen: str | None
    last_order: str | None
    top_categories: list[str]
    intent_score: float
    tier: str
    channels: list[str]
    country: str
    device: str
    # Masked as everywhere else (schemas.pii.mask_phone): "+91 ••••••9721".
    phone: str | None


class SegmentPreview(BaseModel):
    segment_id: str
    size: int
    as_of: datetime
    sample: list[MaskedProfile]


class LookalikeRequest(BaseModel):
    # How many non-members to offer (a segment lists at most MAX_LIST user keys).
    size: Annotated[int, Field(ge=1, le=MAX_LIST)] = 100
    # Store the lookalikes as a new segment (its rule lists their user keys).
    save: bool = False
    name: Annotated[str, Field(min_length=1, max_length=128)] | None = None


class RankedProfile(BaseModel):
    user: str  # masked as in previews
    score: float  # the model's probability of being a member


class LookalikeResponse(BaseModel):
    segment_id: str
    members: int
    candidates: int
    auc: float
    features: list[str]
    # The offered audience as a rule (user_key in [...]), ready for POST /v1/segments.
    rules: Group
    sample: list[RankedProfile]
    saved: SegmentResponse | None


class ParseRequest(BaseModel):
    text: Annotated[str, Field(min_length=1, max_length=500)]


class ClauseReading(BaseModel):
    text: str
    conditions: list[Condition]


class ParsedRules(BaseModel):
    rules: Group
    # "phrases": the deterministic parser; "llm": the configured language model.
    source: Literal["phrases", "llm"]
    clauses: list[ClauseReading]


def _response(segment: StoredSegment) -> SegmentResponse:
    return SegmentResponse(
        segment_id=segment.segment_id,
        name=segment.name,
        description=segment.description,
        rules=segment.rules,
        created_at=segment.created_at,
        tags=segment_tags(segment.rules),
    )


@router.post("", response_model=SegmentResponse, status_code=status.HTTP_201_CREATED)
async def create_segment(
    request: SegmentRequest, caller: AdminCaller, clickhouse: ClickHouseDep
) -> SegmentResponse:
    segment = StoredSegment(
        segment_id=uuid.uuid4().hex,
        name=request.name,
        description=request.description,
        rules=request.rules,
        created_at=datetime.now(UTC),
        created_by=actor_of(caller),
    )
    await asyncio.to_thread(save_segment, clickhouse, segment)
    await record_action(clickhouse, caller, "segment_create", detail=segment.segment_id)
    return _response(segment)


@router.get("", response_model=SegmentList)
async def get_segments(
    caller: AdminCaller,
    clickhouse: ClickHouseDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    tag: TagQuery = None,
) -> SegmentList:
    """The newest segments; with ``tag``, the newest of those carrying it."""
    found = await asyncio.to_thread(list_segments, clickhouse, limit if tag is None else None)
    answers = [_response(s) for s in found]
    return SegmentList(segments=[a for a in answers if tag is None or tag in a.tags][:limit])


async def _stored(clickhouse: ClickHouseDep, segment_id: str) -> StoredSegment:
    segment = await asyncio.to_thread(load_segment, clickhouse, segment_id)
    if segment is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such segment")
    return segment


@router.get("/{segment_id}", response_model=SegmentResponse)
async def get_segment(
    segment_id: SegmentIdPath, caller: AdminCaller, clickhouse: ClickHouseDep
) -> SegmentResponse:
    return _response(await _stored(clickhouse, segment_id))


@router.get("/{segment_id}/preview", response_model=SegmentPreview)
async def preview_segment(
    segment_id: SegmentIdPath,
    caller: AdminCaller,
    clickhouse: ClickHouseDep,
    sample: Annotated[int, Query(ge=0, le=100)] = 20,
) -> SegmentPreview:
    """How many profiles the segment holds now, and a sample of them (contact data masked)."""
    segment = await _stored(clickhouse, segment_id)
    as_of_ms = now_ms()
    size, rows = await asyncio.to_thread(preview, clickhouse, segment.rules, as_of_ms, sample)
    return SegmentPreview(
        segment_id=segment_id,
        size=size,
        as_of=from_ms(as_of_ms),
        sample=[MaskedProfile(**row) for row in rows],
    )


# Profiles the model learns from, most recently seen first (memory and time bounded).
LOOKALIKE_PROFILES = 200_000
LOOKALIKE_SAMPLE = 20


@router.post(
    "/{segment_id}/lookalike",
    response_model=LookalikeResponse,
    responses={
        404: {"description": "No such segment."},
        422: {"description": "An invalid body, or too few members to learn from."},
    },
)
async def lookalike_segment(
    segment_id: SegmentIdPath,
    request: LookalikeRequest,
    caller: AdminCaller,
    clickhouse: ClickHouseDep,
) -> LookalikeResponse:
    """Shoppers outside the segment who behave most like its members (api/lookalikes.py),
    ranked, as a rule; saved as a new segment when asked."""
    segment = await _stored(clickhouse, segment_id)

    def learn() -> Lookalikes:
        rows = profile_features(clickhouse, segment.rules, now_ms(), LOOKALIKE_PROFILES)
        return rank_lookalikes(rows, request.size)

    try:
        found = await asyncio.to_thread(learn)
    except TooFewToLearn as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    keys = [key for key, _ in found.ranked]
    # Never empty: there is someone outside the segment, and size is at least one.
    rules = load_rule({"op": "AND", "rules": [{"field": "user_key", "op": "in", "value": keys}]})
    saved = None
    if request.save:
        wanted = SegmentRequest(
            name=request.name or f"Lookalike of {segment.name}"[:128],
            description=(
                f"The {len(keys)} non-members most like “{segment.name}” "
                f"(logistic regression over profile features, AUC {found.auc:.2f})."
            )[:1000],
            rules=rules,
        )
        saved = await create_segment(wanted, caller, clickhouse)
    return LookalikeResponse(
        segment_id=segment_id,
        members=found.members,
        candidates=found.candidates,
        auc=found.auc,
        features=found.features,
        rules=rules,
        sample=[
            RankedProfile(user=mask_identifier(key), score=score)
            for key, score in found.ranked[:LOOKALIKE_SAMPLE]
        ],
        saved=saved,
    )


def _not_understood(words: list[str], extra: str = "") -> RequestValidationError:
    listed = ", ".join(repr(w) for w in words)
    return RequestValidationError(
        [
            {
                "loc": ("body", "text"),
                "msg": f"did not understand: {listed}{extra} (see docs/segments.md)",
                "type": "value_error",
                "unknown_words": words,
            }
        ]
    )


def _rule_instructions() -> str:
    """What the language model is told when asked for a rule tree."""
    fields = "\n".join(
        f"- {name} ({spec.type}; operators {', '.join(sorted(OPERATORS[spec.type]))})"
        f"{': ' + ', '.join(spec.choices) if spec.choices else ''}"
        for name, spec in FIELDS.items()
    )
    return (
        "Turn the user's description of a customer segment into JSON only: a group "
        '{"op": "AND"|"OR", "rules": [...]} of conditions {"field", "op", "value"} or '
        "nested groups. Times are ISO-8601 with a zone; inactive_days and within_days "
        "take whole days; in/not_in take lists; between takes [low, high]. Fields:\n" + fields
    )


@router.post("/parse", response_model=ParsedRules)
async def parse_segment(
    request: ParseRequest, caller: AdminCaller, model: LanguageModelDep
) -> ParsedRules:
    """An English description → a rule tree; 422 lists the words not understood.

    A phrase the deterministic parser cannot read goes to the language model when one
    is configured (api/llm.py); its answer is validated like any client's rules."""
    parsed = parse_phrase(request.text)
    clauses = [ClauseReading(text=t, conditions=c) for t, c in parsed.clauses]
    if parsed.rule is not None:
        return ParsedRules(rules=parsed.rule, source="phrases", clauses=clauses)
    if model is None:
        raise _not_understood(parsed.unknown)
    try:
        rule = load_rule(await model.ask_json(_rule_instructions(), request.text))
    except ValidationError:
        raise _not_understood(parsed.unknown, "; the language model's rules were invalid") from None
    except ModelFailed as exc:
        raise _not_understood(parsed.unknown, f"; the language model failed: {exc}") from None
    return ParsedRules(rules=rule, source="llm", clauses=[])
