// Pictures of experiment runs for docs/FIDELITY.md: opens a `nextn report` file in headless
// chromium (the same page a researcher opens) and saves chosen charts as PNG files.
// Usage: node experiments/plot.mjs REPORT.html OUT_PREFIX CHART... [--log-scale] [--smoothing S]
//   CHART: a chart of the report (loss, accuracy, maxvio, schedule, grad_norm, throughput, load_0, ...)
//   writes OUT_PREFIX-CHART.png for each.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

const args = process.argv.slice(2);
const flag = (name) => { const i = args.indexOf(name); if (i < 0) return undefined; const [, v] = args.splice(i, 2); return v; };
const logScale = args.includes('--log-scale');
if (logScale) args.splice(args.indexOf('--log-scale'), 1);
const smoothing = flag('--smoothing');
const [report, prefix, ...charts] = args;
if (!report || !prefix || charts.length === 0) {
  console.error('usage: node experiments/plot.mjs REPORT.html OUT_PREFIX CHART... [--log-scale] [--smoothing S]');
  process.exit(2);
}

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
try {
  const page = await browser.newPage({ viewport: { width: 1500, height: 1100 }, deviceScaleFactor: 1 });
  const problems = [];
  page.on('pageerror', (e) => problems.push(e.message));
  await page.goto(pathToFileURL(path.resolve(report)).href);
  await page.waitForSelector('[data-chart="loss"] canvas');
  if (smoothing !== undefined) {
    await page.$eval('#smoothing', (el, v) => { el.value = v; el.dispatchEvent(new Event('input', { bubbles: true })); }, smoothing);
  }
  if (logScale) await page.check('#log-scale');
  await page.waitForTimeout(800);  // charts animate their updates
  for (const chart of charts) {
    const card = page.locator(`.card:has([data-chart="${chart}"])`).first();
    if (await card.count() === 0) throw new Error(`the report has no chart '${chart}'`);
    // For a picture, every legend entry visible at once (the page scrolls a long legend): one
    // column at the right of the plot, on a taller chart when the entries need it.
    await page.$eval(`[data-chart="${chart}"]`, (el) => {
      const instance = echarts.getInstanceByDom(el);
      const entries = instance.getOption().series.length;
      el.style.height = `${Math.max(el.clientHeight, 90 + 21 * entries)}px`;
      instance.resize();
      instance.setOption({ legend: { type: 'plain', orient: 'vertical', top: 40, left: 'auto', right: 8 },
                           grid: { top: 40, right: 250 } });
    });
    await page.waitForTimeout(500);
    const file = `${prefix}-${chart}.png`;
    await card.screenshot({ path: file });
    console.log(`wrote ${file}`);
  }
  if (problems.length) throw new Error(`page errors: ${problems.join('; ')}`);
} finally {
  await browser.close();
}
