// nextn's dashboard page: draws training runs (metrics.jsonl records) and, live, a nextn serve's
// counters, with Apache ECharts. One script for both uses:
//   live:   `nextn dashboard` serves it and it polls /api/runs, /api/metrics and /api/server;
//   report: `nextn report` embeds the runs' records in #nextn-data and it draws them once.
// window.nextn exposes what the browser tests check (points per series of each chart).
(function () {
  'use strict';

  const dataElement = document.getElementById('nextn-data');
  const MODE = dataElement.dataset.mode;
  const POLL_MS = 1500;
  const HEATMAP_MAX_COLUMNS = 400;  // longer runs: every k-th experts record
  const PALETTE = ['#3b5bdb', '#e8590c', '#2b8a3e', '#c2255c', '#7048e8', '#0c8599', '#a07d00', '#495057'];
  const DEPTH_DASHES = ['solid', [8, 4], [2, 3], [10, 3, 2, 3], [1, 5]];

  const state = {
    runs: new Map(),          // name -> run (see newRun)
    smoothing: 0.6,
    logScale: false,
    expertsRun: null,
    expertsLayer: 'all',
    serverUrl: null,
    serverSamples: [],        // {time, generated_tokens, drafted: [], accepted: []}
    serverError: null,
  };
  const charts = {};          // id -> echarts instance
  const api = { ready: false, renders: 0, charts, state, pointCounts };
  window.nextn = api;

  // ---- data -------------------------------------------------------------------------------------

  function newRun(name) {
    return { name, generation: -1, options: {}, notes: [], notesKey: '', train: [], eval: [], experts: [], otherRecords: 0,
             depths: 0, visible: true,
             secondsSinceModified: -1, color: PALETTE[state.runs.size % PALETTE.length] };
  }

  function addRecords(run, records) {
    for (const r of records) {
      if (r.type === 'train') run.train.push(r);
      else if (r.type === 'eval') run.eval.push(r);
      else if (r.type === 'experts') run.experts.push(r);
      if (r.type === 'train' || r.type === 'eval') run.depths = Math.max(run.depths, (r.mtp_loss || []).length);
    }
  }

  function clearRecords(run) { run.train = []; run.eval = []; run.experts = []; run.depths = 0; }

  const finite = (v) => typeof v === 'number' && Number.isFinite(v);
  const mean = (values) => {
    const xs = (values || []).filter(finite);
    return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null;
  };
  const depthsOf = (run) => run.depths;  // MTP depths: the longest mtp_loss of its records
  const visibleRuns = () => [...state.runs.values()].filter((r) => r.visible);

  // TensorBoard's smoothing: an exponential moving average, debiased at the start.
  function smooth(values, weight) {
    if (weight <= 0) return values;
    let last = 0, count = 0;
    return values.map((v) => {
      if (!finite(v)) return null;
      last = last * weight + (1 - weight) * v;
      count += 1;
      return last / (1 - Math.pow(weight, count));
    });
  }

  // [[step, value], ...] of a field over the train records; `smoothed` applies the smoothing.
  function trainSeries(run, pick, smoothed) {
    const values = run.train.map((r) => { const v = pick(r); return finite(v) ? v : null; });
    const ys = smoothed ? smooth(values, state.smoothing) : values;
    return run.train.map((r, i) => [r.step, ys[i]]);
  }

  function evalSeries(run, pick) {
    return run.eval.map((r) => { const v = pick(r); return [r.step, finite(v) ? v : null]; });
  }

  // ---- charts -----------------------------------------------------------------------------------

  function chart(id) {
    if (!charts[id]) {
      const element = document.querySelector(`[data-chart="${id}"]`);
      charts[id] = echarts.init(element, null, { renderer: 'canvas' });
      if (!id.startsWith('server')) charts[id].group = 'training';
    }
    return charts[id];
  }

  function baseOption(title, yName, extra) {
    return Object.assign({
      animation: false,
      title: { text: title, left: 8, top: 4, textStyle: { fontSize: 13, fontWeight: 600 } },
      tooltip: { trigger: 'axis', valueFormatter: (v) => (finite(v) ? formatNumber(v) : '–') },
      legend: { type: 'scroll', top: 26, left: 8, right: 8, textStyle: { fontSize: 11 } },
      grid: { left: 58, right: 58, top: 66, bottom: 56 },
      xAxis: { type: 'value', name: 'step', nameLocation: 'middle', nameGap: 24, min: 'dataMin', max: 'dataMax' },
      yAxis: yAxis({ type: 'value', name: yName, scale: true }),
      dataZoom: [{ type: 'inside', xAxisIndex: 0 }, { type: 'slider', xAxisIndex: 0, height: 14, bottom: 4 }],
      series: [],
    }, extra || {});
  }

  // The axis name along the axis, clear of the legend above the plot.
  function yAxis(axis) { return Object.assign({ nameLocation: 'middle', nameGap: 44, nameRotate: 90 }, axis); }

  function line(name, data, color, dash, extra) {
    return Object.assign({ name, type: 'line', data, showSymbol: false, color, connectNulls: false,
                           lineStyle: { width: 1.6, type: dash || 'solid' }, sampling: 'lttb' }, extra || {});
  }

  // Evaluation points: markers joined by a thin line.
  function points(name, data, color, dash) {
    return line(name, data, color, dash, { showSymbol: true, symbol: 'circle', symbolSize: 7, sampling: undefined,
                                           lineStyle: { width: 1, type: dash || 'solid', opacity: 0.6 } });
  }

  function yAxisScale() { return state.logScale ? { type: 'log', scale: true } : { type: 'value', scale: true }; }

  function drawLoss() {
    const option = baseOption('Loss per depth (lines: training, points: validation)', 'loss');
    option.yAxis = yAxis(Object.assign({ name: 'loss' }, yAxisScale()));
    for (const run of visibleRuns()) {
      option.series.push(line(`${run.name} main`, trainSeries(run, (r) => r.main_loss, true), run.color, DEPTH_DASHES[0]));
      for (let k = 0; k < depthsOf(run); k++) {
        option.series.push(line(`${run.name} depth ${k + 1}`, trainSeries(run, (r) => (r.mtp_loss || [])[k], true),
                                run.color, DEPTH_DASHES[(k + 1) % DEPTH_DASHES.length]));
      }
      if (run.eval.length) {
        option.series.push(points(`${run.name} eval main`, evalSeries(run, (r) => r.main_loss), run.color, DEPTH_DASHES[0]));
        for (let k = 0; k < depthsOf(run); k++) {
          option.series.push(points(`${run.name} eval depth ${k + 1}`, evalSeries(run, (r) => (r.mtp_loss || [])[k]),
                                    run.color, DEPTH_DASHES[(k + 1) % DEPTH_DASHES.length]));
        }
      }
    }
    chart('loss').setOption(option, true);
  }

  function drawAccuracy() {
    const option = baseOption('Validation top-1 accuracy per depth (depth k: what a greedy drafter gets accepted)', 'accuracy');
    option.yAxis = yAxis({ type: 'value', name: 'accuracy', min: 0, max: (v) => Math.min(1, Math.ceil(v.max * 10 + 0.5) / 10) });
    option.xAxis.min = 0;
    for (const run of visibleRuns()) {
      if (!run.eval.length) continue;
      option.series.push(points(`${run.name} main`, evalSeries(run, (r) => r.main_accuracy), run.color, DEPTH_DASHES[0]));
      for (let k = 0; k < depthsOf(run); k++) {
        option.series.push(points(`${run.name} depth ${k + 1}`, evalSeries(run, (r) => (r.mtp_accuracy || [])[k]),
                                  run.color, DEPTH_DASHES[(k + 1) % DEPTH_DASHES.length]));
      }
    }
    chart('accuracy').setOption(option, true);
  }

  function drawMaxVio() {
    const option = baseOption('MaxVio (batch: mean over MoE layers; global: validation set)', 'MaxVio');
    for (const run of visibleRuns()) {
      option.series.push(line(`${run.name} MaxVio_batch`, trainSeries(run, (r) => r.max_vio_batch, true), run.color));
      if (run.eval.length) {
        option.series.push(points(`${run.name} MaxVio_global`, evalSeries(run, (r) => mean(r.max_vio_global)),
                                  run.color, DEPTH_DASHES[1]));
      }
    }
    chart('maxvio').setOption(option, true);
  }

  function drawSchedule() {
    const option = baseOption('Learning rate and MTP weight λ', 'lr');
    option.yAxis = [yAxis({ type: 'value', name: 'lr', scale: true, axisLabel: { formatter: (v) => v.toExponential(1) } }),
                    yAxis({ type: 'value', name: 'λ', scale: true, splitLine: { show: false }, nameGap: 36 })];
    for (const run of visibleRuns()) {
      option.series.push(line(`${run.name} lr`, trainSeries(run, (r) => r.lr, false), run.color));
      if (depthsOf(run) > 0) {
        option.series.push(line(`${run.name} λ`, trainSeries(run, (r) => r.mtp_lambda, false), run.color, DEPTH_DASHES[1],
                                { yAxisIndex: 1 }));
      }
    }
    chart('schedule').setOption(option, true);
  }

  function drawGradNorm() {
    const option = baseOption('Gradient norm (before clipping)', 'norm');
    option.yAxis = yAxis(Object.assign({ name: 'norm' }, yAxisScale()));
    for (const run of visibleRuns()) {
      option.series.push(line(`${run.name} grad norm`, trainSeries(run, (r) => r.grad_norm, true), run.color));
    }
    chart('grad_norm').setOption(option, true);
  }

  function drawThroughput() {
    const option = baseOption('Training throughput', 'tokens/s');
    for (const run of visibleRuns()) {
      option.series.push(line(`${run.name} tokens/s`, trainSeries(run, (r) => r.tokens_per_second, true), run.color));
    }
    chart('throughput').setOption(option, true);
  }

  // ---- experts: load and bias heatmaps per MoE layer --------------------------------------------

  function expertsRecords(run) {
    const all = run.experts;
    const stride = Math.max(1, Math.ceil(all.length / HEATMAP_MAX_COLUMNS));
    return stride === 1 ? all : all.filter((_, i) => i % stride === 0 || i === all.length - 1);
  }

  function heatmapOption(title, steps, experts, data, visualMap) {
    return {
      animation: false,
      title: { text: title, left: 8, top: 2, textStyle: { fontSize: 12, fontWeight: 600 } },
      tooltip: { position: 'top', formatter: (p) => `step ${steps[p.value[0]]}, expert ${p.value[1]}: ${formatNumber(p.value[2])}` },
      grid: { left: 44, right: 100, top: 26, bottom: 28 },
      xAxis: { type: 'category', data: steps, name: 'step', nameLocation: 'middle', nameGap: 18,
               axisLabel: { fontSize: 10 }, splitArea: { show: false } },
      yAxis: { type: 'category', data: experts, name: 'expert', axisLabel: { fontSize: 10 }, inverse: true },
      visualMap: Object.assign({ calculable: true, orient: 'vertical', right: 4, top: 'middle', itemHeight: 110,
                                 formatter: (v) => formatNumber(v),
                                 textStyle: { fontSize: 10 } }, visualMap),
      series: [{ name: title, type: 'heatmap', data, progressive: 0, emphasis: { disabled: true } }],
    };
  }

  function drawExperts() {
    const container = document.getElementById('experts');
    const panel = document.getElementById('experts-panel');
    const withExperts = [...state.runs.values()].filter((r) => r.experts.length > 0);
    panel.hidden = withExperts.length === 0;
    fillSelect(document.getElementById('experts-run'), withExperts.map((r) => r.name), state.expertsRun);
    if (!withExperts.some((r) => r.name === state.expertsRun)) state.expertsRun = withExperts.length ? withExperts[0].name : null;
    document.getElementById('experts-run').value = state.expertsRun || '';
    const run = state.runs.get(state.expertsRun);
    const records = run ? expertsRecords(run) : [];
    const layers = records.length ? records[records.length - 1].load.length : 0;
    fillSelect(document.getElementById('experts-layer'), ['all'].concat([...Array(layers).keys()].map((l) => `layer ${l}`)),
               state.expertsLayer);
    document.getElementById('experts-layer').value = state.expertsLayer;
    const shown = [...Array(layers).keys()].filter((l) => state.expertsLayer === 'all' || state.expertsLayer === `layer ${l}`);
    const wanted = new Set();
    for (const l of shown) { wanted.add(`load_${l}`); wanted.add(`bias_${l}`); }
    // Drop the charts of layers no longer shown.
    for (const id of Object.keys(charts)) {
      if ((id.startsWith('load_') || id.startsWith('bias_')) && !wanted.has(id)) {
        charts[id].dispose();
        delete charts[id];
        const card = container.querySelector(`[data-chart="${id}"]`);
        if (card) card.parentElement.remove();
      }
    }
    for (const l of shown) {
      const steps = [], load = [], bias = [];
      let experts = 0, maxBias = 0;
      records.forEach((r, column) => {
        const counts = r.load[l] || [];
        const b = (r.bias || [])[l] || [];
        experts = Math.max(experts, counts.length);
        steps.push(r.step);
        const average = counts.reduce((a, c) => a + c, 0) / Math.max(1, counts.length);
        counts.forEach((c, e) => load.push([column, e, average > 0 ? c / average : 0]));
        b.forEach((v, e) => { bias.push([column, e, v]); maxBias = Math.max(maxBias, Math.abs(v)); });
      });
      const names = [...Array(experts).keys()].map(String);
      for (const [kind, data, title, visualMap] of [
        ['load', load, `layer ${l}: load / mean`, { min: 0, max: 2, inRange: { color: ['#f8f9fa', '#74c0fc', '#1c7ed6', '#e03131'] } }],
        ['bias', bias, `layer ${l}: selection bias`, { min: -(maxBias || 1e-3), max: maxBias || 1e-3,
                                                        inRange: { color: ['#1971c2', '#f8f9fa', '#e8590c'] } }]]) {
        const id = `${kind}_${l}`;
        if (!container.querySelector(`[data-chart="${id}"]`)) {
          const card = document.createElement('div');
          card.className = 'card';
          card.innerHTML = `<div class="chart heatmap" data-chart="${id}"></div>`;
          container.appendChild(card);
        }
        chart(id).group = 'experts';
        chart(id).setOption(heatmapOption(title, steps, names, data, visualMap), true);
      }
    }
  }

  // ---- server (live, with --server) -------------------------------------------------------------

  function drawServer() {
    const panel = document.getElementById('server-panel');
    panel.hidden = !state.serverUrl;
    if (!state.serverUrl) return;
    const s = state.serverSamples;
    const last = s[s.length - 1];
    document.getElementById('server-state').textContent = state.serverError
      ? `${state.serverUrl}: ${state.serverError}`
      : last ? `${state.serverUrl}: ${last.running} running, ${last.queued} queued, batch ${last.batch_size}` : state.serverUrl;
    const timeAxis = { type: 'time', name: 'time', nameLocation: 'middle', nameGap: 24 };
    const tokens = [];
    const depths = Math.max(0, ...s.map((x) => x.drafted.length));
    const acceptance = [...Array(depths)].map(() => []);
    for (let i = 1; i < s.length; i++) {
      const dt = s[i].time - s[i - 1].time;
      const t = s[i].time * 1000;
      // A counter that went down: the server restarted; that interval has no rate.
      const generated = s[i].generated_tokens - s[i - 1].generated_tokens;
      tokens.push([t, dt > 0 && generated >= 0 ? generated / dt : null]);
      for (let k = 0; k < depths; k++) {
        const drafted = (s[i].drafted[k] || 0) - (s[i - 1].drafted[k] || 0);
        const accepted = (s[i].accepted[k] || 0) - (s[i - 1].accepted[k] || 0);
        acceptance[k].push([t, drafted > 0 && accepted >= 0 ? accepted / drafted : null]);
      }
    }
    const tokensOption = baseOption('Server: generated tokens/s', 'tokens/s', { xAxis: timeAxis, dataZoom: [] });
    tokensOption.series.push(line('tokens/s', tokens, PALETTE[0], 'solid', { showSymbol: true, symbolSize: 4 }));
    chart('server_tokens').setOption(tokensOption, true);
    const acceptanceOption = baseOption('Server: acceptance of MTP drafts per depth', 'accepted / drafted',
                                        { xAxis: timeAxis, dataZoom: [] });
    acceptanceOption.yAxis = yAxis({ type: 'value', name: 'accepted / drafted', min: 0, max: 1 });
    acceptance.forEach((data, k) => acceptanceOption.series.push(
      line(`depth ${k + 1}`, data, PALETTE[k % PALETTE.length], 'solid', { showSymbol: true, symbolSize: 4, connectNulls: true })));
    chart('server_acceptance').setOption(acceptanceOption, true);
  }

  // ---- tables and notes -------------------------------------------------------------------------

  function formatNumber(v) {
    if (!finite(v)) return '–';
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
    if (a >= 1000) return v.toFixed(0);
    const text = v.toPrecision(4);
    return text.includes('.') ? text.replace(/0+$/, '').replace(/\.$/, '') : text;
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  }

  function fillSelect(select, values, current) {
    const key = values.join('\u0001');
    if (select.dataset.key === key) return;
    select.dataset.key = key;
    select.innerHTML = values.map((v) => `<option${v === current ? ' selected' : ''}>${escapeHtml(v)}</option>`).join('');
  }

  function runState(run) {
    if (MODE !== 'live') return run.train.length ? `${run.train[run.train.length - 1].step} steps` : 'no steps';
    if (run.secondsSinceModified < 0) return 'no metrics yet';
    const steps = run.train.length ? `step ${run.train[run.train.length - 1].step}` : 'no steps yet';
    return run.secondsSinceModified < 30 ? `<span class="live">● live</span> ${steps}` : `${steps}, idle`;
  }

  function drawRunsTable() {
    const body = document.querySelector('#runs tbody');
    const rows = [...state.runs.values()].map((run) => {
      const o = run.options || {};
      const lr = finite(o.lr) ? o.lr.toExponential(1) : '–';
      const shape = finite(o.batch_size) && finite(o.seq_len) ? `${o.batch_size} × ${o.seq_len}` : '–';
      return `<tr data-run="${escapeHtml(run.name)}"><td><input type="checkbox" ${run.visible ? 'checked' : ''}></td>` +
        `<td><span class="swatch" style="background:${run.color}"></span> ${escapeHtml(run.name)}</td>` +
        `<td>${escapeHtml(o.balance || '–')}</td><td class="number">${depthsOf(run)}</td><td class="number">${lr}</td>` +
        `<td class="number">${shape}</td><td>${runState(run)}</td></tr>`;
    });
    body.innerHTML = rows.join('');
    body.querySelectorAll('input[type=checkbox]').forEach((box) => {
      box.addEventListener('change', () => {
        const run = state.runs.get(box.closest('tr').dataset.run);
        if (run) { run.visible = box.checked; render(); }
      });
    });
    const none = document.getElementById('no-runs');
    none.hidden = state.runs.size > 0;
    none.textContent = MODE === 'live'
      ? 'No runs yet: start one with `nextn train --run DIR` where DIR is under a folder this dashboard watches.'
      : 'This report holds no runs.';
  }

  function drawSummary() {
    const runs = [...state.runs.values()];
    const depths = Math.max(0, ...runs.map(depthsOf));
    const head = ['run', 'steps', 'tokens', 'time', 'train loss (last 20 steps)', 'val loss', 'val acc'];
    const lastSteps = (run) => {  // the records of the last 20 steps, whatever --log-every was
      const end = run.train.length ? run.train[run.train.length - 1].step : 0;
      return run.train.filter((r) => r.step > end - 20);
    };
    // Tokens over time between the first and the last record: the run's throughput.
    const throughput = (run) => {
      const a = run.train[0], b = run.train[run.train.length - 1];
      return a && b && b.elapsed_seconds > a.elapsed_seconds
        ? (b.tokens_seen - a.tokens_seen) / (b.elapsed_seconds - a.elapsed_seconds) : null;
    };
    for (let k = 1; k <= depths; k++) head.push(`val loss d${k}`, `acc d${k}`);
    head.push('MaxVio_global', 'tokens/s');
    document.querySelector('#summary thead').innerHTML = `<tr>${head.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr>`;
    document.querySelector('#summary tbody').innerHTML = runs.map((run) => {
      const last = run.train[run.train.length - 1] || {};
      const ev = run.eval[run.eval.length - 1] || {};
      const cells = [
        last.step, last.tokens_seen, finite(last.elapsed_seconds) ? formatDuration(last.elapsed_seconds) : '–',
        mean(lastSteps(run).map((r) => r.main_loss)), ev.main_loss, ev.main_accuracy];
      for (let k = 0; k < depths; k++) cells.push((ev.mtp_loss || [])[k], (ev.mtp_accuracy || [])[k]);
      cells.push(mean(ev.max_vio_global), throughput(run));
      return `<tr data-run="${escapeHtml(run.name)}"><td><span class="swatch" style="background:${run.color}"></span> ` +
        `${escapeHtml(run.name)}</td>${cells.map((c) => `<td class="number">${typeof c === 'string' ? c : formatNumber(c)}</td>`).join('')}</tr>`;
    }).join('');
  }

  function formatDuration(seconds) {
    const s = Math.round(seconds);
    if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
    if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
    return `${s}s`;
  }

  function drawNotes() {
    const notes = [];
    for (const run of state.runs.values()) for (const n of run.notes) notes.push(n);
    document.getElementById('notes-panel').hidden = notes.length === 0;
    document.getElementById('notes').innerHTML = notes.map((n) => `<li>${escapeHtml(n)}</li>`).join('');
  }

  function render() {
    drawRunsTable();
    drawNotes();
    drawLoss();
    drawAccuracy();
    drawMaxVio();
    drawSchedule();
    drawGradNorm();
    drawThroughput();
    drawSummary();
    drawExperts();
    drawServer();
    echarts.connect('training');
    api.renders += 1;
  }

  // Points per series of every chart, as drawn: {chart: {series name: count}}.
  function pointCounts() {
    const out = {};
    for (const [id, instance] of Object.entries(charts)) {
      out[id] = {};
      for (const s of instance.getOption().series || []) out[id][s.name] = (s.data || []).length;
    }
    return out;
  }

  // ---- live polling -----------------------------------------------------------------------------

  async function getJson(url) {
    const response = await fetch(url, { cache: 'no-store' });
    if (!response.ok) throw new Error(`${url}: ${response.status}`);
    return response.json();
  }

  async function poll() {
    let changed = false;
    const listing = await getJson('api/runs');
    state.serverUrl = listing.server || null;
    const names = new Set(listing.runs.map((r) => r.name));
    for (const name of [...state.runs.keys()]) {
      if (!names.has(name)) { state.runs.delete(name); changed = true; }
    }
    for (const info of listing.runs) {
      let run = state.runs.get(info.name);
      if (!run) { run = newRun(info.name); state.runs.set(info.name, run); changed = true; }
      run.options = info.options || {};
      if (Math.abs(run.secondsSinceModified - info.seconds_since_modified) > 5 || (run.secondsSinceModified < 30) !==
          (info.seconds_since_modified < 30)) changed = true;
      run.secondsSinceModified = info.seconds_since_modified;
      const notesKey = (info.notes || []).join('\n');
      if (notesKey !== run.notesKey) { run.notes = info.notes || []; run.notesKey = notesKey; changed = true; }
      const held = run.train.length + run.eval.length + run.experts.length + run.otherRecords;
      if (info.generation === run.generation && info.records === held) continue;
      const from = info.generation === run.generation ? held : 0;
      let update;
      try {
        update = await getJson(`api/metrics?run=${encodeURIComponent(info.name)}&generation=${Math.max(0, run.generation)}&from=${from}`);
      } catch (e) {  // this run only: the others still update
        run.notes = [`${info.name}: cannot read its records (${e.message})`];
        run.notesKey = '';
        changed = true;
        continue;
      }
      if (update.reset || update.generation !== run.generation) { clearRecords(run); run.otherRecords = 0; }
      addRecords(run, update.records);
      run.otherRecords = update.total - (run.train.length + run.eval.length + run.experts.length);
      run.generation = update.generation;
      changed = true;
    }
    if (state.serverUrl) {
      const sample = await getJson('api/server');
      if (sample.ok) {
        state.serverSamples.push(sample);
        if (state.serverSamples.length > 2000) state.serverSamples.shift();
        state.serverError = null;
      } else {
        state.serverError = sample.error;
      }
      changed = true;
    }
    return changed;
  }

  async function pollForever() {
    const status = document.getElementById('status');
    for (;;) {
      try {
        if (await poll() || !api.ready) render();
        api.ready = true;
        status.className = '';
        status.textContent = `updated ${new Date().toLocaleTimeString()}`;
      } catch (e) {
        status.className = 'error';
        status.textContent = `cannot reach the dashboard server (${e.message}); retrying`;
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  // ---- start ------------------------------------------------------------------------------------

  document.getElementById('smoothing').addEventListener('input', (e) => {
    state.smoothing = Number(e.target.value);
    document.getElementById('smoothing-value').textContent = state.smoothing.toFixed(2);
    render();
  });
  document.getElementById('log-scale').addEventListener('change', (e) => { state.logScale = e.target.checked; render(); });
  document.getElementById('experts-run').addEventListener('change', (e) => { state.expertsRun = e.target.value; render(); });
  document.getElementById('experts-layer').addEventListener('change', (e) => { state.expertsLayer = e.target.value; render(); });
  window.addEventListener('resize', () => Object.values(charts).forEach((c) => c.resize()));

  if (MODE === 'report') {
    const data = JSON.parse(dataElement.textContent);
    document.getElementById('subtitle').textContent = `report of ${data.runs.length} run(s), ${data.generated}, nextn ${data.version}`;
    document.title = `nextn report: ${data.runs.map((r) => r.name).join(', ')}`;
    for (const r of data.runs) {
      const run = newRun(r.name);
      run.options = r.options || {};
      run.notes = r.notes || [];
      addRecords(run, r.records);
      state.runs.set(r.name, run);
    }
    render();
    api.ready = true;
  } else {
    document.getElementById('subtitle').textContent = 'dashboard (live)';
    pollForever();
  }
})();
