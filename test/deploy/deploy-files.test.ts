/**
 * Dockerfile, compose.yaml and deploy/nginx.conf (issue 11 item 5). No container engine
 * runs on the development machines, so these files are checked offline: compose.yaml
 * parses as YAML and wires what docs/operations.md says, its environment is a valid
 * smartproc configuration, the proxy balances over exactly the smartproc services, and
 * the Dockerfile builds and starts the server the way package.json does.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { loadConfig } from '../../src/config.js';

const root = new URL('../../', import.meta.url);
const read = (file: string) => fs.readFileSync(new URL(file, root), 'utf8');
const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string>; bin: Record<string, string> };

interface Service {
  build?: string;
  image?: string;
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
  ports?: string[];
  expose?: string[];
  volumes?: string[];
  healthcheck?: { test: string[] };
}
const compose = parse(read('compose.yaml'), { merge: true }) as { services: Record<string, Service>; volumes: Record<string, unknown> };
const smartproc = Object.entries(compose.services).filter(([, s]) => s.build === '.');

/** `${NAME:?message}` and `${NAME}` replaced by sample values, as compose would from .env. */
function substitute(value: string): string {
  const samples: Record<string, string> = { POSTGRES_PASSWORD: 'pw', SMARTPROC_SECRET_KEY: Buffer.alloc(32, 7).toString('base64'), SMARTPROC_BOOTSTRAP_MANAGEMENT_KEY: `vibe_live_${'a'.repeat(40)}` };
  return value.replace(/\$\{([A-Z_]+)(?::[?-][^}]*)?\}/g, (_, name: string) => {
    assert.ok(samples[name] !== undefined, `compose.yaml uses \${${name}}: deploy/env.example must name it`);
    return samples[name];
  });
}

