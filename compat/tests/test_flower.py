"""A real Flower 2.2 pointed at the test Redis and prefix sees an hlbot worker: online in
``/api/workers`` (with the stats Flower's worker page needs), a task's final state in
``/api/tasks``, offline after the worker shuts down.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from compat.tests.conftest import ROOT
from compat.tests.support import REDIS_URL


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture
def flower(prefix):
    yield from run_flower(HLBOT_COMPAT_BROKER=REDIS_URL, HLBOT_COMPAT_PREFIX=prefix)


def run_flower(**compat_env):
    """Flower on ``compat.app`` configured by ``compat_env``; yields ``get(path)`` → JSON."""
    port = free_port()
    env = dict(os.environ)
    env.update(compat_env, FLOWER_UNAUTHENTICATED_API='true',
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get('PYTHONPATH')])))
    log = tempfile.NamedTemporaryFile(prefix='hlbot-compat-flower-', suffix='.log', delete=False)
    proc = subprocess.Popen([sys.executable, '-m', 'celery', '-A', 'compat.app', 'flower',
                             '--address=127.0.0.1', f'--port={port}'],
                            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f'http://127.0.0.1:{port}'

    def get(path):
        with urllib.request.urlopen(base + path, timeout=10) as r:
            return json.loads(r.read())

    # Stopped however the generator ends: exhausted by pytest, or close()d by a test.
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                get('/api/workers?status=true')
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail('flower did not start:\n' + open(log.name).read())
                time.sleep(0.2)
        yield get
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()
        os.unlink(log.name)


def poll(fn, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail(f'timed out waiting for {what}')
        time.sleep(0.2)


def test_flower_sees_hlbot_worker_and_tasks(prefix, celery_app, flower, hlbot_worker):
    status = poll(lambda: {k: v for k, v in flower('/api/workers?status=true').items() if v},
                  'the hlbot worker online in flower')
    node = next(iter(status))
    workers = poll(lambda: flower('/api/workers?refresh=1').get(node), 'worker details')
    assert workers['stats']['broker']['transport'] == 'redis'
    assert 'hlbot.debug.echo' in workers['registered']
    assert [q['name'] for q in workers['active_queues']] == ['default']
    # Flower casts enable_events every 5 s; do it now so the test need not wait.
    celery_app.control.enable_events()
    r = celery_app.send_task('hlbot.debug.echo', args=[20, 22], queue='default')
    assert r.get(timeout=15) == {'args': [20, 22], 'kwargs': {}}
    task = poll(lambda: flower('/api/tasks').get(r.id, {}).get('state') == 'SUCCESS'
                and flower('/api/tasks')[r.id], 'the task SUCCESS in flower')
    assert task['name'] == 'hlbot.debug.echo' and task['worker'] == node
    assert task['args'] == '[20, 22]' and task['received'] and task['succeeded']
    bad = celery_app.send_task('hlbot.debug.fail', args=['bad thing'], queue='default')
    poll(lambda: flower('/api/tasks').get(bad.id, {}).get('state') == 'FAILURE',
         'the failed task in flower')
    hlbot_worker.stop()
    poll(lambda: flower('/api/workers?status=true').get(node) is False,
         'the worker offline in flower after shutdown')
