// `nextn dashboard` and `nextn report` in a real browser (Debian's chromium, driven by
// playwright-core): every chart draws as many points as the metrics files have rows for it, a
// run that is still writing shows its new steps within seconds, malformed lines become notes,
// the report opened from disk draws the same without any network, and the server panel shows a
// live `nextn serve`'s acceptance per depth. Screenshots go to <build>/test-artifacts/dashboard/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, appendFileSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { nextn, run, tinyModel, startServer } from '../server/support.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const artifacts = path.join(root, process.env.BUILD_DIR ?? 'build', 'test-artifacts', 'dashboard');
mkdirSync(artifacts, { recursive: true });
const work = mkdtempSync(path.join(tmpdir(), 'nextn-dashboard-'));
const runs = path.join(work, 'runs');

let browser;
before(async () => {
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
});
after(async () => {
  await browser?.close();
  rmSync(work, { recursive: true, force: true });
});

// ---- synthetic runs with known rows ---------------------------------------------------------

function trainRecord(step, depths) {
  const main = 9 / Math.sqrt(step);
  return { type: 'train', step, total_steps: 1000, loss: main * 1.3, main_loss: main, main_accuracy: 0.01 * step,
           mtp_loss: [...Array(depths).keys()].map((k) => main + 0.2 * (k + 1)),
           mtp_accuracy: [...Array(depths).keys()].map(() => 0.1), lr: 1e-3 * Math.min(1, step / 10),
           grad_norm: 1 + 1 / step, mtp_lambda: depths ? 0.3 : 0, max_vio_batch: 1 / step,
           max_vio_layers: [1 / step, 2 / step], tokens_per_second: 1000 + step, tokens_seen: 512 * step,
           elapsed_seconds: step * 0.5, skipped: false, skipped_steps: 0 };
}
function evalRecord(step, depths) {
  return { type: 'eval', step, tokens: 4096, main_loss: 9 / Math.sqrt(step) + 0.1, main_accuracy: 0.2,
           mtp_loss: [...Array(depths).keys()].map((k) => 9 / Math.sqrt(step) + 0.3 + 0.2 * k),
           mtp_accuracy: [...Array(depths).keys()].map((k) => 0.3 - 0.1 * k), max_vio_global: [0.2, 0.4],
           expert_load: [[0.5, 0.5], [0.5, 0.5]] };
}
function expertsRecord(step, experts) {
  return { type: 'experts', step,
           load: [0, 1].map((l) => [...Array(experts).keys()].map((e) => 10 + ((e * 7 + step + l) % 5))),
           bias: [0, 1].map((l) => [...Array(experts).keys()].map((e) => 0.001 * (e - experts / 2) * (l + 1))) };
}
const lines = (records) => records.map((r) => JSON.stringify(r) + '\n').join('');

function makeRun(name, { steps, depths, evalEvery, expertsEvery, experts = 8, options = {}, extra = '' }) {
  const dir = path.join(runs, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'run.json'), JSON.stringify({ balance: 'aux-free', lr: 1e-3, batch_size: 8, seq_len: 64, ...options }));
  const records = [];
  for (let s = 1; s <= steps; s++) {
    records.push(trainRecord(s, depths));
    if (evalEvery && s % evalEvery === 0) records.push(evalRecord(s, depths));
    if (expertsEvery && s % expertsEvery === 0) records.push(expertsRecord(s, experts));
  }
  writeFileSync(path.join(dir, 'metrics.jsonl'), lines(records.slice(0, 5)) + extra + lines(records.slice(5)));
  return { dir, records };
}

