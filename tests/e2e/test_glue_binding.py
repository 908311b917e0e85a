"""The Python glue's ctypes binding on its own (outside Kamailio): every
entry point it wraps, against the real library; and its ctypes declarations
against include/wic_tna.h (functions, structs, status codes)."""

import ast
import ctypes
import json
import sys

import pytest

from c_header import Header
from harness import EXAMPLE, ISSUER_A, ISSUER_B, LIBRARY, REPO, write_config
from tokens import identity, mint

sys.path.insert(0, str(EXAMPLE / "python"))

import wic_tna_glue as glue  # noqa: E402

TNA = ('Digest username="alice@socialnet.ims.example.net", '
       'realm="ims.example.net", uri="sip:ims.example.net", nonce="", '
       'response="", integrity-protected=auth-done')


@pytest.fixture
def lib():
    return glue.Library(str(LIBRARY))


@pytest.fixture
def ctx(lib, workdir):
    c = lib.context(write_config(workdir / "wic-tna.toml",
                                 state_file=workdir / "state"))
    yield c
    c.free()


def test_verify_accept_and_reject(ctx):
    impi, impu = identity()
    r = ctx.verify("Bearer " + mint(lifetime=300), impu, 3600)
    assert r.accepted and r.status == 200 and r.reason == "ok"
    assert r.impi == impi and r.impus == [impu] and r.issuer == ISSUER_A
    assert r.tna.startswith('Digest username="%s"' % impi)
    assert r.challenge == ""
    assert 250 <= r.granted_expires <= 300

    r = ctx.verify("Bearer " + mint(iat_offset=-900, exp_offset=-600), impu)
    assert not r.accepted and r.status == 401 and r.reason == "expired"
    assert 'error="invalid_token"' in r.challenge and r.tna == ""

    # no Authorization header at all: "no token", 401 without error code
    r = ctx.verify(None, impu)
    assert r.status == 401 and r.reason == "missing_token", r.as_dict()
    assert r.challenge.startswith("Bearer ") and "error=" not in r.challenge


def test_origin_bar_unbar_stats(ctx):
    assert ctx.origin_allowed("https://webrtc.socialnet.example")
    assert not ctx.origin_allowed("https://evil.example.org")
    ctx.set_barred(ISSUER_A, True)
    assert not ctx.origin_allowed("https://webrtc.socialnet.example")
    r = ctx.verify("Bearer " + mint(), identity()[1])
    assert r.status == 403 and r.reason == "issuer_barred"
    with pytest.raises(glue.WicTnaError) as e:
        ctx.set_barred("https://nobody.example", True)
    assert e.value.status == glue.STATUS_NOT_FOUND
    ctx.set_barred(ISSUER_A, False)
    assert ctx.verify("Bearer " + mint(), identity()[1]).accepted
    stats = json.loads(ctx.stats_json())
    assert stats["outcomes"][ISSUER_A]["issuer_barred"] == 1, stats


def test_reload_refused_keeps_old_config(ctx):
    path = ctx.config_path
    good = path.read_text()
    path.write_text(good + "\n[[issuer]\n")
    with pytest.raises(glue.WicTnaError) as e:
        ctx.reload()
    assert e.value.status == glue.STATUS_CONFIG_ERROR
    assert str(path) in e.value.message
    assert ctx.verify("Bearer " + mint(issuer="b", user="dave"),
                      identity("b", "dave")[1]).accepted
    path.write_text(good)
    ctx.reload()


def test_scscf_check(ctx):
    r = ctx.scscf_check(TNA, "127.0.0.1")
    assert r.accepted and r.impi == "alice@socialnet.ims.example.net"
    r = ctx.scscf_check(TNA, "::1")
    assert not r.accepted and r.status == 403
    r = ctx.scscf_check(TNA + ', authorization-entity="%s"' % ISSUER_B,
                        "127.0.0.1", ISSUER_A)
    assert not r.accepted and r.status == 403


def test_broken_config_is_an_error(lib, workdir):
    bad = workdir / "bad.toml"
    bad.write_text("home_realm = 42\n")
    with pytest.raises(glue.WicTnaError) as e:
        lib.context(bad)
    assert e.value.status == glue.STATUS_CONFIG_ERROR
    assert str(bad) in e.value.message


def test_log_callback(lib, workdir):
    seen = []
    lib.set_log_callback(lambda level, text: seen.append((level, text)))
    try:
        # the example's issuer B JWKS has a key meant for encryption, which
        # the library skips and reports at INFO (normal in a JWKS, not a
        # warning in every worker)
        lib.context(write_config(workdir / "w.toml")).free()
    finally:
        lib.set_log_callback(None)
    assert any(level == 3 and "skipped" in text for level, text in seen), seen
    assert not any(level <= 2 for level, _ in seen), seen


# --------------------------------------------------------------------------
# the proxy-neutral handler core (both proxies' handlers adapt to it)
# --------------------------------------------------------------------------


