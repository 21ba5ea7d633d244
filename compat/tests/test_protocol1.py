"""Python Celery with ``task_protocol = 1`` → ``hlbot worker``: the legacy message shape (a body
dict with ``task``, ``id``, ``callbacks``, ``errbacks``, ``chord``, ``timelimit``, ``taskset``
and no ``task`` header) still runs everything it carries, as Celery's own worker runs it
(``hybrid_to_proto2``): links and link errors, chains, groups, chords, time limits, countdowns.

Before hlbot read these fields, such a message ran its task and silently dropped the rest: the
link never ran, the chord body never came, the chain stopped, ``time_limit`` did nothing.
"""

import uuid

import pytest
from celery import chord, group
from celery.exceptions import TimeLimitExceeded

GET_TIMEOUT = 20


@pytest.fixture
def p1_app(celery_app):
    celery_app.conf.task_protocol = 1
    return celery_app


def echo(app, *args, task_id=None):
    sig = app.signature('hlbot.debug.echo', args=args)
    return sig.set(task_id=task_id) if task_id else sig


def test_protocol1_message_is_the_legacy_shape(p1_app, redis_client, prefix):
    """The client really sends protocol 1 (no ``task`` header), so the rest is not vacuous."""
    import base64
    import json
    p1_app.send_task('hlbot.debug.echo', args=[1])
    raw = json.loads(redis_client.lpop(f'{prefix}default'))
    assert 'task' not in raw['headers']
    body = json.loads(base64.b64decode(raw['body']))
    assert body['task'] == 'hlbot.debug.echo' and 'callbacks' in body


def test_plain_countdown_and_expires(hlbot_worker, p1_app):
    r = p1_app.send_task('hlbot.debug.echo', args=[1], kwargs={'k': 'v'}, countdown=0.5,
                         expires=60)
    assert r.get(timeout=GET_TIMEOUT) == {'args': [1], 'kwargs': {'k': 'v'}}


def test_link_and_link_error_run(hlbot_worker, p1_app):
    cb, eb = str(uuid.uuid4()), str(uuid.uuid4())
    ok = p1_app.send_task('hlbot.debug.echo', args=[3], link=echo(p1_app, task_id=cb))
    bad = p1_app.send_task('hlbot.debug.fail', args=['boom'],
                           link_error=echo(p1_app, 'err', task_id=eb))
    assert ok.get(timeout=GET_TIMEOUT) == {'args': [3], 'kwargs': {}}
    assert p1_app.AsyncResult(cb).get(timeout=GET_TIMEOUT) == {
        'args': [{'args': [3], 'kwargs': {}}], 'kwargs': {}}
    with pytest.raises(RuntimeError):
        bad.get(timeout=GET_TIMEOUT)
    assert p1_app.AsyncResult(eb).get(timeout=GET_TIMEOUT) == {
        'args': [bad.id, 'err'], 'kwargs': {}}


def test_time_limit_kills(hlbot_worker, p1_app):
    r = p1_app.send_task('hlbot.debug.sleep', args=[10], time_limit=1)
    with pytest.raises(TimeLimitExceeded):
        r.get(timeout=GET_TIMEOUT)


def test_chain_group_and_chord(hlbot_worker, p1_app):
    assert (echo(p1_app, 1) | echo(p1_app)).apply_async().get(timeout=GET_TIMEOUT) == {
        'args': [{'args': [1], 'kwargs': {}}], 'kwargs': {}}
    parts = [{'args': [i], 'kwargs': {}} for i in range(3)]
    assert group(echo(p1_app, i) for i in range(3)).apply_async().get(
        timeout=GET_TIMEOUT) == parts
    assert chord([echo(p1_app, i) for i in range(3)], echo(p1_app)).apply_async().get(
        timeout=GET_TIMEOUT) == {'args': [parts], 'kwargs': {}}