// What each chart must show for a run, from its records alone.
function expectedCounts(name, records, depths) {
  const train = records.filter((r) => r.type === 'train').length;
  const evals = records.filter((r) => r.type === 'eval').length;
  const loss = { [`${name} main`]: train };
  for (let k = 1; k <= depths; k++) loss[`${name} depth ${k}`] = train;
  if (evals) {
    loss[`${name} eval main`] = evals;
    for (let k = 1; k <= depths; k++) loss[`${name} eval depth ${k}`] = evals;
  }
  const accuracy = evals ? { [`${name} main`]: evals } : {};
  if (evals) for (let k = 1; k <= depths; k++) accuracy[`${name} depth ${k}`] = evals;
  const maxvio = { [`${name} MaxVio_batch`]: train };
  if (evals) maxvio[`${name} MaxVio_global`] = evals;
  const schedule = { [`${name} lr`]: train };
  if (depths) schedule[`${name} λ`] = train;
  return { loss, accuracy, maxvio, schedule, grad_norm: { [`${name} grad norm`]: train },
           throughput: { [`${name} tokens/s`]: train } };
}

function assertCounts(actual, expected, label) {
  for (const [chartId, series] of Object.entries(expected)) {
    for (const [name, count] of Object.entries(series)) {
      assert.equal(actual[chartId]?.[name], count, `${label}: chart ${chartId}, series '${name}'`);
    }
  }
}

// ---- the browser ----------------------------------------------------------------------------

async function openPage(url, { blockNetwork = false } = {}) {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const problems = [];
  const requests = [];
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  if (blockNetwork) {
    await page.route('**/*', (route) => {
      const u = route.request().url();
      if (u.startsWith('file:') || u.startsWith('data:')) return route.continue();
      requests.push(u);
      return route.abort();
    });
  }
  await page.goto(url);
  await page.waitForFunction(() => window.nextn && window.nextn.ready, null, { timeout: 30000 });
  return { page, problems, requests };
}

const counts = (page) => page.evaluate(() => window.nextn.pointCounts());

