#!/usr/bin/env python3
"""The shape of the code: lines of code per file and per crate, the longest
functions, and import circles between the modules of each crate.

    scripts/shape.py [--all] [--root DIR]

Lines of code are counted the way tokei counts them: no blank lines, no
comment-only lines (a line with code and a comment is code; a line inside a
multi-line string is code). Test code is left out: `#[cfg(test)]` items
(and the files of `#[cfg(test)] mod x;`), and each crate's `tests/`.

An import is any `crate::` or `super::` path: in `use` lines, inline, and in
intra-doc links (`[`crate::x`]`), which tie the docs of one module to another.
A path is resolved to the longest module it names; an item of a crate root
re-exported from a module (`pub use x::Item`) counts as that module.

Sizes are reported, never enforced; an import circle makes the exit status 1
(`make lint` runs this).
"""

import os
import re
import sys
from collections import defaultdict

FILE_LIMIT = 400
CRATE_LIMIT = 4000
FUNCTION_REPORT = 80


def strip(text):
    """Returns (code, has_code): the text with comments removed and string and
    char contents blanked (lines and columns kept), and for each line whether
    it holds code."""
    out = []
    i, n = 0, len(text)
    depth = 0  # block comment nesting
    line_code = [False]

    def emit(ch, code):
        out.append(ch)
        if ch == "\n":
            line_code.append(False)
        elif code and not ch.isspace():
            line_code[-1] = True

    while i < n:
        c = text[i]
        if depth:
            if text.startswith("/*", i):
                depth += 1
                emit(" ", False)
                emit(" ", False)
                i += 2
            elif text.startswith("*/", i):
                depth -= 1
                emit(" ", False)
                emit(" ", False)
                i += 2
            else:
                emit("\n" if c == "\n" else " ", False)
                i += 1
            continue
        if text.startswith("//", i):
            while i < n and text[i] != "\n":
                emit(" ", False)
                i += 1
            continue
        if text.startswith("/*", i):
            depth = 1
            emit(" ", False)
            emit(" ", False)
            i += 2
            continue
        # Raw strings: r"..", r#".."#, br#".."#
        m = re.match(r'b?r(#*)"', text[i:i + 260]) if c in "rb" else None
        if m and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = m.group(1)
            end = text.find('"' + hashes, i + m.end())
            end = n if end < 0 else end + 1 + len(hashes)
            for j, ch in enumerate(text[i:end]):
                keep = j < m.end() or j >= end - i - 1 - len(hashes)
                emit(ch if keep or ch == "\n" else ("\n" if ch == "\n" else "x"), True)
            i = end
            continue
        if c == '"':
            emit('"', True)
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    emit("x", True)
                    emit("\n" if text[i + 1] == "\n" else "x", True)
                    i += 2
                    continue
                emit("\n" if text[i] == "\n" else "x", True)
                i += 1
            if i < n:
                emit('"', True)
                i += 1
            continue
        if c == "'":
            # A char literal ('a', '\n', '\u{1F600}', '"'), or a lifetime.
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'\n])'", text[i:i + 12])
            if m:
                emit("'", True)
                for _ in range(m.end() - 2):
                    emit("x", True)
                emit("'", True)
                i += m.end()
                continue
        emit(c, True)
        i += 1
    return "".join(out), line_code


def matching_brace(code, open_at):
    depth = 0
    for j in range(open_at, len(code)):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(code) - 1


def item_end(code, start):
    """The end of the item starting at `start`: its `;` or its closing brace."""
    semi = code.find(";", start)
    brace = code.find("{", start)
    if brace < 0 or (0 <= semi < brace):
        return semi if semi >= 0 else len(code) - 1
    return matching_brace(code, brace)


CFG_TEST = re.compile(r"#\[cfg\(test\)\]")


def test_spans(code):
    """Character spans of `#[cfg(test)]` items, and the names of the
    `#[cfg(test)] mod x;` files."""
    spans, files = [], []
    for m in CFG_TEST.finditer(code):
        start = m.start()
        end = item_end(code, m.end())
        spans.append((start, end))
        decl = re.match(r"\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", code[m.end():])
        if decl:
            files.append(decl.group(1))
    return spans, files


def blank_spans(code, spans):
    chars = list(code)
    for s, e in spans:
        for j in range(s, min(e + 1, len(chars))):
            if chars[j] != "\n":
                chars[j] = " "
    return "".join(chars)


