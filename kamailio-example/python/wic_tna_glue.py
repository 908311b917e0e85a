"""wic-tna from Kamailio's app_python3, with no C compiler: a ctypes binding
over libwic_tna.so (include/wic_tna.h) and a KEMI-style handler object.

One file, three parts, so that a deployment is this file plus, for another
proxy, that proxy's adapter:

  * the ctypes binding (`Library`, `Context`, `Result`, `Shared`): plain
    Python, usable anywhere; tests/e2e/test_glue_binding.py checks its
    declarations against include/wic_tna.h;
  * the proxy-neutral handler core (`HandlerCore`, `Register`, `Outcome`,
    `RequestedExpiry`): the decisions of the cfg functions over plain values
    (Authorization value(s), To, requested expiry or Contact/Expires
    values, binding, Origin in; return code and result variables out);
  * the Kamailio adapter (`WicTnaHandler`, `RegisterExpiry`, `mod_init()`):
    KSR in and out, nothing decided. OpenSIPS's adapter is
    opensips-example/wic_tna_opensips.py, over the same core.

The Kamailio handler follows app_python3's contract (Debian's
kamailio-python3-modules 5.6, embedded /usr/bin/python3):

  * `mod_init()` runs once in the main process BEFORE Kamailio forks: it
    loads the library, routes its log to Kamailio's (KSR.err/warn/info/dbg)
    and test-loads the configuration so that a broken one stops the start.
  * `child_init(rank)` runs in every process after the fork: each creates its
    own context.
  * cfg functions, called with python_exec("name"):
      wic_tna_verify   in: $var(wic_auth) (Authorization value), $tu,
                           the REGISTER's Contact and Expires headers (the
                           expiry asked for: RegisterExpiry; at most one
                           Contact holding one contact, else 400)
                           $var(wic_binding) (replay binding: the
                           request's connection or source, e.g. $pr:$si:$sp)
                           $var(wic_origin) (the WebSocket handshake's
                           Origin kept for the connection; unset, 0 or
                           empty: none, not checked)
                       out: $var(wic_status) $var(wic_reason)
                           $var(wic_challenge) $var(wic_tna) $var(wic_impi)
                           $var(wic_impus) $var(wic_issuer) $var(wic_subject)
                           $var(wic_expires) $var(wic_requested) (the
                           expiry asked for: -1 none, 0 de-registration)
                       returns 1 accepted, -1 rejected, -2 internal error
      wic_tna_cap_expires  after an accepted wic_tna_verify: the Contact's
                       expires and the Expires header at most
                       $var(wic_expires); returns 1, or -1
      wic_tna_origin   in: $hdr(Origin); returns 1 allowed, -1 not, -2 error
      wic_tna_scscf_check  in: $var(wic_auth), $si, $var(wic_entities)
                       out: as wic_tna_verify
      wic_tna_tick     background work, from ONE rtimer process; 1, or -1
  * Barring, unbarring and reloading go through the configuration's
    `state_file`, shared by every worker and the CLI:
        wic-tna bar --config <cfg> <iss>    wic-tna reload --config <cfg>
    (app_python3 cannot register RPC commands of its own).

Environment (Kamailio passes its environment to the embedded Python):
  WIC_TNA_CONFIG   path of the TOML configuration (/etc/wic-tna/wic-tna.toml)
  WIC_TNA_LIBRARY  path of libwic_tna.so (default: the repository's
                   target/release/libwic_tna.so, else the loader's search)
"""

import ctypes
import os

# --------------------------------------------------------------------------
# ctypes binding
# --------------------------------------------------------------------------

STATUS_OK = 0
STATUS_NULL_ARGUMENT = 7101
STATUS_INVALID_ARGUMENT = 7102
STATUS_CONFIG_ERROR = 7103
STATUS_BUFFER_TOO_SMALL = 7104
STATUS_NOT_FOUND = 7105
STATUS_IO_ERROR = 7106
STATUS_PANIC = 7199


class WicTnaError(Exception):
    """A library call failed; .status is the wic_tna_status code."""

    def __init__(self, status, message):
        super().__init__("%s (status %d)" % (message, status))
        self.status = status
        self.message = message


