// The web page of `sdpal serve` in a real browser: Debian's chromium driven by playwright-core.
// Starts `sdpal serve` on the demo model (a random free port), opens the page, types a prompt,
// presses Generate and waits for the image; checks that the progress bar moved during the
// generation (the largest step seen is reported), that the image, its infotext, the seed used and
// the download link show, that an API error is shown with the server's message, that Interrupt
// stops a generation, that nothing is fetched from another host, and that the page fits a phone.
// Screenshots (desktop and phone) are written for CI to keep.
//
//   node tests/browser/web_page.test.mjs [--sdpal build/sdpal] [--screenshot PATH]
//                                        [--chromium /usr/bin/chromium]
// Exit status 0: passed; 1: a check failed; 2: the test could not run (no chromium, no binary).
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const sdpalBin = resolve(root, option('sdpal', 'build/sdpal'));
const screenshot = resolve(root, option('screenshot', 'build/browser-test/screenshot.png'));
const phoneScreenshot = screenshot.replace(/(\.png)?$/, '-phone.png');
const chromiumPath = option('chromium', '/usr/bin/chromium');
// TAESD gives the live preview (progress.current_image); the fixture's weights are used when
// present (they decode SD's latent space, not the demo model's: the preview is only checked to
// show, not for what it shows).
const taesdFixture = resolve(root, '../shared/fixtures/taesd/weights/taesd');
const taesd = option('taesd', existsSync(`${taesdFixture}_decoder.safetensors`) ? taesdFixture : '');
// A second model for the model picker: the tiny-sd1 fixture, in a models folder of its own.
const secondModel = resolve(root, '../shared/fixtures/tiny-sd1/model');

const PROMPT = 'a photo of a sneaker';
// Enough steps that a generation on the demo model (32x32) outlasts several progress polls
// (the server's most, --max-steps: about 1.5 s on an idle 2-core machine).
const STEPS = 150;
// The interrupted generation would run far longer than the test: the server's most steps
// (--max-steps)
// at 256x256 (64 times the pixels of the demo model's 32x32).
const INTERRUPT_STEPS = 150;
const INTERRUPT_SIZE = 256;

let failures = 0;
function check(ok, what, detail = '') {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${detail ? `: ${detail}` : ''}`);
  if (!ok) failures++;
  return ok;
}

// Starts the server on port 0 and reads the port it bound from its first line on stderr.
function startServer(extraArgs = []) {
  return new Promise((resolvePromise, reject) => {
    const args = ['serve', '--host', '127.0.0.1', '--port', '0', ...extraArgs];
    if (taesd) args.push('--taesd', taesd);
    const proc = spawn(sdpalBin, args,
                       { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`sdpal serve did not report its port within 60 s:\n${log}`));
    }, 60000);
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk) => {
      log += chunk;
      const m = log.match(/listening on (http:\/\/[^\s/]+:\d+)\//);
      if (m && timer) {
        clearTimeout(timer);
        resolvePromise({ proc, url: m[1], log: () => log });
      }
    });
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`sdpal serve exited (${code ?? signal}) before listening:\n${log}`));
    });
    proc.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

function stopServer(server) {
  return new Promise((resolvePromise) => {
    if (server.proc.exitCode !== null) return resolvePromise(server.proc.exitCode);
    const timer = setTimeout(() => server.proc.kill('SIGKILL'), 10000);
    server.proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolvePromise(code ?? signal);
    });
    server.proc.kill('SIGTERM');
  });
}

// Records, inside the page, the largest step the progress bar showed while its state was
// "running" (the final "done" does not count), and every state it went through.
async function recordProgress(page) {
  await page.evaluate(() => {
    const bar = document.getElementById('progress');
    window.__progress = { maxStep: 0, maxValue: 0, steps: 0, states: [], rateText: '',
                          preview: false };
    const note = () => {
      const r = window.__progress;
      const state = bar.dataset.state;
      if (r.states[r.states.length - 1] !== state) r.states.push(state);
      if (state === 'running') {
        r.maxStep = Math.max(r.maxStep, Number(bar.dataset.step) || 0);
        r.maxValue = Math.max(r.maxValue, Number(bar.getAttribute('aria-valuenow')) || 0);
        r.steps = Number(bar.dataset.steps) || r.steps;
        const text = document.getElementById('status').textContent;
        if (/\d it\/s|\d s\/it/.test(text)) r.rateText = text;
        const preview = document.getElementById('preview');
        if (!document.getElementById('preview-box').hidden && preview.src.startsWith('data:image/png')) {
          r.preview = true;
        }
      }
    };
    if (window.__progressObserver) window.__progressObserver.disconnect();
    window.__progressObserver = new MutationObserver(note);
    window.__progressObserver.observe(bar, { attributes: true });
    note();
  });
}

async function setField(page, id, value) {
  await page.fill(`#${id}`, String(value));
}

