#!/usr/bin/env node
// Drive OHIF's viewer in the system's headless Chromium (puppeteer-core, no browser download) as a
// reader would: open a study, wait for the film, double-click the SEG's thumbnail, wait for the
// segmentation to be drawn, and keep what the page showed.
//
// Usage: node ohif_driver.js '<json>' with
//   url         the origin that serves OHIF and /dicom-web (e.g. http://127.0.0.1:8000)
//   study       StudyInstanceUID
//   segSeries   SeriesInstanceUID of the SEG to open
//   out         folder for the screenshots and state.json (created)
//   chromium    the browser executable (default /usr/bin/chromium)
//   timeoutS    the whole run's limit in seconds (default 480)
//   stepTimeoutS  the limit for the film, and then the SEG, to be drawn (default 240)
//   width, height  the browser window in CSS pixels (default 1280 x 900)
//
// Writes into out/: film.png (the study as opened), seg.png (after the SEG was opened), state.json
// (where the film is drawn on the screenshot, as an affine map from pixel (row, col) to screenshot
// (x, y); the viewer's segmentations and their colours; the page's console errors; every step's
// outcome). Exits 0 when the SEG was drawn per the viewer's own state, 1 otherwise (state.json then
// says which step failed); the caller judges the pixels.
'use strict';

const fs = require('fs');
const path = require('path');
const puppeteer = require('puppeteer-core');

const args = JSON.parse(process.argv[2]);
const out = args.out;
const timeoutMs = (args.timeoutS || 480) * 1000;
const stepTimeoutMs = (args.stepTimeoutS || 240) * 1000; // a film or a SEG to load and be drawn
const width = args.width || 1280;
const height = args.height || 900;
fs.mkdirSync(out, { recursive: true });

