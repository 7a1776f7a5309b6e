#!/usr/bin/env python3
"""Copies the quickstarts' sources into the README's "A complete ... service" blocks.

Each block sits between `<!-- begin FILE -->` and `<!-- end FILE -->` and holds FILE without
its leading `//!` doc lines. `examples/quickstart/tests/readme.rs` checks they agree; run this
after editing either quickstart: `python3 scripts/readme-services.py`.
"""
import pathlib
import re

root = pathlib.Path(__file__).resolve().parent.parent
readme = root / "README.md"
text = readme.read_text()
for name in ["examples/quickstart/src/main.rs", "examples/quickstart-actix/src/main.rs"]:
    lines = (root / name).read_text().splitlines()
    while lines and (lines[0].startswith("//!") or not lines[0].strip()):
        lines.pop(0)
    block = "<!-- begin %s -->\n```rust\n%s\n```\n<!-- end %s -->" % (name, "\n".join(lines), name)
    pattern = re.compile(r"<!-- begin %s -->.*?<!-- end %s -->" % (re.escape(name), re.escape(name)), re.S)
    if not pattern.search(text):
        raise SystemExit("README.md has no <!-- begin %s --> block" % name)
    text = pattern.sub(lambda _: block, text)
readme.write_text(text)
