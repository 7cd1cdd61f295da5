#!/usr/bin/env node
// Fetch OHIF's prebuilt viewer (npm @ohif/app, the version and integrity pinned in package.json's "ohif")
// with `npm pack`, check the tarball against the pinned integrity, and unpack its dist/ into
// tests/interop/.ohif/<version>/dist (git-ignored). Does nothing when that folder is already there.
// Prints the dist folder. Usage: node tests/interop/prepare_ohif.js
'use strict';

const { execFileSync } = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const here = __dirname;
const pin = require(path.join(here, 'package.json')).ohif;
const dest = path.join(here, '.ohif', pin.version);
const dist = path.join(dest, 'dist');

if (fs.existsSync(path.join(dist, 'index.html'))) {
  console.log(dist);
  process.exit(0);
}
const work = fs.mkdtempSync(path.join(here, '.ohif-download-'));
try {
  const spec = `${pin.package}@${pin.version}`;
  const packed = JSON.parse(
    execFileSync('npm', ['pack', spec, '--json', '--pack-destination', work], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      timeout: 600000,
    })
  )[0];
  const tarball = path.join(work, packed.filename);
  const [algorithm, expected] = pin.integrity.split(/-(.*)/s);
  const actual = crypto.createHash(algorithm).update(fs.readFileSync(tarball)).digest('base64');
  if (actual !== expected) {
    throw new Error(`${spec}: integrity ${algorithm}-${actual} is not the pinned ${pin.integrity}; ` +
      'check the version in tests/interop/package.json');
  }
  execFileSync('tar', ['-xzf', tarball, '-C', work, 'package/dist'], { stdio: 'inherit', timeout: 600000 });
  fs.mkdirSync(dest, { recursive: true });
  fs.renameSync(path.join(work, 'package', 'dist'), dist);
  console.log(dist);
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