@pytest.fixture
def core(workdir):
    cfg = write_config(workdir / "core.toml", state_file=workdir / "state")
    c = glue.HandlerCore(str(cfg), str(LIBRARY))
    yield c
    # the library keeps the log callback: none once this Library is gone
    c.lib.set_log_callback(None)
    c.context().free()


def test_core_verify_plain_values(core):
    impi, impu = identity()
    token = "Bearer " + mint(lifetime=300)
    o = core.verify(glue.Register(token, impu, 3600))
    assert o.rc == 1 and o.values["status"] == 200 and o.values["impi"] == impi
    assert o.values["requested"] == 3600 and 250 <= o.values["expires"] <= 300
    assert set(glue.OUT_VARS) <= set(o.values)

    # two Authorization headers: 400 whatever the joined value gave
    o = core.verify(glue.Register([token, token], impu))
    assert o.rc == -1 and o.values["status"] == 400
    assert o.values["tna"] == "" and o.values["expires"] == 0

    # the proxy failing to give its values: 500, or 400 when malformed
    def broken():
        raise RuntimeError("no such pseudo-variable")

    def malformed():
        raise glue.Malformed("two expires parameters")

    o = core.verify(broken)
    assert (o.rc, o.values["status"], o.values["reason"]) == \
        (-2, 500, "internal_error")
    o = core.verify(malformed)
    assert (o.rc, o.values["status"], o.values["reason"]) == \
        (-1, 400, "malformed_request")


def test_core_requested_expiry():
    parts = lambda: ("sip:alice@192.0.2.1", "expires=7200;ob")  # noqa: E731
    e = glue.RequestedExpiry([], ["<sip:alice@192.0.2.1>;expires=7200;ob"],
                             parts)
    assert e.requested() == 7200
    assert e.cap_edits(300) == [
        ("remove", "Contact"),
        ("append", "Contact: <sip:alice@192.0.2.1>;expires=300;ob\r\n")]
    assert glue.RequestedExpiry(["0"], ["*"], parts).requested() == 0
    assert glue.RequestedExpiry(["600"], [], parts).requested() == -1
    for expires, contacts in ((["1", "2"], []), ([], ["<sip:a@b>", "<sip:c@d>"]),
                              (["x"], []), (["60"], ["*"])):
        with pytest.raises(glue.Malformed):
            glue.RequestedExpiry(expires, contacts, parts)


# --------------------------------------------------------------------------
# the ctypes declarations against include/wic_tna.h
# --------------------------------------------------------------------------

# the glue's class for each struct of the header it passes by value or
# pointer
GLUE_STRUCTS = {"wic_tna_request": glue.Request, "wic_tna_str": glue._Str}
GLUE_CALLBACKS = {"wic_tna_log_fn": glue.LOG_FN}
# the Python sources that call into the library
GLUE_SOURCES = [EXAMPLE / "python" / "wic_tna_glue.py",
                REPO / "opensips-example" / "wic_tna_opensips.py"]

_SCALARS = {
    "bool": [ctypes.c_bool],
    "int32_t": [ctypes.c_int32],
    "uint16_t": [ctypes.c_uint16],
    "uint32_t": [ctypes.c_uint32],
    "int64_t": [ctypes.c_int64],
    "size_t": [ctypes.c_size_t],
    # its size is checked against c_int's (test_glue_structs_and_status)
    "enum wic_tna_status": [ctypes.c_int, ctypes.c_uint],
}


def _ctypes_for(header, t):
    """The ctypes types that carry the C type t (a c_header.CType)."""
    base = t.base
    struct = base[len("struct "):] if base.startswith("struct ") else None
    opaque = struct in header.opaque
    if t.stars == 0:
        if base == "void":
            return [None]
        if base in _SCALARS:
            return _SCALARS[base]
        if struct in GLUE_STRUCTS:
            return [GLUE_STRUCTS[struct]]
        if base in GLUE_CALLBACKS:
            return [GLUE_CALLBACKS[base]]
    elif t.stars == 1:
        if base == "char":
            return [ctypes.c_char_p, ctypes.c_void_p]
        if base == "void" or opaque:
            return [ctypes.c_void_p]
        if struct in GLUE_STRUCTS:
            return [ctypes.POINTER(GLUE_STRUCTS[struct])]
        if base in _SCALARS:
            return [ctypes.POINTER(c) for c in _SCALARS[base]]
    elif t.stars == 2 and opaque:
        return [ctypes.POINTER(ctypes.c_void_p)]
    raise AssertionError("no ctypes mapping for the C type %s: add one to "
                         "test_glue_binding.py" % t)


def _name(c):
    return "None" if c is None else c.__name__


def _mismatch(header, what, ctype, declared):
    allowed = _ctypes_for(header, ctype)
    if declared in allowed:
        return None
    return "%s: the header has %s, the glue %s (expected one of %s)" % (
        what, ctype, _name(declared), ", ".join(map(_name, allowed)))


