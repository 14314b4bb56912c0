"""Campaign launches: due campaigns become members and messages on ``nudges``.

See docs/segments.md. ``launcher`` does one launch; ``command`` is the
``intentflow campaigns`` loop that finds due campaigns.
"""
