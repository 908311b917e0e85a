// A WebRTC IMS Client with JsSIP (window.JsSIP, from /lib/jssip.js): gets
// its token from the WWSF (this page's origin), registers over secure
// WebSocket with authorization_jwt = "Bearer <token>", renews the token
// when a REGISTER is refused with the invalid_token challenge, sends and
// receives MESSAGEs. Driven through window.wic by tests/browser/wic.mjs.
(function () {
  'use strict';
  const W = window.WIC;
  let ua = null;
  let cfg = null;
  let renewals = 0;
  let renewing = false;

  function text(data) {
    return typeof data === 'string' ? data : new TextDecoder().decode(data);
  }

  // every REGISTER sent and every answer to one, as the socket sees them
  function tap(socket) {
    const send = socket.send.bind(socket);
    socket.send = (message) => {
      W.registerTap(message, 'out');
      return send(message);
    };
    const onMessage = socket._onMessage;
    socket._onMessage = function (ev) {
      W.registerTap(text(ev.data), 'in');
      return onMessage.call(this, ev);
    };
    return socket;
  }

  function failureFields(e) {
    const r = e.response;
    return {
      status: r ? r.status_code : null,
      reason: r ? r.reason_phrase : null,
      cause: e.cause || null,
      call_id: r ? r.call_id : null,
      www_authenticate: r ? (r.getHeader('WWW-Authenticate') || null) : null,
    };
  }

  async function renewToken(why) {
    if (renewing) return;
    renewing = true;
    try {
      renewals += 1;
      W.report('tokenRenewing', { why, n: renewals });
      const token = await W.fetchToken(cfg);
      ua.set('authorization_jwt', 'Bearer ' + token);
      ua.register();
    } catch (e) {
      W.report('error', { message: 'token renewal: ' + e.message });
    } finally {
      renewing = false;
    }
  }

  async function start(c) {
    cfg = c;
    const token = await W.fetchToken(cfg);
    const socket = tap(new JsSIP.WebSocketInterface(cfg.wss));
    ua = new JsSIP.UA({
      sockets: [socket],
      uri: cfg.uri,
      display_name: cfg.display_name || undefined,
      authorization_jwt: 'Bearer ' + token,
      register: cfg.register !== false,
      register_expires: cfg.register_expires || 600,
      user_agent: 'wic-tna browser test (JsSIP ' + JsSIP.version + ')',
      connection_recovery_min_interval: 2,
      connection_recovery_max_interval: 5,
    });
    ua.on('connected', () => W.report('connected', { url: cfg.wss }));
    ua.on('disconnected', (e) => W.report('disconnected', {
      code: e && e.code !== undefined ? e.code : null,
      reason: e && e.reason ? String(e.reason) : null,
      error: !!(e && e.error),
    }));
    ua.on('registered', (e) => {
      const ex = W.expiresOf(W.parseSip(e.response.data || ''));
      W.report('registered', Object.assign({
        status: e.response.status_code, call_id: e.response.call_id,
        cseq: e.response.cseq,
      }, ex));
    });
    ua.on('unregistered', (e) => W.report('unregistered', e && e.response ? {
      status: e.response.status_code, call_id: e.response.call_id,
    } : {}));
    ua.on('registrationFailed', (e) => {
      const f = failureFields(e);
      W.report('registrationFailed', f);
      // an expired or otherwise invalid token: a new one from the WWSF and
      // REGISTER again (not for 403: a new token will not help)
      if (cfg.renew_token !== false && f.status === 401 &&
          /invalid_token/.test(f.www_authenticate || '') &&
          renewals < (cfg.max_renewals || 2)) {
        renewToken('401 invalid_token');
      }
      // 403 (barred, identity, Origin not allowed): a new token will not
      // help, so no retry. (JsSIP itself, with register: true, would
      // reconnect after the eP-CSCF closed the WebSocket and REGISTER again
      // every few seconds.)
      if (f.status === 403 && cfg.stop_on_forbidden !== false) {
        W.report('stopping', { why: '403' });
        ua.stop();
      }
    });
    ua.on('newMessage', (e) => {
      if (e.originator !== 'remote') return;
      const r = e.request;
      W.report('messageReceived', {
        from: r.getHeader('From'),
        to: r.getHeader('To'),
        pai: r.getHeaders('P-Asserted-Identity'),
        ruri: String(r.ruri),
        call_id: r.call_id,
        body: r.body,
      });
    });
    ua.start();
    return { lib: 'jssip', version: JsSIP.version };
  }

  function sendMessage(to, body, extraHeaders) {
    return new Promise((resolve) => {
      const done = (v) => resolve(v);
      ua.sendMessage(to, body, {
        contentType: 'text/plain',
        extraHeaders: extraHeaders || [],
        eventHandlers: {
          succeeded: (e) => {
            const r = e.response;
            W.report('messageSucceeded', { to, status: r.status_code, call_id: r.call_id });
            done(true);
          },
          failed: (e) => {
            const r = e.response;
            W.report('messageFailed', {
              to, status: r ? r.status_code : null, reason: r ? r.reason_phrase : null,
              cause: e.cause || null, call_id: r ? r.call_id : null,
            });
            done(false);
          },
        },
      });
    });
  }

  // stop: un-REGISTER (JsSIP waits for its answer, bounded) and close
  function stop() {
    return new Promise((resolve) => {
      if (!ua) return resolve(false);
      if (!ua.isConnected()) {
        ua.stop();
        return resolve(true);
      }
      const timer = setTimeout(() => resolve(false), 4000);
      ua.on('disconnected', () => {
        clearTimeout(timer);
        resolve(true);
      });
      ua.stop();
    });
  }

  window.wic = {
    ready: true,
    lib: 'jssip',
    start,
    register: () => ua.register(),
    unregister: () => ua.unregister(),
    renewToken: () => renewToken('asked'),
    sendMessage,
    stop,
  };
})();
