"""README.md says what the schema does (design.md: ``body`` is optional, default "")."""

from __future__ import annotations

from app.schemas import IssueCreate
from tests.support.processes import ROOT


def test_readme_and_schema_agree_that_body_is_optional() -> None:
    readme = (ROOT / "README.md").read_text()
    [row] = [line for line in readme.splitlines() if line.startswith("| `POST /issues` `{")]
    assert '"body"?: str' in row
    assert 'default `""`' in row
    assert IssueCreate.model_fields["body"].is_required() is False
    assert IssueCreate(title="t").body == ""


def test_the_walk_through_takes_the_id_from_the_post_answer() -> None:
    readme = (ROOT / "README.md").read_text()
    walk_through = readme[readme.index("## Walk-through") : readme.index("## HTTP API")]
    assert "/issues/1" not in walk_through
    assert '["issue"]["id"]' in walk_through
