// Shared by the WIC pages: event reporting to the driver, the token source,
// a small SIP text reader for what the library sends and receives.
(function () {
  'use strict';

  // window.wicReport is a binding the driver (wic.mjs) exposes before the
  // page loads; opened by hand, events only go to the console.
  function report(event, fields) {
    const ev = Object.assign({ event }, fields || {});
    try {
      if (typeof window.wicReport === 'function') {
        window.wicReport(ev);
      }
    } catch (e) { /* the driver is gone */ }
    const log = document.getElementById('log');
    if (log) {
      log.textContent += JSON.stringify(ev) + '\n';
    }
    console.log('wic event', JSON.stringify(ev));
  }

  // The JWT's claims (no check: for the report only).
  function claims(token) {
    try {
      const p = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(p + '='.repeat((4 - (p.length % 4)) % 4)));
    } catch (e) {
      return {};
    }
  }

  // GET /token?<query> of this page's own origin (the WWSF's token
  // endpoint; the driver answers it). cfg.token_queries: one query string
  // per fetch, the last one repeated.
  let fetches = 0;
  async function fetchToken(cfg) {
    const qs = cfg.token_queries || ['issuer=a&user=alice'];
    const query = qs[Math.min(fetches, qs.length - 1)];
    fetches += 1;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), 15000);
    let resp;
    try {
      resp = await fetch('/token?' + query, { cache: 'no-store', signal: ctl.signal });
    } finally {
      clearTimeout(timer);
    }
    const text = (await resp.text()).trim();
    if (!resp.ok || !text) {
      throw new Error('token endpoint: HTTP ' + resp.status + ' ' + text.slice(0, 200));
    }
    const c = claims(text);
    report('tokenFetched', { n: fetches, jti: c.jti || null, exp: c.exp || null, iss: c.iss || null });
    return text;
  }

  // A SIP message as text -> {start, status, reason, method, headers: {lowercase
  // name: [values]}} (compact forms expanded).
  const COMPACT = { i: 'call-id', m: 'contact', f: 'from', t: 'to', v: 'via', l: 'content-length', c: 'content-type', k: 'supported' };
  function parseSip(raw) {
    const text = typeof raw === 'string' ? raw : '';
    const head = text.split('\r\n\r\n', 1)[0];
    const lines = head.split('\r\n');
    const start = lines[0] || '';
    const headers = {};
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':');
      if (i <= 0) continue;
      let name = line.slice(0, i).trim().toLowerCase();
      name = COMPACT[name] || name;
      (headers[name] = headers[name] || []).push(line.slice(i + 1).trim());
    }
    const m = /^SIP\/2\.0 (\d{3}) ?(.*)$/.exec(start);
    const cseq = ((headers.cseq || [''])[0]).split(/\s+/);
    return {
      start,
      isResponse: !!m,
      status: m ? Number(m[1]) : null,
      reason: m ? m[2] : null,
      method: m ? null : start.split(' ')[0],
      cseqNumber: Number(cseq[0]) || null,
      cseqMethod: cseq[1] || null,
      headers,
      header(name) {
        const v = headers[name.toLowerCase()];
        return v ? v[0] : null;
      },
    };
  }

  // What a REGISTER says about its token: the scheme and the token's jti
  // (never the token itself).
  function authSummary(value) {
    if (!value) return { auth: 'none', jti: null };
    const m = /^Bearer\s+(\S+)/i.exec(value);
    if (m) return { auth: 'Bearer', jti: claims(m[1]).jti || null };
    if (/^[\w-]+\.[\w-]+\.[\w-]*$/.test(value)) return { auth: 'bare', jti: claims(value).jti || null };
    return { auth: value.split(/\s/)[0], jti: null };
  }

  function expiresOf(msg) {
    const out = { expires: null, contact_expires: null };
    const e = msg.header('expires');
    if (e !== null && /^\d+$/.test(e)) out.expires = Number(e);
    for (const c of msg.headers.contact || []) {
      const m = /;\s*expires\s*=\s*"?(\d+)/i.exec(c);
      if (m) {
        out.contact_expires = Number(m[1]);
        break;
      }
    }
    return out;
  }

  // Report every REGISTER sent and every answer to one, whichever library:
  // onSent(text) / onReceived(text) are called with the SIP text.
  function registerTap(text, direction) {
    const msg = parseSip(text);
    if (direction === 'out' && msg.method === 'REGISTER') {
      report('registerSent', Object.assign({
        call_id: msg.header('call-id'), cseq: msg.cseqNumber,
      }, expiresOf(msg), authSummary(msg.header('authorization'))));
    } else if (direction === 'in' && msg.isResponse && msg.cseqMethod === 'REGISTER' && msg.status >= 200) {
      report('registerResponse', Object.assign({
        call_id: msg.header('call-id'), cseq: msg.cseqNumber,
        status: msg.status, reason: msg.reason,
        www_authenticate: msg.header('www-authenticate'),
      }, expiresOf(msg)));
    }
  }

  window.WIC = { report, fetchToken, claims, parseSip, registerTap, expiresOf };
})();
