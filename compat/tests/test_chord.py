"""Chords between Python Celery 5.7 and ``hlbot worker`` on the real Redis result backend: the
``.j``/``.t``/``.s`` accounting of ``celery/backends/redis.py`` is shared, so the part that
completes a chord sends its callback whichever side ran it.

* ``chord(group(hlbot tasks), python callback)`` and ``chord(group(python tasks), hlbot callback)``
* a mixed header (parts on both), a failing part → ``ChordError`` on the callback's
  ``AsyncResult`` (and the callback's ``link_error`` sent), an expired part → ``ChordError``
* a chain inside the header (its last task accounts; also when its first link fails)
* ``result_chord_ordered``: header order by default, completion order when both sides turn it off
* a header part with ``ignore_result`` still counts; the chord's keys are gone afterwards
* hlbot's client: ``hlbot send --each … --chord-callback`` (also with an empty header: the
  callback gets ``[]``), and a group it sends is a ``GroupResult`` Python restores
"""

import json
import os
import time
from datetime import datetime, timedelta, timezone

import pytest
from celery import chain, chord, group, signature
from celery.exceptions import ChordError
from celery.result import GroupResult


GET_TIMEOUT = 45
HQ = 'hq'   # the hlbot worker's queue; Python's worker serves ``default``


def hl(app, name, *args, **opts):
    """A signature of an hlbot debug task, routed to the hlbot worker."""
    opts.setdefault('queue', HQ)
    return signature(f'hlbot.debug.{name}', args=args, app=app, **opts)


def py(app, name, *args, **opts):
    opts.setdefault('queue', 'default')
    return signature(f'compat.{name}', args=args, app=app, **opts)


def echoed(*args):
    return {'args': list(args), 'kwargs': {}}


def chord_keys(redis_client, prefix):
    """The chord's keys left over once its completer cleaned up (a Python completer does so
    after publishing, so this waits a little); ``.c`` reading ``done`` is Celery's
    late-duplicate guard."""
    deadline = time.monotonic() + 10
    while True:
        left = [k for k in redis_client.scan_iter(match=f'{prefix}celery-taskset-meta-*')
                if not (k.endswith(b'.c') and redis_client.get(k) == b'done')]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def chord_error(res):
    """Wait for the callback's final state and return its exception. (``get()`` raises the
    failed header part's own error first, as Celery does: the header is the callback's
    parent.)"""
    deadline = time.monotonic() + GET_TIMEOUT
    while not res.ready():
        assert time.monotonic() < deadline, f'callback {res.id} still {res.state}'
        time.sleep(0.1)
    assert res.state == 'FAILURE'
    assert isinstance(res.result, ChordError), repr(res.result)
    return str(res.result)


@pytest.fixture
def fleet(start_worker, start_hlbot_worker):
    """A Python worker on ``default`` and an hlbot worker (``-c 3``) on ``hq``."""
    start_worker(queues=['default'])
    start_hlbot_worker(queues=(HQ,), concurrency=3)


def test_hlbot_header_python_callback(celery_app, fleet, redis_client, prefix):
    res = chord([hl(celery_app, 'echo', i) for i in range(5)],
                py(celery_app, 'echo', 'tail')).apply_async()
    got = res.get(timeout=GET_TIMEOUT)
    assert got == {'args': [[echoed(i) for i in range(5)], 'tail'], 'kwargs': {}}
    assert chord_keys(redis_client, prefix) == []


def test_python_header_hlbot_callback(celery_app, fleet, redis_client, prefix):
    res = chord([py(celery_app, 'add', i, i) for i in range(4)],
                hl(celery_app, 'echo')).apply_async()
    assert res.get(timeout=GET_TIMEOUT) == echoed([0, 2, 4, 6])
    assert chord_keys(redis_client, prefix) == []


def test_mixed_header(celery_app, fleet):
    header = [hl(celery_app, 'echo', 'h0'), py(celery_app, 'add', 1, 2),
              hl(celery_app, 'echo', 'h2'), py(celery_app, 'add', 3, 4)]
    res = chord(header, py(celery_app, 'echo')).apply_async()
    assert res.get(timeout=GET_TIMEOUT) == {
        'args': [[echoed('h0'), 3, echoed('h2'), 7]], 'kwargs': {}}
    # And the hlbot side completing it: an hlbot callback.
    res = chord(header, hl(celery_app, 'echo')).apply_async()
    assert res.get(timeout=GET_TIMEOUT) == echoed([echoed('h0'), 3, echoed('h2'), 7])


