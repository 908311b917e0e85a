"""include/wic_tna.h as the Python glue's ctypes check needs it
(test_glue_binding.py): the function prototypes, the callback typedefs, the
struct fields and the status enum.

The declarations are read from cbindgen's regular output (one declaration
a statement, every parameter named, no macros in them), and nothing read is
taken on trust: `check_parse` has the C compiler confirm each prototype,
callback and field type as read, and every number (sizeof, alignof,
offsetof, the enum's values) comes from the compiler, never from the text.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEADER = REPO / "include" / "wic_tna.h"

_TOKEN = re.compile(r"[A-Za-z_]\w*|\*")


class CType:
    """A C type as written: base ("char", "struct wic_tna_ctx", "size_t",
    "enum wic_tna_status", "wic_tna_log_fn", "void"), how many '*', and
    the text (with its qualifiers) for the compiler."""

    def __init__(self, tokens):
        self.text = " ".join(tokens)
        self.stars = tokens.count("*")
        self.base = " ".join(t for t in tokens if t not in ("*", "const"))

    def __repr__(self):
        return self.text


class Proto:
    def __init__(self, name, ret, params):
        self.name = name
        self.ret = ret          # CType
        self.params = params    # [(CType, name)]

    def c_params(self):
        return ", ".join(t.text for t, _ in self.params) or "void"

    def __repr__(self):
        return "%s %s(%s)" % (self.ret, self.name, self.c_params())


def _flatten(text):
    """The header without comments and preprocessor lines, one line."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = "\n".join(line for line in text.splitlines()
                     if not line.lstrip().startswith("#"))
    return " ".join(text.split())


def _decl(text):
    """'const char *msg' -> (CType, 'msg')."""
    tokens = _TOKEN.findall(text)
    if len(tokens) < 2 or tokens[-1] == "*":
        raise ValueError("unnamed declaration: %r" % text)
    return CType(tokens[:-1]), tokens[-1]


def _params(text):
    text = text.strip()
    if text == "void":
        return []
    return [_decl(p) for p in text.split(",")]


def _protos(pattern, flat):
    """{name: Proto} of pattern's matches: (return type, name, params)."""
    return {m.group(2): Proto(m.group(2), CType(_TOKEN.findall(m.group(1))),
                              _params(m.group(3)))
            for m in re.finditer(pattern, flat)}


class Header:
    def __init__(self, path=HEADER):
        self.path = Path(path)
        flat = _flatten(self.path.read_text())
        # `ret name(params);` after a ';', '{' or '}', and
        # `typedef ret (*name)(params);`
        self.functions = _protos(
            r"(?:^|(?<=[;{}]))\s*([^;{}()]*?)\b(wic_tna_\w+)\s*"
            r"\(([^;{}()]*)\)\s*;", flat)
        self.callbacks = _protos(
            r"typedef\s+([^;{}()]*?)\(\s*\*\s*(\w+)\s*\)\s*"
            r"\(([^;{}()]*)\)\s*;", flat)
        self.structs = {}
        for m in re.finditer(r"typedef\s+struct\s+(\w+)\s*\{([^{}]*)\}", flat):
            self.structs[m.group(1)] = [_decl(f) for f in m.group(2).split(";")
                                        if f.strip()]
        # opaque: declared, never given a body
        self.opaque = set(re.findall(r"typedef\s+struct\s+(\w+)\s+\w+\s*;",
                                     flat)) - set(self.structs)
        self.enums = {}
        for m in re.finditer(r"typedef\s+enum\s+(\w+)\s*\{([^{}]*)\}", flat):
            self.enums[m.group(1)] = re.findall(r"(\w+)\s*=", m.group(2))
        # every name the header declares a function of, however written:
        # the parse above must have found each one
        self.named = set(re.findall(r"\b(wic_tna_\w+)\s*\(", flat))

    # ----------------------------------------------------------------------
    # the compiler's word

    def _compile_run(self, source, workdir):
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if not cc:
            raise RuntimeError("no C compiler (cc, gcc or $CC): the header "
                               "check needs one")
        workdir = Path(workdir)
        src = workdir / "wic_tna_header_check.c"
        exe = workdir / "wic_tna_header_check"
        src.write_text('#include "%s"\n#include <stdalign.h>\n'
                       '#include <stdio.h>\n%s' % (self.path.name, source))
        r = subprocess.run([cc, "-std=c11", "-Wall", "-Werror",
                            "-I", str(self.path.parent), "-o", str(exe),
                            str(src)], capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError("the compiler disagrees with the header as "
                                 "read:\n%s" % r.stderr[-4000:])
        return subprocess.run([str(exe)], capture_output=True, text=True,
                              check=True).stdout

    def check_parse(self, workdir):
        """Compile assertions that each prototype, callback and field type
        as read is the header's own (raises AssertionError if not)."""
        same = "_Static_assert(__builtin_types_compatible_p(%s, %s), %s);\n"
        out = []
        for p in self.functions.values():
            out.append(same % ("__typeof__(&%s)" % p.name,
                               "%s (*)(%s)" % (p.ret.text, p.c_params()),
                               '"function %s"' % p.name))
        for p in self.callbacks.values():
            out.append(same % (p.name,
                               "%s (*)(%s)" % (p.ret.text, p.c_params()),
                               '"callback %s"' % p.name))
        for s, fields in self.structs.items():
            for t, f in fields:
                out.append(same % ("__typeof__(((struct %s *)0)->%s)" % (s, f),
                                   t.text, '"field %s.%s"' % (s, f)))
        self._compile_run("".join(out) + "int main(void) { return 0; }\n",
                          workdir)

    def layout(self, workdir):
        """The compiler's numbers: {("sizeof", "struct x"): n,
        ("alignof", "struct x"): n, ("offsetof", "x", "f"): n,
        ("fieldsize", "x", "f"): n, ("sizeof", "enum e"): n,
        ("value", "NAME"): n}."""
        lines = []

        def emit(key, expr):
            lines.append('  printf("%s %%lld\\n", (long long)(%s));\n'
                         % ("|".join(key), expr))

        for s, fields in self.structs.items():
            emit(("sizeof", "struct " + s), "sizeof(struct %s)" % s)
            emit(("alignof", "struct " + s), "alignof(struct %s)" % s)
            for _t, f in fields:
                emit(("offsetof", s, f), "offsetof(struct %s, %s)" % (s, f))
                emit(("fieldsize", s, f),
                     "sizeof(((struct %s *)0)->%s)" % (s, f))
        for e, members in self.enums.items():
            emit(("sizeof", "enum " + e), "sizeof(enum %s)" % e)
            for m in members:
                emit(("value", m), m)
        out = self._compile_run("int main(void) {\n%s  return 0;\n}\n"
                                % "".join(lines), workdir)
        numbers = {}
        for line in out.splitlines():
            key, value = line.rsplit(" ", 1)
            numbers[tuple(key.split("|"))] = int(value)
        return numbers
