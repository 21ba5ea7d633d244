"""celery-node (a JavaScript implementation of Celery, pinned by scripts/setup.sh) ↔ hlbot, on a
private ``redis-server`` (celery-node has no key prefix):

* its client, in protocol 2 and in protocol 1 (its own minimal shapes: camelCase properties, a
  body with only task/id/args/kwargs), sends to an ``hlbot worker``: values come back, a failure
  comes back as celery-node's FAILURE with the exception type, an unknown task is dead-lettered
  with a FAILURE its client can read;
* ``hlbot send --wait`` / ``hlbot result`` read what its worker stored — including its FAILURE
  meta (``result: null``, ``traceback: {}``), which hlbot once took for no result at all.
"""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import redis

from compat.tests.conftest import _HLBOT_ENV, ROOT, need

NODE_MODULES = ROOT / '.hlbot' / 'node' / 'node_modules'

CLIENT_JS = r'''
const celery = require('celery-node');
const [url, proto] = process.argv.slice(1);  // node -e SCRIPT URL PROTO
const client = celery.createClient(url, url, 'default');
client.conf.TASK_PROTOCOL = parseInt(proto);
const out = (what, v) => console.log(JSON.stringify([what, v]));
(async () => {
  out('echo', await client.createTask('hlbot.debug.echo').applyAsync([1, 'two'], {k: 3}).get(15000));
  for (const name of ['hlbot.debug.fail', 'no.such.task']) {
    try { out(name, await client.createTask(name).applyAsync(['boom']).get(15000)); }
    catch (e) { out(name + ' raised', {message: e.message, exc_type: e.exc_type}); }
  }
  client.disconnect();
})();
'''

WORKER_JS = r'''
const celery = require('celery-node');
const url = process.argv[1];  // node -e SCRIPT URL
const worker = celery.createWorker(url, url, 'default');
worker.register('node.add', (a, b) => a + b);
worker.register('node.fail', () => { throw new Error('node boom'); });
worker.start();
'''




@pytest.fixture
def node():
    exe = shutil.which('node')
    if not exe:
        need('node', 'Node.js runs celery-node')
    if not (NODE_MODULES / 'celery-node').is_dir():
        need(f'{NODE_MODULES}/celery-node', 'scripts/setup.sh installs it with npm')
    return exe


def spawn(cmd, **kw):
    env = {k: v for k, v in os.environ.items() if k not in _HLBOT_ENV}
    env['NODE_PATH'] = str(NODE_MODULES)
    log = tempfile.TemporaryFile()
    return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, **kw), log


def stop(proc, log):
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.seek(0)
    return log.read().decode(errors='replace')


@pytest.mark.parametrize('protocol', [2, 1])
def test_celery_node_client_to_hlbot_worker(node, private_redis, hlbot_bin, protocol):
    worker, wlog = spawn([str(hlbot_bin.binary), '--broker', private_redis.url, 'worker', '-Q',
                          'default', '-c', '2'])
    try:
        p = subprocess.run([node, '-e', CLIENT_JS, private_redis.url, str(protocol)],
                           env={**os.environ, 'NODE_PATH': str(NODE_MODULES)},
                           capture_output=True, text=True, timeout=60)
    finally:
        wlog_text = stop(worker, wlog)
    assert p.returncode == 0, p.stderr + wlog_text
    got = dict(json.loads(line) for line in p.stdout.splitlines())
    assert got['echo'] == {'args': [1, 'two'], 'kwargs': {'k': 3}}, wlog_text
    assert got['hlbot.debug.fail raised'] == {'message': 'FAILURE', 'exc_type': 'RuntimeError'}
    assert got['no.such.task raised'] == {'message': 'FAILURE', 'exc_type': 'NotRegistered'}
    dead = redis.Redis.from_url(private_redis.url).lrange('hlbot.dead', 0, -1)
    assert len(dead) == 1 and b'no.such.task' in dead[0]


def test_hlbot_send_to_celery_node_worker(node, private_redis, hlbot_bin):
    worker, wlog = spawn([node, '-e', WORKER_JS, private_redis.url])

    def hlbot(*args):
        env = {k: v for k, v in os.environ.items() if k not in _HLBOT_ENV}
        return subprocess.run([str(hlbot_bin.binary), '--broker', private_redis.url, *args],
                              env=env, capture_output=True, text=True, timeout=60)
    try:
        ok = hlbot('send', 'node.add', '--args', '[2, 3]', '-Q', 'default', '--wait',
                   '--timeout', '20')
        bad = hlbot('send', 'node.fail', '-Q', 'default', '--wait', '--timeout', '20')
    finally:
        wlog_text = stop(worker, wlog)
    assert ok.returncode == 0, ok.stderr + wlog_text
    assert ok.stdout.splitlines()[-1] == '5'
    # celery-node stores a failure as {"status": "FAILURE", "result": null, "traceback": {}}.
    assert bad.returncode == 1, bad.stdout + bad.stderr + wlog_text
    assert 'FAILURE: no exception recorded' in bad.stderr
    failed_id = bad.stdout.splitlines()[0]
    shown = hlbot('result', failed_id)
    assert shown.returncode == 1 and 'FAILURE' in shown.stderr, shown.stdout + shown.stderr
    assert 'no result stored' not in shown.stderr
