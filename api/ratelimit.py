"""Per-key token buckets, counted in events, kept in this process.

One API process enforces its own share; with N processes behind a balancer a
key gets up to N times the configured rate, which is what the limit is for:
keeping one storefront from starving the others, not billing.
"""

import time
from dataclasses import dataclass

from fastapi import HTTPException, status


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    def __init__(self, rate_per_s: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, count: int, now: float | None = None) -> float:
        """Take ``count`` tokens: 0.0 when granted, else the seconds until they would be."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.clear()  # keys are configured, so this only bounds memory
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate_per_s)
        bucket.updated = now
        if count <= bucket.tokens:
            bucket.tokens -= count
            return 0.0
        if count > self.burst or self.rate_per_s <= 0:
            return float("inf")
        return (count - bucket.tokens) / self.rate_per_s


def take_or_refuse(buckets: TokenBuckets, key: str, count: int) -> None:
    """Take ``count`` events of the key's rate, or raise a 429 saying when to retry (an
    hour when the request alone is larger than the burst: it can never pass)."""
    wait_s = buckets.take(key, count)
    if wait_s:
        retry_after = "3600" if wait_s == float("inf") else str(max(1, round(wait_s + 0.5)))
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail="rate limit exceeded for this key",
            headers={"Retry-After": retry_after},
        )
