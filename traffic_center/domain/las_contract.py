"""What the Traffic Center sends to a school's LAS endpoint, and what it expects back.

Both the relay (the TC's side) and the reference LAS (the school's side) use these names, so
the two can never disagree about a header or a path.
"""
# Rule numbers refer to docs/rules.md.

from __future__ import annotations

# Paths appended to an endpoint's registered URL: https://las.example/oso → …/oso/dossier.
DOSSIER_PATH = "/dossier"
NOTIFICATION_PATH = "/notification"
# The SWV's feedback (meldenTerugkoppelingRequest), delivered to the school's endpoint.
FEEDBACK_PATH = "/terugkoppeling"

# Request headers the TC sets on every call to a LAS.
SESSION_HEADER = "X-OSO-Sessie-Id"
TRANSACTION_HEADER = "X-OSO-Transactie-Id"
TRACEPARENT_HEADER = "traceparent"

# Response header by which the bron attests the parents' release (domain rule 8); its value
# is a ``traffic_center.domain.rules.ParentRelease``: "inzage" or "toestemming".
RELEASE_HEADER = "X-OSO-Vrijgave"

DOSSIER_MEDIA_TYPE = "application/xml"
# RFC 9457: every refusal, the Traffic Center's and a LAS's result codes alike.
PROBLEM_MEDIA_TYPE = "application/problem+json"
# The relay's Accept on a dossier request: the dossier, or a result code as a problem.
DOSSIER_ACCEPT = f"{DOSSIER_MEDIA_TYPE}, {PROBLEM_MEDIA_TYPE}"
DOSSIER_NAMESPACE = "http://www.edustandaard.nl/oso_gegevensset/2019/dossier"