def test_failing_part_is_chord_error(celery_app, fleet, redis_client, prefix):
    errback = py(celery_app, 'echo', 'errback-ran', immutable=True)
    header = [hl(celery_app, 'echo', 1), hl(celery_app, 'fail', 'boom'), hl(celery_app, 'echo', 3)]
    body = py(celery_app, 'echo', link_error=errback)
    res = chord(header, body).apply_async()
    with pytest.raises(RuntimeError, match='boom'):
        res.get(timeout=GET_TIMEOUT)
    err = chord_error(res)
    assert err.startswith('Dependency ') and err.endswith(" raised RuntimeError('boom')"), err
    # The callback's link_error ran (Python's worker took it from ``default``).
    for _ in range(GET_TIMEOUT * 10):
        metas = [redis_client.get(k) for k in redis_client.scan_iter(
            match=f'{prefix}celery-task-meta-*')]
        if any(m and b'errback-ran' in m for m in metas):
            break
        time.sleep(0.1)
    else:
        pytest.fail('the chord callback\'s link_error never ran')


def test_python_failing_part_hlbot_callback(celery_app, fleet):
    res = chord([py(celery_app, 'add', 1, 1), py(celery_app, 'fail', 'py-boom')],
                hl(celery_app, 'echo')).apply_async()
    assert "raised ValueError('py-boom')" in chord_error(res)


def test_expired_part_is_chord_error(celery_app, fleet):
    past = datetime.now(timezone.utc) - timedelta(minutes=5)
    header = [hl(celery_app, 'echo', 1), hl(celery_app, 'echo', 2, expires=past)]
    res = chord(header, py(celery_app, 'echo')).apply_async()
    assert "raised TaskRevokedError('expired')" in chord_error(res)


def test_chain_in_header(celery_app, fleet):
    link = chain(hl(celery_app, 'echo', 'a'), hl(celery_app, 'echo'))
    res = chord([link, hl(celery_app, 'echo', 'b')], py(celery_app, 'echo')).apply_async()
    assert res.get(timeout=GET_TIMEOUT) == {
        'args': [[echoed(echoed('a')), echoed('b')]], 'kwargs': {}}


def test_chain_in_header_first_link_fails(celery_app, fleet):
    link = chain(hl(celery_app, 'fail', 'early'), hl(celery_app, 'echo'))
    res = chord([link, hl(celery_app, 'echo', 'b')], py(celery_app, 'echo')).apply_async()
    assert "raised RuntimeError('early')" in chord_error(res)


def test_ignore_result_part_counts(celery_app, fleet):
    header = [hl(celery_app, 'echo', 1, ignore_result=True), hl(celery_app, 'echo', 2)]
    res = chord(header, py(celery_app, 'echo')).apply_async()
    assert res.get(timeout=GET_TIMEOUT) == {'args': [[echoed(1), echoed(2)]], 'kwargs': {}}


def test_ordered_by_header(celery_app, fleet):
    # The longest first: they finish in reverse, the callback still sees header order.
    res = chord([hl(celery_app, 'sleep', s) for s in (2.0, 1.0, 0.0)],
                py(celery_app, 'echo')).apply_async()
    assert res.get(timeout=GET_TIMEOUT) == {'args': [[2.0, 1.0, 0.0]], 'kwargs': {}}


def test_unordered_is_completion_order(make_celery, prefix, start_worker, start_hlbot_worker,
                                       hlbot_bin, redis_client):
    app = make_celery(prefix)
    app.conf.result_backend_transport_options = {
        **app.conf.result_backend_transport_options, 'result_chord_ordered': False}
    start_worker(queues=['default'])
    os.environ['HLBOT_RESULT_CHORD_ORDERED'] = 'false'
    try:
        start_hlbot_worker(queues=(HQ,), concurrency=3)
    finally:
        del os.environ['HLBOT_RESULT_CHORD_ORDERED']
    res = chord([hl(app, 'sleep', s) for s in (4.0, 2.0, 0.0)], hl(app, 'echo')).apply_async()
    assert res.get(timeout=GET_TIMEOUT) == echoed([0.0, 2.0, 4.0])


# --- groups and chords sent by hlbot's client (`hlbot send --each [--chord-callback]`) -------

