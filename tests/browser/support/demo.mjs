// Starts the real demo binary (operator + publisher + SSP in one process) with short token
// lifetimes on free ports, waits for its UID2_DEMO_READY line and stops it afterwards.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

// Lifetimes (seconds) short enough for every state within seconds: refresh due after 2 s,
// advertising token expires after 6 s, refresh token after 10 s.
export const LIFETIMES = { refreshAfter: 2, identityExpires: 6, refreshExpires: 10 };
export const REFRESH_RETRY_PERIOD_MS = 1000;

// The demo binary: UID2_DEMO_BIN, else target/debug/uid2-demo built by cargo (a no-op when fresh).
function demoBinary() {
  if (process.env.UID2_DEMO_BIN) return process.env.UID2_DEMO_BIN;
  const built = spawnSync('cargo', ['build', '--quiet', '-p', 'uid2-demo'], { cwd: ROOT, stdio: 'inherit' });
  if (built.status !== 0) throw new Error('cargo build -p uid2-demo failed');
  return join(ROOT, 'target', 'debug', 'uid2-demo');
}

export async function startDemo() {
  const dataDir = mkdtempSync(join(tmpdir(), 'uid2-demo-test-'));
  const args = [
    '--data-dir', dataDir,
    '--operator-port', '0',
    '--publisher-port', '0',
    '--ssp-port', '0',
    '--salt-buckets', '1024',
    '--refresh-identity-token-after', String(LIFETIMES.refreshAfter),
    '--identity-token-expires-after', String(LIFETIMES.identityExpires),
    '--refresh-token-expires-after', String(LIFETIMES.refreshExpires),
    '--refresh-retry-period-ms', String(REFRESH_RETRY_PERIOD_MS),
  ];
  const child = spawn(demoBinary(), args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
    if (process.env.DEMO_LOG) process.stderr.write(d);
  });
  const ready = await new Promise((resolveReady, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('the demo did not start in 60 s:\n' + stderr)), 60_000);
    child.stdout.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.startsWith('UID2_DEMO_READY '));
      if (line) {
        clearTimeout(timer);
        resolveReady(JSON.parse(line.slice('UID2_DEMO_READY '.length)));
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error('the demo exited with ' + code + ':\n' + stderr));
    });
  });
  const credentials = JSON.parse(readFileSync(ready.credentials, 'utf8'));
  return {
    ...ready,
    credentials,
    // The same publisher page at another origin: the loopback IP, which is not a site domain.
    publisherAtIp: ready.publisher.replace('//localhost:', '//127.0.0.1:'),
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