class _Str(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class Request(ctypes.Structure):
    """struct wic_tna_request (include/wic_tna.h): NULL with length 0 is
    an absent input; struct_size must be sizeof(struct wic_tna_request)."""
    _fields_ = [("struct_size", ctypes.c_size_t),
                ("authorization", ctypes.c_char_p),
                ("authorization_len", ctypes.c_size_t),
                ("to_uri", ctypes.c_char_p),
                ("to_uri_len", ctypes.c_size_t),
                ("requested_expires", ctypes.c_int64),
                ("binding", ctypes.c_char_p),
                ("binding_len", ctypes.c_size_t),
                ("origin", ctypes.c_char_p),
                ("origin_len", ctypes.c_size_t),
                ("now_unix", ctypes.c_int64)]


LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p,
                          ctypes.c_size_t, ctypes.c_void_p)

_P = ctypes.c_void_p
_SZ = ctypes.c_size_t
_CP = ctypes.c_char_p


def _default_library_path():
    env = os.environ.get("WIC_TNA_LIBRARY")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    repo_lib = os.path.join(here, "..", "..", "target", "release",
                            "libwic_tna.so")
    if os.path.exists(repo_lib):
        return os.path.normpath(repo_lib)
    return "libwic_tna.so"


def _bytes(value):
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


class Library:
    """libwic_tna.so loaded with ctypes; one per process is enough."""

    # name: (restype, argtypes), as include/wic_tna.h declares them
    # (tests/e2e/test_glue_binding.py fails when the two differ)
    _SIGS = {
        "wic_tna_version": (ctypes.c_char_p, []),
        "wic_tna_status_message": (ctypes.c_char_p, [ctypes.c_uint32]),
        "wic_tna_set_log_callback": (None, [LOG_FN, _P]),
        "wic_tna_last_error": (ctypes.c_int, [_P, _SZ, ctypes.POINTER(_SZ)]),
        "wic_tna_shared_new_anonymous": (ctypes.c_int, [ctypes.POINTER(_P)]),
        "wic_tna_shared_open": (ctypes.c_int, [_CP, _SZ, ctypes.POINTER(_P)]),
        "wic_tna_shared_free": (None, [_P]),
        "wic_tna_ctx_new": (ctypes.c_int, [_CP, _SZ, _P, ctypes.POINTER(_P)]),
        "wic_tna_ctx_free": (None, [_P]),
        "wic_tna_ctx_reload": (ctypes.c_int, [_P]),
        "wic_tna_ctx_tick": (ctypes.c_int, [_P]),
        "wic_tna_ctx_set_barred": (ctypes.c_int, [_P, _CP, _SZ, ctypes.c_bool]),
        "wic_tna_ctx_stats_json": (ctypes.c_int,
                                   [_P, _P, _SZ, ctypes.POINTER(_SZ)]),
        "wic_tna_verify": (ctypes.c_int, [_P, _CP, _SZ, _CP, _SZ,
                                          ctypes.c_int64, ctypes.POINTER(_P)]),
        "wic_tna_verify_bound": (ctypes.c_int, [_P, _CP, _SZ, _CP, _SZ,
                                                ctypes.c_int64, _CP, _SZ,
                                                ctypes.c_int64,
                                                ctypes.POINTER(_P)]),
        "wic_tna_verify_request": (ctypes.c_int, [_P, ctypes.POINTER(Request),
                                                  ctypes.POINTER(_P)]),
        "wic_tna_origin_allowed": (ctypes.c_int, [_P, _CP, _SZ,
                                                  ctypes.POINTER(ctypes.c_bool)]),
        "wic_tna_scscf_check": (ctypes.c_int, [_P, _CP, _SZ, _CP, _SZ, _CP, _SZ,
                                               ctypes.POINTER(_P)]),
        "wic_tna_result_accepted": (ctypes.c_bool, [_P]),
        "wic_tna_result_sip_status": (ctypes.c_uint16, [_P]),
        "wic_tna_result_reason": (_Str, [_P]),
        "wic_tna_result_www_authenticate": (_Str, [_P]),
        "wic_tna_result_tna_header": (_Str, [_P]),
        "wic_tna_result_impi": (_Str, [_P]),
        "wic_tna_result_issuer": (_Str, [_P]),
        "wic_tna_result_subject": (_Str, [_P]),
        "wic_tna_result_scope": (_Str, [_P]),
        "wic_tna_result_error_description": (_Str, [_P]),
        "wic_tna_result_impu_count": (_SZ, [_P]),
        "wic_tna_result_impu": (_Str, [_P, _SZ]),
        "wic_tna_result_expires_at": (ctypes.c_int64, [_P]),
        "wic_tna_result_seconds_left": (ctypes.c_int64, [_P]),
        "wic_tna_result_granted_expires": (ctypes.c_int64, [_P]),
        "wic_tna_result_free": (None, [_P]),
    }

    def __init__(self, path=None):
        self.path = path or _default_library_path()
        self.dll = ctypes.CDLL(self.path)
        for name, (restype, argtypes) in self._SIGS.items():
            fn = getattr(self.dll, name)
            fn.restype = restype
            fn.argtypes = argtypes
        self._log_cb = None  # keep the ctypes callback alive

    def version(self):
        return self.dll.wic_tna_version().decode()

    def last_error(self):
        need = _SZ(0)
        buf = ctypes.create_string_buffer(512)
        rc = self.dll.wic_tna_last_error(buf, len(buf), ctypes.byref(need))
        if rc == STATUS_BUFFER_TOO_SMALL:
            buf = ctypes.create_string_buffer(need.value + 1)
            rc = self.dll.wic_tna_last_error(buf, len(buf), ctypes.byref(need))
        if rc != STATUS_OK:
            return "(no error message: status %d)" % rc
        return buf.value.decode("utf-8", "replace")

    def status_message(self, status):
        """The library's fixed description of a wic_tna_status code."""
        return self.dll.wic_tna_status_message(int(status)).decode(
            "utf-8", "replace")

    def check(self, rc, what):
        if rc != STATUS_OK:
            # the call's own message; the status's, should it leave none
            message = self.last_error() or self.status_message(rc)
            raise WicTnaError(rc, "%s: %s" % (what, message))

    def set_log_callback(self, fn):
        """fn(level, message): 1 error, 2 warning, 3 info, 4 debug.
        None restores the library's default."""
        if fn is None:
            self._log_cb = None
            self.dll.wic_tna_set_log_callback(LOG_FN(), None)
            return

        def trampoline(level, msg, msg_len, _userdata):
            try:
                text = ctypes.string_at(msg, msg_len).decode("utf-8",
                                                             "replace")
                fn(level, text.rstrip("\r\n"))
            except Exception:  # never raise into the library
                pass

        self._log_cb = LOG_FN(trampoline)
        self.dll.wic_tna_set_log_callback(self._log_cb, None)

    def shared_new_anonymous(self):
        out = _P()
        self.check(self.dll.wic_tna_shared_new_anonymous(ctypes.byref(out)),
                   "shared state")
        return Shared(self, out)

    def shared_open(self, path):
        b = _bytes(path)
        out = _P()
        self.check(self.dll.wic_tna_shared_open(b, len(b), ctypes.byref(out)),
                   "shared state %s" % path)
        return Shared(self, out)

    def context(self, config_path, shared=None):
        return Context(self, config_path, shared)

    def string(self, s):
        if not s.len or not s.ptr:
            return ""
        return ctypes.string_at(s.ptr, s.len).decode("utf-8", "replace")


