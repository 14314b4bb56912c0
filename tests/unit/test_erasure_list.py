"""The erasure list: a record is erased exactly when one of its ids was erased at or
after the record was received; the list holds keyed hashes, never the ids."""

from hypothesis import given
from hypothesis import strategies as st

from schemas.erasure import ErasureList, subject_hash
from schemas.pii import MasterKey

MASTER = MasterKey.from_secret("test-pii-master-key")
IDS = st.text(min_size=1, max_size=12)
TIMES = st.integers(0, 10_000)


@given(
    erasures=st.lists(st.tuples(IDS, TIMES), max_size=8),
    user_id=st.one_of(st.none(), IDS),
    anonymous_id=IDS,
    received=TIMES,
)
def test_a_record_is_erased_exactly_when_an_id_of_it_was_erased_after_it_arrived(
    erasures: list[tuple[str, int]], user_id: str | None, anonymous_id: str, received: int
):
    rows = [(subject_hash(MASTER, subject), at) for subject, at in erasures]
    listed = ErasureList(MASTER, rows)
    latest: dict[str, int] = {}
    for subject, at in erasures:
        latest[subject] = max(at, latest.get(subject, at))
    expected = any(
        subject in latest and received <= latest[subject] for subject in (user_id, anonymous_id)
    )
    assert listed.covers(user_id, anonymous_id, received) is expected
    # Added one by one (the engine's erase commands), the answer is the same.
    added = ErasureList(MASTER)
    for subject, at in erasures:
        added.add(subject, at)
    assert added.covers(user_id, anonymous_id, received) is expected


@given(subject=IDS)
def test_hashes_are_keyed_exact_and_never_the_id(subject: str):
    digest = subject_hash(MASTER, subject)
    if len(subject) >= 8:
        assert subject not in digest
    assert digest != subject_hash(MasterKey.from_secret("another-key"), subject)
    assert digest != subject_hash(MASTER, subject + " ")  # ids are case- and space-exact
