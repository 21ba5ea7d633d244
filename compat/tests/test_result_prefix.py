"""A Celery app that prefixes only its broker keys (``broker_transport_options =
{'global_keyprefix': P}``, no ``result_backend_transport_options``) keeps its results unprefixed.
An hlbot worker with ``--key-prefix P --result-key-prefix ''`` runs its task and stores the result
where the app looks; ``hlbot result`` reads it the same way.

Before, hlbot's ``--key-prefix`` applied to results too, with no way to tell them apart: such an
app's ``get()`` never saw hlbot's results.
"""

import os
import subprocess
import time

from celery import Celery

from compat.tests.conftest import _HLBOT_ENV, WORKER_READY_TIMEOUT
from compat.tests.support import REDIS_URL


def test_broker_only_prefix(hlbot_bin, redis_client, prefix):
    app = Celery('p', broker=REDIS_URL, backend=REDIS_URL, set_as_current=False)
    app.conf.broker_transport_options = {'global_keyprefix': prefix}
    env = {k: v for k, v in os.environ.items() if k not in _HLBOT_ENV}
    base = [str(hlbot_bin.binary), '--broker', REDIS_URL, '--key-prefix', prefix,
            '--result-key-prefix', '']
    worker = subprocess.Popen([*base, 'worker', '-Q', 'celery'], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    r = None
    try:
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        while not redis_client.exists(f'{prefix}_kombu.binding.celery'):
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.05)
        r = app.send_task('hlbot.debug.echo', args=['unprefixed result'])
        assert r.get(timeout=30) == {'args': ['unprefixed result'], 'kwargs': {}}
        assert redis_client.exists(f'celery-task-meta-{r.id}')
        assert not redis_client.exists(f'{prefix}celery-task-meta-{r.id}')
        shown = subprocess.run([*base, 'result', r.id], env=env, capture_output=True,
                               text=True, timeout=30)
        assert shown.returncode == 0 and 'unprefixed result' in shown.stdout, shown.stderr
    finally:
        if r is not None:
            redis_client.delete(f'celery-task-meta-{r.id}')
        app.close()
        worker.terminate()
        worker.wait(20)