// A server started with --api-key: the page asks for the key (its API calls are refused with
// 401), keeps it, and then works with it.
async function apiKeyFlow(context) {
  const KEY = 'browser-test-key-1234';
  const server = await startServer(['--api-key', KEY]);
  const page = await context.newPage();
  try {
    page.setDefaultTimeout(60000);
    const response = await page.goto(server.url + '/');
    if (response.status() === 401) {
      // The page itself needs no key; only its API calls do. Until the server serves the page's
      // files without credentials, a browser cannot open the page of a server with --api-key.
      console.log('SKIP the API key flow: the server answers GET / with 401, so a browser cannot ' +
                  'load the page to enter the key (the page\'s own files need no key)');
      return;
    }
    await page.waitForSelector('#error:not([hidden])');
    const message = await page.textContent('#error-text');
    const keyOpen = await page.$eval('#key-box', (d) => d.open);
    check(/401/.test(message) && keyOpen, 'without the key the page shows the 401 and opens the key field',
          message.trim());
    await page.fill('#api-key', KEY);
    await page.click('#save-key');
    await page.waitForFunction(() => document.querySelectorAll('#sampler_name option').length > 0);
    check(await page.isHidden('#error'), 'with the key the lists load');
    await page.fill('#prompt', 'a dress');
    await setField(page, 'steps', 10);
    await page.click('#generate');
    await page.waitForSelector('#gallery .card .infotext');
    const infotext = await page.textContent('#gallery .card .infotext');
    check(infotext.startsWith('a dress'), 'with the key the page generates', JSON.stringify(infotext));
    const stored = await page.evaluate(() => localStorage.getItem('sdpal.apiKey'));
    check(stored === KEY, 'the key is kept in localStorage');
  } finally {
    await page.close();
    await stopServer(server);
  }
}

