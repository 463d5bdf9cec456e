"""Render the stack's configuration templates: `{{name}}` placeholders, every one must be filled."""

from __future__ import annotations

import re
from pathlib import Path

from k2cli.stack.errors import StackError
from k2cli.stack.paths import DATA_DIR

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def render(text: str, values: dict[str, object], source: str = "template") -> str:
    """Replace each {{name}} with values[name]; a placeholder without a value is an error."""
    missing = sorted({m.group(1) for m in _PLACEHOLDER.finditer(text) if m.group(1) not in values})
    if missing:
        raise StackError(f"{source}: no value for {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def render_file(template: Path, values: dict[str, object]) -> str:
    return render(template.read_text(), values, str(template))


def packaged(*parts: str) -> Path:
    """A file shipped in k2cli/data/stack/."""
    return DATA_DIR.joinpath(*parts)


def write_if_changed(path: Path, content: str, mode: int | None = None) -> bool:
    """Write `content` to `path` unless it already holds exactly that; True when the file changed."""
    try:
        if path.read_text() == content:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(content)
    if mode is not None:
        tmp.chmod(mode)
    tmp.replace(path)
    return True