class Shared:
    def __init__(self, lib, handle):
        self.lib = lib
        self.handle = handle

    def free(self):
        if self.handle:
            self.lib.dll.wic_tna_shared_free(self.handle)
            self.handle = None


class Result:
    """A snapshot of a wic_tna_result (the C object is freed at once)."""

    FIELDS = ("accepted", "status", "reason", "challenge", "tna", "impi",
              "impus", "issuer", "subject", "scope", "error_description",
              "expires_at", "seconds_left", "granted_expires")

    def __init__(self, lib, handle):
        d = lib.dll
        s = lib.string
        self.accepted = bool(d.wic_tna_result_accepted(handle))
        self.status = int(d.wic_tna_result_sip_status(handle))
        self.reason = s(d.wic_tna_result_reason(handle))
        self.challenge = s(d.wic_tna_result_www_authenticate(handle))
        self.tna = s(d.wic_tna_result_tna_header(handle))
        self.impi = s(d.wic_tna_result_impi(handle))
        self.impus = [s(d.wic_tna_result_impu(handle, i))
                      for i in range(d.wic_tna_result_impu_count(handle))]
        self.issuer = s(d.wic_tna_result_issuer(handle))
        self.subject = s(d.wic_tna_result_subject(handle))
        self.scope = s(d.wic_tna_result_scope(handle))
        self.error_description = s(d.wic_tna_result_error_description(handle))
        self.expires_at = int(d.wic_tna_result_expires_at(handle))
        self.seconds_left = int(d.wic_tna_result_seconds_left(handle))
        self.granted_expires = int(d.wic_tna_result_granted_expires(handle))

    @classmethod
    def take(cls, lib, handle):
        try:
            return cls(lib, handle)
        finally:
            lib.dll.wic_tna_result_free(handle)

    def as_dict(self):
        return {f: getattr(self, f) for f in self.FIELDS}

    def __repr__(self):
        return "<Result %d %s>" % (self.status, self.reason)


