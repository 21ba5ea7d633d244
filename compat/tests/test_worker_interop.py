"""Python Celery ↔ ``hlbot worker`` on one key prefix: messages Python sends run on hlbot, results
and retries read back in Python, and kombu's visibility-timeout restore (run by Python beside the
hlbot worker) never re-queues a message hlbot still holds.

* ETA and long acks_late tasks held past a 2 s visibility timeout while a Python consumer
  restores every second run exactly once (``--count-runs`` counter, one ``task-received``).
  Python restores in two ways: ``qos.restore_visible()`` in a thread, and a real Celery worker
  on another queue with ``unacked_restore_interval=1``. A planted orphan proves each restorer is
  live before the real task is sent, so the tests cannot pass vacuously.
* ``send_task`` / ``delay`` of ``hlbot.debug.*``: ``AsyncResult.get()`` returns the value, and a
  FAILURE raises the builtin exception type with the task's message.
* ``hlbot.debug.flaky`` retried by hlbot: Python sees RETRY then SUCCESS, and kombu decodes the
  republished message (retries + 1, same id, parent_id = own id, eta set).
"""

import base64
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import urlparse

import pytest
import redis
from kombu.utils.json import loads as kombu_loads

from compat import app as compat_app

from .conftest import _HLBOT_ENV, _WORKERS_KEY, WORKER_READY_TIMEOUT, HlbotWorker, _Background
from .support import REDIS_URL, parse_iso, queue_key

GET_TIMEOUT = 30
VISIBILITY = 2          # seconds, for hlbot and for every Python restorer
HOLD = 8                # ETA countdown / task runtime, well past the visibility timeout


# --- workers and restorers ---------------------------------------------------------------------

class FlaggedHlbotWorker(HlbotWorker):
    """``hlbot worker`` with extra global flags (``--visibility-timeout``) and worker flags."""

    def __init__(self, hlbot_bin, prefix, queues, concurrency, global_args=(), worker_args=()):
        super().__init__(hlbot_bin, prefix, queues, concurrency)
        self.global_args = [str(a) for a in global_args]
        self.worker_args = [str(a) for a in worker_args]

    def start(self, redis_client):
        env = {k: v for k, v in os.environ.items() if k not in _HLBOT_ENV}
        cmd = [str(self.hlbot_bin.binary), '--broker', REDIS_URL, '--key-prefix', self.prefix,
               '-l', 'INFO', *self.global_args, 'worker', '-Q', ','.join(self.queues),
               '-c', str(self.concurrency), *self.worker_args]
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        while time.monotonic() < deadline:
            if ' ready: ' in self.output():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f'hlbot worker exited with {self.proc.returncode}:\n'
                                   f'{self.output()}')
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f'hlbot worker not ready:\n{self.output()}')


@pytest.fixture
def start_flagged_worker(request, hlbot_bin, prefix, redis_client):
    """``start_flagged_worker(queues, concurrency, global_args, worker_args)`` → a running
    hlbot worker on this test's prefix, stopped after the test (log attached on failure)."""
    workers = request.node.stash.setdefault(_WORKERS_KEY, [])
    started = []

    def start(queues=('default',), concurrency=2, global_args=(), worker_args=()):
        w = FlaggedHlbotWorker(hlbot_bin, prefix, queues, concurrency, global_args, worker_args)
        workers.append(w)
        started.append(w)
        return w.start(redis_client)

    yield start
    for w in started:
        w.close()


def restoring_app(prefix):
    """A Celery app on ``prefix`` whose kombu channel restores after ``VISIBILITY`` seconds."""
    a = compat_app.make_app(broker=REDIS_URL, prefix=prefix)
    a.conf.broker_transport_options = {'global_keyprefix': prefix,
                                       'visibility_timeout': VISIBILITY,
                                       'unacked_restore_interval': 1,
                                       'unacked_restore_throttle': 1}
    return a


class ThreadRestorer:
    """kombu's ``channel.qos.restore_visible()`` once a second from a Python thread — the sweep a
    Celery consumer of the same prefix runs (kombu's restore is global, not per queue)."""

    node = 'python restore_visible() thread'

    def __init__(self, prefix):
        self.prefix = prefix
        self.app = restoring_app(prefix)
        self.sweeps = 0
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        with self.app.connection_for_write() as conn:
            channel = conn.default_channel
            while not self._stop.is_set():
                try:
                    channel.qos.restore_visible(num=1000, interval=1)
                    self.sweeps += 1
                except Exception as e:  # noqa: BLE001 — reported by the test
                    self.errors.append(repr(e))
                self._stop.wait(1.0)

    def start(self):
        self._thread.start()
        return self

    def output(self):
        return f'{self.sweeps} sweeps, errors: {self.errors}'

    def close(self):
        self._stop.set()
        self._thread.join(10)
        self.app.close()


