"""The repository's documentation stands alone.

Nothing a reader gets with the repository (README, docs/, benchmarks/, examples/, the package's
docstrings, help strings and presets) may send them to documents outside it: the planning
notes the project started from (a design note, a reliability plan, a benchmarking note) or the
numbered reference documents it grew from. Their content lives in ``docs/architecture.md``,
``docs/reliability.md`` and ``benchmarks/README.md``; papers and libraries are cited by their
public names. And every relative path the README and docs/ point to exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# ------------------------------------------------------------------------- outside references

FORBIDDEN = [
    (re.compile(r"\.\./shared"), "a path outside the repository (../shared)"),
    (re.compile(r"\b(?:DESIGN|RELIABILITY|BENCHMARKS)(?:\.md)?\b"),
     "a planning document that is not in the repository (use docs/architecture.md, "
     "docs/reliability.md or benchmarks/README.md)"),
    (re.compile(r"\bseeds?\s*[`'\"]*\s*0\d\d\b", re.IGNORECASE),
     "a numbered reference document that is not in the repository (cite the paper or library by name)"),
    (re.compile(r"\bshared documents?\b", re.IGNORECASE), "documents outside the repository"),
]
TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".txt", ".toml", ".cfg", ".json"}


def _scanned_files() -> list[Path]:
    files = [ROOT / "README.md"]
    files += sorted((ROOT / "docs").glob("*.md"))
    files += sorted(p for p in (ROOT / "benchmarks").glob("*") if p.suffix in (".md", ".py"))
    files += sorted(p for p in (ROOT / "examples").rglob("*") if p.suffix in TEXT_SUFFIXES)
    files += sorted(p for p in (ROOT / "critic").rglob("*")
                    if p.is_file() and p.suffix in TEXT_SUFFIXES and "__pycache__" not in p.parts)
    return [p for p in files if p.is_file()]


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


@pytest.mark.parametrize("path", _scanned_files(), ids=_rel)
def test_no_reference_to_documents_outside_the_repository(path: Path):
    hits = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        for pattern, what in FORBIDDEN:
            m = pattern.search(line)
            if m:
                hits.append(f"{_rel(path)}:{lineno}: {m.group(0)!r} is {what}: {line.strip()[:120]}")
    assert not hits, "\n".join(hits)


@pytest.mark.parametrize("line,bad", [
    ("see ../shared/DESIGN.md", True), ("the plan in `RELIABILITY.md`", True),
    ("see BENCHMARKS for what it gives", True), ("seed 003's notation", True),
    ("seed `004` (Coach's ACER page)", True), ("seed ``000``'s algorithm", True),
    ("(seeds 001 and 002)", True), ("the project's shared documents", True),
    ("## Benchmarks", False), ("seeds 0, 1, 2", False), ("--seed 1", False), ("seed + 100003", False),
    ("`benchmarks/README.md`", False), ("docs/reliability.md", False), ("seeds 0-2", False),
])
def test_forbidden_patterns_catch_what_they_should(line: str, bad: bool):
    assert any(p.search(line) for p, _ in FORBIDDEN) is bad


# ------------------------------------------------------------------------- relative links

LINKED_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
# Backticked paths are read from the repository root (the docs' convention: `docs/guide.md`).
TOP_LEVEL = ("docs/", "benchmarks/", "critic/", "tests/", "examples/", ".ci/")
GENERATED = ("benchmarks/out",)  # written by the benchmark scripts, ignored by git
MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def _links(text: str) -> tuple[list[str], list[str]]:
    """(markdown link targets, backticked repository paths) of one document."""
    prose = FENCE.sub("", text)
    md = [t for t in MD_LINK.findall(prose)
          if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE) and not t.startswith("#")]
    paths = []
    for span in CODE_SPAN.findall(prose):
        tok = span.strip().rstrip(".,;:)")
        if any(c in tok for c in "{}<>*?[] $=|…") or "..." in tok:
            continue  # a pattern, a command or a placeholder, not a path
        if tok.startswith("./"):
            tok = tok[2:]
        file = tok.split("::")[0]
        if (file.startswith(TOP_LEVEL) or (file.endswith(".md") and "/" not in file)
                or re.fullmatch(r"test_\w+\.py", file)):
            paths.append(tok)
    return md, paths


def _exists(doc: Path, path: str) -> bool:
    """A repository path (from the root; a bare ``X.md`` also beside the doc, in docs/ or
    benchmarks/; a bare ``test_x.py`` anywhere under tests/), and its ``::test`` if named."""
    file, _, test = path.partition("::")
    if re.fullmatch(r"test_\w+\.py", file):
        found = sorted((ROOT / "tests").rglob(file))
    else:
        bases = [ROOT] if "/" in file else [ROOT, doc.parent, ROOT / "docs", ROOT / "benchmarks"]
        found = [b / file for b in bases if (b / file).exists()]
    if not found:
        return False
    if not test:
        return True
    name = test.split("::")[-1].split("[")[0]
    return any(re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{re.escape(name)}\b", f.read_text(encoding="utf-8"),
                         re.MULTILINE) for f in found if f.is_file())


@pytest.mark.parametrize("doc", [d for d in LINKED_DOCS if d.is_file()], ids=_rel)
def test_relative_links_point_to_files_in_the_repository(doc: Path):
    md, paths = _links(doc.read_text(encoding="utf-8"))
    missing = []
    for target in md:
        target = target.split("#")[0]
        if target and not (doc.parent / target).exists():
            missing.append(f"[...]({target})")
    for p in paths:
        if not p.startswith(GENERATED) and not _exists(doc, p):
            missing.append(f"`{p}`")
    assert not missing, f"{_rel(doc)} points to paths that do not exist: {', '.join(missing)}"


def test_link_extraction():
    text = ("See [the guide](guide.md#agents), [web](https://example.org), `docs/a.md`, `critic/x.py::f`, "
            "`RESULTS.md`, `critic/presets/{algo}_x.yaml`, `runs/<run>`, `ALE/Pong-v5`, `--set a=b`.\n"
            "```bash\n`docs/in_a_fence.md`\n```\n")
    md, paths = _links(text)
    assert md == ["guide.md#agents"]
    assert paths == ["docs/a.md", "critic/x.py::f", "RESULTS.md"]


def test_named_tests_are_checked():
    doc = ROOT / "docs" / "reliability.md"
    assert _exists(doc, "tests/unit/test_repo_layout.py::test_test_module_basenames_are_unique")
    assert _exists(doc, "test_repo_layout.py::test_test_module_basenames_are_unique")
    assert not _exists(doc, "tests/unit/test_repo_layout.py::test_no_such_test")
    assert not _exists(doc, "tests/unit/test_no_such_file.py")
    assert not _exists(doc, "docs/no_such_page.md")
