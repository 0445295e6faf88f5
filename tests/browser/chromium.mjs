// The Chromium the tests drive (installed by the project's setup) and how
// they start it: headless, without a sandbox (containers), and without any
// background traffic of its own.

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
