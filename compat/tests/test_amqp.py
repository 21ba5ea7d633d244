"""RabbitMQ (AMQP 0-9-1) as the broker, both directions, against the real server on
127.0.0.1:5672 (docs/amqp.md): Python ``.delay()`` → hlbot worker → ``AsyncResult.get()``, hlbot
send → Python Celery worker, acks_late work surviving a SIGKILL, held ETA messages given back by
``basic.reject(requeue)`` at shutdown, priorities (``x-max-priority``), a quorum queue end to end,
the prefetch bound (``basic.qos`` = concurrency × multiplier); and remote control and events on
Celery's AMQP exchanges: ``celery -b amqp://… inspect/control`` (ping, active, stats, revoke,
terminate, shutdown), ``hlbot inspect`` on AMQP, Flower on AMQP listing the worker and a task,
a Python worker and an hlbot worker sharing the exchanges, and a worker's ``/metrics`` fed from
``celeryev``.

Each test gets its own vhost (``rabbitmqctl add_vhost``, deleted after) and its own Redis key
prefix for results. Without RabbitMQ the tests skip, except under ``CI=true``, where they fail.
"""

import json
import os
import shutil
import sys
import signal
import subprocess
import tempfile
import time
import uuid

import pytest

from compat import app as compat_app
from compat.tests.conftest import WORKER_READY_TIMEOUT, _HLBOT_ENV, _Background
from compat.tests.support import REDIS_URL

AMQP_HOST = os.environ.get('HLBOT_COMPAT_AMQP_HOST', '127.0.0.1:5672')


def _unavailable(why):
    if os.environ.get('CI') == 'true':
        pytest.fail(f'RabbitMQ is required under CI: {why}')
    pytest.skip(f'RabbitMQ not available: {why}')


