"""A Python app whose broker and backend are a Redis Unix socket, in kombu's and Celery's own
URL forms (``redis+socket:///path?virtual_host=N``), works with an hlbot worker given the same
URL: tasks and results, and ``celery inspect ping`` (pidbox channels carry the DB number, so a
DB read wrongly from the socket URL would leave the worker deaf to broadcasts).

Before, hlbot refused ``redis+socket://`` and ``socket://`` ("unsupported Redis URL scheme") and
took the DB of a ``unix://`` URL to be 0 whatever its ``?db=`` said.
"""

import os
import subprocess
import time

import redis
from celery import Celery

from compat.tests.conftest import _HLBOT_ENV


def test_redis_socket_urls_work_like_kombus(private_redis, hlbot_bin):
    url = f'redis+socket://{private_redis.socket}?virtual_host=3'
    env = {k: v for k, v in os.environ.items() if k not in _HLBOT_ENV}
    worker = subprocess.Popen([str(hlbot_bin.binary), '--broker', url, 'worker', '-Q', 'celery'],
                              env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    app = Celery('sock', broker=url, backend=url, set_as_current=False)
    try:
        assert app.send_task('hlbot.debug.echo', args=[7]).get(timeout=20) == {
            'args': [7], 'kwargs': {}}
        pong = None
        deadline = time.monotonic() + 20
        while not pong and time.monotonic() < deadline:
            pong = app.control.inspect(timeout=1).ping()
        assert pong and list(pong.values()) == [{'ok': 'pong'}], pong
        keys = redis.Redis(unix_socket_path=private_redis.socket, db=3).keys('celery-task-meta-*')
        assert len(keys) == 1
        assert redis.Redis(unix_socket_path=private_redis.socket, db=0).dbsize() == 0
        shown = subprocess.run([str(hlbot_bin.binary), '--broker',
                                f'socket://{private_redis.socket}?virtual_host=3', 'result',
                                keys[0].decode().removeprefix('celery-task-meta-')],
                               env=env, capture_output=True, text=True, timeout=30)
        assert shown.returncode == 0, shown.stderr
    finally:
        app.close()
        worker.terminate()
        out, _ = worker.communicate(timeout=20)
    assert f'unix://{private_redis.socket}?db=3' in out, out