describe('compose.yaml', () => {
  it('parses, with PostgreSQL, Redis, two smartproc instances built from this folder, and a reverse proxy', () => {
    assert.deepEqual(Object.keys(compose.services).sort(), ['postgres', 'proxy', 'redis', 'smartproc-1', 'smartproc-2']);
    assert.equal(smartproc.length, 2);
    assert.match(compose.services.postgres.image ?? '', /^postgres:/);
    assert.match(compose.services.redis.image ?? '', /^redis:/);
    assert.match(compose.services.proxy.image ?? '', /^nginx:/);
    for (const name of ['postgres', 'redis']) assert.ok(compose.services[name].healthcheck, `${name} has a health check`);
  });

  it('both instances share one store, one Redis and one secret key, wait for both to be healthy, and their environment is a valid configuration', () => {
    const [[, first], [, second]] = smartproc;
    assert.deepEqual(first.environment, second.environment);
    const env = Object.fromEntries(Object.entries(first.environment ?? {}).map(([k, v]) => [k, substitute(String(v))]));
    const config = loadConfig(env);
    assert.equal(new URL(config.databaseUrl!).hostname, 'postgres');
    assert.equal(new URL(config.redisUrl!).hostname, 'redis');
    assert.equal(config.host, '0.0.0.0');
    assert.ok(config.metricsPort, 'metrics on their own port');
    assert.ok(env.SMARTPROC_SECRET_KEY && env.SMARTPROC_BOOTSTRAP_MANAGEMENT_KEY);
    for (const [, service] of smartproc) {
      assert.deepEqual(service.depends_on, { postgres: { condition: 'service_healthy' }, redis: { condition: 'service_healthy' } });
      assert.equal(service.ports, undefined, 'an instance is not published to the host: only the proxy is');
      assert.ok(service.expose?.includes(String(config.port)) && service.expose.includes(String(config.metricsPort)));
    }
    assert.notDeepEqual(first.volumes, second.volumes, 'each instance has its own DATA_DIR volume');
    const env_example = read('deploy/env.example');
    for (const name of ['POSTGRES_PASSWORD', 'SMARTPROC_SECRET_KEY', 'SMARTPROC_BOOTSTRAP_MANAGEMENT_KEY']) assert.match(env_example, new RegExp(`^${name}=`, 'm'));
  });

  it('only the proxy is published; it waits for both instances to be healthy and balances over exactly them', () => {
    const proxy = compose.services.proxy;
    assert.deepEqual(Object.keys(proxy.depends_on ?? {}).sort(), smartproc.map(([name]) => name).sort());
    for (const dependency of Object.values(proxy.depends_on ?? {})) assert.equal(dependency.condition, 'service_healthy');
    assert.ok(proxy.ports?.length);
    for (const [name, service] of Object.entries(compose.services)) if (name !== 'proxy') assert.equal(service.ports, undefined, `${name} is not published`);
    const mount = proxy.volumes?.find((v) => v.startsWith('./deploy/nginx.conf:'));
    assert.ok(mount, 'the proxy gets deploy/nginx.conf');
    const nginx = read('deploy/nginx.conf');
    const upstream = /upstream smartproc \{([^}]*)\}/.exec(nginx)?.[1] ?? '';
    const servers = [...upstream.matchAll(/server ([\w.-]+):(\d+)/g)].map((m) => `${m[1]}:${m[2]}`).sort();
    assert.deepEqual(servers, smartproc.map(([name, s]) => `${name}:${s.environment?.PORT}`).sort());
    assert.match(nginx, /proxy_pass http:\/\/smartproc;/);
    assert.match(nginx, /location = \/metrics \{\s*return 404;/, 'metrics are not served through the proxy');
  });
});

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile').replace(/\\\n/g, ' ');
  const instructions = dockerfile.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
  const last = instructions.slice(instructions.findLastIndex((l) => l.startsWith('FROM ')));

  it('is multi-stage: builds with the build script, runs as an unprivileged user', () => {
    assert.ok(instructions.filter((l) => l.startsWith('FROM ')).length >= 2, 'two stages at least');
    assert.ok(instructions.some((l) => /^RUN npm ci\b/.test(l)), 'installs from the lockfile');
    assert.ok(instructions.some((l) => l.startsWith('RUN npm run build')), 'compiles with npm run build');
    assert.equal(pkg.scripts.build, 'node scripts/build-if-stale.mjs --force');
    assert.ok(instructions.some((l) => l.startsWith('COPY scripts/build-if-stale.mjs')), 'the build script itself');
    assert.ok(instructions.filter((l) => l.startsWith('FROM ')).every((l) => /^FROM node:(2[2-9]|[3-9]\d)\b/.test(l)), 'a supported Node (engines: >=22.12)');
    assert.ok(instructions.some((l) => l.startsWith('COPY tsconfig.json tsconfig.build.json')), 'the files the build script needs');
    assert.ok(last.some((l) => /^COPY --from=build \/app\/dist /.test(l)), 'the runtime stage takes the compiled code');
    const user = last.filter((l) => l.startsWith('USER ')).at(-1);
    assert.ok(user && !/USER (root|0)\b/.test(user), `runs as a non-root user (${user})`);
  });

  it('starts `node dist/...` directly with the flags of npm start, so that signals reach the server; HEALTHCHECK asks /ready', () => {
    const cmd = JSON.parse(last.find((l) => l.startsWith('CMD '))!.slice(4)) as string[];
    assert.equal(cmd[0], 'node', 'node itself, not npm or a shell');
    assert.equal(cmd.join(' '), pkg.scripts.start.replace(/^exec /, ''), 'the same command as npm start (which execs it)');
    assert.ok(cmd.includes(pkg.bin.smartproc), 'the CLI entry point of package.json');
    const healthcheck = last.find((l) => l.startsWith('HEALTHCHECK '));
    assert.match(healthcheck ?? '', /\/ready/);
    assert.match(last.find((l) => l.startsWith('EXPOSE ')) ?? '', /\b3000\b/);
    assert.match(last.find((l) => l.startsWith('ENV ')) ?? '', /HOST=0\.0\.0\.0/);
  });
});