_PY_WORKER = '''
import sys
from compat.app import make_app
broker, prefix, node, vt = sys.argv[1:5]
app = make_app(broker=broker, prefix=prefix)
app.conf.broker_transport_options = {'global_keyprefix': prefix, 'visibility_timeout': float(vt),
                                     'unacked_restore_interval': 1, 'unacked_restore_throttle': 1}
app.worker_main(['worker', '--pool', 'solo', '-c', '1', '-Q', 'elsewhere', '-n', node,
                 '--without-gossip', '--without-mingle', '--without-heartbeat', '-l', 'INFO'])
'''


class PythonWorkerRestorer(_Background):
    """A real Celery worker on another queue of the same prefix; its event loop restores every
    unacked message older than the visibility timeout once a second."""

    def __init__(self, prefix):
        import tempfile
        self.prefix = prefix
        self.node = f'restorer-{uuid.uuid4().hex[:8]}@localhost'
        self.log = tempfile.NamedTemporaryFile(prefix='hlbot-compat-restorer-', suffix='.log',
                                               delete=False)
        self.proc = None

    def start(self):
        return self.launch_celery([sys.executable, '-c', _PY_WORKER, REDIS_URL, self.prefix,
                                   self.node, str(VISIBILITY)])


@pytest.fixture(params=['thread', 'celery-worker'])
def python_restorer(request, prefix):
    """A live Python restorer on this test's prefix (both kinds, one per test run)."""
    r = ThreadRestorer(prefix) if request.param == 'thread' else PythonWorkerRestorer(prefix)
    request.node.stash.setdefault(_WORKERS_KEY, []).append(r)
    yield r
    r.close()


# --- events and messages -----------------------------------------------------------------------

class TaskEvents:
    """Collects the task events hlbot publishes on ``P/0.celeryev/task.multi`` (with ``-E``)."""

    def __init__(self, prefix):
        db = int(urlparse(REDIS_URL).path.lstrip('/') or 0)
        self.channel = f'{prefix}/{db}.celeryev/task.multi'
        self.events = []
        self._sub = redis.Redis.from_url(REDIS_URL).pubsub(ignore_subscribe_messages=True)
        self._sub.subscribe(self.channel)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            m = self._sub.get_message(timeout=0.2)
            if not m:
                continue
            env = json.loads(m['data'])
            body = env['body']
            if env['properties'].get('body_encoding') == 'base64':
                body = base64.b64decode(body)
            self.events.extend(json.loads(body))

    def of(self, task_id, kind):
        return [e for e in self.events if e.get('uuid') == task_id and e.get('type') == kind]

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self._sub.close()


@pytest.fixture
def task_events(prefix):
    ev = TaskEvents(prefix)
    yield ev
    ev.close()


def plant_orphan(redis_client, celery_app, prefix):
    """A message a crashed consumer took and never acked, 60 s ago (kombu's unacked layout)."""
    r = celery_app.send_task('hlbot.debug.echo', args=['orphan'], queue='default')
    raw = redis_client.rpop(queue_key(prefix, 'default'))
    env = json.loads(raw)
    di = env['properties']['delivery_info']
    tag = env['properties']['delivery_tag']
    redis_client.hset(f'{prefix}unacked', tag,
                      json.dumps([env, di.get('exchange', ''), di.get('routing_key', '')]))
    redis_client.zadd(f'{prefix}unacked_index', {tag: time.time() - 60})
    return r, tag


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f'timed out after {timeout}s waiting for {what}')


def runs(redis_client, prefix, task_id):
    v = redis_client.get(f'{prefix}hlbot.runs.{task_id}')
    return int(v) if v is not None else 0


def start_restorer_and_prove_it(restorer, redis_client, celery_app, prefix):
    """Plant an orphan, start ``restorer``, and wait until it has put the orphan back (flagged
    redelivered) — proof that a visibility-timeout sweep really runs beside the hlbot worker."""
    orphan, tag = plant_orphan(redis_client, celery_app, prefix)
    restorer.start()
    wait_for(lambda: redis_client.llen(queue_key(prefix, 'default')) == 1, 20,
             'the Python restorer to restore the planted orphan')
    restored = json.loads(redis_client.lindex(queue_key(prefix, 'default'), 0))
    assert restored['headers']['id'] == orphan.id
    assert restored['properties']['delivery_info'].get('redelivered') is True
    assert redis_client.zscore(f'{prefix}unacked_index', tag) is None
    return orphan


