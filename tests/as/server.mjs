// A loopback OAuth 2.0 authorization server for wic-tna's remote trust
// tests: the certified oidc-provider (pinned by package-lock.json), on
// 127.0.0.1 only, in memory, restarted by every test module that needs it.
//
//   node tests/as/server.mjs [--port 0] [--ttl 300] [--alg ES256]
//        [--audience https://epcscf.ims.example.net] [--jwks-max-age 60]
//        [--wwsf-secret S] [--epcscf-secret S] [--exit-with-stdin]
//
// On stdout, once listening, one line:
//   WIC-TNA-AS READY {"port":N,"issuer":"http://127.0.0.1:N", ...}
// then nothing else (oidc-provider's notices go to stderr).
//
// What it serves (tests/as/oidc_as.py drives it):
//  * discovery: /.well-known/openid-configuration, and the same document at
//    /.well-known/oauth-authorization-server (RFC 8414) for an issuer
//    without a path;
//  * the token endpoint, grant client_credentials, for the client "wwsf"
//    (the WWSF, client_secret_basic). Resource indicators (RFC 8707) pick
//    the format of the access token:
//      RESOURCE_JWT     (= --audience)   RFC 9068 JWT, typ at+jwt, signed
//                                        with the current key (--alg)
//      RESOURCE_OPAQUE  (<audience>/reference)  opaque (reference) token,
//                                        for introspection; its aud is the
//                                        same --audience
//      RESOURCE_OTHER   (https://other-api.example)  JWT whose aud is
//                                        another API (wrong audience)
//    each with the scopes "webrtc-ims-client-access-to-ims other-scope";
//    the token carries the requested ones among them;
//    test-only token request parameters, standing in for the WWSF's own
//    user session: impi (one), impu (repeatable), ttl (seconds, 1..86400;
//    default --ttl). They become the claims impi, impu (array) and the
//    token's lifetime;
//  * introspection (RFC 7662) for the client "ep-cscf" (the eP-CSCF,
//    client_secret_basic): answers about opaque tokens with iss, aud,
//    scope, exp, iat, client_id, token_type, impi, impu;
//  * revocation (RFC 7009) by the client the token was issued to;
//  * the key set at /jwks, with Cache-Control: max-age=--jwks-max-age;
//  * test control, same loopback listener: POST /_test/rotate[?keep_old=0]
//    builds a new signing key that signs from then on; the previous
//    current key stays published (keep_old=1, the default, a grace period)
//    or is dropped (keep_old=0). Tokens (opaque ones too: in-memory store
//    shared by the rebuilt provider) survive. Answers {"kid":...,"kids":[...]}.
//    GET /_test/health answers {"ok":true}.

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const HOST = '127.0.0.1';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.WIC_TNA_AS_PORT || '0' },
    ttl: { type: 'string', default: '300' },
    alg: { type: 'string', default: 'ES256' },
    audience: { type: 'string', default: 'https://epcscf.ims.example.net' },
    'jwks-max-age': { type: 'string', default: '60' },
    'wwsf-secret': { type: 'string', default: 'wwsf-secret-0123456789abcdef' },
    'epcscf-secret': { type: 'string', default: 'ep-cscf-secret-0123456789abcdef' },
    'exit-with-stdin': { type: 'boolean', default: false },
  },
  strict: true,
});

