'use strict';
// The page of `sdpal serve`: a form that drives the server's A1111-compatible API (/sdapi/v1/...),
// with A1111's field names, so the page also works against any server that speaks that API.
// No framework and no other host: everything here is served by the sdpal binary itself.

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_STORAGE = 'sdpal.apiKey';
  const FORM_STORAGE = 'sdpal.form';
  const POLL_MS = 250;
  const FIELDS = ['prompt', 'negative_prompt', 'width', 'height', 'steps', 'cfg_scale',
                  'sampler_name', 'scheduler', 'batch_size', 'seed'];

  // ---- The API -----------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // The message of an error body: sdpal's {error, detail}, FastAPI's {detail} (a string or a
  // list of {loc, msg}), or the raw text when the body is not JSON.
  function errorMessage(status, text) {
    let body = null;
    try { body = JSON.parse(text); } catch (_) { /* not JSON */ }
    const describe = (d) => {
      if (d == null) return '';
      if (typeof d === 'string') return d;
      if (Array.isArray(d)) return d.map((e) => (e && e.msg) ? `${(e.loc || []).join('.')}: ${e.msg}` : JSON.stringify(e)).join('; ');
      return JSON.stringify(d);
    };
    if (body && typeof body === 'object') {
      const parts = [describe(body.error), describe(body.detail)].filter((s) => s);
      if (parts.length) return `${parts.join(': ')} (HTTP ${status})`;
    }
    const trimmed = (text || '').trim().slice(0, 300);
    return trimmed ? `${trimmed} (HTTP ${status})` : `HTTP ${status}`;
  }

  async function api(method, path, body) {
    const headers = {};
    const key = localStorage.getItem(KEY_STORAGE);
    if (key) headers.Authorization = `Bearer ${key}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch (e) {
      throw new ApiError(0, `The server cannot be reached (${e.message})`);
    }
    const text = await response.text();
    if (!response.ok) throw new ApiError(response.status, errorMessage(response.status, text));
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch (_) {
      throw new ApiError(response.status, `${path} answered with something other than JSON`);
    }
  }

  // ---- Messages ------------------------------------------------------------------------------

  function showError(error) {
    $('error-text').textContent = error.message || String(error);
    $('error').hidden = false;
    if (error.status === 401 || error.status === 403) {
      $('key-box').open = true;
      $('api-key').focus();
    }
  }
  function clearError() { $('error').hidden = true; }
  function setStatus(text) { $('status').textContent = text; }

  // ---- Form state ----------------------------------------------------------------------------

  function saveForm() {
    const values = {};
    for (const f of FIELDS) values[f] = $(f).value;
    localStorage.setItem(FORM_STORAGE, JSON.stringify(values));
  }

  function restoreForm() {
    let values = null;
    try { values = JSON.parse(localStorage.getItem(FORM_STORAGE) || 'null'); } catch (_) { /**/ }
    if (!values) return;
    for (const f of FIELDS) {
      // Selects are restored once their options are known (fillSelect).
      if (typeof values[f] === 'string' && $(f).tagName !== 'SELECT') $(f).value = values[f];
    }
    return values;
  }
  const savedForm = restoreForm() || {};

  function fillSelect(select, names, preferred) {
    select.replaceChildren();
    for (const name of names) {
      const option = document.createElement('option');
      option.value = option.textContent = name;
      select.append(option);
    }
    const pick = preferred.find((p) => names.includes(p));
    if (pick !== undefined) select.value = pick;
  }

  // The request body: A1111's txt2img fields; empty fields are left out (the server's defaults).
  function readRequest() {
    const body = { prompt: $('prompt').value, negative_prompt: $('negative_prompt').value };
    const integer = (id, name) => {
      const raw = $(id).value.trim();
      if (raw === '') return;
      const v = Number(raw);
      if (!Number.isInteger(v)) throw new Error(`${name} must be a whole number, not "${raw}"`);
      body[id] = v;
    };
    integer('width', 'Width');
    integer('height', 'Height');
    integer('steps', 'Steps');
    integer('batch_size', 'Images');
    integer('seed', 'Seed');
    const cfg = $('cfg_scale').value.trim();
    if (cfg !== '') {
      const v = Number(cfg);
      if (!Number.isFinite(v)) throw new Error(`CFG scale must be a number, not "${cfg}"`);
      body.cfg_scale = v;
    }
    if ($('sampler_name').value) body.sampler_name = $('sampler_name').value;
    if (!$('scheduler-field').hidden && $('scheduler').value) body.scheduler = $('scheduler').value;
    return body;
  }

  // ---- Progress ------------------------------------------------------------------------------

  // Shows the progress bar; `state` is idle, queued, running, done or interrupted (data-state,
  // which the browser test reads too).
  function setProgress(fraction, state, text) {
    const pct = Math.max(0, Math.min(100, Math.round(fraction * 100)));
    $('progress-fill').style.width = `${pct}%`;
    $('progress').setAttribute('aria-valuenow', String(pct));
    $('progress').dataset.state = state;
    if (text !== undefined) setStatus(text);
  }

  // Polls /sdapi/v1/progress while a generation runs: step count, speed (measured here from the
  // steps seen over time: A1111's API has no it/s field) and the live preview. The API reports
  // the job the server is running, which is another client's while this page's job waits.
  class ProgressPoller {
    constructor() {
      this.running = false;
      this.timer = null;
      this.rate = null;  // {job, step, time} of the first sample of the current job
    }
    start() {
      this.running = true;
      this.rate = null;
      this.tick();
    }
    stop() {
      this.running = false;
      clearTimeout(this.timer);
    }
    async tick() {
      if (!this.running) return;
      try {
        const p = await api('GET', '/sdapi/v1/progress?skip_current_image=false');
        if (this.running) this.show(p);
      } catch (_) {
        // A failed poll is not an error of the generation: the next one may work.
      }
      if (this.running) this.timer = setTimeout(() => this.tick(), POLL_MS);
    }
    show(p) {
      const s = (p && p.state) || {};
      const step = Number(s.sampling_step) || 0;
      const steps = Number(s.sampling_steps) || 0;
      const jobCount = Number(s.job_count) || 0;
      if (jobCount === 0 && steps === 0) {
        // Before our job starts it waits in the queue; after its last step the server is
        // decoding and sending the image.
        if (this.rate) setProgress(1, 'running', 'Decoding the image…');
        else setProgress(0, 'queued', 'Waiting in the queue…');
        return;
      }
      if (steps === 0) {
        setProgress(0, 'queued', 'Starting…');
        return;
      }
      $('progress').dataset.step = String(step);
      $('progress').dataset.steps = String(steps);
      const now = performance.now();
      const job = `${s.job_timestamp || ''}/${s.job_no || 0}`;
      if (!this.rate || this.rate.job !== job || step < this.rate.step) {
        this.rate = { job, step, time: now };
      }
      const elapsed = (now - this.rate.time) / 1000;
      const fraction = Number(p.progress) > 0 ? Number(p.progress) : (steps ? step / steps : 0);
      const eta = Number(p.eta_relative);
      let itPerSec = elapsed > 0 && step > this.rate.step ? (step - this.rate.step) / elapsed : null;
      if (itPerSec === null && step > 0 && fraction > 0 && fraction < 1 && eta > 0) {
        // One sample so far: the server's eta is elapsed / progress - elapsed, so the steps left
        // over the time left give the speed (taking the job as one batch, as this page sends).
        itPerSec = (steps * (1 - fraction)) / eta;
      }
      let text = `Step ${step}/${steps}`;
      if (itPerSec !== null) {
        text += itPerSec >= 1 ? ` · ${itPerSec.toFixed(2)} it/s` : ` · ${(1 / itPerSec).toFixed(2)} s/it`;
      }
      if (Number.isFinite(eta) && eta > 0) text += ` · ${formatSeconds(eta)} left`;
      setProgress(fraction, 'running', text);
      if (p.current_image) {
        $('preview').src = asDataUrl(p.current_image);
        $('preview-box').hidden = false;
      }
    }
  }
  const poller = new ProgressPoller();

  function formatSeconds(s) {
    if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
    return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  }

  function asDataUrl(b64) {
    return b64.startsWith('data:') ? b64 : `data:image/png;base64,${b64}`;
  }

  // ---- Generation ----------------------------------------------------------------------------

  let generating = false;
  let interruptRequested = false;
  let lastSeed = null;

  function parseInfo(info) {
    if (!info) return {};
    if (typeof info === 'object') return info;
    try { return JSON.parse(info); } catch (_) { return {}; }
  }

  async function generate() {
    if (generating) return;
    clearError();
    let body;
    try {
      body = readRequest();
    } catch (e) {
      showError(e);
      return;
    }
    saveForm();
    generating = true;
    $('generate').disabled = true;
    $('interrupt').disabled = false;
    $('progress').dataset.step = '0';
    setProgress(0, 'queued', 'Starting…');
    const started = performance.now();
    poller.start();
    try {
      const result = await api('POST', '/sdapi/v1/txt2img', body);
      poller.stop();
      const seconds = (performance.now() - started) / 1000;
      const info = parseInfo(result && result.info);
      const images = (result && Array.isArray(result.images)) ? result.images : [];
      const interrupted = interruptRequested;
      images.forEach((b64, i) => addCard(b64, info, i, body));
      if (images.length) {
        const seeds = Array.isArray(info.all_seeds) ? info.all_seeds : [info.seed];
        lastSeed = seeds[0] ?? null;
        showLastSeed(seeds);
        $('preview-box').hidden = true;
      }
      const what = images.length === 1 ? '1 image' : `${images.length} images`;
      setProgress(interrupted ? 0 : 1, interrupted ? 'interrupted' : 'done',
                  `${interrupted ? 'Interrupted: ' : 'Done: '}${what} in ${formatSeconds(seconds)}.`);
    } catch (e) {
      poller.stop();
      setProgress(0, 'idle', 'Failed.');
      showError(e);
    } finally {
      interruptRequested = false;
      generating = false;
      $('generate').disabled = false;
      $('interrupt').disabled = true;
    }
  }

  function showLastSeed(seeds) {
    const shown = seeds.filter((s) => s !== undefined && s !== null);
    $('last-seed').textContent = shown.length
      ? `Seed used: ${shown.join(', ')}` : '';
    $('seed-reuse').disabled = lastSeed === null;
  }

  async function interrupt() {
    $('interrupt').disabled = true;
    interruptRequested = true;
    try {
      await api('POST', '/sdapi/v1/interrupt');
      setStatus('Interrupting…');
    } catch (e) {
      interruptRequested = false;
      showError(e);
    }
  }

  // ---- Gallery -------------------------------------------------------------------------------

  function addCard(b64, info, index, request) {
    const card = $('card-template').content.firstElementChild.cloneNode(true);
    const seeds = Array.isArray(info.all_seeds) ? info.all_seeds : [];
    const seed = seeds[index] ?? info.seed ?? request.seed;
    const infotexts = Array.isArray(info.infotexts) ? info.infotexts : [];
    const infotext = infotexts[index] ?? infotexts[0] ?? fallbackInfotext(info, request, seed);
    const url = asDataUrl(b64);
    const img = card.querySelector('.card-image');
    img.src = url;
    img.alt = `${request.prompt || 'image'} (seed ${seed})`;
    // Small images (the demo model draws 32x32) are scaled up without blurring.
    img.addEventListener('load', () => {
      if (img.naturalWidth < 128) img.classList.add('pixelated');
    });
    const w = info.width ?? request.width;
    const h = info.height ?? request.height;
    const meta = card.querySelector('.card-meta');
    meta.textContent =
      [`seed ${seed}`, w && h ? `${w}×${h}` : null, info.sampler_name || request.sampler_name,
       `${info.steps ?? request.steps ?? '?'} steps`].filter((s) => s).join(' · ');
    if (info.interrupted) {
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.textContent = 'interrupted';
      meta.append(badge);
    }
    card.querySelector('.infotext').textContent = infotext;
    const link = card.querySelector('.download');
    link.href = url;
    link.download = `sdpal-${seed}-${Date.now()}.png`;
    card.querySelector('.use-seed').addEventListener('click', () => {
      $('seed').value = String(seed);
    });
    card.querySelector('.copy-info').addEventListener('click', async (ev) => {
      try {
        await navigator.clipboard.writeText(infotext);
        ev.target.textContent = 'Copied';
      } catch (_) {
        ev.target.textContent = 'Copy failed';
      }
      setTimeout(() => { ev.target.textContent = 'Copy text'; }, 1500);
    });
    $('gallery').prepend(card);
    $('gallery-empty').hidden = true;
  }

  // A1111's infotext layout, for a server whose info has no infotexts.
  function fallbackInfotext(info, request, seed) {
    const lines = [info.prompt ?? request.prompt ?? ''];
    const negative = info.negative_prompt ?? request.negative_prompt;
    if (negative) lines.push(`Negative prompt: ${negative}`);
    const params = [
      ['Steps', info.steps ?? request.steps], ['Sampler', info.sampler_name ?? request.sampler_name],
      ['CFG scale', info.cfg_scale ?? request.cfg_scale], ['Seed', seed],
      ['Size', (info.width && info.height) ? `${info.width}x${info.height}` : undefined],
      ['Model', info.sd_model_name],
    ].filter(([, v]) => v !== undefined && v !== null && v !== '');
    lines.push(params.map(([k, v]) => `${k}: ${v}`).join(', '));
    return lines.join('\n');
  }

  // ---- Models, samplers, schedulers ----------------------------------------------------------

  let currentModel = null;

  async function loadModels() {
    const select = $('model');
    const [models, options] = await Promise.all([
      api('GET', '/sdapi/v1/sd-models'), api('GET', '/sdapi/v1/options')]);
    const titles = (models || []).map((m) => m.title || m.model_name).filter((t) => t);
    currentModel = options && options.sd_model_checkpoint;
    if (currentModel && !titles.includes(currentModel)) titles.unshift(currentModel);
    fillSelect(select, titles, [currentModel]);
    select.disabled = titles.length < 2;
  }

  async function switchModel() {
    const select = $('model');
    const wanted = select.value;
    if (wanted === currentModel) return;
    clearError();
    select.disabled = true;
    $('generate').disabled = true;
    setStatus(`Loading ${wanted}…`);
    try {
      await api('POST', '/sdapi/v1/options', { sd_model_checkpoint: wanted });
      currentModel = wanted;
      setStatus(`Model: ${wanted}.`);
    } catch (e) {
      select.value = currentModel;
      setStatus('Ready.');
      showError(e);
    } finally {
      select.disabled = false;
      $('generate').disabled = generating;
    }
  }

  async function loadSamplers() {
    const samplers = await api('GET', '/sdapi/v1/samplers');
    const names = (samplers || []).map((s) => s.name).filter((n) => n);
    fillSelect($('sampler_name'), names, [savedForm.sampler_name, 'Euler a', 'Euler']);
  }

  async function loadSchedulers() {
    let schedulers;
    try {
      schedulers = await api('GET', '/sdapi/v1/schedulers');
    } catch (_) {
      return;  // optional: older A1111 servers have no schedulers endpoint
    }
    const names = (schedulers || []).map((s) => s.label || s.name).filter((n) => n);
    if (!names.length) return;
    fillSelect($('scheduler'), names, [savedForm.scheduler, 'Automatic']);
    $('scheduler-field').hidden = false;
  }

  async function loadServerLists() {
    clearError();
    const results = await Promise.allSettled([loadModels(), loadSamplers(), loadSchedulers()]);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) showError(failed.reason);
  }

  // ---- Wiring --------------------------------------------------------------------------------

  $('form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    generate();
  });
  $('prompt').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      generate();
    }
  });
  $('interrupt').addEventListener('click', interrupt);
  $('model').addEventListener('change', switchModel);
  $('seed-random').addEventListener('click', () => { $('seed').value = '-1'; });
  $('seed-reuse').addEventListener('click', () => {
    if (lastSeed !== null) $('seed').value = String(lastSeed);
  });
  $('error-close').addEventListener('click', clearError);
  $('api-key').value = localStorage.getItem(KEY_STORAGE) || '';
  $('save-key').addEventListener('click', () => {
    const key = $('api-key').value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
    $('key-box').open = false;
    loadServerLists();
  });

  loadServerLists();
})();
