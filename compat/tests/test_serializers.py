"""kombu's other serializers against an hlbot worker: an app with ``task_serializer``,
``result_serializer`` and ``accept_content`` all ``pickle`` (Celery 3's default, still common),
``msgpack`` or ``yaml`` — and nothing else accepted — sends to an hlbot worker started with
``--accept-content`` / ``--result-serializer``: results, failures, chains and chords with a
Python worker of the same app, ``celery inspect``, and ``hlbot result`` all work in that format.

Before, hlbot dead-lettered every such message ("only application/json is accepted") and wrote
only JSON results, which such an app's ``get()`` refuses (``ContentDisallowed``).
"""

import datetime
import decimal
import json
import time

import pytest
from celery import chain, chord

from .test_worker_interop import start_flagged_worker  # noqa: F401  (fixture)

GET_TIMEOUT = 30
SERIALIZERS = ['pickle', 'msgpack', 'yaml']
CONTENT_TYPES = {'pickle': 'application/x-python-serialize', 'msgpack': 'application/x-msgpack',
                 'yaml': 'application/x-yaml'}


def configure(app, ser):
    app.conf.update(task_serializer=ser, result_serializer=ser, accept_content=[ser],
                    result_accept_content=[ser])


def flags(ser):
    return ['--accept-content', ser, '--result-serializer', ser]


@pytest.mark.parametrize('ser', SERIALIZERS)
def test_results_and_failures_in_the_apps_serializer(start_flagged_worker, celery_app, hlbot,
                                                     redis_client, prefix, ser):
    configure(celery_app, ser)
    args = [1, 'ü€', [1, [2]], None, 2.5, {'k': 'v'}, 'yes', '2026-01-01', '0x10']
    if ser == 'pickle':
        # Python values pickle carries that JSON cannot: back as the same values.
        args += [datetime.datetime(2026, 12, 7, 10, 0, tzinfo=datetime.timezone.utc),
                 b'raw', decimal.Decimal('1.50'), (3, 4)]
    r = celery_app.send_task('hlbot.debug.echo', args=args, kwargs={'n': 1})
    raw = json.loads(redis_client.lindex(f'{prefix}default', 0))
    assert raw['content-type'] == CONTENT_TYPES[ser]
    start_flagged_worker(global_args=flags(ser))
    got = r.get(timeout=GET_TIMEOUT)
    want = [list(a) if isinstance(a, tuple) else a for a in args]
    assert got == {"args": want, "kwargs": {"n": 1}}, repr((got, want))
    stored = redis_client.get(f'{prefix}celery-task-meta-{r.id}')
    if ser != 'yaml':   # hlbot writes YAML in flow style, which looks like JSON
        assert not stored.startswith(b'{'), stored[:40]

    bad = celery_app.send_task('hlbot.debug.fail', args=['boom'])
    with pytest.raises(RuntimeError, match='boom'):
        bad.get(timeout=GET_TIMEOUT)

    # A retry is published again in the app's format (its workers accept nothing else).
    flaky = celery_app.send_task('hlbot.debug.flaky', args=[1, f'{ser}-{prefix}'])
    assert flaky.get(timeout=GET_TIMEOUT)['attempts'] == 2

    p = hlbot('result', r.id)
    assert p.returncode == 0, p.stdout + p.stderr
    assert '"n": 1' in p.stdout or "'n': 1" in p.stdout or '"n":1' in p.stdout, p.stdout
    assert redis_client.llen(f'{prefix}hlbot.dead') == 0


@pytest.mark.parametrize('ser', ['pickle', 'msgpack'])
def test_canvas_with_a_python_worker_of_the_same_app(start_flagged_worker, start_worker,
                                                     celery_app, monkeypatch, ser):
    # PyYAML cannot write Celery's signatures: a YAML app has no canvas (Celery's limit).
    monkeypatch.setenv('HLBOT_COMPAT_SERIALIZER', ser)
    monkeypatch.setenv('C_FORCE_ROOT', '1')   # Celery refuses pickle as root otherwise
    configure(celery_app, ser)
    start_worker(queues=['pdf'])
    start_flagged_worker(global_args=flags(ser))
    add = celery_app.signature('compat.add', queue='pdf')
    echo = celery_app.signature('hlbot.debug.echo', queue='default')
    # hlbot sends the chain's next step (to the Python worker, which accepts only `ser`).
    c = chain(celery_app.signature('hlbot.debug.sleep', args=(0,), queue='default'),
              add.clone(args=(5,)), echo.clone())
    assert c.apply_async().get(timeout=GET_TIMEOUT) == {'args': [5], 'kwargs': {}}
    # A chord whose parts run on both workers: each writes its join entry in `ser`.
    header = [add.clone(args=(1, 2)), celery_app.signature('hlbot.debug.sleep', args=(0,),
                                                           queue='default')]
    got = chord(header, echo.clone()).apply_async().get(timeout=GET_TIMEOUT)
    assert got == {'args': [[3, 0]], 'kwargs': {}}


@pytest.mark.parametrize('ser', ['pickle', 'msgpack'])
def test_inspect_in_the_apps_serializer(start_flagged_worker, celery_app, ser):
    configure(celery_app, ser)
    w = start_flagged_worker(global_args=flags(ser))
    replies = celery_app.control.inspect(timeout=5).ping() or {}
    assert any(v == {'ok': 'pong'} for v in replies.values()), (replies, w.output()[-2000:])


def test_other_formats_are_refused_by_default(start_flagged_worker, celery_app, redis_client,
                                              prefix):
    configure(celery_app, 'pickle')
    start_flagged_worker()
    celery_app.send_task('hlbot.debug.echo', args=[1])
    deadline = time.monotonic() + GET_TIMEOUT
    while redis_client.llen(f'{prefix}hlbot.dead') == 0:
        assert time.monotonic() < deadline, 'not dead-lettered'
        time.sleep(0.1)
    dead = json.loads(redis_client.lindex(f'{prefix}hlbot.dead', 0))
    assert 'not accepted' in dead['reason'] and 'accept_content' in dead['reason'], dead


def test_hlbot_cli_in_the_apps_serializer(start_worker, celery_app, hlbot, monkeypatch):
    """``hlbot --task-serializer pickle``: ``inspect`` reaches Python workers that accept only
    pickle, and ``send --wait`` publishes what they run and reads their pickled result."""
    monkeypatch.setenv('HLBOT_COMPAT_SERIALIZER', 'pickle')
    monkeypatch.setenv('C_FORCE_ROOT', '1')
    configure(celery_app, 'pickle')
    py = start_worker(queues=['pdf'])
    from .test_control import wait_nodes
    assert py.node in wait_nodes(celery_app)
    p = hlbot('--task-serializer', 'pickle', 'inspect', 'ping', '-j', check=True)
    assert json.loads(p.stdout) == {py.node: {'ok': 'pong'}}
    p = hlbot('--task-serializer', 'pickle', 'send', 'compat.add', '--args', '[2, 3]', '-Q',
              'pdf', '--wait', '--timeout', '20')
    assert p.returncode == 0 and p.stdout.splitlines()[-1] == '5', p.stdout + p.stderr
    # JSON (hlbot's default) is what that worker refuses: no reply.
    p = hlbot('inspect', 'ping', '-j', '--timeout', '1')
    assert py.node not in p.stdout, p.stdout