const port = Number(opts.port);
const defaultTtl = Number(opts.ttl);
const jwksMaxAge = Number(opts['jwks-max-age']);
if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad --port ${opts.port}`);
if (!Number.isInteger(defaultTtl) || defaultTtl < 1) throw new Error(`bad --ttl ${opts.ttl}`);
if (!Number.isInteger(jwksMaxAge) || jwksMaxAge < 0) throw new Error(`bad --jwks-max-age ${opts['jwks-max-age']}`);

const SCOPE = 'webrtc-ims-client-access-to-ims';
const SCOPES = `${SCOPE} other-scope`;
const RESOURCE_JWT = opts.audience;
const RESOURCE_OPAQUE = `${opts.audience.replace(/\/$/, '')}/reference`;
const RESOURCE_OTHER = 'https://other-api.example';

const RESOURCES = {
  [RESOURCE_JWT]: {
    scope: SCOPES, audience: opts.audience, accessTokenFormat: 'jwt',
    jwt: { sign: { alg: opts.alg } },
  },
  [RESOURCE_OPAQUE]: {
    scope: SCOPES, audience: opts.audience, accessTokenFormat: 'opaque',
  },
  [RESOURCE_OTHER]: {
    scope: SCOPES, audience: RESOURCE_OTHER, accessTokenFormat: 'jwt',
    jwt: { sign: { alg: opts.alg } },
  },
};

// ---- signing keys ------------------------------------------------------

function newKey(alg) {
  let pair;
  if (alg.startsWith('ES')) {
    const crv = { ES256: 'P-256', ES384: 'P-384' }[alg];
    if (!crv) throw new Error(`unsupported --alg ${alg}`);
    pair = crypto.generateKeyPairSync('ec', { namedCurve: crv });
  } else if (alg.startsWith('RS') || alg.startsWith('PS')) {
    pair = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  } else if (alg === 'EdDSA') {
    pair = crypto.generateKeyPairSync('ed25519');
  } else {
    throw new Error(`unsupported --alg ${alg}`);
  }
  const jwk = pair.privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `as-${crypto.randomBytes(6).toString('hex')}`, alg, use: 'sig' };
}

let keys = [newKey(opts.alg)]; // keys[0] signs

// ---- the provider ----------------------------------------------------------

function num(v, lo, hi) {
  const s = Array.isArray(v) ? v[0] : v;
  if (typeof s !== 'string' || !/^[0-9]+$/.test(s)) return undefined;
  const n = Number(s);
  return n >= lo && n <= hi ? n : undefined;
}

function configuration() {
  return {
    clients: [
      {
        client_id: 'wwsf',
        client_secret: opts['wwsf-secret'],
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: 'ep-cscf',
        client_secret: opts['epcscf-secret'],
        grant_types: [],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys },
    clientDefaults: { id_token_signed_response_alg: opts.alg },
    enabledJWA: { idTokenSigningAlgValues: [opts.alg] },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => undefined,
        useGrantedResource: async () => false,
        getResourceServerInfo: async (_ctx, resourceIndicator) => {
          const rs = RESOURCES[resourceIndicator];
          if (!rs) throw new errors.InvalidTarget();
          return rs;
        },
      },
    },
    scopes: ['openid', SCOPE, 'other-scope'],
    // RFC 9068 / wic-tna claims: the identities the WWSF asked for
    extraTokenClaims: async (ctx, token) => {
      if (token.kind !== 'ClientCredentials') return undefined;
      const body = ctx?.oidc?.body || {};
      const extra = {};
      if (typeof body.impi === 'string') extra.impi = body.impi;
      if (body.impu !== undefined) extra.impu = [].concat(body.impu).map(String);
      return Object.keys(extra).length ? extra : undefined;
    },
    ttl: {
      ClientCredentials: (ctx) => num(ctx?.oidc?.body?.ttl, 1, 86400) ?? defaultTtl,
      AccessToken: defaultTtl,
      AuthorizationCode: 60,
      IdToken: defaultTtl,
      Interaction: 60,
      Session: 600,
      Grant: 600,
      RefreshToken: 600,
      DeviceCode: 60,
      BackchannelAuthenticationRequest: 60,
      PreAuthorizedCode: 60,
    },
    clockTolerance: 0,
    renderError: async (ctx, out) => {
      ctx.type = 'application/json; charset=utf-8';
      ctx.body = out;
    },
  };
}

let provider;
let handler;
let issuer;

function build() {
  provider = new Provider(issuer, configuration());
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path === '/jwks' && ctx.status === 200) {
      ctx.set('Cache-Control', `max-age=${jwksMaxAge}`);
    }
  });
  handler = provider.callback();
}

// ---- test control ------------------------------------------------------

function send(res, status, body) {
  const data = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(data),
    'Cache-Control': 'no-store',
  });
  res.end(data);
}

function testControl(req, res, url) {
  if (url.pathname === '/_test/health' && req.method === 'GET') {
    return send(res, 200, { ok: true });
  }
  if (url.pathname === '/_test/rotate' && req.method === 'POST') {
    const keepOld = url.searchParams.get('keep_old') !== '0';
    keys = [newKey(opts.alg), ...(keepOld ? keys.slice(0, 1) : [])];
    build();
    return send(res, 200, { kid: keys[0].kid, kids: keys.map((k) => k.kid) });
  }
  return send(res, 404, { error: 'not_found' });
}

// ---- listen (127.0.0.1 only) -------------------------------------------

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname.startsWith('/_test/')) {
    req.resume();
    return testControl(req, res, url);
  }
  if (url.pathname === '/.well-known/oauth-authorization-server') {
    req.url = `/.well-known/openid-configuration${url.search}`;
  }
  return handler(req, res);
});
server.keepAliveTimeout = 1000;

server.listen(port, HOST, () => {
  const actual = server.address().port;
  issuer = `http://${HOST}:${actual}`;
  build();
  const ready = {
    port: actual,
    issuer,
    discovery: `${issuer}/.well-known/openid-configuration`,
    resources: { jwt: RESOURCE_JWT, opaque: RESOURCE_OPAQUE, other: RESOURCE_OTHER },
    audience: opts.audience,
    alg: opts.alg,
    kid: keys[0].kid,
    ttl: defaultTtl,
  };
  process.stdout.write(`WIC-TNA-AS READY ${JSON.stringify(ready)}\n`);
});

function stop() {
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (opts['exit-with-stdin']) {
  // the test process died (its end of our stdin closed): do not outlive it
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
}