class Context:
    """A wic_tna_ctx: one per process (not shared across a fork)."""

    def __init__(self, lib, config_path, shared=None):
        self.lib = lib
        self.config_path = config_path
        b = _bytes(config_path)
        out = _P()
        self.lib.check(self.lib.dll.wic_tna_ctx_new(
            b, len(b), shared.handle if shared else None, ctypes.byref(out)),
            "configuration %s" % config_path)
        self.handle = out

    def free(self):
        if self.handle:
            self.lib.dll.wic_tna_ctx_free(self.handle)
            self.handle = None

    def verify(self, authorization, to_uri=None, requested_expires=-1,
               binding=None, origin=None):
        """An empty or None authorization means: no Authorization header.
        requested_expires: < 0 none, 0 a de-registration.
        binding names the request's connection or source for replay
        detection ([replay]); None or empty: none (then, with [replay]
        enabled, the library fails closed).
        origin is the WebSocket handshake's Origin of the connection the
        request came over; None: none (not checked); any other value,
        even "", must be listed in the token's issuer's origins (else 403
        origin_not_allowed)."""
        # No value: no Authorization header; the library takes NULL with
        # length 0 as that (401 missing_token with a challenge).
        a = _bytes(authorization or "") or None
        t = _bytes(to_uri) if to_uri else None
        b = _bytes(binding) if binding else None
        o = None if origin is None else _bytes(origin)
        req = Request()
        req.struct_size = ctypes.sizeof(Request)
        req.authorization, req.authorization_len = a, len(a) if a else 0
        req.to_uri, req.to_uri_len = t, len(t) if t else 0
        req.requested_expires = int(requested_expires)
        req.binding, req.binding_len = b, len(b) if b else 0
        # (b"" is a non-NULL pointer to an empty string: present, empty.)
        req.origin, req.origin_len = o, len(o) if o is not None else 0
        req.now_unix = 0
        out = _P()
        self.lib.check(self.lib.dll.wic_tna_verify_request(
            self.handle, ctypes.byref(req), ctypes.byref(out)), "verify")
        return Result.take(self.lib, out)

    def origin_allowed(self, origin):
        o = _bytes(origin or "")
        allowed = ctypes.c_bool(False)
        self.lib.check(self.lib.dll.wic_tna_origin_allowed(
            self.handle, o, len(o), ctypes.byref(allowed)), "origin")
        return bool(allowed.value)

    def scscf_check(self, authorization, source_ip, allowed_entities=None):
        a = _bytes(authorization or "")
        s = _bytes(source_ip or "")
        e = _bytes(allowed_entities) if allowed_entities else None
        out = _P()
        self.lib.check(self.lib.dll.wic_tna_scscf_check(
            self.handle, a, len(a), s, len(s), e, len(e) if e else 0,
            ctypes.byref(out)), "scscf_check")
        return Result.take(self.lib, out)

    def reload(self):
        self.lib.check(self.lib.dll.wic_tna_ctx_reload(self.handle), "reload")

    def tick(self):
        """Background work (remote key set fetches): call it from exactly
        ONE process, every 250 ms to 1 s (e.g. Kamailio's rtimer), never
        from a SIP worker; it may wait on the network up to the configured
        fetch timeouts. Workers pick its results up through the shared
        state."""
        self.lib.check(self.lib.dll.wic_tna_ctx_tick(self.handle), "tick")

    def set_barred(self, iss, barred=True):
        b = _bytes(iss)
        self.lib.check(self.lib.dll.wic_tna_ctx_set_barred(
            self.handle, b, len(b), bool(barred)),
            "bar" if barred else "unbar")

    def stats_json(self):
        need = _SZ(0)
        buf = ctypes.create_string_buffer(4096)
        rc = self.lib.dll.wic_tna_ctx_stats_json(self.handle, buf, len(buf),
                                                 ctypes.byref(need))
        if rc == STATUS_BUFFER_TOO_SMALL:
            buf = ctypes.create_string_buffer(need.value + 1)
            rc = self.lib.dll.wic_tna_ctx_stats_json(self.handle, buf,
                                                     len(buf),
                                                     ctypes.byref(need))
        self.lib.check(rc, "stats")
        return buf.raw[:need.value].decode("utf-8", "replace")


