// Shared set-up of the server's end-to-end tests: a tiny model trained for a few seconds on a
// real corpus (with its tokenizer and MTP modules), a `nextn serve` process on a free port, and
// the `nextn` command itself for comparisons.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const nextn = process.env.NEXTN_BINARY ?? path.join(root, process.env.BUILD_DIR ?? 'build', 'nextn');

export function run(args) {
  const r = spawnSync(nextn, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`nextn ${args.join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

let modelDir = null;
// A run directory with a trained tiny model (made once per test process).
export function tinyModel() {
  if (modelDir) return modelDir;
  const dir = mkdtempSync(path.join(tmpdir(), 'nextn-serve-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const corpus = spawnSync('sh', ['-c', 'ls -d /usr/lib/python3*/json | head -1'], { encoding: 'utf8' }).stdout.trim();
  run(['data', 'prepare', '--input', corpus, '--vocab-size', '384', '--validation-fraction', '0.25', '-o', `${dir}/data`, '--threads', '1']);
  const config = JSON.parse(readFileSync(path.join(root, 'configs/tiny.json'), 'utf8'));
  config.vocab_size = 384;
  writeFileSync(`${dir}/tiny.json`, JSON.stringify(config));
  run(['train', '--config', `${dir}/tiny.json`, '--data', `${dir}/data`, '--run', `${dir}/run`, '--steps', '40',
       '--batch-size', '8', '--seq-len', '64', '--lr', '3e-3', '--warmup', '5', '--eval-every', '0', '--eval-batches', '1',
       '--threads', '1']);
  modelDir = `${dir}/run`;
  return modelDir;
}

// Starts `nextn serve` on a free port and resolves once it says the model is ready.
// `model`: another model path; `name`: null serves it under its directory's name.
export function startServer(extraArgs = [], { model = null, name = 'tiny' } = {}) {
  const named = name === null ? [] : ['--served-model-name', name];
  const proc = spawn(nextn, ['serve', '--model', model ?? tinyModel(), '--port', '0', ...named,
                             '--threads', '1', ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${output}`)), 60000);
    const onData = (chunk) => {
      output += chunk;
      const port = output.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (port && output.includes('ready')) {
        clearTimeout(timer);
        const url = `http://127.0.0.1:${port[1]}`;
        resolve({
          proc, url, output: () => output,
          // SIGTERM, then the exit status.
          stop: () => new Promise((done) => {
            if (proc.exitCode !== null) return done(proc.exitCode);
            proc.once('exit', (code) => done(code));
            proc.kill('SIGTERM');
          }),
        });
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited (${code}):\n${output}`)); });
  });
}

// What `nextn generate` produces for a prompt: its generated token ids.
export function generateTokenIds(prompt, maxTokens, extra = []) {
  const r = run(['generate', '--model', tinyModel(), '--prompt', prompt, '--max-new-tokens', String(maxTokens),
                 '--print-token-ids', '--threads', '1', ...extra]);
  const line = r.stderr.split('\n').find((l) => l.startsWith('token ids:'));
  return line.slice('token ids:'.length).trim().split(/\s+/).filter(Boolean).map(Number);
}

// Reads a Prometheus text page into {name{labels}: value}.
export async function metrics(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const values = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    values[line.slice(0, at)] = Number(line.slice(at + 1));
  }
  return values;
}
