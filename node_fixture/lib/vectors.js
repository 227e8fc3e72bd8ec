'use strict';
// JSON test vectors for twenty_jobs/wire/jsonjs.py.
//
// Each vector has `value_json`, the JSON text as it sits in Redis and arrives in Python, and
// `stringified`, what Node makes of it: JSON.stringify(JSON.parse(value_json)). Two kinds:
//   * node:   value_json = JSON.stringify(<a JS value>), i.e. what a Node producer stores;
//   * python: value_json written the way Python's json.dumps(separators=(',', ':')) writes it
//             (the Python port's default, ensure_ascii=True), i.e. what a Python producer stores.
// The python kind is where Node's output differs from the input text: integer-like keys move
// first, 1e-07 becomes 1e-7, \u00e9 escapes become raw characters, 2**64 loses precision.

const nodeValues = {
  'empty-object': {},
  'empty-array': [],
  'empty-string': '',
  null: null,
  true: true,
  false: false,
  'zero': 0,
  'negative-zero': -0,
  'float-0.1': 0.1,
  'float-0.1+0.2': 0.1 + 0.2,
  'float-1e21': 1e21,
  'float-1e20': 1e20,
  'float-1e-7': 1e-7,
  'float-1e-6': 1e-6,
  'float-5e-324': 5e-324,
  'float-max': 1.7976931348623157e308,
  'float-123456789012345680000': 123456789012345680000,
  'float-negative': -1234.5678,
  'float-1.5e300': 1.5e300,
  'int-2^31': 2 ** 31,
  'int-2^53-1': 2 ** 53 - 1,
  'int-2^53': 2 ** 53,
  'int-2^53+2': 2 ** 53 + 2,
  'int-negative-2^53+1': -(2 ** 53 - 1),
  'unicode-latin': 'héllo wörld',
  'unicode-cjk': '日本語のテキスト 中文',
  'unicode-emoji': 'rocket 🚀 family 👨‍👩‍👧 flag 🇫🇷',
  'unicode-astral-math': '𝔘𝔫𝔦𝔠𝔬𝔡𝔢',
  'line-separators': 'a\u2028b\u2029c',
  'control-chars': 'nul\u0000 bell\u0007 bs\b tab\t nl\n vt\u000b ff\f cr\r esc\u001b us\u001f del\u007f',
  'c1-controls': '\u0080\u0085\u009f',
  'quotes-backslashes': 'say "hi" \\ back\\slash \'single\'',
  'script-tag': '</script><script>alert(1)</script>',
  'slash': 'a/b//c',
  'bom-and-nbsp': '\ufeffBOM\u00a0nbsp\u200bzwsp',
  'nested': {
    workspaceId: '20202020-1c25-4d02-bf25-6aeccf7ea419',
    name: 'person.created',
    objectMetadata: { id: 'abc', nameSingular: 'person' },
    events: [
      { recordId: 'r1', properties: { after: { name: { firstName: 'Zoë', lastName: '李' }, score: 0.5, tags: [] } } },
      { recordId: 'r2', properties: { before: null, after: { deleted: true, count: 0 } } },
    ],
  },
  'insertion-order-keys': { z: 1, a: 2, m: { y: 1, b: 2 }, A: 3, _: 4, '': 5 },
  'numeric-string-keys': { b: 1, 2: 'two', 1: 'one', a: 2, 10: 'ten' },
  'array-mixed': [1, 'two', null, true, false, { three: 3 }, [4, [5, []]], 0.5, -0],
  'deep-nesting': [[[[[[[[[[{ deep: [[[[['end']]]]] }]]]]]]]]]],
  'long-string': 'x'.repeat(10000),
};

// Texts in Python json.dumps style (compact, ensure_ascii=True, Python float repr, Python key order).
const pythonTexts = {
  'py-numeric-string-keys': '{"b":1,"2":"two","1":"one","a":2,"10":"ten","01":"zero-one","-1":"minus"}',
  'py-numeric-keys-big': '{"x":1,"4294967294":"max-index","4294967295":"not-index","9007199254740993":"big"}',
  'py-nested-numeric-keys': '{"outer":{"3":"c","1":"a","z":{"20":"t","2":"s"}},"0":"first"}',
  'py-ensure-ascii-latin': '{"s":"h\\u00e9llo w\\u00f6rld"}',
  'py-ensure-ascii-cjk': '{"s":"\\u65e5\\u672c\\u8a9e"}',
  'py-ensure-ascii-emoji': '{"s":"rocket \\ud83d\\ude80"}',
  'py-line-separators': '"a\\u2028b\\u2029c"',
  'py-control-chars': '"\\u0000\\u0007\\b\\t\\n\\u000b\\f\\r\\u001b\\u001f\\u007f"',
  'py-slash-escaped': '"a\\/b"',
  'py-float-1e-07': '1e-07',
  'py-float-1e+21': '1e+21',
  'py-float-1.2345678901234568e+20': '1.2345678901234568e+20',
  'py-float-1e+16': '1e+16',
  'py-float-5e-324': '5e-324',
  'py-float-1.0': '1.0',
  'py-float-negative-zero': '-0.0',
  'py-float-1.7976931348623157e+308': '1.7976931348623157e+308',
  'py-float-0.30000000000000004': '0.30000000000000004',
  'py-int-2^53+1': '9007199254740993',
  'py-int-2^63': '9223372036854775808',
  'py-int-2^64': '18446744073709551616',
  'py-int-negative-2^63': '-9223372036854775808',
  'py-spaces-default-separators': '{"a": [1, 2], "b": {"c": null}}',
  'py-duplicate-keys': '{"a":1,"b":2,"a":3}',
  'py-uppercase-exponent': '[1E3,2.5E-3,1e0]',
};

function buildVectors() {
  const vectors = [];
  for (const [name, value] of Object.entries(nodeValues)) {
    const valueJson = JSON.stringify(value);
    vectors.push({ name, kind: 'node', value_json: valueJson, stringified: JSON.stringify(JSON.parse(valueJson)) });
  }
  for (const [name, text] of Object.entries(pythonTexts)) {
    vectors.push({ name, kind: 'python', value_json: text, stringified: JSON.stringify(JSON.parse(text)) });
  }
  return vectors;
}

module.exports = { buildVectors };