# --------------------------------------------------------------------------
# proxy-neutral handler core
# --------------------------------------------------------------------------
#
# What a proxy's cfg functions decide, over plain values: a proxy adapter
# (WicTnaHandler below for Kamailio, opensips-example/wic_tna_opensips.py
# for OpenSIPS) reads the request through its proxy's API into a Register,
# hands it to HandlerCore, and writes the Outcome's values back as its
# proxy's variables. Nothing here imports a proxy's module.

# the result variables every adapter sets, as wic_<name>; Kamailio's also
# sets wic_requested (Outcome.values has it too)
OUT_VARS = ("status", "reason", "challenge", "tna", "impi", "impus",
            "issuer", "subject", "expires")


class Malformed(ValueError):
    """A REGISTER's Contact or Expires the proxy refuses (400)."""


def _delta(text, what):
    """delta-seconds (RFC 3261 25.1: 1*DIGIT) of any size, saturated."""
    text = text.strip()
    if not text or not text.isascii() or not text.isdigit():
        raise Malformed("%s is not a number: %r" % (what, text[:40]))
    return min(int(text[:12]), 0x7fffffff)


def _split_params(params):
    """';'-separated parameters of one contact as [(name, value or None,
    quoted)], split outside double quotes.

    Why by hand: app_python3 gives no access to Kamailio's contact parser
    (the native module uses it: wic_tna_register.c). Kamailio has already
    split the name-addr from the parameters ($(ct{tobody.params})); what is
    left is this split, which refuses what it cannot read (an unterminated
    quote) rather than guess."""
    out, cur, quoted, was_quoted = [], [], False, False
    for ch in params + ";":
        if ch == '"':
            quoted = not quoted
            was_quoted = True
            cur.append(ch)
        elif ch == ";" and not quoted:
            item = "".join(cur).strip()
            if item:
                name, eq, value = item.partition("=")
                out.append((name.strip().lower(), value.strip() if eq else None,
                            was_quoted))
            cur, was_quoted = [], False
        else:
            cur.append(ch)
    if quoted:
        raise Malformed("unterminated quote in Contact parameters")
    return out


def _one_contact(value):
    """A Contact header value holds one contact: no ',' outside quotes and
    angle brackets (several contacts in one header are refused here: the
    glue cannot rewrite them one by one)."""
    quoted, angle = False, False
    for ch in value:
        if ch == '"' and not angle:
            quoted = not quoted
        elif ch == "<" and not quoted:
            angle = True
        elif ch == ">" and not quoted:
            angle = False
        elif ch == "," and not quoted and not angle:
            return False
    return not quoted


