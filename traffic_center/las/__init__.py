"""The reference LAS: a school's endpoint as the Traffic Center calls it, and a doel client.

Used by the demo, the tests and LAS vendors as a worked example. It talks to the TC only
through the public HTTP contract (:mod:`traffic_center.domain.las_contract`).

Import from the modules themselves (``las.bron.ReferenceLas``, ``las.doel.DoelClient``,
``las.server.LasServer``, ``las.config.LasConfig``, …): this package imports nothing, so the
CLI can read the test school's defaults (``las.scenarios``) without loading Starlette or httpx.
"""