def rabbitmqctl(*args, check=True):
    p = subprocess.run(['rabbitmqctl', '-q', *args], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise RuntimeError(f'rabbitmqctl {" ".join(args)}: {p.stderr or p.stdout}')
    return p.stdout


def table(vhost, what, *cols):
    """``rabbitmqctl list_<what> -p vhost cols…`` as a list of dicts (tab-separated rows)."""
    out = rabbitmqctl(f'list_{what}', '-p', vhost, '--no-table-headers', *cols)
    rows = []
    for line in out.splitlines():
        parts = line.split('\t')
        if len(parts) == len(cols):
            rows.append(dict(zip(cols, parts)))
    return rows


@pytest.fixture
def vhost():
    """A fresh RabbitMQ vhost for this test (guest has every permission), deleted after."""
    if shutil.which('rabbitmqctl') is None:
        _unavailable('rabbitmqctl is not installed')
    name = f'hlbot-compat-{uuid.uuid4().hex[:10]}'
    try:
        rabbitmqctl('add_vhost', name)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        _unavailable(str(e))
    rabbitmqctl('set_permissions', '-p', name, 'guest', '.*', '.*', '.*')
    yield name
    rabbitmqctl('delete_vhost', name, check=False)


@pytest.fixture
def amqp_url(vhost):
    return f'amqp://guest:guest@{AMQP_HOST}/{vhost}'


@pytest.fixture
def amqp_app(amqp_url, prefix):
    """``amqp_app(**conf)`` → a Celery client on the test vhost, results in Redis (prefix)."""
    apps = []

    def make(**conf):
        a = compat_app.make_app(broker=amqp_url, backend=REDIS_URL, prefix=prefix)
        a.conf.update(conf)
        apps.append(a)
        return a

    yield make
    for a in apps:
        a.close()


class AmqpHlbotWorker(_Background):
    """``hlbot worker`` consuming from RabbitMQ, results in Redis under the test's prefix."""

    def __init__(self, hlbot_bin, amqp_url, prefix, args):
        self.cmd = [str(hlbot_bin.binary), '--broker', amqp_url, '--result-backend', REDIS_URL,
                    '--key-prefix', prefix, *args]
        self.node = f'hlbot-amqp-worker (prefix {prefix})'
        self.log = tempfile.NamedTemporaryFile(prefix='hlbot-compat-amqp-', suffix='.log',
                                               delete=False)
        self.proc = None

    def start(self):
        env = {k: v for k, v in os.environ.items() if k not in _HLBOT_ENV}
        self.proc = subprocess.Popen(self.cmd, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        while time.monotonic() < deadline:
            if ' ready: queues' in self.output():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f'hlbot worker exited with {self.proc.returncode}:\n'
                                   f'{self.output()}')
            time.sleep(0.05)
        raise RuntimeError(f'hlbot worker not ready:\n{self.output()}')

    def kill(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def amqp_worker(hlbot_bin, amqp_url, prefix):
    """``amqp_worker(*global_flags, worker=[...])`` → a running hlbot worker on the vhost."""
    started = []

    def start(*flags, worker=('-Q', 'default', '-c', '2')):
        w = AmqpHlbotWorker(hlbot_bin, amqp_url, prefix,
                            [*flags, '-l', 'INFO', 'worker', *worker])
        started.append(w)
        return w.start()

    yield start
    for w in started:
        w.stop()
    for w in started:
        print(f'--- {w.node}\n{w.output()}')
        w.close()


def hlbot_amqp(hlbot_bin, amqp_url, prefix, *args, timeout=60):
    env = {k: v for k, v in os.environ.items() if k not in _HLBOT_ENV}
    cmd = [str(hlbot_bin.binary), '--broker', amqp_url, '--result-backend', REDIS_URL,
           '--key-prefix', prefix, *map(str, args)]
    p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout)
    assert p.returncode == 0, f'{cmd}\nstdout: {p.stdout}\nstderr: {p.stderr}'
    assert 'guest:guest' not in p.stderr + p.stdout, 'the broker password was printed'
    return p


def queue_row(vhost, name, *cols):
    rows = [r for r in table(vhost, 'queues', 'name', *cols) if r['name'] == name]
    assert rows, f'queue {name} not declared in {vhost}: {table(vhost, "queues", "name")}'
    return rows[0]


def test_python_delay_runs_on_hlbot_worker(amqp_app, amqp_worker, vhost):
    app = amqp_app()
    w = amqp_worker()
    r = app.send_task('hlbot.debug.echo', args=[1, 'two'], kwargs={'k': [3]}, queue='default')
    assert r.get(timeout=30) == {'args': [1, 'two'], 'kwargs': {'k': [3]}}
    # Celery's declarations, exactly: a durable direct exchange named like the queue, a
    # durable classic queue without arguments, bound by the queue name.
    ex = [r for r in table(vhost, 'exchanges', 'name', 'type', 'durable', 'auto_delete')
          if r['name'] == 'default']
    assert ex == [{'name': 'default', 'type': 'direct', 'durable': 'true',
                   'auto_delete': 'false'}]
    q = queue_row(vhost, 'default', 'durable', 'auto_delete', 'arguments', 'type')
    assert (q['durable'], q['auto_delete'], q['type']) == ('true', 'false', 'classic')
    assert q['arguments'] == '[]'
    binds = table(vhost, 'bindings', 'source_name', 'destination_name', 'routing_key')
    assert {'source_name': 'default', 'destination_name': 'default',
            'routing_key': 'default'} in binds
    # The banner and logs name the broker without its password.
    assert 'guest:guest' not in w.output()
    assert f'guest:***@{AMQP_HOST}/{vhost}' in w.output()


def test_hlbot_send_runs_on_python_worker(hlbot_bin, amqp_url, amqp_app, prefix, request):
    app = amqp_app()
    log = tempfile.NamedTemporaryFile(prefix='hlbot-compat-amqp-celery-', suffix='.log',
                                      delete=False)
    w = _Background()
    w.log = log
    w.launch_celery(
        [sys.executable, '-m', 'celery', '-A', 'compat.app', 'worker', '--pool', 'solo',
         '-c', '1', '-Q', 'default', '-n', f'compat-{uuid.uuid4().hex[:8]}@localhost',
         '--without-gossip', '--without-mingle', '--without-heartbeat', '-l', 'INFO'],
        HLBOT_COMPAT_BROKER=amqp_url, HLBOT_COMPAT_BACKEND=REDIS_URL,
        HLBOT_COMPAT_PREFIX=prefix)
    request.addfinalizer(w.close)
    p = hlbot_amqp(hlbot_bin, amqp_url, prefix, 'send', 'compat.add', '-a', '[20, 22]',
                   '-Q', 'default')
    task_id = p.stdout.strip().splitlines()[-1]
    assert app.AsyncResult(task_id).get(timeout=30) == 42
    # What the Python worker saw of hlbot's message: protocol v2 headers and properties.
    p = hlbot_amqp(hlbot_bin, amqp_url, prefix, 'send', 'compat.whoami', '-a', '[1]',
                   '-Q', 'default', '--priority', '0')
    seen = app.AsyncResult(p.stdout.strip().splitlines()[-1]).get(timeout=30)
    assert seen['args'] == [1]
    assert seen['routing_key'] == 'default'
    assert seen['retries'] == 0


def test_acks_late_task_survives_sigkill(amqp_app, amqp_worker, vhost):
    """An acks_late task whose worker is SIGKILLed mid-run is redelivered by RabbitMQ and runs
    to completion on the next worker: nothing lost."""
    app = amqp_app()
    w = amqp_worker(worker=('-Q', 'default', '-c', '1', '--acks-late'))
    r = app.send_task('hlbot.debug.sleep', args=[3], queue='default')
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and 'Task hlbot.debug.sleep' not in w.output():
        time.sleep(0.1)
    time.sleep(0.5)
    assert queue_row(vhost, 'default', 'messages_unacknowledged')['messages_unacknowledged'] == '1'
    w.kill()
    assert r.state in ('STARTED', 'PENDING')
    amqp_worker(worker=('-Q', 'default', '-c', '1', '--acks-late'))
    assert r.get(timeout=30) is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = queue_row(vhost, 'default', 'messages')
        if row['messages'] == '0':
            break
        time.sleep(0.5)
    assert row['messages'] == '0', 'the acked message is still in the queue'


def test_held_eta_message_is_rejected_back_at_shutdown(amqp_app, amqp_worker, vhost):
    """A countdown task is held unacked by the worker (counting against the prefetch, as in
    Celery); a warm shutdown gives it back with basic.reject(requeue=True)."""
    app = amqp_app()
    w = amqp_worker(worker=('-Q', 'default', '-c', '1', '--shutdown-timeout', '5'))
    r = app.send_task('hlbot.debug.echo', args=['later'], queue='default', countdown=120)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and 'received (eta' not in w.output():
        time.sleep(0.1)
    assert 'received (eta' in w.output()
    row = queue_row(vhost, 'default', 'messages_ready', 'messages_unacknowledged')
    assert (row['messages_ready'], row['messages_unacknowledged']) == ('0', '1')
    w.stop()
    assert w.proc.returncode == 0, w.output()
    row = queue_row(vhost, 'default', 'messages_ready', 'messages_unacknowledged')
    assert (row['messages_ready'], row['messages_unacknowledged']) == ('1', '0')
    assert r.state == 'PENDING'


def test_priorities_with_x_max_priority(amqp_app, amqp_worker, vhost, redis_client, prefix):
    app = amqp_app(task_queue_max_priority=10)
    low = [app.send_task('hlbot.debug.echo', args=[f'low{i}'], queue='default', priority=1)
           for i in range(5)]
    high = app.send_task('hlbot.debug.echo', args=['high'], queue='default', priority=9)
    q = queue_row(vhost, 'default', 'arguments', 'messages')
    assert 'x-max-priority' in q['arguments'] and '10' in q['arguments'], q
    assert q['messages'] == '6'
    amqp_worker('--max-priority', '10', worker=('-Q', 'default', '-c', '1'))
    for r in low + [high]:
        r.get(timeout=30)
    done = {r.id: r._get_task_meta()['date_done'] for r in low + [high]}
    assert done[high.id] == min(done.values()), 'the priority 9 task did not run first'


def test_quorum_queue_end_to_end(hlbot_bin, amqp_url, amqp_app, amqp_worker, vhost, prefix):
    from kombu import Exchange, Queue
    app = amqp_app(task_queues=[Queue('default', Exchange('default', type='direct'), 'default',
                                      queue_arguments={'x-queue-type': 'quorum'})])
    amqp_worker('--queue-type', 'quorum', worker=('-Q', 'default', '-c', '2'))
    q = queue_row(vhost, 'default', 'type', 'durable')
    assert (q['type'], q['durable']) == ('quorum', 'true')
    assert app.send_task('hlbot.debug.echo', args=['py'], queue='default').get(timeout=30) == \
        {'args': ['py'], 'kwargs': {}}
    p = hlbot_amqp(hlbot_bin, amqp_url, prefix, '--queue-type', 'quorum', 'send',
                   'hlbot.debug.echo', '-a', '["rs"]', '-Q', 'default')
    task_id = p.stdout.strip().splitlines()[-1]
    assert app.AsyncResult(task_id).get(timeout=30) == {'args': ['rs'], 'kwargs': {}}


def test_prefetch_is_concurrency_times_multiplier(amqp_app, amqp_worker, vhost):
    app = amqp_app()
    rs = [app.send_task('hlbot.debug.sleep', args=[1], queue='default') for _ in range(12)]
    amqp_worker(worker=('-Q', 'default', '-c', '2', '--prefetch-multiplier', '2'))
    # Celery's QoS on RabbitMQ: one prefetch for the whole consuming channel (`global`); the
    # pidbox's channel consumes too, no_ack without QoS (prefetch 0) as kombu's Mailbox.
    out = rabbitmqctl('list_channels', '--no-table-headers', 'vhost', 'global_prefetch_count',
                      'consumer_count')
    chans = [line.split('\t') for line in out.splitlines() if line.startswith(vhost + '\t')]
    assert [c[1] for c in chans if c[2] != '0' and c[1] != '0'] == ['4'], chans
    peak = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(r.ready() for r in rs):
        unacked = int(queue_row(vhost, 'default', 'messages_unacknowledged')
                      ['messages_unacknowledged'])
        peak = max(peak, unacked)
        assert unacked <= 4, f'{unacked} unacked with a prefetch of 4'
    assert all(r.ready() for r in rs)
    assert peak >= 2, f'never more than {peak} unacked: the prefetch was not used'


def celery_amqp(amqp_url, prefix, *args, timeout=60):
    """``celery -A compat.app -b <amqp url> <args> -j``; returns (exit code, JSON or text)."""
    from compat.tests.conftest import ROOT
    env = dict(os.environ)
    env.update(HLBOT_COMPAT_BROKER=amqp_url, HLBOT_COMPAT_BACKEND=REDIS_URL,
               HLBOT_COMPAT_PREFIX=prefix,
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get('PYTHONPATH')])))
    p = subprocess.run([sys.executable, '-m', 'celery', '-A', 'compat.app', '-b', amqp_url,
                        *args, '-j'], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    try:
        return p.returncode, json.loads(p.stdout)
    except ValueError:
        return p.returncode, p.stdout + p.stderr


def amqp_node(app, timeout=20.0):
    """The one node answering ``ping`` on the app's (AMQP) broker, once it answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = app.control.inspect(timeout=0.5).ping() or {}
        if r:
            assert list(r.values()) == [{'ok': 'pong'}], r
            return next(iter(r))
        time.sleep(0.1)
    pytest.fail(f'no worker answered ping on AMQP within {timeout}s')


def test_celery_inspect_and_control_over_amqp(hlbot_bin, amqp_url, amqp_app, amqp_worker,
                                              vhost, prefix):
    """``celery -b amqp://… inspect/control`` reach an hlbot worker through the ``celery.pidbox``
    fanout exchange and its replies come back on ``reply.celery.pidbox``."""
    app = amqp_app()
    w = amqp_worker(worker=('-Q', 'default', '-c', '1'))
    node = amqp_node(app)

    def inspect(cmd, *args):
        code, out = celery_amqp(amqp_url, prefix, 'inspect', cmd, *args, '-d', node)
        assert code == 0, out
        assert list(out) == [node], out
        return out[node]

    def control(cmd, *args):
        code, out = celery_amqp(amqp_url, prefix, 'control', cmd, *args, '-d', node)
        assert code == 0, out
        merged = {k: v for r in out for k, v in r.items()}
        assert list(merged) == [node], out
        return merged[node]

    assert inspect('ping') == {'ok': 'pong'}
    # kombu's Mailbox declarations, exactly (a mismatch would be PRECONDITION_FAILED for
    # Python callers): the node's exclusive auto-delete queue with x-expires / x-message-ttl,
    # bound to the transient fanout exchange celery.pidbox; events on the durable topic celeryev.
    q = queue_row(vhost, f'{node}.celery.pidbox', 'durable', 'auto_delete', 'exclusive',
                  'arguments')
    assert (q['durable'], q['auto_delete'], q['exclusive']) == ('false', 'true', 'true'), q
    assert 'x-expires' in q['arguments'] and '10000' in q['arguments'], q
    assert 'x-message-ttl' in q['arguments'] and '300000' in q['arguments'], q
    ex = {r['name']: r for r in table(vhost, 'exchanges', 'name', 'type', 'durable',
                                      'auto_delete')}
    assert ex['celery.pidbox'] == {'name': 'celery.pidbox', 'type': 'fanout',
                                   'durable': 'false', 'auto_delete': 'false'}
    assert ex['reply.celery.pidbox']['type'] == 'direct'
    assert ex['celeryev'] == {'name': 'celeryev', 'type': 'topic', 'durable': 'true',
                              'auto_delete': 'false'}
    binds = table(vhost, 'bindings', 'source_name', 'destination_name', 'routing_key')
    assert {'source_name': 'celery.pidbox', 'destination_name': f'{node}.celery.pidbox',
            'routing_key': ''} in binds

    stats = inspect('stats')
    assert stats['broker']['transport'] == 'amqp'
    assert stats['broker']['virtual_host'] == vhost
    assert stats['pool']['max-concurrency'] == 1
    conf = inspect('conf')
    assert conf['broker_url'] == f'amqp://guest:***@{AMQP_HOST}/{vhost}', conf
    assert conf['result_backend'].startswith('redis://'), conf
    assert 'transport:amqp' in inspect('report')['ok']

    # A running task is listed by `inspect active`; a second one waits behind it (-c 1).
    running = app.send_task('hlbot.debug.sleep', args=[30], queue='default')
    queued = app.send_task('hlbot.debug.echo', args=['never'], queue='default')
    deadline = time.monotonic() + 15
    while True:
        active = inspect('active')
        if any(t['id'] == running.id for t in active):
            break
        assert time.monotonic() < deadline, active
        time.sleep(0.2)
    assert [t['name'] for t in active] == ['hlbot.debug.sleep']
    assert queued.id not in {t['id'] for t in active}

    # revoke: the queued task is flagged and never runs; terminate stops the running one.
    assert control('revoke', queued.id) == {'ok': f"tasks {{'{queued.id}'}} flagged as revoked"}
    assert control('terminate', 'SIGKILL', running.id) == {'ok': f'terminate: {running.id}'}
    for r in (running, queued):
        with pytest.raises(Exception) as e:
            r.get(timeout=15)
        assert type(e.value).__name__ == 'TaskRevokedError', e.value
        assert r.state == 'REVOKED'
    assert f'{queued.id}] succeeded' not in w.output()
    assert set(inspect('revoked')) >= {queued.id, running.id}

    # hlbot's own client speaks the same AMQP pidbox.
    p = hlbot_amqp(hlbot_bin, amqp_url, prefix, 'inspect', 'ping', '-d', node, '-j')
    assert json.loads(p.stdout) == {node: {'ok': 'pong'}}, p.stdout
    gone = str(uuid.uuid4())
    p = hlbot_amqp(hlbot_bin, amqp_url, prefix, 'control', 'revoke', gone, '-d', node, '-j')
    assert json.loads(p.stdout) == {node: {'ok': f"tasks {{'{gone}'}} flagged as revoked"}}
    assert gone in inspect('revoked')

    # shutdown: never answered (as in Celery), and the worker exits cleanly.
    code, out = celery_amqp(amqp_url, prefix, 'control', 'shutdown', '-d', node)
    assert 'No nodes replied' in str(out)
    w.proc.wait(timeout=20)
    assert w.proc.returncode == 0, w.output()
    assert 'guest:guest' not in w.output()


def test_flower_on_amqp_sees_hlbot_worker_and_task(amqp_url, amqp_app, amqp_worker, prefix):
    """Flower 2.2 on the AMQP broker: the hlbot worker online (its events on ``celeryev``), its
    stats and registered tasks (pidbox), a task's SUCCESS (task events), and the worker offline
    after its shutdown (``worker-offline``)."""
    from compat.tests.test_flower import poll, run_flower
    app = amqp_app()
    w = amqp_worker(worker=('-Q', 'default', '-c', '2'))
    node = amqp_node(app)
    flower_gen = run_flower(HLBOT_COMPAT_BROKER=amqp_url, HLBOT_COMPAT_BACKEND=REDIS_URL,
                            HLBOT_COMPAT_PREFIX=prefix)
    flower = next(flower_gen)
    try:
        poll(lambda: flower('/api/workers?status=true').get(node), 'the hlbot worker online')
        workers = poll(lambda: flower('/api/workers?refresh=1').get(node), 'worker details')
        assert workers['stats']['broker']['transport'] == 'amqp'
        assert 'hlbot.debug.echo' in workers['registered']
        assert [q['name'] for q in workers['active_queues']] == ['default']
        app.control.enable_events()
        r = app.send_task('hlbot.debug.echo', args=[20, 22], queue='default')
        assert r.get(timeout=15) == {'args': [20, 22], 'kwargs': {}}
        task = poll(lambda: flower('/api/tasks').get(r.id, {}).get('state') == 'SUCCESS'
                    and flower('/api/tasks')[r.id], 'the task SUCCESS in flower')
        assert task['name'] == 'hlbot.debug.echo' and task['worker'] == node
        # The worker-offline event leaves before the process exits.
        w.stop()
        poll(lambda: flower('/api/workers?status=true').get(node) is False,
             'the worker offline in flower after shutdown')
    finally:
        flower_gen.close()


def test_mixed_fleet_on_amqp_answers_one_broadcast(amqp_url, amqp_app, amqp_worker, prefix,
                                                   request):
    """A Python Celery worker (gossip, mingle and heartbeats on: it declares ``celeryev`` and
    ``celery.pidbox`` itself) and an hlbot worker share one vhost: both declare the exchanges
    alike, both answer one ``inspect ping``, and Celery's ``EventReceiver`` gets hlbot's
    heartbeats."""
    app = amqp_app()
    py_node = f'compat-{uuid.uuid4().hex[:8]}@localhost'
    log = tempfile.NamedTemporaryFile(prefix='hlbot-compat-amqp-celery-', suffix='.log',
                                      delete=False)
    py = _Background()
    py.log = log
    py.launch_celery(
        [sys.executable, '-m', 'celery', '-A', 'compat.app', 'worker', '--pool', 'solo',
         '-c', '1', '-Q', 'default', '-n', py_node, '-l', 'INFO'],
        HLBOT_COMPAT_BROKER=amqp_url, HLBOT_COMPAT_BACKEND=REDIS_URL,
        HLBOT_COMPAT_PREFIX=prefix)
    request.addfinalizer(py.close)
    amqp_worker(worker=('-Q', 'other', '-c', '1'))
    deadline = time.monotonic() + 20
    while True:
        code, out = celery_amqp(amqp_url, prefix, 'inspect', 'ping')
        if code == 0 and isinstance(out, dict) and len(out) == 2:
            break
        assert time.monotonic() < deadline, out
        time.sleep(0.2)
    assert py_node in out and all(v == {'ok': 'pong'} for v in out.values()), out
    hl_node = next(n for n in out if n != py_node)
    # Celery's own EventReceiver (celeryev declared first by the Python worker) gets hlbot's
    # heartbeats: the exchange declarations agree, or hlbot's event channel would be refused.
    class Seen(Exception):
        pass

    def on_event(ev):
        if ev.get('hostname') == hl_node and ev.get('type') == 'worker-heartbeat':
            raise Seen()

    with app.connection_for_read() as conn:
        recv = app.events.Receiver(conn, handlers={'*': on_event})
        with pytest.raises(Seen):
            recv.capture(limit=None, timeout=10, wakeup=False)
    assert 'PRECONDITION_FAILED' not in py.output() and 'inequivalent' not in py.output()


def test_worker_metrics_on_amqp_count_its_tasks(amqp_app, amqp_worker):
    """A worker's own ``/metrics`` (``--http-port``) reads its events from RabbitMQ's
    ``celeryev`` when the broker is AMQP: a task it ran is counted."""
    import urllib.request
    from compat.tests.test_flower import free_port, poll
    app = amqp_app()
    port = free_port()
    amqp_worker(worker=('-Q', 'default', '-c', '1', '-E', '--http-port', str(port)))
    node = amqp_node(app)
    r = app.send_task('hlbot.debug.echo', args=['m'], queue='default')
    assert r.get(timeout=15) == {'args': ['m'], 'kwargs': {}}
    want = f'celery_task_succeeded_total{{name="hlbot.debug.echo",hostname="{node}"}} 1'

    def metrics():
        with urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=5) as resp:
            return resp.read().decode()

    poll(lambda: want in metrics(), f'{want!r} in /metrics')


def test_retries_limits_rate_limit_and_history_on_amqp(hlbot_bin, amqp_url, amqp_app,
                                                        amqp_worker, prefix, tmp_path):
    """What sits above the transport works on RabbitMQ as on Redis: a task retried twice (each
    retry republished to RabbitMQ with a confirm) succeeds on its third attempt; a hard time
    limit ends a sleeping task with TimeLimitExceeded and the worker serves on; a remote
    ``rate_limit`` sent over the AMQP pidbox paces the next tasks; the task history (the
    store) holds every run, read back with ``hlbot history``."""
    app = amqp_app()
    data = tmp_path / 'data'
    amqp_worker('--data-dir', str(data), worker=('-Q', 'default', '-c', '2'))
    node = amqp_node(app)

    key = f'{prefix}flaky-{uuid.uuid4().hex[:8]}'
    flaky = app.send_task('hlbot.debug.flaky', args=[2, key], queue='default')
    assert flaky.get(timeout=60) == {'attempts': 3, 'key': key}

    slow = app.send_task('hlbot.debug.sleep', args=[30], queue='default', time_limit=1)
    started = time.monotonic()
    with pytest.raises(Exception) as e:
        slow.get(timeout=30)
    assert time.monotonic() - started < 15, 'the hard limit did not end the task'
    assert type(e.value).__name__ == 'TimeLimitExceeded', repr(e.value)
    assert slow.state == 'FAILURE'

    replies = app.control.rate_limit('hlbot.debug.echo', '2/s', destination=[node], reply=True,
                                     timeout=5)
    assert replies and 'ok' in replies[0][node], replies
    t0 = time.monotonic()
    paced = [app.send_task('hlbot.debug.echo', args=[i], queue='default') for i in range(5)]
    for i, r in enumerate(paced):
        assert r.get(timeout=30) == {'args': [i], 'kwargs': {}}
    # A 2/s bucket lets the first task through at once and the other four at 0.5 s steps.
    assert time.monotonic() - t0 >= 1.5, 'rate_limit 2/s did not pace five tasks'

    ids = [flaky.id, slow.id, *(r.id for r in paced)]
    deadline = time.monotonic() + 20
    while True:
        p = hlbot_amqp(hlbot_bin, amqp_url, prefix, '--data-dir', str(data), 'history', '-j',
                       '-n', '100')
        missing = [i for i in ids if i not in p.stdout]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert not missing, f'runs missing from the history: {missing}\n{p.stdout[-2000:]}'
    assert 'FAILURE' in p.stdout and 'SUCCESS' in p.stdout


def test_dashboard_on_amqp_sees_worker_and_task(hlbot_bin, amqp_url, amqp_app, amqp_worker,
                                                 prefix):
    """``hlbot dashboard --broker amqp://…`` reads events from ``celeryev`` and asks workers over
    the AMQP pidbox: the worker starts without ``-E`` and sends task events once the dashboard's
    ``enable_events`` cast reaches it; the workers API lists it, the tasks API a task's SUCCESS,
    ``/metrics`` its task-succeeded event."""
    import urllib.request
    from compat.tests.test_flower import free_port, poll
    app = amqp_app()
    amqp_worker(worker=('-Q', 'default', '-c', '1'))
    node = amqp_node(app)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in _HLBOT_ENV}
    log = tempfile.TemporaryFile()
    dash = subprocess.Popen(
        [str(hlbot_bin.binary), '--broker', amqp_url, '--result-backend', REDIS_URL,
         '--key-prefix', prefix, 'dashboard', '--port', str(port)],
        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)

    def get(path):
        try:
            with urllib.request.urlopen(f'http://127.0.0.1:{port}{path}', timeout=5) as resp:
                return resp.read().decode()
        except OSError:
            return ''

    try:
        poll(lambda: get('/healthz') == 'ok\n', 'the dashboard answering')
        r = app.send_task('hlbot.debug.echo', args=['dash'], queue='default')
        assert r.get(timeout=15) == {'args': ['dash'], 'kwargs': {}}
        poll(lambda: node in get('/api/workers'), f'{node} in /api/workers')
        poll(lambda: r.id in get('/api/tasks') and 'SUCCESS' in get('/api/tasks'),
             f'task {r.id} SUCCESS in /api/tasks')
        # Counted from the task-succeeded event the worker published on celeryev.
        want = f'celery_task_succeeded_total{{name="hlbot.debug.echo",hostname="{node}"}} 1'
        poll(lambda: want in get('/metrics'), f'{want!r} in the dashboard\'s /metrics')
    finally:
        dash.terminate()
        dash.wait(10)
        log.seek(0)
        out = log.read().decode(errors='replace')
        print(out)
        assert 'guest:guest' not in out, 'the broker password was printed'


def test_add_cancel_consumer_and_pool_resize_on_amqp(amqp_app, amqp_worker, vhost):
    """Remote control of what an hlbot worker consumes reaches its RabbitMQ channel:
    ``add_consumer`` declares the queue Celery's way and consumes it, ``cancel_consumer`` sends
    ``basic.cancel`` (a task sent there then waits in the queue), and ``pool_grow`` raises the
    channel's ``basic.qos`` prefetch to the new concurrency × multiplier."""
    app = amqp_app()
    amqp_worker(worker=('-Q', 'default', '-c', '2', '--prefetch-multiplier', '2'))
    node = amqp_node(app)

    def prefetches():
        out = rabbitmqctl('list_channels', '--no-table-headers', 'vhost',
                          'global_prefetch_count', 'consumer_count')
        chans = [line.split('\t') for line in out.splitlines() if line.startswith(vhost + '\t')]
        return [c[1] for c in chans if c[2] != '0' and c[1] != '0']

    def consumers(queue):
        return [r for r in table(vhost, 'consumers', 'queue_name', 'consumer_tag')
                if r['queue_name'] == queue]

    r = app.control.add_consumer('extra', destination=[node], reply=True, timeout=5)
    assert r and 'ok' in r[0][node], r
    deadline = time.monotonic() + 10
    while not consumers('extra') and time.monotonic() < deadline:
        time.sleep(0.1)
    assert consumers('extra'), 'add_consumer did not start consuming on RabbitMQ'
    q = queue_row(vhost, 'extra', 'durable', 'auto_delete', 'arguments')
    assert (q['durable'], q['auto_delete'], q['arguments']) == ('true', 'false', '[]')
    res = app.send_task('hlbot.debug.echo', args=['x'], queue='extra')
    assert res.get(timeout=15) == {'args': ['x'], 'kwargs': {}}

    r = app.control.cancel_consumer('extra', destination=[node], reply=True, timeout=5)
    assert r and 'ok' in r[0][node], r
    deadline = time.monotonic() + 10
    while consumers('extra') and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not consumers('extra'), 'cancel_consumer left the AMQP consumer in place'
    waiting = app.send_task('hlbot.debug.echo', args=['y'], queue='extra')
    time.sleep(1.5)
    assert not waiting.ready(), 'a task of a cancelled queue ran'
    assert queue_row(vhost, 'extra', 'messages_ready')['messages_ready'] == '1'
    # Still consuming its other queue.
    assert app.send_task('hlbot.debug.echo', args=['z'], queue='default').get(timeout=15) == {
        'args': ['z'], 'kwargs': {}}

    assert prefetches() == ['4'], prefetches()
    r = app.control.pool_grow(2, destination=[node], reply=True, timeout=5)
    assert r and 'ok' in r[0][node], r
    deadline = time.monotonic() + 10
    while prefetches() != ['8'] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert prefetches() == ['8'], f'prefetch after pool_grow 2 on -c 2 -m 2: {prefetches()}'