class RequestedExpiry:
    """The expiry a REGISTER asks for, from its headers as plain values, and
    the header edits that cap it.

    Fail closed, like the native module's wic_tna_cap_expires() but
    stricter where a script cannot use the proxy's contact parser: at most
    one Contact header holding one contact (else 400); every `expires`
    parameter a plain number; at most one Expires header, a number.

    expires_values, contact_values: the values of the request's Expires and
    Contact headers, in order (one entry per header; past the first, only
    their number counts). contact_parts(): the proxy's reading of the
    one contact as (URI, ';'-parameters text), a false URI when it does not
    parse; called only when there is one contact to read."""

    def __init__(self, expires_values, contact_values, contact_parts):
        if len(expires_values) > 1:
            raise Malformed("more than one Expires header")
        self.expires_hdr = None
        if expires_values:
            self.expires_hdr = _delta(str(expires_values[0] or ""), "Expires")
        if len(contact_values) > 1:
            raise Malformed("more than one Contact header")
        self.contact = None
        self.star = False
        self.param_expires = None
        if not contact_values:
            return
        raw = str(contact_values[0] or "").strip()
        if raw == "*":
            self.star = True
            if self.expires_hdr != 0:
                raise Malformed("Contact: * with an Expires other than 0")
            return
        if not _one_contact(raw):
            raise Malformed("more than one contact in Contact")
        uri, params = contact_parts()
        if not uri:
            raise Malformed("Contact does not parse")
        self.contact = (str(uri), _split_params(str(params or "")))
        for name, value, quoted in self.contact[1]:
            if name != "expires":
                continue
            if self.param_expires is not None:
                raise Malformed("two expires parameters")
            if value is None or quoted:
                raise Malformed("contact expires without a plain value")
            self.param_expires = _delta(value, "contact expires")

    def requested(self):
        """-1: no expiry asked for; 0: a de-registration; else seconds."""
        if self.star:
            return 0
        if self.contact is None:
            return -1
        if self.param_expires is not None:
            return self.param_expires
        return -1 if self.expires_hdr is None else self.expires_hdr

    def cap_edits(self, cap):
        """The header edits that bring the Contact and Expires to at most
        cap seconds, in order: ("remove", header name) or ("append", whole
        header line with its CRLF)."""
        edits = []
        if self.star:
            return edits
        if self.contact is not None and self.param_expires is not None \
                and self.param_expires > cap:
            uri, params = self.contact
            text = "<%s>" % uri
            for name, value, _q in params:
                if name == "expires":
                    value = str(cap)
                text += ";" + name + ("" if value is None else "=" + value)
            edits += [("remove", "Contact"),
                      ("append", "Contact: %s\r\n" % text)]
        if self.expires_hdr is not None and self.expires_hdr > cap:
            edits += [("remove", "Expires"),
                      ("append", "Expires: %d\r\n" % cap)]
        elif self.expires_hdr is None and self.contact is not None \
                and self.param_expires is None:
            edits.append(("append", "Expires: %d\r\n" % cap))
        return edits


class Register:
    """One REGISTER's inputs, as plain values read by a proxy adapter.

    authorization: the Authorization value, or the list of the values of
      every Authorization header ('' or []: no header; two or more: 400
      malformed_request, with the library's challenge for the joined
      values).
    to_uri: the To URI or whole To value; None skips the To check.
    requested_expires: < 0 none, 0 a de-registration; or expiry: a
      RequestedExpiry, which then gives it.
    binding, origin: as Context.verify."""

    def __init__(self, authorization, to_uri=None, requested_expires=-1,
                 binding=None, origin=None, expiry=None):
        if isinstance(authorization, (list, tuple)):
            self.authorization = ", ".join(authorization)
            self.authorization_count = len(authorization)
        else:
            self.authorization = authorization or ""
            self.authorization_count = 1 if authorization else 0
        self.to_uri = to_uri
        self.expiry = expiry
        self.requested_expires = (expiry.requested() if expiry is not None
                                  else int(requested_expires))
        self.binding = binding
        self.origin = origin


def _failure_values(status, reason):
    values = dict.fromkeys(OUT_VARS, "")
    values.update(status=status, reason=reason, expires=0, requested=-1)
    return values


def _result_values(result, requested=-1):
    return {"status": result.status, "reason": result.reason,
            "challenge": result.challenge, "tna": result.tna,
            "impi": result.impi, "impus": ",".join(result.impus),
            "issuer": result.issuer, "subject": result.subject,
            "expires": result.granted_expires, "requested": requested}


class Outcome:
    """What a cfg function hands back to its proxy: rc (1 accepted, -1
    rejected, -2 internal error) and values, the result variables by name
    (OUT_VARS and "requested"; status, expires and requested are ints).
    result is the library's Result (None on a failure before it), register
    the request's inputs (None when they could not be read)."""

    def __init__(self, rc, values, result=None, register=None):
        self.rc = rc
        self.values = values
        self.result = result
        self.register = register

    def __repr__(self):
        return "<Outcome %d %s %s>" % (self.rc, self.values["status"],
                                       self.values["reason"])


def _given(value_or_read):
    """A value, or a function of no arguments giving it: an adapter passes
    a function, so that its proxy failing to give a value falls under the
    core's error handling like a failing library call."""
    return value_or_read() if callable(value_or_read) else value_or_read


