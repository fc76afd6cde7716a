"""Every answer a test party gets is one the published contract declares for its operation.

The parties' clients (tests/support/world.py) log each answer here; a test module that uses
the ``answers_documented`` fixture then fails on any answer whose status, problem ``code`` or
``X-OSO-Transactie-Id`` header its operation in openapi.yaml does not list. The codes are read
from the contract, never written a second time in a test: an error a route's code path raises
but its declaration omits shows up as soon as a test provokes it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from traffic_center.domain.las_contract import TRANSACTION_HEADER

ROOT = Path(__file__).resolve().parent.parent.parent
PROBLEM_MEDIA_TYPE = "application/problem+json"
# README: "Any path may answer 404 NietGevonden or 405 MethodeNietToegestaan" (a path or a
# method no operation has); the contract lists them for no operation.
_ANY_PATH = {(404, "NietGevonden"), (405, "MethodeNietToegestaan")}


@dataclass(frozen=True, slots=True)
class Answer:
    method: str
    path: str
    status: int
    code: str | None
    headers: frozenset[str]  # the names, lower case


ANSWERS: list[Answer] = []


async def record_answer(response: httpx.Response) -> None:
    """httpx response hook: note the answer (a problem's body is small, so it is read here)."""
    code = None
    if response.headers.get("content-type", "").startswith(PROBLEM_MEDIA_TYPE):
        await response.aread()
        code = response.json().get("code")
    ANSWERS.append(
        Answer(
            response.request.method,
            response.request.url.path,
            response.status_code,
            code,
            frozenset(name.lower() for name in response.headers),
        )
    )


@functools.cache
def _operations() -> list[tuple[re.Pattern[str], str, dict[str, Any]]]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    found = []
    for template, item in document["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
        found += [(pattern, method.upper(), operation) for method, operation in item.items()]
    return found


def _operation(method: str, path: str) -> dict[str, Any] | None:
    for pattern, declared_method, operation in _operations():
        if declared_method == method and pattern.match(path):
            return operation
    return None


def undocumented(answer: Answer) -> str | None:
    """What the contract does not say about this answer, if anything."""
    operation = _operation(answer.method, answer.path)
    if operation is None or (answer.status, answer.code) in _ANY_PATH:
        return None
    where = f"{answer.method} {answer.path} answered {answer.status} {answer.code or ''}"
    declared = operation["responses"].get(str(answer.status))
    if declared is None:
        return f"{where}: status not declared"
    if answer.code is not None and answer.code not in declared.get("x-codes", []):
        return f"{where}: code not in x-codes {declared.get('x-codes')}"
    headers = {name.lower() for name in declared.get("headers", {})}
    if TRANSACTION_HEADER.lower() in answer.headers - headers:
        return f"{where}: {TRANSACTION_HEADER} sent but not declared"
    return None


def faults_since(start: int) -> list[str]:
    """What the contract does not declare among the answers logged after the first ``start``."""
    return sorted({f for a in ANSWERS[start:] if (f := undocumented(a)) is not None})


def assert_documented(response: httpx.Response) -> None:
    """This one answer (already read) is one its operation in openapi.yaml declares."""
    code = None
    if response.headers.get("content-type", "").startswith(PROBLEM_MEDIA_TYPE):
        code = response.json().get("code")
    names = frozenset(name.lower() for name in response.headers)
    answer = Answer(
        response.request.method, response.request.url.path, response.status_code, code, names
    )
    assert undocumented(answer) is None, undocumented(answer)
