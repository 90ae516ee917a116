// Runs the real `dsv4 serve` binary for the SDK tests: a tiny synthetic model made once per
// process with `dsv4 gen-model`, a server per test file on a free port (parsed from its
// "listening on" line), clean SIGTERM shutdown. The SDKs come from tools/js/node_modules.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

export const require = createRequire(new URL('../../tools/js/package.json', import.meta.url));
export const BINARY = process.env.DSV4_BINARY || path.resolve('build/dsv4');

const tempDirs = [];
process.on('exit', () => {
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
});

// A fresh directory, removed when the test process exits.
export function tempDir(name) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `dsv4-js-${name}-`));
  tempDirs.push(dir);
  return dir;
}

let modelPath;
export function tinyModel() {
  if (!modelPath) {
    modelPath = path.join(tempDir('model'), 'tiny.gguf');
    execFileSync(BINARY, ['gen-model', '--preset', 'tiny', '--out', modelPath], { stdio: 'ignore' });
  }
  return modelPath;
}

// Starts `dsv4 serve` with extra arguments; resolves once it listens.
export async function startServer(args = []) {
  const proc = spawn(BINARY, ['serve', '-m', tinyModel(), '--port', '0', '--ctx', '8192', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const url = await new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/\S+)/);
      if (m) resolve(m[1]);
    });
    exited.then(({ code }) => reject(new Error(`dsv4 serve exited with ${code}:\n${stderr}`)));
  });
  return {
    url,
    proc,
    stderr: () => stderr,
    alive: () => proc.exitCode === null && proc.signalCode === null,
    // SIGTERM: a clean shutdown (live session stored when a disk cache is on); resolves to the exit code.
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return (await exited).code;
    },
  };
}

// Reads a value from GET /metrics (-1 when absent).
export async function metric(url, name, headers = {}) {
  const text = await (await fetch(`${url}/metrics`, { headers })).text();
  const m = text.match(new RegExp(`^${name.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : -1;
}

// Waits for a condition the server reaches on its own.
export async function eventually(condition, limitMs = 30000) {
  const deadline = Date.now() + limitMs;
  while (Date.now() < deadline) {
    if (await condition()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return condition();
}
