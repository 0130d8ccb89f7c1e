"""Rewrite the configuration table in README.md from mcpplat/env.py (between the markers)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mcpplat import env

START, END = "<!-- env-table:start -->", "<!-- env-table:end -->"
readme = Path(__file__).resolve().parent.parent / "README.md"
text = readme.read_text()
head, rest = text.split(START, 1)
_, tail = rest.split(END, 1)
readme.write_text(f"{head}{START}\n{env.markdown_table()}\n{END}{tail}")
print("README.md: configuration table updated")
