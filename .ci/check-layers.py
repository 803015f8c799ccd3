#!/usr/bin/env python3
"""Import layers of the library (issue 16): imports run one way.

Reads every .rs file under agent/src and exporter/src, finds which top-level
modules of its crate each top-level module refers to (`crate::NAME`,
`use crate::{...}` groups, `super::` paths that climb to the crate root, and
names the crate root re-exports), and fails when

- two or more top-level modules of a crate refer to each other in a circle
  (agent/src and exporter/src), or
- an agent module refers to one listed after it in the layer order of
  docs/architecture.md (the "Layers of the library" paragraph), or that
  order and the modules of agent/src/lib.rs disagree.

Comments, doc comments and string literals are not code and are left out,
and so is test code (`#[cfg(test)]` modules, inline or in their own files):
a test may use a higher layer to check what that layer makes of this one.

Usage: python3 .ci/check-layers.py [REPO_ROOT]; exit 1 with every problem
named (file and edge), 0 when the layers hold. Python 3 standard library only.
"""

import os
import re
import sys

DOC = "docs/architecture.md"
# (crate folder, checked against the layer order of DOC)
CRATES = [("agent/src", True), ("exporter/src", False)]


def strip_code(text):
    """The text with comments, strings and char literals blanked out
    (newlines kept, so line numbers still hold)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
            continue
        if c == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
            continue
        m = re.match(r'b?r(#*)"', text[i:i + 260]) if c in "rb" else None
        if m and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = '"' + m.group(1)
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append('""' + re.sub(r"[^\n]", " ", text[i:j])[2:])
            i = j
            continue
        if c == '"' or (c == "b" and nxt == '"'):
            j = i + (2 if c == "b" else 1)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append('""' + re.sub(r"[^\n]", " ", text[i:j])[2:])
            i = j
            continue
        if c == "'":
            # A char literal ('a', '\n', '\u{1F}'); else a lifetime.
            m = re.match(r"'(\\(u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'", text[i:i + 16])
            if m:
                out.append(" " * m.end())
                i += m.end()
                continue
        out.append(c)
        i += 1
    return "".join(out)


def block_end(code, start):
    """Index just past the brace block that opens at or after `start`."""
    depth = 0
    for j in range(code.index("{", start), len(code)):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                return j + 1
    return len(code)


TEST_ATTR = re.compile(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*")


def drop_test_code(code):
    """Blank inline `#[cfg(test)] mod x { ... }` blocks and `#[cfg(test)]`
    use lines; return (code, names of `#[cfg(test)] mod x;` files)."""
    test_files = []
    for m in reversed(list(TEST_ATTR.finditer(code))):
        rest = code[m.end():]
        decl = re.match(r"(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", rest)
        if decl:
            test_files.append(decl.group(1))
            continue
        if re.match(r"(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{", rest):
            end = block_end(code, m.end())
        elif re.match(r"(?:pub(?:\([^)]*\))?\s+)?use\b", rest):
            end = code.index(";", m.end()) + 1
        else:
            continue
        code = code[:m.start()] + re.sub(r"[^\n]", " ", code[m.start():end]) + code[end:]
    return code, test_files


def module_path(src, path):
    """The module path of a file (`a/b.rs` and `a/b/mod.rs`: a::b); its
    child modules' files are in the folder of that path."""
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    return rel[:-1] if rel[-1] in ("mod", "lib") else rel


def top_level(src):
    """Top-level modules of lib.rs, and the names lib.rs re-exports (name ->
    module)."""
    code = strip_code(open(os.path.join(src, "lib.rs"), encoding="utf-8").read())
    mods = re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", code, re.M)
    reexports = {}
    for m in re.finditer(r"^\s*pub\s+use\s+(\w+)::([^;]+);", code, re.M):
        names = re.sub(r"[{}\s]", " ", m.group(2)).replace(",", " ").split()
        for k, name in enumerate(names):
            if name == "as":
                continue
            if k + 1 < len(names) and names[k + 1] == "as":
                continue
            reexports[name] = m.group(1)
    return mods, reexports


def group_heads(body):
    """First segments of the paths in a `{...}` use group (depth one)."""
    heads, depth, seg = [], 0, ""
    for ch in body + ",":
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if depth == 0 and ch == ",":
            head = re.match(r"\s*(\w+)", seg)
            if head:
                heads.append(head.group(1))
            seg = ""
        elif depth >= 0:
            seg += ch
    return heads