class TestChars:
    def __init__(self, spans):
        self.spans = spans

    def __contains__(self, pos):
        return any(s <= pos <= e for s, e in self.spans)


class File:
    def __init__(self, crate, path, module, test):
        self.crate, self.path, self.module, self.test = crate, path, module, test
        with open(path, encoding="utf-8") as f:
            text = f.read()
        code, has_code = strip(text)
        spans, self.test_children = test_spans(code)
        self.text = text
        self.test_chars = TestChars(spans)
        self.code = blank_spans(code, spans)
        # Lines of code: lines with code outside test items.
        live = [any(not ch.isspace() for ch in line) for line in self.code.split("\n")]
        self.loc = 0 if test else sum(1 for a, b in zip(has_code, live) if a and b)


def module_of(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel in (["lib"], ["main"]):
        return ()
    if rel[-1] == "mod":
        rel = rel[:-1]
    return tuple(rel)


def crate_files(crate_dir):
    src = os.path.join(crate_dir, "src")
    files = []
    for dirpath, _, names in os.walk(src):
        for name in sorted(names):
            if name.endswith(".rs"):
                path = os.path.join(dirpath, name)
                files.append((path, module_of(src, path)))
    return files


def use_paths(tree, prefix=()):
    """Expands a `use` tree (`a::{b, c::d as e}`) into its paths."""
    tree = tree.strip()
    paths = []
    m = re.match(r"^((?:[\w]+\s*::\s*)*)\{(.*)\}$", tree, re.S)
    if m:
        head = tuple(s.strip() for s in m.group(1).split("::") if s.strip())
        body, parts, depth, cur = m.group(2), [], 0, ""
        for ch in body:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        parts.append(cur)
        for p in parts:
            if p.strip():
                paths += use_paths(p, prefix + head)
        return paths
    tree = re.sub(r"\s+as\s+\w+$", "", tree)
    segs = tuple(s.strip() for s in tree.split("::") if s.strip())
    return [prefix + segs]


def absolute(module, segs):
    """The absolute path of `segs` as written in `module`; None if it is not
    a path inside the crate."""
    if not segs:
        return None
    if segs[0] == "crate":
        return segs[1:]
    if segs[0] == "super":
        base = list(module)
        while segs and segs[0] == "super":
            if not base:
                return None
            base.pop()
            segs = segs[1:]
        return tuple(base) + tuple(segs)
    return None


def resolve(path, modules, reexports):
    for k in range(len(path), 0, -1):
        if path[:k] in modules:
            return path[:k]
    if path and path[0] in reexports:
        return reexports[path[0]]
    return ()


USE = re.compile(r"(?<![\w:])use\s+([^;]+);")
INLINE = re.compile(r"(?<![\w:$])((?:crate|super)(?:\s*::\s*\w+)+)")
DOC_LINK = re.compile(r"\[`?((?:crate|super)(?:::\w+)+)`?\]|\]\(((?:crate|super)(?:::\w+)+)\)")


def imports(f, modules, reexports):
    """(target module, line) for every import of `f`."""
    found = []
    code = f.code
    uses = []
    for m in USE.finditer(code):
        line = code.count("\n", 0, m.start()) + 1
        for p in use_paths(m.group(1)):
            uses.append((p, line))
    blank_uses = USE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), code)
    for m in INLINE.finditer(blank_uses):
        segs = tuple(s.strip() for s in m.group(1).split("::"))
        line = code.count("\n", 0, m.start()) + 1
        uses.append((segs, line))
    for m in DOC_LINK.finditer(f.text):
        # Only in comments outside test items (there the code text is blank).
        if f.code[m.start()] != " " or m.start() in f.test_chars:
            continue
        segs = tuple((m.group(1) or m.group(2)).split("::"))
        uses.append((segs, f.text.count("\n", 0, m.start()) + 1))
    for segs, line in uses:
        path = absolute(f.module, segs)
        if path is None:
            continue
        target = resolve(path, modules, reexports)
        if target != f.module:
            found.append((target, line))
    return found


def root_reexports(root):
    out = {}
    if root is None:
        return out
    for m in re.finditer(r"pub(?:\([^)]*\))?\s+use\s+([^;]+);", root.code):
        for p in use_paths(m.group(1)):
            p = tuple(s for s in p if s not in ("self", "crate"))
            if len(p) >= 2:
                out[p[-1]] = (p[0],)
    return out


