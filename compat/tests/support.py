"""Helpers the interop tests share: reading raw kombu messages from Redis, strict JSON
comparison, and parsing hlbot's output. No fixtures here (they are in conftest.py)."""

import base64
import json
import math
import os
import re
from datetime import datetime, timezone

from compat.app import DEFAULT_BROKER

#: Broker and result backend of every test (Python and hlbot alike).
REDIS_URL = os.environ.get('HLBOT_COMPAT_BROKER', DEFAULT_BROKER)

SEP = '\x06\x16'
PRIORITY_STEPS = (0, 3, 6, 9)


def priority_step(priority):
    """kombu's bucket for a message priority: 0–2 → 0, 3–5 → 3, 6–8 → 6, 9 → 9."""
    p = min(max(int(priority or 0), 0), 9)
    return max(s for s in PRIORITY_STEPS if s <= p)


def queue_key(prefix, queue, step=0):
    return f'{prefix}{queue}' if step == 0 else f'{prefix}{queue}{SEP}{step}'


class RawMessage:
    """One envelope as kombu stored it, plus the list key it sits in."""

    def __init__(self, key, raw):
        self.key = key
        self.envelope = json.loads(raw)
        self.headers = self.envelope['headers']
        self.properties = self.envelope['properties']
        assert self.properties['body_encoding'] == 'base64'
        self.args, self.kwargs, self.embed = json.loads(base64.b64decode(self.envelope['body']))

    @property
    def id(self):
        return self.headers['id']


def raw_messages(client, prefix, queue):
    """Waiting messages of ``queue``, next-to-run first (bucket 0 first; the head of a list is
    its right end)."""
    out = []
    for step in PRIORITY_STEPS:
        key = queue_key(prefix, queue, step)
        out.extend(RawMessage(key, r) for r in reversed(client.lrange(key, 0, -1)))
    return out


def lines_of(text):
    """Output lines, split on ``\\n`` only: JSON may hold a literal U+2028, which
    ``str.splitlines`` would split on."""
    return [line for line in text.split('\n') if line.strip()]


def _glob_escape(s):
    return re.sub(r'([\\*?\[\]])', r'\\\1', s)


def scan_prefix(client, prefix):
    """Every key whose name starts with ``prefix``."""
    return sorted(client.scan_iter(match=_glob_escape(prefix) + '*', count=1000))


def json_lines(text):
    return [json.loads(line) for line in lines_of(text)]


def last_json(text):
    lines = lines_of(text)
    assert lines, 'no output'
    return json.loads(lines[-1])


def parse_iso(s):
    d = datetime.fromisoformat(s.replace('Z', '+00:00'))
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def strict_equal(a, b, path='$'):
    """Assert ``a == b`` with JSON types kept apart (bool ≠ int ≠ float, -0.0 ≠ 0.0, key order
    ignored, NaN never expected)."""
    assert type(a) is type(b), f'{path}: {type(a).__name__} {a!r} != {type(b).__name__} {b!r}'
    if isinstance(a, dict):
        assert a.keys() == b.keys(), f'{path}: keys {sorted(a)} != {sorted(b)}'
        for k in a:
            strict_equal(a[k], b[k], f'{path}.{k}')
    elif isinstance(a, list):
        assert len(a) == len(b), f'{path}: length {len(a)} != {len(b)}'
        for i, (x, y) in enumerate(zip(a, b)):
            strict_equal(x, y, f'{path}[{i}]')
    elif isinstance(a, float):
        assert a == b and math.copysign(1, a) == math.copysign(1, b), f'{path}: {a!r} != {b!r}'
    else:
        assert a == b, f'{path}: {a!r} != {b!r}'


def jsonable(obj):
    """What ``obj`` looks like after a trip through kombu's JSON (tuples → lists, etc.)."""
    return json.loads(json.dumps(obj))


#: Values that must survive every hop unchanged: unicode outside the BMP, escapes, nesting,
#: floats that need all 17 digits, ints at the i64/u64 edges.
TRICKY_ARGS = [
    'héllo wörld ✓ 日本語 😀 \u2028 "quoted" \\ back\\slash \t tab \u0001',
    {'nested': {'list': [1, 2.5, None, True, False, {'deep': [[], {}]}], 'empty': ''}},
    0.1, 1e-7, 1.7976931348623157e308, 5e-324, -0.0, 2.0, 3.141592653589793,
    2 ** 53 + 1, -2 ** 63, 2 ** 63 - 1, 2 ** 64 - 1,
    [], {}, None, True, False, '',
]
TRICKY_KWARGS = {
    'ключ': 'значение', 'emoji🚀': '🚀', 'f': 1.0000000000000002, 'n': -1,
    'obj': {'a': [1, {'b': 'c'}], 'z': None}, '': 'empty key',
}
