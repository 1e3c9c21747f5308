"""The download pipeline: planner → ranged fetchers → reassembler → sink.

``planner`` decides the byte ranges (pure), ``fetcher`` sends the ranged GETs
(resumed where a connection broke, pinned to one ETag), ``reassembler`` puts
finished ranges back in order for sinks that need it, ``sink`` writes them
(a file at offsets, or any ordered writer) and ``pipeline`` is the task group
that wires them.
"""
