#!/usr/bin/env python3
"""The layout's rules, checked by reading the sources (scripts/test.sh runs this).

The extension's src/ is one folder per concern; which concern may import which is written in
RULES below and in each folder's mod.rs. Checked here:
  - every `crate::<module>` reference of a file obeys RULES (by the file's top-level module);
  - no import circle between the top-level modules of src/, or of crates/core/src/, nor
    between the files of one folder;
  - the core crate links no pgrx and names nothing of the extension; the extension names the
    core as `pgaadauth_core::...` (no re-export in src/lib.rs);
  - no file holds more than 800 lines of code outside its tests.
Prints one line per broken rule, then "layers: ok" or "layers: N problems"; exits 1 on any.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_CODE_LINES = 800

# Top-level modules of src/ and what each may import (besides itself and the core).
RULES = {
    "shim": set(),
    "settings": set(),
    "shmem": {"settings", "shim"},
    "catalog": {"settings", "shim", "shmem"},
    "login": {"settings", "shim", "shmem", "catalog"},
    "net": {"settings", "shmem"},
    "group_sync": {"settings", "shmem", "catalog", "net"},
    "workers": {"settings", "shmem", "catalog", "net", "group_sync"},
    "sql": {"settings", "shim", "shmem", "catalog", "login", "group_sync"},
    "lib": {"settings", "shim", "shmem", "catalog", "login", "workers", "sql", "net", "group_sync"},
    "pg_tests": {"settings", "shmem", "catalog", "login", "sql"},
}

PATH_REF = r"::(\{[^}]*\}|\w+(?:::\{[^}]*\}|::\w+)?)"


def refs_after(prefix, code):
    """(first, second or None) of every `<prefix>::a::b`, `<prefix>::{a, b::c}`, `<prefix>::a::{b, c}`."""
    out = set()
    for m in re.finditer(r"\b" + prefix + PATH_REF, code):
        g = m.group(1)
        if g.startswith("{"):
            for item in g[1:-1].split(","):
                parts = [p.strip() for p in item.split("::") if p.strip()]
                if parts and parts[0] not in ("self", "*"):
                    out.add((parts[0], parts[1] if len(parts) > 1 else None))
        elif "::{" in g:
            first, rest = g.split("::{", 1)
            for item in rest.rstrip("}").split(","):
                second = item.strip().split("::")[0].strip()
                out.add((first, second if second not in ("", "self", "*") else None))
        else:
            parts = g.split("::")
            out.add((parts[0], parts[1] if len(parts) > 1 else None))
    return out


def code_of(text):
    """The text without comments and string literals (a rough cut, enough for paths)."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'r#"(?:.|\n)*?"#', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


def rust_files(base):
    for dirpath, _, names in os.walk(base):
        for name in sorted(names):
            if name.endswith(".rs"):
                yield os.path.join(dirpath, name)


def module_path(base, path):
    """src/login/hook.rs -> ["login", "hook"]; src/login/mod.rs -> ["login"]."""
    rel = os.path.relpath(path, base)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    return rel


def references(base, path, code):
    """(top-level module, second-level module or None) of every crate:: and super:: path."""
    refs = refs_after("crate", code)
    mod = module_path(base, path)
    for first, second in refs_after("super", code):
        if os.path.basename(path) == "mod.rs" or len(mod) == 1:
            refs.add((first, second))  # super of a folder's mod.rs or a top file: the crate
        else:
            refs.add((mod[0], first))  # a sibling in the same folder
    return refs


def without_tests(text):
    """The file up to its `#[cfg(test)] mod tests` block, if it ends with one."""
    m = re.search(r"\n#\[cfg\(test\)\]\s*\nmod \w+ \{", text)
    return text[: m.start()] if m else text


def cycles(graph):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def check_tree(base, name, problems, rules=None):
    top_graph, file_graphs = {}, {}
    for path in rust_files(base):
        rel = os.path.relpath(path, ROOT)
        text = open(path, encoding="utf-8").read()
        code = code_of(without_tests(text))
        lines = [l for l in code.split("\n") if l.strip()]
        is_test_file = os.path.basename(path) in ("tests.rs", "pg_tests.rs", "proptests.rs", "bench.rs")
        if len(lines) > MAX_CODE_LINES and not is_test_file:
            problems.append(f"{rel}: {len(lines)} lines of code outside its tests (at most {MAX_CODE_LINES})")
        mod = module_path(base, path)
        top = mod[0] if mod else "lib"
        for first, second in references(base, path, code):
            if first == top:
                if second and second[0].islower():
                    me = mod[1] if len(mod) > 1 else "mod"
                    if second != me:
                        file_graphs.setdefault(top, {}).setdefault(me, set()).add(second)
                continue
            top_graph.setdefault(top, set()).add(first)
            if rules is not None:
                allowed = rules.get(top)
                if allowed is None:
                    problems.append(f"{rel}: module \"{top}\" has no rule in scripts/layers.py")
                elif first not in allowed:
                    problems.append(f"{rel}: \"{top}\" may not import \"{first}\" (crate::{first})")
    for comp in cycles(top_graph):
        problems.append(f"{name}: import circle between top-level modules: {' <-> '.join(comp)}")
    for folder, graph in sorted(file_graphs.items()):
        for comp in cycles(graph):
            problems.append(f"{name}/{folder}: import circle between files: {' <-> '.join(comp)}")


def main():
    problems = []
    src = os.path.join(ROOT, "src")
    core = os.path.join(ROOT, "crates", "core", "src")
    check_tree(src, "src", problems, RULES)
    check_tree(core, "crates/core/src", problems)
    for path in rust_files(core):
        code = code_of(open(path, encoding="utf-8").read())
        if re.search(r"\bpgrx\b|\bpgaadauth::", code):
            problems.append(f"{os.path.relpath(path, ROOT)}: the core names pgrx or the extension")
    manifest = open(os.path.join(ROOT, "crates", "core", "Cargo.toml"), encoding="utf-8").read()
    if re.search(r"^\s*pgrx", manifest, re.M):
        problems.append("crates/core/Cargo.toml: the core depends on pgrx")
    lib = code_of(open(os.path.join(src, "lib.rs"), encoding="utf-8").read())
    if re.search(r"\bpub\s+use\s+pgaadauth_core\b", lib):
        problems.append("src/lib.rs: re-exports the core; name it as pgaadauth_core::...")
    for p in problems:
        print(p)
    print("layers: ok" if not problems else f"layers: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