def references(src):
    """{(from module, to module): first 'file:line'} of a crate, test code
    left out."""
    mods, reexports = top_level(src)
    known = set(mods)
    files, test_dirs = {}, []
    for root, _, names in os.walk(src):
        for name in sorted(names):
            if name.endswith(".rs"):
                path = os.path.join(root, name)
                code, tests = drop_test_code(
                    strip_code(open(path, encoding="utf-8").read()))
                files[path] = code
                test_dirs += [module_path(src, path) + [t] for t in tests]
    edges = {}
    for path, code in sorted(files.items()):
        mpath = module_path(src, path)
        if not mpath or any(mpath[:len(t)] == t for t in test_dirs):
            continue  # lib.rs itself, or a test module's file
        me = mpath[0]
        targets = []
        for m in re.finditer(r"(?<![\w$])crate\s*::\s*(\{|\w+)", code):
            if m.group(1) == "{":
                end = block_end(code, m.start(1))
                targets += [(h, m.start()) for h in group_heads(code[m.start(1) + 1:end - 1])]
            else:
                targets.append((m.group(1), m.start()))
        for m in re.finditer(r"(?<![\w:])((?:super\s*::\s*)+)(\{|\w+)", code):
            ups = m.group(1).count("super")
            if ups != len(mpath):
                continue  # not up to the crate root
            if m.group(2) == "{":
                end = block_end(code, m.start(2))
                targets += [(h, m.start()) for h in group_heads(code[m.start(2) + 1:end - 1])]
            else:
                targets.append((m.group(2), m.start()))
        for name, pos in targets:
            to = name if name in known else reexports.get(name)
            if to is None or to == me:
                continue
            line = code.count("\n", 0, pos) + 1
            edges.setdefault((me, to), "%s:%d" % (path, line))
    return mods, edges


def cycles(mods, edges):
    """Strongly connected components of more than one module (Tarjan)."""
    graph = {m: sorted(t for (f, t) in edges if f == m) for m in mods}
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, []):
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
    for m in sorted(mods):
        if m not in index:
            visit(m)
    return out


def layer_order(doc_text):
    """The modules of the "Layers of the library" paragraph, in order."""
    m = re.search(r"\*\*Layers of the library\*\*(.*?)(?:\n\s*\n|\Z)", doc_text, re.S)
    if not m:
        return None
    names = []
    for tick in re.findall(r"`([^`]+)`", m.group(1)):
        name = tick.rstrip("/")
        if re.fullmatch(r"[a-z_][a-z0-9_]*", name) and name not in names:
            names.append(name)
        if tick.endswith("/"):
            break  # the wiring `agent/`, the last layer
    return names


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    os.chdir(root)
    problems = []
    for src, layered in CRATES:
        mods, edges = references(src)
        for comp in cycles(mods, edges):
            inner = sorted((f, t) for (f, t) in edges if f in comp and t in comp)
            problems.append("%s: modules refer to each other in a circle: %s; edges: %s" % (
                src, " ".join(comp),
                "; ".join("%s -> %s (%s)" % (f, t, edges[(f, t)]) for f, t in inner)))
        if not layered:
            continue
        order = layer_order(open(DOC, encoding="utf-8").read())
        if not order:
            problems.append("%s: no \"**Layers of the library**\" paragraph" % DOC)
            continue
        for m in mods:
            if m not in order:
                problems.append("%s: module `%s` (%s/lib.rs) is not in the layer order; place it there" % (DOC, m, src))
        for m in order:
            if m not in mods:
                problems.append("%s: layer `%s` is no module of %s/lib.rs" % (DOC, m, src))
        rank = {m: i for i, m in enumerate(order)}
        for (f, t), where in sorted(edges.items(), key=lambda e: e[1]):
            if f in rank and t in rank and rank[t] > rank[f]:
                problems.append("%s: `%s` refers to `%s`, a layer above it (%s)" % (where, f, t, DOC))
    for p in problems:
        print("check-layers: " + p, file=sys.stderr)
    if problems:
        return 1
    print("check-layers: imports run one way (agent/src in the order of %s; exporter/src without circles)" % DOC)
    return 0


if __name__ == "__main__":
    sys.exit(main())