def assert_ran_once(redis_client, prefix, task_events, task_id):
    assert runs(redis_client, prefix, task_id) == 1
    # Nothing re-queued it: one delivery (task-received), one start.
    wait_for(lambda: task_events.of(task_id, 'task-succeeded'), 5, 'the task-succeeded event')
    assert len(task_events.of(task_id, 'task-received')) == 1, task_events.events
    assert len(task_events.of(task_id, 'task-started')) == 1, task_events.events
    assert redis_client.llen(queue_key(prefix, 'default')) == 0
    assert redis_client.hlen(f'{prefix}unacked') == 0


# --- a) visibility timeout vs. held / long-running messages ------------------------------------

def test_eta_task_held_past_visibility_timeout_runs_once(
        python_restorer, start_flagged_worker, celery_app, redis_client, prefix, task_events):
    orphan = start_restorer_and_prove_it(python_restorer, redis_client, celery_app, prefix)
    start_flagged_worker(global_args=['--visibility-timeout', VISIBILITY],
                         worker_args=['--count-runs', '-E'])
    assert orphan.get(timeout=GET_TIMEOUT) == {'args': ['orphan'], 'kwargs': {}}

    sent = time.time()
    r = celery_app.send_task('hlbot.debug.echo', args=['eta'], queue='default', countdown=HOLD)
    assert r.get(timeout=HOLD + GET_TIMEOUT) == {'args': ['eta'], 'kwargs': {}}
    assert time.time() - sent >= HOLD - 0.5, 'ran before its ETA'
    time.sleep(VISIBILITY + 1.5)  # give a wrongly restored copy time to show up
    assert_ran_once(redis_client, prefix, task_events, r.id)
    if isinstance(python_restorer, ThreadRestorer):
        assert python_restorer.sweeps >= HOLD and not python_restorer.errors


def test_long_acks_late_task_past_visibility_timeout_runs_once(
        python_restorer, start_flagged_worker, celery_app, redis_client, prefix, task_events):
    orphan = start_restorer_and_prove_it(python_restorer, redis_client, celery_app, prefix)
    start_flagged_worker(global_args=['--visibility-timeout', VISIBILITY],
                         worker_args=['--count-runs', '-E', '--acks-late'])
    assert orphan.get(timeout=GET_TIMEOUT) == {'args': ['orphan'], 'kwargs': {}}
    wait_for(lambda: redis_client.hlen(f'{prefix}unacked') == 0, 5, 'the orphan\'s ack')
    r = celery_app.send_task('hlbot.debug.sleep', args=[HOLD], queue='default')
    # While it runs, its message stays unacked (acks_late) — and is never restored.
    wait_for(lambda: r.state == 'STARTED', GET_TIMEOUT, 'STARTED')
    assert redis_client.hlen(f'{prefix}unacked') == 1
    assert r.get(timeout=HOLD + GET_TIMEOUT) == HOLD
    time.sleep(VISIBILITY + 1.5)
    assert_ran_once(redis_client, prefix, task_events, r.id)


# --- b) Python send_task / delay → hlbot.debug.* -----------------------------------------------

def test_send_task_and_delay_run_on_hlbot(start_flagged_worker, celery_app):
    start_flagged_worker()
    @celery_app.task(name='hlbot.debug.echo', shared=False)
    def echo(*args, **kwargs):
        raise AssertionError('runs on hlbot, never here')

    r1 = echo.delay(1, 'two', x=[3.5], y={'z': None})
    r2 = celery_app.send_task('hlbot.debug.sleep', args=[0.2])
    r3 = celery_app.send_task('hlbot.debug.cpu', kwargs={'seconds': 0.05})
    r4 = celery_app.signature('hlbot.debug.echo', args=('sig',)).apply_async(countdown=0.5)
    assert r1.get(timeout=GET_TIMEOUT) == {'args': [1, 'two'], 'kwargs': {'x': [3.5],
                                                                          'y': {'z': None}}}
    assert r2.get(timeout=GET_TIMEOUT) == 0.2
    v3 = r3.get(timeout=GET_TIMEOUT)
    assert v3['seconds'] == 0.05 and isinstance(v3['spins'], int)
    assert r4.get(timeout=GET_TIMEOUT) == {'args': ['sig'], 'kwargs': {}}
    assert [r.state for r in (r1, r2, r3, r4)] == ['SUCCESS'] * 4


