"""wic-tna from OpenSIPS's `python` module (OpenSIPS 3.x), with no C
compiler: the handler object that `python_exec()` calls. It only adapts
OpenSIPS's msg object to the proxy-neutral handler core of
kamailio-example/python/wic_tna_glue.py (`HandlerCore`, `Register`, over the
ctypes binding `Library`, `Context`, `Result`), which this script imports
rather than copies: the decisions are the core's, shared with Kamailio's
handler.

OpenSIPS's contract (modules/python):

  * `mod_init()` runs once in the main process BEFORE OpenSIPS forks: it
    loads libwic_tna.so and test-loads the configuration, so that a broken
    configuration stops the start.
  * `child_init(rank)` runs in every process after the fork: each SIP worker
    creates its own context.
  * cfg function, called with python_exec("wic_tna_verify"):
      reads  the Authorization header(s) (msg.getHeader; none: no token),
             the To header (msg.getHeader, else $tu), and $var(req_exp)
             (the expiry the client asked for; < 0 or empty: none)
      sets   $var(wic_status) $var(wic_reason) $var(wic_challenge)
             $var(wic_tna) $var(wic_impi) $var(wic_impus) $var(wic_issuer)
             $var(wic_subject) $var(wic_expires)   (msg.set_pseudoVar;
             all strings: convert with {s.int} where a number is needed)
      returns 1 accepted, -1 rejected, -2 internal error ($var(wic_status)
             is then 500).
    Two or more Authorization headers: 400 malformed_request, with the
    library's invalid_request challenge for the joined values.
  * Barring, unbarring and reloading go through the configuration's
    `state_file`, shared by every worker and the CLI:
        wic-tna bar --config <cfg> <iss>    wic-tna reload --config <cfg>

Environment (OpenSIPS passes its environment to the embedded Python):
  WIC_TNA_CONFIG    path of the TOML configuration (/etc/wic-tna/wic-tna.toml)
  WIC_TNA_LIBRARY   path of libwic_tna.so (default: the repository's
                    target/release/libwic_tna.so, else the loader's search)
  WIC_TNA_GLUE_DIR  directory of wic_tna_glue.py (default: this file's
                    directory, then ../kamailio-example/python beside it,
                    then /usr/share/wic-tna)
"""

import os
import sys

# --------------------------------------------------------------------------
# the binding and handler core: kamailio-example/python/wic_tna_glue.py
# --------------------------------------------------------------------------


def _glue_dirs():
    here = os.path.dirname(os.path.abspath(__file__))
    env = os.environ.get("WIC_TNA_GLUE_DIR")
    if env:
        return [env]
    return [here,
            os.path.normpath(os.path.join(here, "..", "kamailio-example",
                                          "python")),
            "/usr/share/wic-tna"]


try:
    from OpenSIPS import LM_ERR  # only inside OpenSIPS
except ImportError:  # imported by a test or a linter
    def LM_ERR(text):
        sys.stderr.write(text)


def _import_glue():
    dirs = _glue_dirs()
    for d in dirs:
        if os.path.isfile(os.path.join(d, "wic_tna_glue.py")):
            if d not in sys.path:
                sys.path.insert(0, d)
            break
    else:
        # a handler copied without its glue: say what is missing and where
        # it was looked for (OpenSIPS alone would only say the script failed)
        why = ("wic_tna_opensips.py needs wic_tna_glue.py (the handler core "
               "and ctypes binding, kamailio-example/python/ in the source, "
               "/usr/share/wic-tna/ installed) and found none in: %s; set "
               "WIC_TNA_GLUE_DIR to the directory that holds it"
               % ", ".join(dirs))
        LM_ERR("wic_tna_opensips: %s\n" % why)
        raise ImportError(why)
    import wic_tna_glue

    return wic_tna_glue


_glue = _import_glue()
Library = _glue.Library
Context = _glue.Context
WicTnaError = _glue.WicTnaError

# --------------------------------------------------------------------------
# OpenSIPS side
# --------------------------------------------------------------------------


