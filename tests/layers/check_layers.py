#!/usr/bin/env python3
"""The architecture rules of host/ and kernels/, checked on the sources (make test runs this).

1. Folders are layered: a file may include only files of its own folder or of a lower folder (RANK below);
   kernels/ includes nothing from host/.
2. No circles between source files: a .c file depends on the .c files that define the functions it calls
   (read from the object files with nm); that graph must have no cycle.
3. No folder holds more than MAX_FILES files.
--root DIR checks another checkout (built). With --report it also prints the figures of docs/architecture.md: files per folder, the longest dependency chain
and the largest functions.
"""
import os, re, subprocess, sys, glob, collections

RANK = {'kernels': 0, 'host/base': 1, 'host/base/dist': 1, 'host/tokenizer': 2, 'host/model': 3, 'host/io': 4, 'host/io/encoder': 4,
        'host/gen': 5, 'host/rec': 6, 'host/rec/prepare': 7, 'host/train': 8, 'host/cli': 9, 'host/cli/bench': 9}
MAX_FILES = 16
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def folder(path):
    d = os.path.dirname(path)
    if d.startswith('kernels'):
        return 'kernels'
    return d


def resolve(src, name):
    for base in (os.path.dirname(src), '.', 'host'):
        p = os.path.normpath(os.path.join(base, name))
        if os.path.exists(p):
            return p
    return None


def sources():
    out = []
    for pat in ('host/**/*.c', 'host/**/*.h', 'kernels/**/*.c', 'kernels/**/*.h', 'kernels/**/*.cu',
                'kernels/**/*.cuh'):
        out += glob.glob(pat, recursive=True)
    return sorted(set(out))


def check_includes(errors):
    for src in sources():
        for name in INCLUDE.findall(open(src, encoding='utf-8').read()):
            tgt = resolve(src, name)
            if tgt is None:
                errors.append('%s: includes "%s", which is not in the tree' % (src, name))
                continue
            a, b = folder(src), folder(tgt)
            if a not in RANK or b not in RANK:
                errors.append('%s: includes %s: folder %s has no place in the layering' % (src, tgt, a if a not in RANK else b))
            elif RANK[b] > RANK[a]:
                errors.append('%s (%s) includes %s from the higher folder %s' % (src, a, tgt, b))


def symbol_graph(objdir):
    """c file -> set of c files whose functions/data it uses"""
    defined, undef = {}, {}
    for obj in glob.glob(os.path.join(objdir, 'host/**/*.o'), recursive=True) + \
            glob.glob(os.path.join(objdir, 'kernels/**/*.o'), recursive=True):
        src = os.path.relpath(obj, objdir)[:-2]
        src = src + ('.cu' if os.path.exists(src + '.cu') else '.c')
        if not os.path.exists(src):
            continue
        lines = subprocess.run(['nm', obj], capture_output=True, text=True, check=True).stdout.splitlines()
        d, u = set(), set()
        for line in lines:
            parts = line.split()
            if len(parts) == 2 and parts[0] == 'U':
                u.add(parts[1])
            elif len(parts) == 3 and parts[1] in 'TDBRCV':
                d.add(parts[2])
        defined[src], undef[src] = d, u
    owner = {}
    for src, syms in defined.items():
        for s in syms:
            owner.setdefault(s, src)
    graph = {src: {owner[s] for s in u if s in owner and owner[s] != src} for src, u in undef.items()}
    return graph


def cycles(graph):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1
        stack.append(v); on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def longest_chain(graph):
    """the longest path of the graph with each circle collapsed into one node (written a <-> b)"""
    comp = {v: v for v in graph}
    for c in cycles(graph):
        name = ' <-> '.join(c)
        for v in c:
            comp[v] = name
    dag = collections.defaultdict(set)
    for v, ws in graph.items():
        for w in ws:
            if comp.get(w, w) != comp[v]:
                dag[comp[v]].add(comp.get(w, w))
    memo = {}

    def depth(v):
        if v not in memo:
            best = (1, [v])
            for w in dag.get(v, ()):
                d, p = depth(w)
                if d + 1 > best[0]:
                    best = (d + 1, [v] + p)
            memo[v] = best
        return memo[v]
    return max((depth(v) for v in set(comp.values())), key=lambda x: x[0], default=(0, []))


def largest_functions(k=8):
    fn = re.compile(r'^[A-Za-z_][\w \*]*?\b(\w+)\([^;]*?\)\s*\{\s*$', re.M)
    found = []
    for src in sources():
        if not src.endswith(('.c', '.cu')):
            continue
        lines = open(src, encoding='utf-8').read().split('\n')
        i = 0
        while i < len(lines):
            m = fn.match(lines[i]) if not lines[i].startswith((' ', '\t', '#', '}')) else None
            if m:
                j = i
                while j < len(lines) and lines[j] != '}':
                    j += 1
                found.append((j - i + 1, '%s:%d %s' % (src, i + 1, m.group(1))))
                i = j
            i += 1
    return sorted(found, reverse=True)[:k]


def main():
    root = sys.argv[sys.argv.index('--root') + 1] if '--root' in sys.argv else \
        os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
    os.chdir(root)
    objdir = sys.argv[sys.argv.index('--obj') + 1] if '--obj' in sys.argv else 'build/obj'
    errors = []
    check_includes(errors)
    counts = collections.Counter(os.path.dirname(p) for p in sources())
    for d, c in sorted(counts.items()):
        if c > MAX_FILES:
            errors.append('%s holds %d files (at most %d: split it by concern)' % (d, c, MAX_FILES))
    graph = symbol_graph(objdir) if os.path.isdir(objdir) else None
    if graph is None:
        errors.append('%s not found: build first (make)' % objdir)
    else:
        for comp in cycles(graph):
            errors.append('a circle between source files (each uses a function of the next): ' + ' <-> '.join(comp))
    if '--report' in sys.argv:
        print('files per folder:')
        for d, c in sorted(counts.items()):
            print('  %-20s %d' % (d, c))
        if graph:
            d, path = longest_chain({k: v for k, v in graph.items() if k.startswith('host/')})
            print('longest dependency chain (%d files): %s' % (d, ' -> '.join(path)))
        print('largest functions (lines):')
        for n, where in largest_functions():
            print('  %4d %s' % (n, where))
    for e in errors:
        print('layers: ' + e)
    print('layers: %s' % ('OK' if not errors else '%d problem(s)' % len(errors)))
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
