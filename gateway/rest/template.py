"""google.api.http path templates, compiled to regular expressions.

Grammar (google/api/http.proto): `/seg/{var=pattern}/seg:verb`, where a
pattern is segments of literals, `*` (one segment) or `**` (the rest), and
`{var}` means `{var=*}`. A variable's name may be a field path (`app.name`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VARIABLE = re.compile(r"\{([a-zA-Z0-9_.]+)(?:=([^}]*))?\}")


@dataclass(frozen=True, slots=True)
class PathTemplate:
    text: str
    regex: re.Pattern[str]
    variables: tuple[str, ...]  # field paths, in order
    literal_chars: int  # more literal text: more specific, matched first
    verb: str

    def match(self, path: str) -> dict[str, str] | None:
        """Field path -> value for a matching URL path, else None."""
        found = self.regex.fullmatch(path)
        if found is None:
            return None
        return {name: found.group(f"v{i}") for i, name in enumerate(self.variables)}

    @property
    def specificity(self) -> tuple[int, int, int]:
        return (bool(self.verb), self.literal_chars, -len(self.variables))


def _segments(pattern: str) -> str:
    wildcards = {"*": "[^/:]+", "**": "[^:]+"}
    return "/".join(wildcards.get(s, re.escape(s)) for s in pattern.split("/"))


def compile_template(text: str) -> PathTemplate:
    """Compile one template; ValueError names what is malformed."""
    if not text.startswith("/"):
        raise ValueError(f"path template {text!r}: must start with '/'")
    path, verb = text, ""
    # A verb follows the last '}' or '/'; a ':' inside a variable is not one.
    tail = text[max(text.rfind("}"), text.rfind("/")) + 1 :]
    if ":" in tail:
        verb = tail.split(":", 1)[1]
        path = text[: len(text) - len(verb) - 1]
    regex, pos = "", 0
    variables: list[str] = []
    for found in VARIABLE.finditer(path):
        regex += _segments(path[pos : found.start()])
        regex += f"(?P<v{len(variables)}>{_segments(found.group(2) or '*')})"
        variables.append(found.group(1))
        pos = found.end()
    regex += _segments(path[pos:])
    if verb:
        regex += ":" + re.escape(verb)
    if "{" in path[pos:] or "}" in path[pos:]:
        raise ValueError(f"path template {text!r}: unbalanced braces")
    literal_chars = len(VARIABLE.sub("", path))
    return PathTemplate(text, re.compile(regex), tuple(variables), literal_chars, verb)
