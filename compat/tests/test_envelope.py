"""hlbot's published envelope has the shape Celery's own client produces (same header keys,
every property kombu needs, same body layout), and ``hlbot purge`` / Celery's purge empty each
other's messages inside one prefix only."""

import json

import pytest
from celery.utils.saferepr import saferepr

from .support import lines_of, queue_key, raw_messages

# Properties kombu's Redis transport and Celery's worker read (wire doc §2.7). `reply_to` (rpc://
# backend only) and `expiration` (ignored on Redis) are optional.
REQUIRED_PROPERTIES = {'correlation_id', 'delivery_mode', 'delivery_info', 'priority',
                       'body_encoding', 'delivery_tag'}


def send_both(celery_app, hlbot, args, kwargs, *opts, **options):
    """The same task sent by Python and by hlbot → (python_msg, hlbot_msg)."""
    py = celery_app.send_task('compat.echo', args, kwargs, queue='default', **options)
    tid = lines_of(hlbot('send', 'compat.echo', '--args', json.dumps(args), '--kwargs',
                         json.dumps(kwargs), '-Q', 'default', *opts, check=True).stdout)[0]
    return py.id, tid


def test_envelope_shape(celery_app, hlbot, redis_client, prefix):
    py_id, hl_id = send_both(celery_app, hlbot, [1, 'two'], {'k': None},
                             '--countdown', '30', '--expires', '60', '--priority', '4',
                             countdown=30, expires=60, priority=4)
    msgs = {m.id: m for m in raw_messages(redis_client, prefix, 'default')}
    py, hl = msgs[py_id], msgs[hl_id]
    assert py.key == hl.key == queue_key(prefix, 'default', 3)
    assert set(hl.envelope) == set(py.envelope)
    assert set(hl.headers) == set(py.headers), set(hl.headers) ^ set(py.headers)
    assert REQUIRED_PROPERTIES <= set(hl.properties), hl.properties
    assert set(hl.properties) <= set(py.properties), set(hl.properties) - set(py.properties)
    for k in ('content-type', 'content-encoding'):
        assert hl.envelope[k] == py.envelope[k]
    assert hl.properties['correlation_id'] == hl_id
    assert hl.properties['delivery_info'] == {'exchange': '', 'routing_key': 'default'}
    assert (hl.properties['priority'], hl.properties['delivery_mode']) == (4, 2)
    assert hl.properties['delivery_tag'] != py.properties['delivery_tag']
    assert hl.headers['lang'] == 'py' and hl.headers['task'] == 'compat.echo'
    assert hl.headers['root_id'] == hl_id
    assert set(hl.embed) == set(py.embed)
    assert (hl.args, hl.kwargs) == (py.args, py.kwargs)
    assert hl.headers['argsrepr'] == saferepr((1, 'two'))
    assert hl.headers['kwargsrepr'] == py.headers['kwargsrepr'] == saferepr({'k': None})


def test_argsrepr_floats(celery_app, hlbot, redis_client, prefix):
    args = [0.5, 1e-07, 1e+20, 'a\'b', None, True]
    _, hl_id = send_both(celery_app, hlbot, args, {})
    [hl] = [m for m in raw_messages(redis_client, prefix, 'default') if m.id == hl_id]
    assert hl.headers['argsrepr'] == saferepr(tuple(args))


def test_purge_both_ways(celery_app, make_celery, make_prefix, hlbot, redis_client, prefix):
    """`hlbot purge` removes what Python queued (all buckets), Celery's purge removes what hlbot
    queued, and neither touches another prefix."""
    other = make_prefix()
    other_app = make_celery(other)
    other_app.send_task('compat.add', (0, 0), queue='default')
    for i, p in enumerate([0, 4, 7, 9]):
        celery_app.send_task('compat.add', (i, i), queue='default', priority=p)
    celery_app.send_task('compat.add', (1, 1), queue='pdf')
    p = hlbot('purge', '-Q', 'default,pdf', '-f', check=True)
    assert lines_of(p.stdout) == ['Purged 5 messages from 2 known task queue(s).']
    assert raw_messages(redis_client, prefix, 'default') == []
    assert raw_messages(redis_client, prefix, 'pdf') == []

    for q in ('default', 'llm', 'youtube'):
        hlbot('send', 'compat.add', '--args', '[1, 2]', '-Q', q, '--priority', '6', check=True)
    assert celery_app.control.purge() == 3
    for q in ('default', 'llm', 'youtube'):
        assert raw_messages(redis_client, prefix, q) == []
    assert len(raw_messages(redis_client, other, 'default')) == 1
