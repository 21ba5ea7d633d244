"""Celery's compression against hlbot: ``task_compression`` (every codec kombu 5.7 registers:
gzip, bzip2, lzma, zstd, brotli) on messages an hlbot worker runs, and ``result_compression`` on
results hlbot reads — ``hlbot result`` and a chord whose last part runs on hlbot while a Python
worker stored the other part's compressed result.

Before, hlbot dead-lettered every compressed message ("unsupported compression") and could not
read a compressed result (a chord callback got only the parts hlbot had stored itself).
"""

import base64
import json

import pytest
from celery import chord

GET_TIMEOUT = 30
BIG = 'trading ' * 25_000      # 200 kB: what task_compression is for


@pytest.mark.parametrize('codec', ['gzip', 'bzip2', 'lzma', 'zstd', 'brotli'])
def test_compressed_messages_run_on_hlbot(celery_app, start_hlbot_worker, redis_client, prefix,
                                          codec):
    celery_app.conf.task_compression = codec
    r = celery_app.send_task('hlbot.debug.echo', args=[BIG], kwargs={'n': 1})
    raw = json.loads(redis_client.lindex(f'{prefix}default', 0))
    assert raw['headers']['compression'].startswith('application/')
    assert len(base64.b64decode(raw['body'])) < len(BIG) // 10
    start_hlbot_worker()
    assert r.get(timeout=GET_TIMEOUT) == {'args': [BIG], 'kwargs': {'n': 1}}
    assert redis_client.llen(f'{prefix}hlbot.dead') == 0


def test_a_compressed_message_that_retries(celery_app, start_hlbot_worker, redis_client,
                                           prefix):
    # The retry is written uncompressed: it used to keep the `compression` header over a plain
    # body, and the retry was dead-lettered ("could not be decompressed").
    celery_app.conf.task_compression = 'gzip'
    start_hlbot_worker()
    r = celery_app.send_task('hlbot.debug.flaky', args=[1, f'gz-{prefix}'])
    assert r.get(timeout=GET_TIMEOUT)['attempts'] == 2
    assert redis_client.llen(f'{prefix}hlbot.dead') == 0


def test_compressed_results_are_read_by_hlbot(celery_app, start_worker, start_hlbot_worker,
                                              hlbot, monkeypatch, redis_client, prefix):
    monkeypatch.setenv('HLBOT_COMPAT_RESULT_COMPRESSION', 'gzip')
    start_worker(queues=['pdf'])
    start_hlbot_worker()
    r = celery_app.send_task('compat.add', args=[1, 2], queue='pdf')
    assert r.get(timeout=GET_TIMEOUT) == 3
    stored = redis_client.get(f'{prefix}celery-task-meta-{r.id}')
    assert stored.startswith(b'\x00celery-compressed\x00application/x-gzip\x00'), stored[:40]
    p = hlbot('result', r.id)
    assert p.returncode == 0 and p.stdout.splitlines()[-1] == '3', p.stdout + p.stderr
    # The Python part's result (compressed, in the chord's join list) is read by the hlbot
    # worker that finishes the last part and sends the body.
    header = [celery_app.signature('compat.add', args=(1, 2), queue='pdf'),
              celery_app.signature('hlbot.debug.sleep', args=(1,), queue='default')]
    body = celery_app.signature('hlbot.debug.echo', queue='default')
    got = chord(header, body).apply_async().get(timeout=GET_TIMEOUT)
    assert got == {'args': [[3, 1]], 'kwargs': {}}
