// A WebRTC IMS Client with SIP.js 0.21 (ES modules from /lib/sip.js/):
// gets its token from the WWSF (this page's origin) and registers over
// secure WebSocket with the token in the Registerer's extraHeaders
// ("Authorization: Bearer <token>"). Driven through window.wic by
// tests/browser/wic.mjs.
import * as SIP from '/lib/sip.js/index.js';

const W = window.WIC;
let ua = null;
let registerer = null;
let cfg = null;

function responseFields(response) {
  const m = response.message;
  return {
    status: m.statusCode, reason: m.reasonPhrase, call_id: m.callId,
    cseq: m.cseq, www_authenticate: m.getHeader('WWW-Authenticate') || null,
  };
}

async function register() {
  await registerer.register({
    requestDelegate: {
      onAccept: (response) => {
        const ex = W.expiresOf(W.parseSip(response.message.data || ''));
        W.report('registered', Object.assign(responseFields(response), ex));
      },
      onReject: (response) => {
        W.report('registrationFailed', Object.assign(responseFields(response), {
          cause: 'rejected',
        }));
      },
    },
  });
}

async function start(c) {
  cfg = c;
  const token = await W.fetchToken(cfg);
  ua = new SIP.UserAgent({
    uri: SIP.UserAgent.makeURI(cfg.uri),
    transportOptions: { server: cfg.wss, connectionTimeout: 10 },
    displayName: cfg.display_name || undefined,
    userAgentString: 'wic-tna browser test (SIP.js ' + SIP.version + ')',
    logLevel: 'warn',
    delegate: {
      onConnect: () => W.report('connected', { url: cfg.wss }),
      onDisconnect: (error) => W.report('disconnected', {
        error: !!error, reason: error ? String(error.message || error) : null,
      }),
      onMessage: (message) => {
        const r = message.request;
        W.report('messageReceived', {
          from: r.getHeader('From'), to: r.getHeader('To'),
          pai: r.getHeaders('P-Asserted-Identity'),
          ruri: String(r.ruri), call_id: r.callId, body: r.body,
        });
        message.accept();
      },
    },
  });
  // every REGISTER sent and every answer to one, as the transport sees them
  const send = ua.transport.send.bind(ua.transport);
  ua.transport.send = (message) => {
    W.registerTap(message, 'out');
    return send(message);
  };
  const onMessage = ua.transport.onMessage;
  ua.transport.onMessage = (message) => {
    W.registerTap(message, 'in');
    return onMessage(message);
  };
  registerer = new SIP.Registerer(ua, {
    expires: cfg.register_expires || 600,
    extraHeaders: ['Authorization: Bearer ' + token],
  });
  registerer.stateChange.addListener((state) => W.report('registererState', { state }));
  await ua.start();
  if (cfg.register !== false) {
    await register();
  }
  return { lib: 'sip.js', version: SIP.version };
}

async function sendMessage(to, body, extraHeaders) {
  const target = SIP.UserAgent.makeURI(to);
  const messager = new SIP.Messager(ua, target, body, 'text/plain', { extraHeaders: extraHeaders || [] });
  return new Promise((resolve) => {
    messager.message({
      requestDelegate: {
        onAccept: (r) => {
          W.report('messageSucceeded', Object.assign({ to }, responseFields(r)));
          resolve(true);
        },
        onReject: (r) => {
          W.report('messageFailed', Object.assign({ to }, responseFields(r)));
          resolve(false);
        },
      },
    }).catch((e) => {
      W.report('messageFailed', { to, cause: String(e.message || e) });
      resolve(false);
    });
  });
}

async function stop() {
  if (!ua) return false;
  try {
    if (registerer && registerer.state === SIP.RegistererState.Registered) {
      await registerer.unregister();
    }
  } catch (e) { /* best effort */ }
  await ua.stop();
  return true;
}

window.wic = {
  ready: true,
  lib: 'sip.js',
  start,
  register,
  unregister: () => registerer.unregister(),
  sendMessage,
  stop,
};