def _log(level, text):
    """The library's log: 1 error, 2 warning, 3 info, 4 debug. The python
    module exports LM_ERR only: errors and warnings go there, info and debug
    only with WIC_TNA_PY_DEBUG set (the cfg's xlog reports each outcome)."""
    if level == 1:
        LM_ERR("wic_tna_opensips: %s\n" % text)
    elif level == 2:
        LM_ERR("wic_tna_opensips: warning: %s\n" % text)
    elif os.environ.get("WIC_TNA_PY_DEBUG"):
        LM_ERR("wic_tna_opensips: info: %s\n" % text)


def _pv(msg, spec):
    """A pseudo-variable as a string ('' when unset). get_pseudoVar prints
    into a 4 KiB buffer: use it for short values only (an overflow gives
    '')."""
    try:
        v = msg.get_pseudoVar(spec)
    except Exception:
        return ""
    if v is None or v == "<null>":
        return ""
    return str(v)


def _binding(msg):
    """The request's replay binding, as the Kamailio example forms it:
    transport, source address and port (a UDP source, or a TCP/TLS/WS
    connection). None when OpenSIPS does not give them (the library then
    fails closed where [replay] is enabled)."""
    parts = [_pv(msg, "$socket_in(proto)"), _pv(msg, "$si"), _pv(msg, "$sp")]
    if not all(parts):
        return None
    return ":".join(p.lower() for p in parts)


def _header(msg, *names):
    """The body of the first header with one of these names (getHeader
    compares names as written, so the compact form is a second name)."""
    for name in names:
        v = msg.getHeader(name)
        if v is not None:
            return v
    return None


def _to_uri(msg):
    """The To header's value (the library takes name-addr or a bare URI).
    Never empty: an empty To would skip the To-in-token check, so a REGISTER
    without a usable To gets the library's 400 invalid_to_uri."""
    value = _header(msg, "To", "t")
    if not value:
        value = _pv(msg, "$tu")
    return value if value and value.strip() else "<>"


def _authorization(msg):
    """The values of the request's Authorization headers ([] for none)."""
    try:
        count = int(_pv(msg, "$hdrcnt(Authorization)") or 0)
    except ValueError:
        count = 0
    first = _header(msg, "Authorization")
    if first is None:
        return []
    return [first] + [_pv(msg, "$(hdr(Authorization)[%d])" % i)
                      for i in range(1, count)]


def _requested_expires(msg):
    try:
        return int(_pv(msg, "$var(req_exp)"))
    except ValueError:
        return -1


def _register(msg):
    """wic_tna_verify's inputs (see the module's docstring)."""
    return _glue.Register(_authorization(msg), _to_uri(msg),
                          _requested_expires(msg), binding=_binding(msg))


def _set(msg, values):
    for name in _glue.OUT_VARS:
        msg.set_pseudoVar("$var(wic_%s)" % name, str(values[name]))


class WicTnaHandler(_glue.HandlerCore):
    """The object OpenSIPS's python module calls (python_exec("method")):
    msg in and out; the decisions are HandlerCore's."""

    log = staticmethod(_log)

    @staticmethod
    def routes_sip(rank):
        # SIP workers are >= 1: main, timer, module and TCP main processes
        # route no SIP (sr_module.h)
        return rank >= 1

    def wic_tna_verify(self, msg, args=None):
        outcome = self.verify(lambda: _register(msg))
        try:
            _set(msg, outcome.values)
        except Exception as e:
            _log(1, "cannot set the result variables: %s" % e)
            return -2
        return outcome.rc


def mod_init():
    """OpenSIPS python module entry point (main process, before the fork).
    A library that cannot be loaded stops the start with a message naming
    the file and WIC_TNA_LIBRARY."""
    try:
        return WicTnaHandler()
    except OSError as e:
        LM_ERR("wic_tna_opensips: cannot load libwic_tna (WIC_TNA_LIBRARY=%s): "
               "%s; set WIC_TNA_LIBRARY to the path of libwic_tna.so "
               "(cargo build --release: target/release/libwic_tna.so; the "
               "Debian package: /usr/lib/<triplet>/libwic_tna.so.0.1)\n"
               % (os.environ.get("WIC_TNA_LIBRARY", "unset"), e))
        raise