async function waitFor(page, predicate, what, timeoutMs) {
  const start = Date.now();
  for (;;) {
    const value = await counts(page);
    if (predicate(value)) return Date.now() - start;
    if (Date.now() - start > timeoutMs) assert.fail(`${what}: not within ${timeoutMs} ms; counts ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function startDashboard(args) {
  const proc = spawn(nextn, ['dashboard', ...args, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`dashboard did not start:\n${output}`)), 30000);
    const onData = (chunk) => {
      output += chunk;
      const m = output.match(/listening on (http:\/\/127\.0\.0\.1:\d+\/)/);
      if (m) {
        clearTimeout(timer);
        resolve({ url: m[1], stop: () => new Promise((done) => { proc.once('exit', done); proc.kill('SIGINT'); }) });
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`dashboard exited (${code}):\n${output}`)); });
  });
}

// ---- tests ----------------------------------------------------------------------------------

const torn = '{"type":"train","step":3,"loss":8.1,"main_lo\n';  // a line a kill cut short, then more lines
let mtpRun, baselineRun;

test('the live dashboard draws every row of every run, overlaid, and follows a run that is still writing', async () => {
  mtpRun = makeRun('aux-free-mtp', { steps: 60, depths: 2, evalEvery: 20, expertsEvery: 15, extra: torn });
  baselineRun = makeRun('aux-loss-no-mtp', { steps: 40, depths: 0, evalEvery: 20, expertsEvery: 0,
                                             options: { balance: 'aux-loss', mtp: false } });
  const dashboard = await startDashboard([runs]);
  try {
    const { page, problems } = await openPage(dashboard.url);
    const want = { ...expectedCounts('aux-free-mtp', mtpRun.records, 2) };
    const wantBaseline = expectedCounts('aux-loss-no-mtp', baselineRun.records, 0);
    const got = await counts(page);
    assertCounts(got, want, 'MTP run');
    assertCounts(got, wantBaseline, 'baseline run');
    // The heatmaps: one cell per expert per experts record, for each of the 2 MoE layers.
    for (const id of ['load_0', 'load_1', 'bias_0', 'bias_1']) {
      assert.equal(Object.values(got[id])[0], 4 * 8, `heatmap ${id}`);
    }
    // The torn line is skipped with a note that names it.
    const notes = await page.textContent('#notes');
    assert.match(notes, /aux-free-mtp\/metrics\.jsonl line 6 skipped: not valid JSON/);
    assert.equal(await page.isVisible('#notes-panel'), true);
    // The final-figures table has a row per run, with the last step.
    assert.match(await page.textContent('#summary tr[data-run="aux-free-mtp"]'), /^\s*aux-free-mtp\s*60/);
    // Its throughput: tokens over time between the first and the last record (512 tokens per 0.5 s).
    assert.match(await page.textContent('#summary tr[data-run="aux-free-mtp"]'), /1024\s*$/);
    await page.screenshot({ path: path.join(artifacts, 'dashboard-live.png'), fullPage: true });

    // With no smoothing, the drawn values are the file's values.
    await page.$eval('#smoothing', (e) => { e.value = '0'; e.dispatchEvent(new Event('input')); });
    const drawn = await page.evaluate(() => window.nextn.charts.loss.getOption().series.find((s) => s.name === 'aux-free-mtp depth 2').data);
    const train = mtpRun.records.filter((r) => r.type === 'train');
    assert.deepEqual(drawn, train.map((r) => [r.step, r.mtp_loss[1]]));
    // Smoothing and the log scale change what is drawn, never how many points.
    await page.$eval('#smoothing', (e) => { e.value = '0.9'; e.dispatchEvent(new Event('input')); });
    await page.check('#log-scale');
    assertCounts(await counts(page), want, 'smoothed, log scale');
    const smoothed = await page.evaluate(() => window.nextn.charts.loss.getOption().series.find((s) => s.name === 'aux-free-mtp main').data);
    let ema = 0;
    train.forEach((r, i) => {
      ema = 0.9 * ema + 0.1 * r.main_loss;
      assert.ok(Math.abs(smoothed[i][1] - ema / (1 - 0.9 ** (i + 1))) < 1e-9, `debiased EMA at step ${r.step}`);
    });

    // The run goes on: 15 more steps, an evaluation, an experts record, and a line being written.
    const more = [];
    for (let s = 61; s <= 75; s++) more.push(trainRecord(s, 2));
    more.push(evalRecord(75, 2), expertsRecord(75, 8));
    appendFileSync(path.join(mtpRun.dir, 'metrics.jsonl'), lines(more) + '{"type":"train","st');
    const waited = await waitFor(page, (c) => c.loss?.['aux-free-mtp main'] === 75 && c.load_0?.['layer 0: load / mean'] === 5 * 8,
                                 'the appended steps', 5000);
    console.log(`# new steps on the page ${waited} ms after they were written`);
    assert.match(await page.textContent('#notes'), /ends in an incomplete line \(19 bytes\)/);
    assertCounts(await counts(page), expectedCounts('aux-free-mtp', mtpRun.records.concat(more), 2), 'after appending');

    // A resumed run rewrites its file without the steps it replays: the page starts over.
    writeFileSync(path.join(mtpRun.dir, 'metrics.jsonl.tmp'), lines(mtpRun.records.slice(0, 30)));
    const { renameSync } = await import('node:fs');
    renameSync(path.join(mtpRun.dir, 'metrics.jsonl.tmp'), path.join(mtpRun.dir, 'metrics.jsonl'));
    const kept = mtpRun.records.slice(0, 30).filter((r) => r.type === 'train').length;
    await waitFor(page, (c) => c.loss?.['aux-free-mtp main'] === kept, 'the rewritten file', 5000);
    // Written again in place (same inode, longer): read from its start, not from the old offset.
    writeFileSync(path.join(mtpRun.dir, 'metrics.jsonl'), lines(mtpRun.records.slice(0, 5)) + torn + lines(mtpRun.records.slice(5)));
    await waitFor(page, (c) => c.loss?.['aux-free-mtp main'] === 60, 'the restored file', 5000);
    assertCounts(await counts(page), want, 'the restored file');
    const restoredNotes = await page.$$eval('#notes li', (items) => items.map((i) => i.textContent));
    assert.equal(restoredNotes.length, 1, restoredNotes.join('\n'));
    assert.match(restoredNotes[0], /line 6 skipped: not valid JSON/);
    assert.deepEqual(problems, []);
    await page.close();
  } finally {
    await dashboard.stop();
  }
});