class HandlerCore:
    """The cfg functions' decisions, for any proxy. A proxy adapter
    subclasses it, sets `log` (the proxy's logger: level 1 error, 2
    warning, 3 info, 4 debug) and `routes_sip(rank)`, and adapts the
    proxy's request and variables to `verify`, `scscf_check`, `origin` and
    `tick`."""

    def log(self, level, text):
        pass

    @staticmethod
    def routes_sip(rank):
        """Does the process of this rank route SIP (so it makes its context
        in child_init, not on first use)?"""
        return rank >= 1

    def __init__(self, config_path=None, library_path=None):
        # main process, before the fork
        self.config_path = config_path or os.environ.get(
            "WIC_TNA_CONFIG", "/etc/wic-tna/wic-tna.toml")
        self.lib = Library(library_path)
        self.lib.set_log_callback(self.log)
        # test load: a broken configuration stops the proxy's start
        try:
            Context(self.lib, self.config_path).free()
        except WicTnaError as e:
            self.log(1, "cannot load the configuration: %s" % e)
            raise
        self.ctx = None
        self.log(3, "wic-tna %s (ctypes), configuration %s loaded"
                 % (self.lib.version(), self.config_path))

    def child_init(self, rank):
        if not self.routes_sip(rank):
            # a context is made on first use should this process need one
            return 0
        try:
            self.context()
        except WicTnaError as e:
            self.log(1, "child %d: %s" % (rank, e))
            return -1
        return 0

    def context(self):
        if self.ctx is None:
            # shared=None: the configuration's state_file, which the CLI
            # (bar/unbar/reload) also opens
            self.ctx = Context(self.lib, self.config_path)
        return self.ctx

    def verify(self, register):
        """A REGISTER's token. register: a Register, or a function giving
        one (Malformed from it: 400 malformed_request). Accepted (1) takes
        the library's acceptance with a TNA header to forward and a single
        Authorization header."""
        try:
            reg = _given(register)
            result = self.context().verify(reg.authorization, reg.to_uri,
                                           reg.requested_expires, reg.binding,
                                           reg.origin)
        except Malformed as e:
            self.log(4, "malformed REGISTER: %s" % e)
            return Outcome(-1, _failure_values(400, "malformed_request"))
        except Exception as e:
            self.log(1, "token verification failed: %s" % e)
            return Outcome(-2, _failure_values(500, "internal_error"))
        values = _result_values(result, reg.requested_expires)
        accepted = result.accepted and values["tna"] != ""
        if reg.authorization_count > 1:
            # two tokens: malformed, whatever the joined value gave
            values.update(status=400, tna="", expires=0)
            if result.status != 400:
                values["reason"] = "malformed_request"
            accepted = False
        return Outcome(1 if accepted else -1, values, result, reg)

    def scscf_check(self, inputs):
        """S-CSCF side. inputs: (Authorization value, source IP, allowed
        entities or None), or a function giving them."""
        try:
            authorization, source_ip, entities = _given(inputs)
            result = self.context().scscf_check(authorization, source_ip,
                                                entities)
        except Exception as e:
            self.log(1, "S-CSCF check failed: %s" % e)
            return Outcome(-2, _failure_values(500, "internal_error"))
        return Outcome(1 if result.accepted else -1, _result_values(result),
                       result)

    def origin(self, origin):
        """1 when the Origin (or a function giving it) is allowed for some
        issuer, -1 when not, -2 on an error."""
        try:
            return 1 if self.context().origin_allowed(_given(origin)) else -1
        except Exception as e:
            self.log(1, "origin check failed: %s" % e)
            return -2

    def tick(self):
        """Background work: for ONE process (Context.tick)."""
        try:
            self.context().tick()
        except Exception as e:
            self.log(1, "tick failed: %s" % e)
            return -1
        return 1


# --------------------------------------------------------------------------
# Kamailio adapter (app_python3)
# --------------------------------------------------------------------------

# process ranks (src/core/sr_module.h) that never route SIP
_PROC_MAIN = 0
_PROC_TCP_MAIN = -4
_PROC_INIT = -127
_PROC_POSTCHILDINIT = -126

_KAMAILIO_VARS = OUT_VARS + ("requested",)


def _ksr():
    import KSR  # only inside Kamailio

    return KSR


def _kamailio_log(level, text):
    KSR = _ksr()
    text = "wic_tna_glue: " + text
    if level == 1:
        KSR.err(text + "\n")
    elif level == 2:
        KSR.warn(text + "\n")
    elif level == 3:
        KSR.info(text + "\n")
    else:
        KSR.dbg(text + "\n")


def _ksr_str(KSR, spec):
    v = KSR.pv.get(spec)
    return "" if v is None else str(v)