const state = { steps: [], console: [], pageErrors: [], failedRequests: [] };
const started = Date.now();
const save = () => fs.writeFileSync(path.join(out, 'state.json'), JSON.stringify(state, null, 2));
const step = (name, detail) => {
  state.steps.push({ name, seconds: (Date.now() - started) / 1000, ...(detail || {}) });
  save();
  console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${name}${detail ? ' ' + JSON.stringify(detail) : ''}`);
};

// Everything stops by itself: a hard limit on the whole run, whatever the page does.
const killer = setTimeout(() => {
  step('timeout', { limitS: timeoutMs / 1000 });
  process.exit(3);
}, timeoutMs);

// OHIF's first-visit tours (shepherd.js) cover the viewer: skip them as a reader would.
async function skipTours(page) {
  const skipped = await page.evaluate(() => {
    const buttons = [...document.querySelectorAll('.shepherd-element button, .shepherd-element a')];
    const skip = buttons.find(b => /skip/i.test(b.textContent || ''));
    if (skip) skip.click();
    return Boolean(skip);
  });
  if (skipped) await new Promise(resolve => setTimeout(resolve, 500));
  return skipped;
}

async function waitFor(page, fn, arg, timeout, what) {
  try {
    return await page.waitForFunction(fn, { timeout, polling: 250 }, arg);
  } catch (error) {
    throw new Error(`${what}: not within ${timeout / 1000} s (${error.message.split('\n')[0]})`);
  }
}

// In the page: where the film of the first viewport lies on the screen (CSS pixels of the page).
function filmGeometry() {
  const cs = window.cornerstone;
  const enabled = cs && cs.getEnabledElements ? cs.getEnabledElements() : [];
  if (!enabled.length) return null;
  const viewport = enabled[0].viewport;
  const data = viewport.getImageData && viewport.getImageData();
  if (!data || !data.imageData) return null;
  const [cols, rows] = data.dimensions;
  const box = viewport.element.getBoundingClientRect();
  const screen = (row, col) => {
    const world = data.imageData.indexToWorld([col, row, 0]);
    const [x, y] = viewport.worldToCanvas(world);
    return [box.left + x, box.top + y];
  };
  const origin = screen(0, 0);
  const alongRow = screen(0, cols - 1); // last column of the first row
  const alongCol = screen(rows - 1, 0); // last row of the first column
  return {
    rows,
    cols,
    imageId: viewport.getCurrentImageId && viewport.getCurrentImageId(),
    viewportType: viewport.type,
    viewportBox: [box.left, box.top, box.width, box.height],
    // screenshot (x, y) = origin + col * perCol + row * perRow, CSS pixels; pixel centres
    origin,
    perCol: [(alongRow[0] - origin[0]) / (cols - 1), (alongRow[1] - origin[1]) / (cols - 1)],
    perRow: [(alongCol[0] - origin[0]) / (rows - 1), (alongCol[1] - origin[1]) / (rows - 1)],
    devicePixelRatio: window.devicePixelRatio,
  };
}

// In the page: the viewer's segmentations, their segments and the colours it draws them in.
function segmentationState() {
  const service = window.services && window.services.segmentationService;
  if (!service) return null;
  const all = service.getSegmentations ? service.getSegmentations() : [];
  const enabled = window.cornerstone.getEnabledElements();
  const viewportId = enabled.length ? enabled[0].viewport.id : null;
  const shown = viewportId && service.getSegmentationRepresentations
    ? service.getSegmentationRepresentations(viewportId) : [];
  const grid = window.services.viewportGridService.getState();
  const gridViewport = grid.viewports.get(grid.activeViewportId);
  return {
    viewportId,
    displaySetInstanceUIDs: gridViewport ? gridViewport.displaySetInstanceUIDs : null,
    segmentations: all.map(seg => ({
      id: seg.segmentationId,
      label: seg.label,
      segments: Object.values(seg.segments || {}).filter(Boolean).map(segment => {
        let color = null;
        try {
          color = viewportId ? service.getSegmentColor(viewportId, seg.segmentationId, segment.segmentIndex) : null;
        } catch (error) {
          color = null;
        }
        return { index: segment.segmentIndex, label: segment.label, color };
      }),
    })),
    representations: (shown || []).map(r => ({ id: r.segmentationId, type: r.type, visible: r.visible })),
  };
}

(async () => {
  const browser = await puppeteer.launch({
    executablePath: args.chromium || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', // CI runs as root
      '--disable-dev-shm-usage',
      '--no-first-run',
      '--disable-gpu-sandbox',
      '--use-angle=swiftshader', // WebGL without a GPU
      '--enable-unsafe-swiftshader',
      '--ignore-gpu-blocklist',
      `--window-size=${width},${height}`,
    ],
    defaultViewport: { width, height, deviceScaleFactor: 1 },
    protocolTimeout: timeoutMs,
  });
  let ok = false;
  try {
    const page = await browser.newPage();
    page.on('console', message => {
      if (['error', 'warn'].includes(message.type())) {
        state.console.push(`${message.type()}: ${message.text()}`.slice(0, 2000));
      }
    });
    page.on('pageerror', error => state.pageErrors.push(String(error && error.stack || error).slice(0, 2000)));
    page.on('requestfailed', request => state.failedRequests.push(`${request.url()} ${request.failure().errorText}`));
    page.on('response', response => {
      if (response.status() >= 400) state.failedRequests.push(`${response.status()} ${response.url()}`);
    });

    const url = `${args.url}/viewer?StudyInstanceUIDs=${encodeURIComponent(args.study)}`;
    await page.goto(url, { waitUntil: 'load', timeout: 60000 });
    step('page loaded', { url });

    await waitFor(page, () => {
      const cs = window.cornerstone;
      if (!cs || !cs.getEnabledElements || !cs.getEnabledElements().length) return false;
      const viewport = cs.getEnabledElements()[0].viewport;
      return Boolean(viewport.getCurrentImageId && viewport.getCurrentImageId() && viewport.getImageData
        && viewport.getImageData());
    }, null, stepTimeoutMs, 'the film in the viewport');
    await new Promise(resolve => setTimeout(resolve, 2000)); // let the first frame paint
    if (await skipTours(page)) step('tour skipped');
    state.film = await page.evaluate(filmGeometry);
    await page.screenshot({ path: path.join(out, 'film.png') });
    step('film drawn', { film: state.film });

    const seg = await waitFor(page, series => {
      const service = window.services && window.services.displaySetService;
      if (!service) return null;
      const found = service.getActiveDisplaySets().find(ds => ds.SeriesInstanceUID === series);
      if (!found) return null;
      const thumb = document.getElementById(`thumbnail-${found.displaySetInstanceUID}`);
      return thumb ? { uid: found.displaySetInstanceUID, modality: found.Modality } : null;
    }, args.segSeries, 60000, "the SEG's thumbnail");
    const segSet = await seg.jsonValue();
    step('SEG thumbnail shown', segSet);

    if (await skipTours(page)) step('tour skipped');
    const thumb = await page.$(`[id="thumbnail-${segSet.uid}"]`);
    await thumb.click({ count: 2 });
    step('SEG thumbnail double-clicked');

    await waitFor(page, () => {
      const service = window.services && window.services.segmentationService;
      const enabled = window.cornerstone.getEnabledElements();
      if (!service || !enabled.length) return false;
      const shown = service.getSegmentationRepresentations(enabled[0].viewport.id) || [];
      return shown.length > 0;
    }, null, stepTimeoutMs, 'a segmentation drawn in the viewport');
    await new Promise(resolve => setTimeout(resolve, 3000)); // let the labelmap paint
    if (await skipTours(page)) step('tour skipped');
    state.segmentation = await page.evaluate(segmentationState);
    state.filmWithSeg = await page.evaluate(filmGeometry);
    await page.screenshot({ path: path.join(out, 'seg.png') });
    step('SEG drawn', { segmentation: state.segmentation });

    // OHIF asks "Do you want to open this Segmentation?": Yes loads it into the segmentation panel (hydrates it).
    const asked = await waitFor(page, () => [...document.querySelectorAll('button')]
      .some(b => (b.textContent || '').trim() === 'Yes'), null, 30000, 'the question to open the segmentation');
    await asked.dispose();
    await page.evaluate(() => [...document.querySelectorAll('button')]
      .find(b => (b.textContent || '').trim() === 'Yes').click());
    step('SEG opened (Yes)');
    // Hydrated: the viewport holds the film again (no longer the SEG's preview) and draws the segmentation.
    await waitFor(page, uid => {
      const grid = window.services.viewportGridService.getState();
      const viewport = grid.viewports.get(grid.activeViewportId);
      return Boolean(viewport && viewport.displaySetInstanceUIDs.length
        && !viewport.displaySetInstanceUIDs.includes(uid));
    }, segSet.uid, stepTimeoutMs, 'the SEG hydrated (the film back in the viewport)');
    await new Promise(resolve => setTimeout(resolve, 3000));
    if (await skipTours(page)) step('tour skipped');
    await waitFor(page, () => {
      const enabled = window.cornerstone.getEnabledElements();
      if (!enabled.length) return false;
      const shown = window.services.segmentationService.getSegmentationRepresentations(enabled[0].viewport.id);
      return (shown || []).length > 0;
    }, null, stepTimeoutMs, 'the hydrated segmentation drawn');
    state.hydrated = await page.evaluate(segmentationState);
    state.filmHydrated = await page.evaluate(filmGeometry);
    await page.screenshot({ path: path.join(out, 'hydrated.png') });
    step('SEG hydrated and drawn', { segmentation: state.hydrated, film: state.filmHydrated });
    ok = true;
  } catch (error) {
    state.error = String(error && error.message || error);
    step('failed', { error: state.error });
    try {
      const pages = await browser.pages();
      if (pages.length) await pages[pages.length - 1].screenshot({ path: path.join(out, 'failure.png') });
    } catch (ignored) {
      // the page is gone: state.json says why
    }
  } finally {
    await browser.close();
    clearTimeout(killer);
    save();
  }
  process.exit(ok ? 0 : 1);
})();
