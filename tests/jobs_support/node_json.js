'use strict';
// Reads a JSON array of JSON texts on stdin; prints a JSON array with JSON.stringify(JSON.parse(t))
// for each one (or null when JSON.parse rejects it). Used by tests/test_jsonjs.py to compare
// twenty_jobs.wire.jsonjs with real Node byte for byte. No npm dependencies.
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const texts = JSON.parse(input);
  const out = texts.map((text) => {
    try {
      return JSON.stringify(JSON.parse(text));
    } catch (err) {
      return null;
    }
  });
  // ASCII-only output: lone surrogates and astral characters survive the pipe unchanged.
  process.stdout.write(JSON.stringify(out).replace(/[\u007f-\uffff]/g,
    (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0')));
});
