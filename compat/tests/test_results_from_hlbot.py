"""hlbot worker → Python: results an ``hlbot worker`` stores are read by Celery's own
``AsyncResult.get()`` — the value, and for FAILURE the exception type name and message — and
hlbot's PUBLISH on the result channel is what wakes ``get()`` (Celery's Redis backend does not
poll). Skipped while ``hlbot`` has no ``worker`` command (issue 3)."""

import json
import threading
import time
from datetime import datetime, timezone

import pytest
import redis

from .support import (REDIS_URL, TRICKY_ARGS, TRICKY_KWARGS, jsonable, last_json, lines_of,
                      parse_iso, strict_equal)

GET_TIMEOUT = 30


def test_echo_value(hlbot_worker, celery_app):
    r = celery_app.send_task('hlbot.debug.echo', args=TRICKY_ARGS, kwargs=TRICKY_KWARGS,
                             queue='default')
    value = r.get(timeout=GET_TIMEOUT)
    strict_equal(value, {'args': jsonable(TRICKY_ARGS), 'kwargs': jsonable(TRICKY_KWARGS)})
    assert r.state == 'SUCCESS'
    assert r.date_done is not None


def test_failure_exception(hlbot_worker, celery_app, hlbot, redis_client):
    r = celery_app.send_task('hlbot.debug.fail', args=['bad thing'], queue='default')
    with pytest.raises(Exception) as info:
        r.get(timeout=GET_TIMEOUT)
    stored = json.loads(redis_client.get(celery_app.backend.get_key_for_task(r.id)))
    assert stored['status'] == 'FAILURE'
    exc = stored['result']
    assert type(info.value).__name__ == exc['exc_type']
    assert info.value.args == ('bad thing',)
    assert str(info.value) == 'bad thing'
    assert r.state == 'FAILURE'
    # hlbot's own reader agrees.
    p = hlbot('result', r.id, '--wait', '--timeout', '10')
    assert p.returncode == 1
    assert p.stderr.splitlines()[0] == f'FAILURE: {exc["exc_type"]}: bad thing'


def test_publish_wakes_get(hlbot_worker, celery_app, redis_client):
    """The result is stored ~2 s after ``get()`` started waiting, so only the PUBLISH can wake
    it (no polling in Celery's Redis backend: without it ``get()`` would time out). A raw
    subscriber sees the exact stored JSON on the channel named like the key."""
    channel_msgs = []
    key_of = celery_app.backend.get_key_for_task
    sub = redis.Redis.from_url(REDIS_URL).pubsub(ignore_subscribe_messages=True)
    r = celery_app.send_task('hlbot.debug.echo', args=['woken'], queue='default', countdown=2)
    sub.subscribe(key_of(r.id))

    def listen():
        # STARTED (task_track_started) may come first; stop at a ready state.
        for _ in range(4 * GET_TIMEOUT):
            m = sub.get_message(timeout=0.25)
            if m:
                channel_msgs.append(m['data'])
                if json.loads(m['data'])['status'] in ('SUCCESS', 'FAILURE', 'REVOKED'):
                    return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    value = r.get(timeout=GET_TIMEOUT)
    woke = datetime.now(timezone.utc)
    t.join(GET_TIMEOUT)
    sub.close()
    assert value == {'args': ['woken'], 'kwargs': {}}
    stored = redis_client.get(key_of(r.id))
    assert channel_msgs and channel_msgs[-1] == stored, 'PUBLISH carries exactly the stored meta'
    assert all(json.loads(m)['task_id'] == r.id for m in channel_msgs)
    done = parse_iso(json.loads(stored)['date_done'])
    latency = (woke - done).total_seconds()
    print(f'get() returned {latency * 1000:.1f} ms after date_done')


def test_get_after_the_fact(hlbot_worker, celery_app, hlbot):
    """A result already stored when ``get()`` starts is read with GET (no PUBLISH needed)."""
    p = hlbot('send', 'hlbot.debug.echo', '--args', '[1, "two"]', '--kwargs', '{"x": [3.5]}',
              '--wait', '--timeout', '30')
    assert p.returncode == 0, p.stderr
    tid = lines_of(p.stdout)[0]
    strict_equal(last_json(p.stdout), {'args': [1, 'two'], 'kwargs': {'x': [3.5]}})
    strict_equal(celery_app.AsyncResult(tid).get(timeout=GET_TIMEOUT),
                 {'args': [1, 'two'], 'kwargs': {'x': [3.5]}})


def test_prefix_without_separator(start_hlbot_worker, make_prefix, make_celery):
    """Python's client looks for ``<p>_celery-task-meta-<id>``; an hlbot worker on the same
    ``--key-prefix`` must store (and PUBLISH) there."""
    p = make_prefix(sep='')
    start_hlbot_worker(worker_prefix=p)
    app = make_celery(p)
    r = app.send_task('hlbot.debug.echo', args=['nosep'], queue='default')
    assert r.get(timeout=GET_TIMEOUT) == {'args': ['nosep'], 'kwargs': {}}


def test_many_concurrent_gets(hlbot_worker, celery_app):
    """Several results waited for at once on one Celery client connection."""
    rs = [celery_app.send_task('hlbot.debug.echo', args=[i], queue='default') for i in range(20)]
    start = time.monotonic()
    values = [r.get(timeout=GET_TIMEOUT) for r in rs]
    assert values == [{'args': [i], 'kwargs': {}} for i in range(20)]
    print(f'20 results in {time.monotonic() - start:.2f} s')