test('the report opens from disk with no network and draws the same charts', async () => {
  const out = path.join(work, 'report.html');
  const r = run(['report', runs, '-o', out]);
  assert.match(r.stdout, /2 runs, \d+ records -> /);
  const { page, problems, requests } = await openPage(pathToFileURL(out).href, { blockNetwork: true });
  const got = await counts(page);
  assertCounts(got, expectedCounts('aux-free-mtp', mtpRun.records, 2), 'report, MTP run');
  assertCounts(got, expectedCounts('aux-loss-no-mtp', baselineRun.records, 0), 'report, baseline run');
  assert.equal(Object.values(got.load_0)[0], 4 * 8);
  assert.match(await page.textContent('#notes'), /line 6 skipped/);
  assert.match(await page.textContent('#subtitle'), /report of 2 run\(s\)/);
  await page.screenshot({ path: path.join(artifacts, 'report.png'), fullPage: true });
  assert.deepEqual(requests, [], 'the report fetched something');
  assert.deepEqual(problems, []);
  await page.close();
});

test('a real training run, watched while it trains', async () => {
  const model = tinyModel();  // trains once; its data directory is reused here
  const data = path.join(path.dirname(model), 'data');
  const tiny = path.join(path.dirname(model), 'tiny.json');
  const liveRuns = path.join(work, 'live');
  mkdirSync(liveRuns);
  const dashboard = await startDashboard([liveRuns]);
  try {
    const { page, problems } = await openPage(dashboard.url);
    assert.equal(await page.isVisible('#no-runs'), true);
    const runDir = path.join(liveRuns, 'tiny');
    const training = spawn(nextn, ['train', '--config', tiny, '--data', data, '--run', runDir, '--steps', '80',
                                   '--batch-size', '16', '--seq-len', '64', '--warmup', '3', '--eval-every', '20',
                                   '--eval-batches', '1', '--log-experts-every', '10', '--checkpoint-every', '0',
                                   '--threads', '1'], { stdio: 'ignore' });
    const finished = new Promise((resolve) => training.once('exit', resolve));
    // Seen while it trains: some steps, with the trainer still running.
    await waitFor(page, (c) => (c.loss?.['tiny main'] ?? 0) > 0, 'the first steps of the training run', 60000);
    assert.equal(training.exitCode, null, 'the page showed steps only once training had ended');
    assert.equal(await finished, 0);
    const records = readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const depths = records.find((r) => r.type === 'train').mtp_loss.length;
    assert.ok(depths > 0);
    const want = expectedCounts('tiny', records, depths);
    // The last train record and the evaluation after it may reach the page in different polls:
    // wait until every series holds all of its points, then assert each by name.
    const experts = records.filter((r) => r.type === 'experts');
    assert.equal(experts.length, 8);
    const loadCells = experts.length * experts[0].load[0].length;
    const complete = (c) => Object.values(c.load_0 ?? {})[0] === loadCells &&
      Object.entries(want).every(([chart, series]) => Object.entries(series).every(([name, n]) => c[chart]?.[name] === n));
    await waitFor(page, complete, 'all 80 steps, every evaluation and expert record', 5000);
    const got = await counts(page);
    assertCounts(got, want, 'real run');
    assert.equal(Object.values(got.load_0)[0], loadCells);
    await page.screenshot({ path: path.join(artifacts, 'dashboard-real-run.png'), fullPage: true });
    assert.deepEqual(problems, []);
    await page.close();
  } finally {
    await dashboard.stop();
  }
});

