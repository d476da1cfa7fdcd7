"""Every template parses into what its author meant: no template syntax is left to show as text.

Django's ``{# ... #}`` comment ends on its line; one written over two lines is
not a comment but text, and the page shows it. The lexer says what is text.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.template.base import Lexer, TokenType

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = sorted((ROOT / "templates").rglob("*.html"))
MARKERS = ("{#", "#}", "{%", "%}", "{{", "}}")


def test_there_are_templates_to_check():
    assert len(TEMPLATES) > 20


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_template_syntax_is_left_as_text(path):
    leftovers = [
        (token.lineno, token.contents.strip()[:80])
        for token in Lexer(path.read_text()).tokenize()
        if token.token_type == TokenType.TEXT and any(marker in token.contents for marker in MARKERS)
    ]
    assert leftovers == []