async function main() {
  for (const [path, what] of [[chromiumPath, 'chromium'], [sdpalBin, 'the sdpal binary']]) {
    if (!existsSync(path)) {
      console.error(`browser test: ${what} not found at ${path}`);
      return 2;
    }
  }
  mkdirSync(dirname(screenshot), { recursive: true });
  const modelsDir = mkdtempSync(join(tmpdir(), 'sdpal-models-'));
  const haveSecondModel = existsSync(join(secondModel, 'model_index.json'));
  if (haveSecondModel) symlinkSync(secondModel, join(modelsDir, 'tiny-sd1'));
  const server = await startServer(['--model', join(root, 'models/demo-fashion'),
                                    '--models-dir', modelsDir]);
  console.log(`server: ${server.url}`);
  const userDataDir = mkdtempSync(join(tmpdir(), 'sdpal-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: chromiumPath,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
             '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 900 },
    });
    const page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(120000);

    const foreign = [];
    const consoleErrors = [];
    page.on('request', (r) => {
      const u = r.url();
      if (!u.startsWith(server.url + '/') && !u.startsWith('data:')) foreign.push(u);
    });
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('pageerror', (e) => consoleErrors.push(String(e)));

    // The page loads with the server's lists.
    const response = await page.goto(server.url + '/');
    check(response && response.status() === 200, 'GET / answers 200', String(response && response.status()));
    await page.waitForFunction(() => document.querySelectorAll('#sampler_name option').length > 0);
    await page.waitForFunction(() => !document.querySelector('#model option')?.textContent.includes('loading'));
    const samplers = await page.$$eval('#sampler_name option', (o) => o.map((x) => x.value));
    check(samplers.length >= 2, 'sampler list filled from /sdapi/v1/samplers', samplers.join(', '));
    const model = await page.$eval('#model', (s) => s.value);
    check(/demo/i.test(model), 'model picker shows the loaded model', model);
    check(await page.$eval('#seed', (e) => e.value) === '-1', 'seed is random (-1) by default');

    // A bad request: the server's {error, detail} message is shown.
    await setField(page, 'steps', 100000);
    await page.click('#generate');
    await page.waitForSelector('#error:not([hidden])');
    const errorText = await page.textContent('#error-text');
    check(/max-steps/.test(errorText) && /400/.test(errorText),
          'an over-limit request shows the server\'s message', errorText.trim());
    await page.click('#error-close');

    // The generation.
    await page.fill('#prompt', '');
    await page.type('#prompt', PROMPT);
    await setField(page, 'steps', STEPS);
    await recordProgress(page);
    const t0 = Date.now();
    await page.click('#generate');
    await page.waitForSelector('#gallery .card img.card-image');
    await page.waitForFunction(() => {
      const img = document.querySelector('#gallery .card img.card-image');
      return img && img.complete && img.naturalWidth > 0;
    });
    const seconds = (Date.now() - t0) / 1000;
    const progress = await page.evaluate(() => window.__progress);
    console.log(`generation: ${seconds.toFixed(2)} s in the page; progress states ` +
                `${progress.states.join(' > ')}; largest step seen while running ` +
                `${progress.maxStep}/${progress.steps} (bar at ${progress.maxValue} %)`);
    check(progress.maxStep > 0 && progress.steps === STEPS,
          'the progress bar moved during the generation',
          `largest step seen ${progress.maxStep} of ${progress.steps}`);
    const status = await page.textContent('#status');
    const bar = await page.$eval('#progress', (b) => [b.dataset.state, b.getAttribute('aria-valuenow')]);
    check(bar[0] === 'done' && bar[1] === '100', 'the bar ends full, state done', `${bar} "${status}"`);
    check(progress.rateText !== '', 'the speed (it/s) shows while running', progress.rateText);
    if (taesd) check(progress.preview, 'the live preview shows while running', `TAESD ${taesd}`);
    else console.log('skip the live preview: no TAESD (../shared/fixtures/taesd absent, no --taesd)');

    const img = await page.$eval('#gallery .card img.card-image', (i) => [i.naturalWidth, i.naturalHeight, i.src.slice(0, 22)]);
    check(img[0] === 32 && img[1] === 32 && img[2] === 'data:image/png;base64,',
          'the image shows (a 32x32 PNG from the demo model)', img.join(' '));
    const infotext = await page.textContent('#gallery .card .infotext');
    check(infotext.startsWith(PROMPT) && infotext.includes(`Steps: ${STEPS}`),
          'the infotext shows with the prompt and settings', JSON.stringify(infotext));
    const seedMatch = infotext.match(/Seed: (\d+)/);
    check(seedMatch !== null, 'the infotext names the seed');
    const lastSeed = await page.textContent('#last-seed');
    check(seedMatch && lastSeed.includes(seedMatch[1]), 'the seed used is shown', lastSeed);
    const download = await page.$eval('#gallery .card a.download', (a) => [a.getAttribute('download'), a.href.slice(0, 22)]);
    check(seedMatch && download[0].startsWith(`sdpal-${seedMatch[1]}`) && download[0].endsWith('.png') &&
          download[1] === 'data:image/png;base64,', 'the download link names the seed', download.join(' '));
    check(await page.isHidden('#error'), 'no error shown after the generation');
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`screenshot: ${screenshot}`);

    // Interrupt: a long generation stops early and still gives its image.
    await setField(page, 'steps', INTERRUPT_STEPS);
    await setField(page, 'width', INTERRUPT_SIZE);
    await setField(page, 'height', INTERRUPT_SIZE);
    await recordProgress(page);
    await page.click('#generate');
    await page.waitForFunction(() => window.__progress.maxStep >= 1);
    await page.click('#interrupt', { timeout: 10000 }).catch((e) => {
      check(false, 'Interrupt is clickable while the generation runs', e.message.split('\n')[0]);
    });
    await page.waitForFunction(() => ['done', 'interrupted'].includes(document.getElementById('progress').dataset.state) &&
                               document.querySelectorAll('#gallery .card').length === 2);
    const after = await page.$eval('#progress', (b) => b.dataset.state);
    const interruptedSteps = await page.evaluate(() => window.__progress.maxStep);
    const badge = await page.$eval('#gallery .card .card-meta', (m) => m.textContent);
    check(after === 'interrupted' && badge.includes('interrupted'), 'Interrupt stops the generation',
          `state ${after}, largest step seen ${interruptedSteps}/${INTERRUPT_STEPS}; "${badge}"`);
    await setField(page, 'width', '');
    await setField(page, 'height', '');


    // The model picker: switching posts sd_model_checkpoint, the next image names the model.
    if (haveSecondModel) {
      const models = await page.$$eval('#model option', (o) => o.map((x) => x.value));
      check(models.length === 2 && models.includes('tiny-sd1'), 'the model picker lists the models',
            models.join(', '));
      await page.selectOption('#model', 'tiny-sd1');
      await page.waitForFunction(() => /^Model: tiny-sd1/.test(document.getElementById('status').textContent) ||
                                 !document.getElementById('error').hidden);
      check(await page.isHidden('#error'), 'switching the model works', await page.textContent('#status'));
      const options = await page.evaluate(async () => (await fetch('/sdapi/v1/options')).json());
      check(options.sd_model_checkpoint === 'tiny-sd1', 'the server has switched',
            String(options.sd_model_checkpoint));
      await setField(page, 'steps', 4);
      const cards = await page.$$eval('#gallery .card', (c) => c.length);
      await page.click('#generate');
      await page.waitForFunction((n) => document.querySelectorAll('#gallery .card').length > n, cards);
      const info = await page.textContent('#gallery .card .infotext');
      check(info.includes('Model: tiny-sd1'), 'the next image comes from the chosen model', JSON.stringify(info));
      await page.selectOption('#model', model);
      await page.waitForFunction((m) => document.getElementById('status').textContent === `Model: ${m}.`, model);
    } else {
      console.log(`skip the model switch: no second model (${secondModel} absent)`);
    }

    // A phone-sized screen: one column, nothing wider than the screen.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(200);
    const widths = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    check(widths[0] <= widths[1], 'the page fits a phone screen (no sideways scrolling)',
          `content ${widths[0]} px, screen ${widths[1]} px`);
    const columns = await page.$eval('.layout', (l) => getComputedStyle(l).gridTemplateColumns.split(' ').length);
    check(columns === 1, 'one column on a phone', `${columns} columns`);
    await page.screenshot({ path: phoneScreenshot, fullPage: true });
    console.log(`screenshot: ${phoneScreenshot}`);

    await apiKeyFlow(context);

    check(foreign.length === 0, 'the page fetched nothing from another host', foreign.join(' '));
    // The over-limit request above logs its 400 as a console error in chromium; nothing else may.
    const unexpected = consoleErrors.filter((e) => !/status of 400/.test(e));
    check(unexpected.length === 0, 'no script errors in the page', unexpected.join(' | '));
  } finally {
    if (context) await context.close();
    rmSync(userDataDir, { recursive: true, force: true });
    rmSync(modelsDir, { recursive: true, force: true });
    const exit = await stopServer(server);
    check(exit === 0, 'the server stops cleanly on SIGTERM', String(exit));
  }
  console.log(failures ? `browser test: ${failures} check(s) FAILED` : 'browser test: all checks passed');
  return failures ? 1 : 0;
}

main().then((code) => process.exit(code), (e) => {
  console.error(`browser test: ${e.stack || e}`);
  process.exit(1);
});
