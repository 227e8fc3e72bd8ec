'use strict';
// Reads a JSON array of JSON texts on stdin; prints a JSON array with, for each text:
//   default mode:             JSON.stringify(JSON.parse(text)) (null when JSON.parse rejects it);
//   `webhook-bodies` mode:    the text is CallWebhookJob data as stored in Redis; the result is the
//                             array of request bodies Twenty's call-webhook.job.ts sends for it:
//                             `const { secret, ...payloadWithoutSecret } = item; JSON.stringify(...)`.
// Used by the tests to compare twenty_jobs with real Node byte for byte. No npm dependencies.
const mode = process.argv[2] || 'restringify';
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const texts = JSON.parse(input);
  const out = texts.map((text) => {
    try {
      if (mode === 'webhook-bodies') {
        const data = JSON.parse(text);
        const items = Array.isArray(data) ? data : [data];
        return items.map((item) => {
          const { secret, ...payloadWithoutSecret } = item;
          return JSON.stringify(payloadWithoutSecret);
        });
      }
      return JSON.stringify(JSON.parse(text));
    } catch (err) {
      return null;
    }
  });
  // ASCII-only output: lone surrogates and astral characters survive the pipe unchanged.
  process.stdout.write(JSON.stringify(out).replace(/[\u007f-\uffff]/g,
    (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0')));
});
