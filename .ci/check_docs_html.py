"""The built documentation site has what the docs promise.

    python .ci/check_docs_html.py OUTDIR     (.ci/build_docs runs it)

OUTDIR is a Sphinx HTML build of docs/. The API reference must have been
generated from the docstrings, under the public names (fastsem.Semaphore, not
fastsem._pyfastsem.Semaphore), and every page must be there. Prints what is
missing and exits 1 if anything is. Standard library only.
"""

from __future__ import annotations

import sys
from pathlib import Path

ANCHORS = [
    "fastsem.Semaphore",
    "fastsem.Semaphore.acquire",
    "fastsem.Semaphore.release",
    "fastsem.BoundedSemaphore.max_value",
    "fastsem.IMPLEMENTATION",
]
# The first line of Semaphore.acquire's docstring: autodoc did read them.
DOCSTRING = "Acquire n permits (default 1)."
PAGES = ["index", "api", "guide", "benchmarks"]


def problems(out: Path) -> list[str]:
    found = [f"no {page}.html" for page in PAGES if not (out / f"{page}.html").is_file()]
    api_page = out / "api.html"
    if api_page.is_file():
        api = api_page.read_text(encoding="utf-8")
        found += [
            f'api.html: no id="{anchor}"' for anchor in ANCHORS if f'id="{anchor}"' not in api
        ]
        if DOCSTRING not in api:
            found.append(f"api.html: no {DOCSTRING!r} (were the docstrings read?)")
    return found


def main() -> int:
    if len(sys.argv) != 2:
        sys.exit("usage: python .ci/check_docs_html.py OUTDIR")
    out = Path(sys.argv[1])
    found = problems(out)
    for problem in found:
        print(f"check_docs_html: {out}: {problem}", file=sys.stderr)
    if found:
        return 1
    print(f"docs site OK: {', '.join(PAGES)}; the API reference under the public names")
    return 0


if __name__ == "__main__":
    sys.exit(main())
