"""Public documentation on the vendor listener: the contract and a page per problem code.

Both routes need no registered endpoint: any caller that completed the mTLS handshake (so holds
a certificate of the Traffic Center's CA) may read them, including a vendor whose endpoint is
not registered yet. They are the same for every caller, touch no store and are not exchanges,
so they are not on the record (docs/rules.md, "Every exchange on the record").
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam
from starlette.responses import Response

from traffic_center.api.problems import ProblemPage, problem_pages
from traffic_center.api.responses import SCREENED_ERRORS, problem_responses
from traffic_center.domain import errors as e

router = APIRouter(tags=["documentation"])

# RFC 9512: the YAML media type; RFC 7763: Markdown.
YAML_MEDIA_TYPE = "application/yaml"
MARKDOWN_MEDIA_TYPE = "text/markdown; charset=utf-8"
CONTRACT_RESOURCE = "openapi.yaml"


@cache
def published_contract() -> bytes:
    """The checked-in contract, shipped as package data (api/openapi.yaml): byte for byte the
    document the tests validated, read once on first use, and no YAML library at run time."""
    return resources.files("traffic_center.api").joinpath(CONTRACT_RESOURCE).read_bytes()


@router.get(
    "/v1/openapi.yaml",
    summary="This API's contract (OpenAPI 3.1, YAML)",
    response_class=Response,
    responses={
        200: {
            "description": "The same document as `openapi.yaml` in the repository",
            "content": {
                YAML_MEDIA_TYPE: {
                    "schema": {"type": "object", "required": ["openapi", "info", "paths"]},
                    "example": "openapi: 3.1.0\ninfo:\n  title: OSO Traffic Center\n",
                }
            },
        },
        **problem_responses(*SCREENED_ERRORS),
    },
)
async def openapi_yaml() -> Response:
    return Response(published_contract(), media_type=YAML_MEDIA_TYPE)


_CODE = PathParam(
    max_length=64,
    description="a problem `code`, as in a Problem's `type`",
    json_schema_extra={"pattern": "^[A-Za-z]{1,64}$", "examples": ["SessieVerlopen"]},
)


@router.get(
    "/v1/problems/{code}",
    summary="What a problem code means (the target of every Problem `type`)",
    response_class=Response,
    responses={
        200: {
            "description": "A short page in Markdown: the code, its status and what to do",
            "content": {
                MARKDOWN_MEDIA_TYPE: {
                    "schema": {"type": "string"},
                    "example": "# SessieVerlopen\n\nHTTP status 410.\n\nThe session has expired\n",
                }
            },
        },
        **problem_responses(*SCREENED_ERRORS, e.NotFound),
    },
)
async def problem_page(code: Annotated[str, _CODE]) -> Response:
    page = problem_pages().get(code)
    if page is None:
        raise e.NotFound("no such problem code")
    return Response(render(page), media_type=MARKDOWN_MEDIA_TYPE)


def render(page: ProblemPage) -> str:
    lines = [f"# {page.code}", "", f"HTTP status {page.status}.", "", page.title]
    if page.explanation:
        lines += ["", page.explanation]
    return "\n".join(lines) + "\n"
