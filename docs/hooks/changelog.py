"""MkDocs hook: the Changelog page shows the repository's CHANGELOG.md.

docs/changelog.md holds the marker `<!-- CHANGELOG.md -->`, which this hook replaces with the
text of CHANGELOG.md (beside mkdocs.yml). That file is written for the repository root, so its
relative links are rewritten for a page at the root of the site: `docs/X` becomes `X`, and a
link to another file of the repository (source, benchmarks), which the site does not hold,
becomes its plain text. A missing CHANGELOG.md is a warning, so `mkdocs build --strict` fails.
"""

import logging
import os
import re

log = logging.getLogger("mkdocs.hooks.changelog")
MARKER = "<!-- CHANGELOG.md -->"
_INLINE = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
_REFERENCE = re.compile(r"^(\[[^\]]+\]:\s*)(\S+)", re.M)


def _external(target):
  return target.startswith(("http://", "https://", "mailto:", "#"))


def _inline(match):
  bang, text, target = match.groups()
  if _external(target):
    return match.group(0)
  if target.startswith("docs/"):
    return f"{bang}[{text}]({target[len('docs/'):]})"
  return text


def _reference(match):
  label, target = match.groups()
  if target.startswith("docs/"):
    return label + target[len("docs/"):]
  return match.group(0)


def on_page_markdown(markdown, page, config, files):  # pylint: disable=unused-argument
  """Replaces the marker of the changelog page with the rewritten CHANGELOG.md."""
  if MARKER not in markdown:
    return markdown
  path = os.path.join(os.path.dirname(config.config_file_path), "CHANGELOG.md")
  if not os.path.exists(path):
    log.warning("%s shows CHANGELOG.md, but %s does not exist", page.file.src_uri, path)
    return markdown.replace(MARKER, "")
  with open(path, encoding="utf-8") as f:
    text = f.read()
  text = _REFERENCE.sub(_reference, _INLINE.sub(_inline, text))
  return markdown.replace(MARKER, text)
