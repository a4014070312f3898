// A Keycloak stand-in for the JWT login tests, built on npm `oauth2-mock-server` (started by
// tests/support/keycloak.py). Usage: node keycloak_stub.mjs CONFIG.json READY.json
//
// Each realm in CONFIG gets its own server on 127.0.0.1 (port chosen by the OS), its own RSA key, and
// Keycloak's URL shape: token at /realms/<realm>/protocol/openid-connect/token, JWKS at .../certs, issuer
// http://127.0.0.1:<port>/realms/<realm>. The password grant really checks the client (id + secret, and
// whether it allows direct access grants) and the user's password, answering like Keycloak otherwise:
// 401 invalid_client, 400 unauthorized_client, 400 invalid_request, 401 invalid_grant. Access tokens carry
// Keycloak-like claims (opaque `sub`, `preferred_username`, `azp`, `aud: account`, `exp`).
// A realm with `hs512_secret` signs access tokens with that shared secret (HS512) instead, with
// `sub` = the username: what `com.famedly.login.token` expects from an IdP configured that way.
// When every realm listens, READY is written: {realms: {name: {port, issuer, token_url, jwks_url, public_pem}}}.
// The process exits on SIGTERM/SIGINT or when its stdin closes (the test process went away).
import { createHash, createHmac, createPublicKey, randomUUID } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const [configPath, readyPath] = process.argv.slice(2);
const config = JSON.parse(readFileSync(configPath, 'utf8'));
const require = createRequire(`${config.module_dir}/`);
const { OAuth2Server } = await import(pathToFileURL(require.resolve('oauth2-mock-server')).href);
const HOST = '127.0.0.1';

const b64url = (data) => Buffer.from(data).toString('base64url');

function clientOf(req) {
  const header = req.headers.authorization ?? '';
  if (header.startsWith('Basic ')) {
    const [id, ...rest] = Buffer.from(header.slice(6), 'base64').toString().split(':');
    return { id: decodeURIComponent(id), secret: decodeURIComponent(rest.join(':')) };
  }
  return { id: req.body.client_id, secret: req.body.client_secret };
}

// Why Keycloak would refuse this token request, as [status, error, error_description], or null.
function refusal(realm, req) {
  const body = req.body;
  const { id, secret } = clientOf(req);
  const client = realm.clients[id];
  if (body.grant_type !== 'password') return [400, 'unsupported_grant_type', 'Unsupported grant_type'];
  if (!client || (client.secret != null && client.secret !== secret)) {
    return [401, 'invalid_client', 'Invalid client or Invalid client credentials'];
  }
  if (client.direct_access === false) {
    return [400, 'unauthorized_client', 'Client not allowed for direct access grants'];
  }
  if (!body.username) return [400, 'invalid_request', 'Missing parameter: username'];
  if (realm.users[body.username] !== body.password) return [401, 'invalid_grant', 'Invalid user credentials'];
  return null;
}

function keycloakClaims(realm, token, req) {
  const payload = token.payload;
  const { id } = clientOf(req);
  const username = req.body.username;
  const hash = createHash('sha256').update(`${realm.name}/${username}`).digest('hex');
  const opaque = [hash.slice(0, 8), hash.slice(8, 12), hash.slice(12, 16), hash.slice(16, 20), hash.slice(20, 32)];
  const sub = realm.hs512_secret ? username : opaque.join('-');
  if (!('amr' in payload)) {  // the id_token
    Object.assign(payload, { sub, aud: id, azp: id, typ: 'ID', preferred_username: username });
    return;
  }
  delete payload.amr;
  Object.assign(payload, {
    sub, preferred_username: username, azp: id, aud: 'account', typ: 'Bearer', jti: randomUUID(),
    scope: 'profile email', email_verified: false, session_state: randomUUID(),
  });
}

function signHs512(token, secret) {
  const payload = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
  const signingInput = `${b64url(JSON.stringify({ alg: 'HS512', typ: 'JWT' }))}.${b64url(JSON.stringify(payload))}`;
  return `${signingInput}.${createHmac('sha512', secret).update(signingInput).digest('base64url')}`;
}

function shapeResponse(realm, response, req) {
  const refused = refusal(realm, req);
  if (refused) {
    const [status, error, description] = refused;
    response.statusCode = status;
    response.body = { error, error_description: description };
    return;
  }
  if (realm.hs512_secret) response.body.access_token = signHs512(response.body.access_token, realm.hs512_secret);
}

async function startRealm(realm) {
  const prefix = `/realms/${realm.name}`;
  const server = new OAuth2Server(undefined, undefined, {
    endpoints: {
      token: `${prefix}/protocol/openid-connect/token`,
      jwks: `${prefix}/protocol/openid-connect/certs`,
      wellKnownDocument: `${prefix}/.well-known/openid-configuration`,
    },
  });
  await server.issuer.keys.generate('RS256');
  server.service.on('beforeTokenSigning', (token, req) => keycloakClaims(realm, token, req));
  server.service.on('beforeResponse', (response, req) => shapeResponse(realm, response, req));
  await server.start(0, HOST);
  const base = `http://${HOST}:${server.address().port}`;
  server.issuer.url = `${base}${prefix}`;
  const publicJwk = server.issuer.keys.toJSON()[0];
  const publicPem = createPublicKey({ key: publicJwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
  const info = {
    port: server.address().port, base_url: base, issuer: server.issuer.url, public_pem: publicPem,
    token_url: `${base}${prefix}/protocol/openid-connect/token`, jwks_url: `${base}${prefix}/protocol/openid-connect/certs`,
  };
  return { server, info };
}

const started = [];
for (const realm of config.realms) started.push({ name: realm.name, ...(await startRealm(realm)) });
const ready = { realms: Object.fromEntries(started.map(({ name, info }) => [name, info])) };
writeFileSync(`${readyPath}.tmp`, JSON.stringify(ready));
renameSync(`${readyPath}.tmp`, readyPath);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  setTimeout(() => process.exit(0), 2000).unref();
  await Promise.allSettled(started.map(({ server }) => server.stop()));
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();
