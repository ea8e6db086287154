'use strict';
// Headless Chromium through playwright-core for the browser harness scripts (play.js,
// console.js): where Debian's Chromium is and the flags this machine needs (TESTING.md).
const fs = require('fs');

const CHROMIUM_CANDIDATES = ['/usr/lib/chromium/chromium', '/usr/bin/chromium'];
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
];

// A function that ends `script` with exit 2 and the message on stderr: a harness failure
// (arguments, tools missing), not a test failure.
function harnessFailer(script) {
  return (msg) => {
    process.stderr.write(`${script}: harness failure: ${msg}\n`);
    process.exit(2);
  };
}

// playwright-core's `chromium` and the Chromium executable, or a harness failure.
function findChromium(harnessFail) {
  let chromium;
  try {
    ({ chromium } = require('playwright-core'));
  } catch (e) {
    harnessFail(`cannot load playwright-core (run \`npm ci\` in ${__dirname}): ${e.message}`);
  }
  const executablePath = CHROMIUM_CANDIDATES.find(p => fs.existsSync(p));
  if (!executablePath) harnessFail(`no Chromium at ${CHROMIUM_CANDIDATES.join(' or ')} (apt-get install chromium)`);
  return { chromium, executablePath };
}

module.exports = { CHROMIUM_ARGS, harnessFailer, findChromium };