@pytest.mark.parametrize('task,args,exc_type,message', [
    ('hlbot.debug.fail', ['boom ✓ 😀'], RuntimeError, 'boom ✓ 😀'),
    ('hlbot.debug.sleep', ['not a number'], TypeError, 'seconds must be a number >= 0'),
])
def test_failure_raises_builtin_type(start_flagged_worker, celery_app, task, args, exc_type,
                                     message):
    start_flagged_worker()
    r = celery_app.send_task(task, args=args)
    with pytest.raises(exc_type) as info:
        r.get(timeout=GET_TIMEOUT)
    assert type(info.value) is exc_type
    assert str(info.value) == message
    assert r.state == 'FAILURE'
    assert isinstance(r.result, exc_type)
    # propagate=False returns the exception instead of raising it.
    assert str(r.get(timeout=GET_TIMEOUT, propagate=False)) == message


# --- c) retries: RETRY then SUCCESS, and the republished message -------------------------------

def test_flaky_retry_seen_from_python(start_flagged_worker, celery_app, redis_client, prefix):
    """The retry is caught in the queue list by ordering, not timing: with ``-c 1`` (prefetch 1,
    early ack — Celery's QoS, so one running task plus one reserved) the worker takes the flaky
    task, republishes it to the back of ``default``, runs the ``sleep(3)`` sent after it and
    reserves the short sleep sent third, so the republished copy waits in the list for ~3 s."""
    key = f'flaky-{uuid.uuid4().hex[:8]}'
    r = celery_app.send_task('hlbot.debug.flaky', args=[1, key], queue='default')
    blocker = celery_app.send_task('hlbot.debug.sleep', args=[3], queue='default')
    reserved = celery_app.send_task('hlbot.debug.sleep', args=[0.1], queue='default')
    original = json.loads(redis_client.lindex(queue_key(prefix, 'default'), -1))
    assert original['headers']['id'] == r.id
    started = time.time()
    states = []

    start_flagged_worker(concurrency=1)
    qkey = queue_key(prefix, 'default')

    def republished():
        for raw in redis_client.lrange(qkey, 0, -1):
            if json.loads(raw)['headers']['id'] == r.id:
                return raw
        return None

    deadline = time.monotonic() + GET_TIMEOUT
    raw = None
    while time.monotonic() < deadline and raw is None:
        s = r.state
        if not states or states[-1] != s:
            states.append(s)
        raw = republished()
        time.sleep(0.01)
    assert raw is not None, f'no republished message; states seen: {states}'
    assert r.state == 'RETRY'
    states.append('RETRY')
    exc = r.result
    assert type(exc) is RuntimeError and str(exc) == 'flaky failure 1 of 1'

    # kombu decodes the republished message.
    with celery_app.connection_for_read() as conn:
        channel = conn.default_channel
        m = channel.Message(kombu_loads(raw), channel=channel)
        args, kwargs, embed = m.decode()
        h = m.headers
    assert args == [1, key] and kwargs == {}
    assert h['id'] == r.id and h['task'] == 'hlbot.debug.flaky'
    assert h['retries'] == original['headers']['retries'] + 1 == 1
    assert h['parent_id'] == r.id
    assert h['root_id'] == original['headers']['root_id'] == r.id
    eta = parse_iso(h['eta'])
    assert eta > datetime.fromtimestamp(started, timezone.utc)
    assert m.delivery_tag != original['properties']['delivery_tag']
    assert m.delivery_info['routing_key'] == 'default'

    assert r.get(timeout=GET_TIMEOUT) == {'attempts': 2, 'key': key}
    states.append(r.state)
    assert blocker.get(timeout=GET_TIMEOUT) == 3
    assert reserved.get(timeout=GET_TIMEOUT) == 0.1
    assert states[-1] == 'SUCCESS'
    assert states.index('RETRY') < len(states) - 1
    assert 'SUCCESS' not in states[:states.index('RETRY')]


# --- d) the seed's task names reach hlbot's registry -------------------------------------------

SEED_NAMES = [n for short in list(compat_app.SEED_ROUTES) + compat_app.SEED_OTHER_TASKS
              for n in (short, compat_app.SEED_MODULE + short)]


def test_seed_task_names_reach_hlbot_registry(start_flagged_worker, celery_app, redis_client,
                                              prefix):
    """Both spellings of every seed task, sent by Python to its routed queue, reach the task
    registered in hlbot (not NotRegistered, not dead-lettered). An unknown keyword argument makes
    each fail fast in its argument check, so no real work (downloads, OCR, LLM calls) runs."""
    start_flagged_worker(queues=compat_app.QUEUES)
    sent = [(name, celery_app.send_task(name, kwargs={'bogus_arg_from_compat': 1}))
            for name in SEED_NAMES]
    for name, r in sent:
        with pytest.raises(TypeError) as info:
            r.get(timeout=GET_TIMEOUT)
        assert 'unexpected keyword argument "bogus_arg_from_compat"' in str(info.value), name
    assert redis_client.llen(f'{prefix}hlbot.dead') == 0