test('the server panel shows a live nextn serve: tokens/s and acceptance per MTP depth', async () => {
  const server = await startServer(['--speculative', 'mtp', '--draft', '2']);
  const dashboard = await startDashboard([runs, '--server', server.url]);
  try {
    const { page, problems } = await openPage(dashboard.url);
    assert.equal(await page.isVisible('#server-panel'), true);
    for (let i = 0; i < 3; i++) {
      const response = await fetch(`${server.url}/v1/completions`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ model: 'tiny', prompt: 'def main():\n    ', max_tokens: 24, temperature: 0 }),
      });
      assert.equal(response.status, 200);
      await new Promise((r) => setTimeout(r, 1600));  // one request per poll of the page
    }
    // The page has polled since the last request: its latest sample holds the server's final counts.
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const counter = (name) => text.split('\n').filter((l) => l.startsWith(name)).map((l) => Number(l.split(' ').pop()));
    const generated = counter('nextn_generation_tokens_total')[0];
    const drafted = counter('nextn_spec_draft_tokens_total'), accepted = counter('nextn_spec_accepted_tokens_total');
    assert.ok(generated > 0 && drafted.length === 2);
    const deadline = Date.now() + 10000;
    while ((await page.evaluate(() => window.nextn.state.serverSamples.at(-1)?.generated_tokens)) !== generated) {
      assert.ok(Date.now() < deadline, 'the page never saw the final counts');
      await new Promise((r) => setTimeout(r, 200));
    }
    const { samples, tokens, acceptance } = await page.evaluate(() => {
      const data = (id) => window.nextn.charts[id].getOption().series.map((s) => s.data);
      return { samples: window.nextn.state.serverSamples, tokens: data('server_tokens')[0], acceptance: data('server_acceptance') };
    });
    const first = samples[0], last = samples.at(-1);
    assert.deepEqual(last.drafted, drafted);
    assert.deepEqual(last.accepted, accepted);
    // tokens/s integrates back to the tokens generated between the first and the last sample.
    let integral = 0;
    tokens.forEach(([t, rate], i) => { if (i > 0) integral += rate * (t - tokens[i - 1][0]) / 1000; });
    integral += tokens.length ? tokens[0][1] * (tokens[0][0] / 1000 - first.time) : 0;
    assert.ok(Math.abs(integral - (last.generated_tokens - first.generated_tokens)) < 1e-6 * generated + 1e-6,
              `integral of tokens/s ${integral} vs ${last.generated_tokens - first.generated_tokens}`);
    assert.ok(tokens.some(([, rate]) => rate > 0), 'tokens/s points');
    // Acceptance per interval, weighted by what was drafted in it, is the accepted fraction overall.
    for (let k = 0; k < 2; k++) {
      let weighted = 0;
      acceptance[k].forEach(([, rate], i) => {
        if (rate !== null) weighted += rate * ((samples[i + 1].drafted[k] ?? 0) - (samples[i].drafted[k] ?? 0));
      });
      const acceptedInWindow = last.accepted[k] - (first.accepted[k] ?? 0);
      assert.ok(Math.abs(weighted - acceptedInWindow) < 1e-6, `depth ${k + 1} acceptance: ${weighted} vs ${acceptedInWindow}`);
      assert.ok(acceptance[k].every(([, rate]) => rate === null || (rate >= 0 && rate <= 1)));
    }
    assert.match(await page.textContent('#server-state'), /running, \d+ queued/);
    await page.screenshot({ path: path.join(artifacts, 'dashboard-server.png'), fullPage: true });
    assert.deepEqual(problems, []);
    await page.close();
  } finally {
    await dashboard.stop();
    await server.stop();
  }
});

test('the ECharts copy compiled into nextn is the pinned npm package, byte for byte', () => {
  const vendored = readFileSync(path.join(root, 'third_party/echarts/echarts.min.js'));
  const pinned = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).devDependencies.echarts;
  const installed = JSON.parse(readFileSync(path.join(root, 'node_modules/echarts/package.json'), 'utf8')).version;
  assert.equal(installed, pinned);
  assert.ok(existsSync(path.join(root, 'third_party/echarts/LICENSE')));
  assert.ok(vendored.equals(readFileSync(path.join(root, 'node_modules/echarts/dist/echarts.min.js'))));
  assert.match(readFileSync(path.join(root, 'third_party/echarts/README.md'), 'utf8'), new RegExp(`echarts@${pinned}`));
});