def _ksr_header_values(KSR, name):
    """One entry per header called name, the first one's value first:
    RequestedExpiry refuses a second header without reading it, so the
    others are not read (None)."""
    n = KSR.pv.get("$hdrc(%s)" % name) or 0
    if n < 1:
        return []
    return [KSR.pv.get("$hdr(%s)" % name)] + [None] * (n - 1)


class RegisterExpiry(RequestedExpiry):
    """RequestedExpiry read through KSR; cap() rewrites the request."""

    def __init__(self, KSR):
        self.KSR = KSR
        super().__init__(
            _ksr_header_values(KSR, "Expires"),
            _ksr_header_values(KSR, "Contact"),
            lambda: (KSR.pv.get("$(ct{tobody.uri})"),
                     KSR.pv.get("$(ct{tobody.params})")))

    def cap(self, cap):
        """Rewrite the Contact and Expires to at most cap seconds."""
        for edit, arg in self.cap_edits(cap):
            if edit == "remove":
                self.KSR.textops.remove_hf(arg)
            else:
                self.KSR.hdr.append(arg)


def _ksr_register(KSR):
    """wic_tna_verify's inputs (see the module's docstring)."""
    expiry = RegisterExpiry(KSR)
    auth = _ksr_str(KSR, "$var(wic_auth)")
    to_uri = _ksr_str(KSR, "$tu") or None
    binding = _ksr_str(KSR, "$var(wic_binding)") or None
    # An unset $var reads as the integer 0: no Origin.
    origin = KSR.pv.get("$var(wic_origin)")
    if not isinstance(origin, str) or origin == "":
        origin = None
    return Register(auth, to_uri, binding=binding, origin=origin,
                    expiry=expiry)


def _ksr_set(KSR, values):
    for name in _KAMAILIO_VARS:
        value = values[name]
        if isinstance(value, int):
            KSR.pv.seti("$var(wic_%s)" % name, value)
        else:
            KSR.pv.sets("$var(wic_%s)" % name, value)


class WicTnaHandler(HandlerCore):
    """The object app_python3 calls (python_exec("method")): KSR in and
    out; the decisions are HandlerCore's."""

    log = staticmethod(_kamailio_log)

    @staticmethod
    def routes_sip(rank):
        return rank not in (_PROC_INIT, _PROC_MAIN, _PROC_TCP_MAIN,
                            _PROC_POSTCHILDINIT)

    def __init__(self, config_path=None, library_path=None):
        super().__init__(config_path, library_path)
        # the last accepted REGISTER's expiry and grant, for
        # wic_tna_cap_expires
        self.expiry = None
        self.granted = None

    def wic_tna_verify(self, msg, *args):
        """A REGISTER's token; the expiry asked for is read from the
        request (RegisterExpiry): $var(wic_requested)."""
        KSR = _ksr()
        self.expiry = None
        self.granted = None
        outcome = self.verify(lambda: _ksr_register(KSR))
        _ksr_set(KSR, outcome.values)
        if outcome.rc == 1:
            self.expiry = outcome.register.expiry
            self.granted = outcome.result.granted_expires
        return outcome.rc

    def wic_tna_cap_expires(self, msg, *args):
        """After an accepted wic_tna_verify: every expiry of the REGISTER
        at most the granted one. 1, or -1 (no accepted check before it)."""
        if self.expiry is None or self.granted is None:
            _kamailio_log(1, "wic_tna_cap_expires without an accepted check")
            return -1
        try:
            self.expiry.cap(max(0, int(self.granted)))
        except Exception as e:
            _kamailio_log(1, "capping the expiry failed: %s" % e)
            return -1
        finally:
            self.expiry = None
            self.granted = None
        return 1

    def wic_tna_origin(self, msg, *args):
        KSR = _ksr()
        return self.origin(lambda: _ksr_str(KSR, "$hdr(Origin)"))

    def wic_tna_tick(self, msg, *args):
        """For ONE rtimer process (epcscf-python.cfg: route[WIC_TICK])."""
        return self.tick()

    def wic_tna_scscf_check(self, msg, *args):
        KSR = _ksr()
        outcome = self.scscf_check(lambda: (
            _ksr_str(KSR, "$var(wic_auth)"), _ksr_str(KSR, "$si"),
            _ksr_str(KSR, "$var(wic_entities)") or None))
        _ksr_set(KSR, outcome.values)
        return outcome.rc


def mod_init():
    """app_python3 entry point (main process, before the fork)."""
    return WicTnaHandler()
