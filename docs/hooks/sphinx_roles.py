"""MkDocs hook: turn the Sphinx roles of the code's docstrings into links.

Docstrings write cross-references the Sphinx way, ``:class:`~hlmat_env.actions.Click``` or
``:func:`next_click```. Markdown renders those as the role's name followed by inline code. This hook
replaces each by the code alone (``~`` keeps only the last component, as in Sphinx), wrapped in an optional
mkdocs-autorefs reference: a full dotted path that the API pages document becomes a link; anything else (a
relative name) stays plain code, with no warning.
"""
from __future__ import annotations

import html
import re

ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|data|attr|exc|obj|const):<code>(~?)([A-Za-z_.][\w.]*)(\(\))?</code>")


def _replace(m: re.Match) -> str:
    tilde, target, parens = m.group(1), m.group(2), m.group(3) or ""
    title = (target.rsplit(".", 1)[-1] if tilde else target.lstrip(".")) + parens
    if "." not in target.strip("."):
        return f"<code>{html.escape(title)}</code>"
    return f'<autoref identifier="{html.escape(target)}" optional><code>{html.escape(title)}</code></autoref>'


def on_page_content(content: str, page, **kwargs) -> str:
    return ROLE.sub(_replace, content)
