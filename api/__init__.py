"""The HTTP API: collector, metrics, admin, tokens, the tracker and the demo storefront."""