def _proto_mismatches(header, proto, restype, argtypes):
    errors = [_mismatch(header, proto.name + " returns", proto.ret, restype)]
    if len(argtypes) != len(proto.params):
        return errors + ["%s: %d parameters in the header, %d in the glue"
                         % (proto.name, len(proto.params), len(argtypes))]
    for (ctype, pname), declared in zip(proto.params, argtypes):
        errors.append(_mismatch(header, "%s(%s)" % (proto.name, pname), ctype,
                                declared))
    return errors


@pytest.fixture(scope="module")
def header(tmp_path_factory):
    h = Header()
    # every prototype as read, confirmed by the compiler
    h.check_parse(tmp_path_factory.mktemp("header"))
    assert h.functions and set(h.functions) == h.named, \
        "prototypes not read: %s" % sorted(h.named - set(h.functions))
    return h


def test_glue_functions_match_the_header(header):
    """Every function in the glue's table is the header's, with the same
    return and parameter types."""
    errors = []
    for name, (restype, argtypes) in glue.Library._SIGS.items():
        proto = header.functions.get(name)
        if proto is None:
            errors.append("%s: not in include/wic_tna.h" % name)
        else:
            errors += _proto_mismatches(header, proto, restype, argtypes)
    for name, cb in GLUE_CALLBACKS.items():
        errors += _proto_mismatches(header, header.callbacks[name],
                                    cb._restype_, cb._argtypes_)
    errors = [e for e in errors if e]
    assert not errors, "\n".join(errors)


def test_glue_declares_every_function_it_calls(header):
    """A library function called without a ctypes declaration would be
    called with int arguments and an int result: every wic_tna_* attribute
    the glue and the OpenSIPS adapter use is either in the glue's table or
    one of their own Python methods."""
    errors = []
    for path in GLUE_SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        own = {n.name for n in ast.walk(tree)
               if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        for n in ast.walk(tree):
            if not (isinstance(n, ast.Attribute)
                    and n.attr.startswith("wic_tna_")):
                continue
            if n.attr in header.functions:
                if n.attr not in glue.Library._SIGS:
                    errors.append("%s:%d calls %s, not declared in "
                                  "Library._SIGS" % (path.name, n.lineno,
                                                     n.attr))
            elif n.attr not in own:
                errors.append("%s:%d uses %s: neither in the header nor a "
                              "method of its own" % (path.name, n.lineno,
                                                     n.attr))
    assert not errors, "\n".join(errors)


def test_glue_structs_and_status_match_the_header(header, tmp_path):
    """Struct fields (names, order, types), sizes, alignments and offsets,
    and the status codes, as the C compiler has them."""
    numbers = header.layout(tmp_path)
    errors = []
    for sname, cls in GLUE_STRUCTS.items():
        fields = header.structs[sname]
        names = [f for _t, f in fields]
        glue_names = [f[0] for f in cls._fields_]
        if names != glue_names:
            errors.append("struct %s: fields %s in the header, %s in the glue"
                          % (sname, names, glue_names))
            continue
        for (ctype, f), (_n, declared) in zip(fields, cls._fields_):
            errors.append(_mismatch(header, "%s.%s" % (sname, f), ctype,
                                    declared))
            desc = getattr(cls, f)
            for what, c, py in (("offset", ("offsetof", sname, f), desc.offset),
                                ("size", ("fieldsize", sname, f), desc.size)):
                if numbers[c] != py:
                    errors.append("%s.%s: %s %d in C, %d in the glue"
                                  % (sname, f, what, numbers[c], py))
        for what, py in (("sizeof", ctypes.sizeof(cls)),
                         ("alignof", ctypes.alignment(cls))):
            c = numbers[(what, "struct " + sname)]
            if c != py:
                errors.append("struct %s: %s %d in C, %d in the glue"
                              % (sname, what, c, py))
    if numbers[("sizeof", "enum wic_tna_status")] != ctypes.sizeof(
            ctypes.c_int):
        errors.append("enum wic_tna_status is not the size of an int")
    prefix = "WIC_TNA_"
    in_header = {m[len(prefix):]: numbers[("value", m)]
                 for m in header.enums["wic_tna_status"]}
    in_glue = {k: v for k, v in vars(glue).items()
               if k.startswith("STATUS_") and isinstance(v, int)}
    for name in sorted(set(in_header) | set(in_glue)):
        if in_header.get(name) != in_glue.get(name):
            errors.append("%s: %s in the header, %s in the glue" % (
                name, in_header.get(name, "none"), in_glue.get(name, "none")))
    errors = [e for e in errors if e]
    assert not errors, "\n".join(errors)


def test_status_message_from_the_library(lib):
    assert lib.status_message(glue.STATUS_NOT_FOUND) != \
        lib.status_message(glue.STATUS_OK)
    assert lib.status_message(1) == "unknown status"