def test_hlbot_sends_chord_python_callback(fleet, hlbot):
    p = hlbot('send', 'hlbot.debug.echo', '-Q', HQ, '--each', '[[1], [2], [3]]',
              '--chord-callback', 'compat.echo', '--callback-args', '["cb"]', '--wait',
              check=True)
    assert json.loads(p.stdout.strip().splitlines()[-1]) == {
        'args': [[echoed(1), echoed(2), echoed(3)], 'cb'], 'kwargs': {}}


def test_hlbot_sends_chord_empty_header(fleet, hlbot):
    p = hlbot('send', 'hlbot.debug.echo', '--each', '[]', '--chord-callback', 'compat.echo',
              '--wait', check=True)
    assert json.loads(p.stdout.strip().splitlines()[-1]) == {'args': [[]], 'kwargs': {}}


def test_hlbot_group_restored_in_python(celery_app, fleet, hlbot):
    p = hlbot('send', 'hlbot.debug.echo', '-Q', HQ, '--each', '[["x"], ["y"]]', check=True)
    gid, *ids = p.stdout.split()
    g = GroupResult.restore(gid, app=celery_app)
    assert g is not None and [r.id for r in g.results] == ids
    assert g.get(timeout=GET_TIMEOUT) == [echoed('x'), echoed('y')]


# --- canvas edge cases a Python app can send --------------------------------------------------

def test_group_link_error_runs_for_the_failed_member(celery_app, fleet, redis_client, prefix):
    errback = py(celery_app, 'echo', 'group-errback', immutable=True)
    g = group(hl(celery_app, 'echo', 1), hl(celery_app, 'fail', 'grp'))
    g.link_error(errback)
    res = g.apply_async()
    assert res.get(timeout=GET_TIMEOUT, propagate=False)[0] == echoed(1)
    deadline = time.monotonic() + GET_TIMEOUT
    while not any(b'group-errback' in (redis_client.get(k) or b'')
                  for k in redis_client.scan_iter(match=f'{prefix}celery-task-meta-*')):
        assert time.monotonic() < deadline, "the group's link_error never ran"
        time.sleep(0.1)


def test_python_chord_with_empty_header(celery_app, fleet):
    res = chord([], hl(celery_app, 'echo', 'empty')).apply_async()
    assert res.get(timeout=GET_TIMEOUT) == echoed([], 'empty')


def test_nested_group_in_header_is_flattened_like_celery(celery_app, fleet):
    # Celery flattens a group inside a chord header into the header; the same layout run by
    # Python workers only gives the reference order, hlbot's parts must give the same.
    def header(sig):
        return [group(sig(1), sig(2)), sig(3)]
    ref = chord(header(lambda i: py(celery_app, 'add', i, 0)), py(celery_app, 'echo')).apply_async()
    want = ref.get(timeout=GET_TIMEOUT)['args'][0]
    assert sorted(want) == [1, 2, 3]
    res = chord(header(lambda i: hl(celery_app, 'echo', i)), py(celery_app, 'echo')).apply_async()
    assert res.get(timeout=GET_TIMEOUT) == {'args': [[echoed(i) for i in want]], 'kwargs': {}}


def test_group_body_gets_the_results(celery_app, fleet):
    body = group(hl(celery_app, 'echo', 'a'), hl(celery_app, 'echo', 'b'))
    res = chord([hl(celery_app, 'echo', 1), py(celery_app, 'add', 1, 1)], body).apply_async()
    got = res.get(timeout=GET_TIMEOUT)
    assert got == [echoed([echoed(1), 2], 'a'), echoed([echoed(1), 2], 'b')]


def test_chord_in_header(celery_app, fleet):
    inner = chord([hl(celery_app, 'echo', 1), hl(celery_app, 'echo', 2)], hl(celery_app, 'echo'))
    res = chord([inner, hl(celery_app, 'echo', 3)], py(celery_app, 'echo')).apply_async()
    assert res.get(timeout=GET_TIMEOUT) == {
        'args': [[echoed([echoed(1), echoed(2)]), echoed(3)]], 'kwargs': {}}


def test_chain_body(celery_app, fleet):
    body = chain(hl(celery_app, 'echo', 'first'), py(celery_app, 'echo', 'second'))
    res = chord([hl(celery_app, 'echo', 1), hl(celery_app, 'echo', 2)], body).apply_async()
    assert res.get(timeout=GET_TIMEOUT) == {
        'args': [echoed([echoed(1), echoed(2)], 'first'), 'second'], 'kwargs': {}}