def circles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


FN = re.compile(r"(?<![\w])fn\s+(\w+)")


def functions(f):
    """(name, lines of code) of each function with a body."""
    out = []
    lines = f.code.split("\n")
    for m in FN.finditer(f.code):
        brace = f.code.find("{", m.end())
        semi = f.code.find(";", m.end())
        if brace < 0 or (0 <= semi < brace):
            continue
        end = matching_brace(f.code, brace)
        first = f.code.count("\n", 0, m.start())
        last = f.code.count("\n", 0, end)
        loc = sum(1 for ln in lines[first:last + 1] if ln.strip())
        out.append((m.group(1), loc, first + 1))
    return out


def name(module):
    return "::".join(module) if module else "(root)"


def main():
    args = sys.argv[1:]
    show_all = "--all" in args
    root = os.getcwd()
    if "--root" in args:
        root = args[args.index("--root") + 1]
    crates_dir = os.path.join(root, "crates")
    total_circles = []
    rows, big_files, long_fns = [], [], []
    for crate in sorted(os.listdir(crates_dir)):
        cdir = os.path.join(crates_dir, crate)
        if not os.path.isdir(os.path.join(cdir, "src")):
            continue
        entries = crate_files(cdir)
        files = [File(crate, p, m, False) for p, m in entries]
        # Files of `#[cfg(test)] mod x;` are test code.
        tests = set()
        for f in files:
            for child in f.test_children:
                tests.add(f.module + (child,))
        files = [File(crate, f.path, f.module, True) if f.module in tests else f for f in files]
        live = [f for f in files if not f.test]
        modules = {f.module for f in live}
        by_module = {f.module: f for f in live}
        reexports = root_reexports(by_module.get(()))
        graph, edges = defaultdict(set), defaultdict(list)
        for f in live:
            graph.setdefault(f.module, set())
            for target, line in imports(f, modules, reexports):
                if target in modules:
                    graph[f.module].add(target)
                    edges[(f.module, target)].append(line)
        for comp in circles(graph):
            members = set(comp)
            detail = []
            for a in comp:
                for b in sorted(graph[a] & members):
                    lines = edges[(a, b)]
                    path = os.path.relpath(by_module[a].path, root)
                    detail.append(f"    {name(a)} -> {name(b)}  ({path}:{','.join(map(str, sorted(set(lines))[:5]))})")
            total_circles.append((crate, comp, detail))
        loc = sum(f.loc for f in live)
        largest = max(live, key=lambda f: f.loc)
        rows.append((crate, len(live), loc, os.path.relpath(largest.path, cdir), largest.loc))
        for f in live:
            if f.loc > FILE_LIMIT or show_all:
                big_files.append((f.loc, os.path.relpath(f.path, root)))
            for fn, n, line in functions(f):
                if n > FUNCTION_REPORT:
                    long_fns.append((n, f"{os.path.relpath(f.path, root)}:{line}", fn))

    print("Lines of code (no blanks, no comments; #[cfg(test)] items and tests/ left out)")
    print(f"{'crate':<12} {'files':>5} {'code':>6}  largest file")
    for crate, nfiles, loc, largest, largest_loc in rows:
        mark = "  over %d" % CRATE_LIMIT if loc > CRATE_LIMIT else ""
        print(f"{crate:<12} {nfiles:>5} {loc:>6}  {largest} ({largest_loc}){mark}")
    print(f"{'all':<12} {sum(r[1] for r in rows):>5} {sum(r[2] for r in rows):>6}")
    print()
    title = "Files" if show_all else f"Files over {FILE_LIMIT} lines of code"
    print(f"{title}: {len([b for b in big_files if b[0] > FILE_LIMIT])}")
    for loc, path in sorted(big_files, reverse=True):
        print(f"  {loc:>5}  {path}")
    print()
    print(f"Functions over {FUNCTION_REPORT} lines: {len(long_fns)}")
    for n, where, fn in sorted(long_fns, reverse=True):
        print(f"  {n:>5}  {fn}  {where}")
    print()
    if total_circles:
        print(f"Import circles: {len(total_circles)}")
        for crate, comp, detail in total_circles:
            print(f"  {crate}: " + " <-> ".join(name(m) for m in comp))
            for d in detail:
                print(d)
        return 1
    print("Import circles: none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
