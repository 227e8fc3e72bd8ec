"""wire/jsonjs.py writes the bytes Node's JSON.stringify writes: checked against real Node."""

from __future__ import annotations

import json
import random
import struct

import pytest

from tests.jobs_support.node import fixture, node_restringify
from twenty_jobs.twenty import jsonjs


def test_matches_node_fixture_vectors_byte_for_byte() -> None:
    vectors = fixture("json-vectors")["vectors"]
    assert len(vectors) > 40
    mismatches = []
    for vector in vectors:
        ours = jsonjs.stringify(jsonjs.parse(vector["value_json"]))
        if ours.encode() != vector["stringified"].encode():
            mismatches.append((vector["name"], ours, vector["stringified"]))
    assert mismatches == []


# Texts Node does not produce itself but that reach Python through Redis (Python producers,
# hand-written data) or that probe the edges of the rules.
EDGE_TEXTS = [
    r'"\ud800"', r'"x\udc00y"', r'"\udbff\udfff"', r'"\ud83d\ude80 \ud83d"', r'"\udc00\ud800"',
    r'{"\ud800":1}', r'"\u0000\u001f\u0020\u007f\u0080\u00ff\u2028\u2029\ufeff\uffff"',
    '{"4294967294":1,"4294967295":2,"0":3,"00":4,"1e3":5," 1":6,"1 ":7,"+1":8,"-0":9,"１":10}',
    '{"b":{"2":[{"1":null,"a":{}}]},"a":[]}', '{"__proto__":{"x":1},"constructor":2}',
    '[1e400,-1e400,1e-400,-1e-400,2.5e-324]',
    '[0.1,0.2,0.3,1.5,100,1e2,1E2,1e+2,1.0e2,123e-20,1e-6,1e-7,0.000001,0.0000001]',
    '[999999999999999900000,999999999999999999999,1e21,1e22,12345678901234567890123]',
    '[9007199254740993,9007199254740995,-9007199254740993,18446744073709551615,1' + '0' * 400 + ']',
    '[-0,-0.0,0e10,-0e-10]', '[4.35,0.1e1,5e-324,1.7976931348623157e308,2.2250738585072014e-308]',
    '{"a":1,"b":2,"a":3}', '{"2":1,"1":2,"2":3}', '[true,false,null,"",{},[]]',
]


def _random_double_texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = []
    while len(texts) < count:
        value = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        if value == value and value not in (float("inf"), float("-inf")):
            texts.append(repr(value))
    # Values whose layout changes between plain and exponent form.
    for exp in range(-9, 25):
        texts.extend([f"1e{exp}", f"1.25e{exp}", f"-9.999e{exp}", f"{rng.random()}e{exp}"])
    texts.extend(str(rng.randint(-(2**70), 2**70)) for _ in range(200))
    return texts


def test_matches_node_on_edge_cases_and_random_numbers() -> None:
    texts = EDGE_TEXTS + _random_double_texts(3000, seed=20260)
    expected = node_restringify(texts)
    mismatches = []
    for text, node_out in zip(texts, expected, strict=True):
        assert node_out is not None, f"Node rejected {text!r}"
        ours = jsonjs.stringify(jsonjs.parse(text))
        if ours != node_out:
            mismatches.append((text, ours, node_out))
    assert mismatches[:10] == []


def test_body_bytes_are_utf8_and_never_escape_non_ascii() -> None:
    payload = {"name": "Zoë 李 🚀", "sep": "a\u2028b"}
    assert jsonjs.dumps_bytes(payload) == '{"name":"Zoë 李 🚀","sep":"a\u2028b"}'.encode()


def test_python_json_dumps_would_differ_from_node() -> None:
    # Why the module exists: the defaults of json.dumps produce other bytes (and signatures).
    value = {"b": 1e-7, "2": "é", "1": 10**22}
    assert json.dumps(value, separators=(",", ":")) == '{"b":1e-07,"2":"\\u00e9","1":10000000000000000000000}'
    assert jsonjs.stringify(value) == '{"1":1e+22,"2":"é","b":1e-7}'


def test_refuses_values_json_stringify_would_not_write_the_same_way() -> None:
    with pytest.raises(TypeError):
        jsonjs.stringify({"when": object()})
    with pytest.raises(TypeError):
        jsonjs.stringify({1: "int key"})
    with pytest.raises(ValueError):
        jsonjs.parse("[NaN]")
