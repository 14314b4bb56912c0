"""The demo shop's catalog, loaded into the product catalog when the local stack starts.

The demo shop publishes its product feed (``GET /demo/products.json``) in the shape
``PUT /v1/products`` takes; the stack upserts it with the server key, as any store
backend keeps its catalog current. Messages about the demo's products then name
them, price them and show their pictures (served by the demo at ``/demo/images/``).
"""

import httpx


def load_demo_catalog(api_url: str, server_key: str, timeout_s: float = 10.0) -> int:
    """Upsert the demo shop's products; returns how many. Raises ``httpx.HTTPError``."""
    with httpx.Client(base_url=api_url, timeout=timeout_s) as client:
        feed = client.get("/demo/products.json")
        feed.raise_for_status()
        answer = client.put(
            "/v1/products",
            json=feed.json(),
            headers={"Authorization": f"Bearer {server_key}"},
        )
        answer.raise_for_status()
        return int(answer.json()["upserted"])
