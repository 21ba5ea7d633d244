"""The real ``celery inspect`` / ``celery control`` CLI against an hlbot worker, for every
command of issue 4; a mixed fleet (one Python, one hlbot worker) answering one broadcast;
``hlbot inspect``/``control`` against a Python worker; a revoke sent while no worker runs is
honoured by an hlbot worker started afterwards.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from compat.tests.conftest import ROOT
from compat.tests.support import REDIS_URL


def celery_cli(prefix, *args, timeout=60):
    """``celery -A compat.app <args> -j`` on ``prefix``; returns (exit code, parsed JSON or text)."""
    env = dict(os.environ)
    env.update(HLBOT_COMPAT_BROKER=REDIS_URL, HLBOT_COMPAT_PREFIX=prefix,
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get('PYTHONPATH')])))
    p = subprocess.run([sys.executable, '-m', 'celery', '-A', 'compat.app', *args, '-j'],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    try:
        return p.returncode, json.loads(p.stdout)
    except ValueError:
        return p.returncode, p.stdout + p.stderr


def wait_nodes(app, n=1, timeout=20.0):
    """Node names answering ping once ``n`` of them do (pidbox subscribed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = app.control.inspect(timeout=0.5).ping() or {}
        if len(r) >= n:
            return sorted(r)
        time.sleep(0.1)
    pytest.fail(f'fewer than {n} workers answered ping within {timeout}s')


def hlbot_node(app):
    return next(n for n in wait_nodes(app) if not n.startswith('compat-'))


def send(hlbot, *args):
    p = hlbot('send', *args, check=True)
    return p.stdout.strip().splitlines()[-1]


def inspect(prefix, node, cmd, *args):
    code, out = celery_cli(prefix, 'inspect', cmd, *args, '-d', node)
    assert code == 0, out
    assert list(out) == [node], out
    return out[node]


def control(prefix, node, cmd, *args):
    code, out = celery_cli(prefix, 'control', cmd, *args, '-d', node)
    assert code == 0, out
    # `celery control -j` prints the list of replies, one {node: reply} each.
    merged = {k: v for r in out for k, v in r.items()}
    assert list(merged) == [node], out
    return merged[node]


def test_celery_inspect_every_command(prefix, celery_app, hlbot_worker, hlbot):
    node = hlbot_node(celery_app)
    assert inspect(prefix, node, 'ping') == {'ok': 'pong'}
    running = send(hlbot, 'hlbot.debug.sleep', '-a', '[30]', '-Q', 'default')
    later = send(hlbot, 'hlbot.debug.echo', '-a', '["later"]', '-Q', 'default',
                 '--countdown', '120')
    deadline = time.monotonic() + 15
    while True:
        active = inspect(prefix, node, 'active')
        if any(t['id'] == running for t in active):
            break
        assert time.monotonic() < deadline, active
        time.sleep(0.2)
    t = next(t for t in active if t['id'] == running)
    assert t['name'] == 'hlbot.debug.sleep' and t['hostname'] == node and t['acknowledged']
    assert t['delivery_info']['routing_key'] == 'default'
    sched = inspect(prefix, node, 'scheduled')
    assert [s['request']['id'] for s in sched] == [later]
    assert sched[0]['priority'] == 6 and sched[0]['eta'].endswith('+00:00')
    assert inspect(prefix, node, 'reserved') == []
    assert 'hlbot.debug.echo' in inspect(prefix, node, 'registered')
    stats = inspect(prefix, node, 'stats')
    assert stats['total'] == {'hlbot.debug.sleep': 1}
    assert stats['broker']['transport'] == 'redis' and isinstance(stats['clock'], str)
    assert stats['pool']['max-concurrency'] == 2 and 'utime' in stats['rusage']
    queues = inspect(prefix, node, 'active_queues')
    assert [q['name'] for q in queues] == ['default'] and queues[0]['durable'] is True
    conf = inspect(prefix, node, 'conf')
    assert conf['broker_url'].startswith('redis://')
    assert 'hlbot' in inspect(prefix, node, 'report')['ok']
    assert inspect(prefix, node, 'clock')['clock'] > 0
    q = inspect(prefix, node, 'query_task', running, later)
    assert q[running][0] == 'active' and q[later][0] == 'scheduled'
    # mingle: another node's hello gets our revoked ids and clock; our own gets null.
    r = celery_app.control.broadcast('hello', arguments={'from_node': 'x@y', 'revoked': []},
                                     destination=[node], reply=True, timeout=1)
    assert r[0][node]['clock'] > 0 and r[0][node]['revoked'] == []
    # revoke + terminate stops the running task; the ETA one is revoked and shows in `revoked`.
    assert control(prefix, node, 'revoke', later) == {
        'ok': f"tasks {{'{later}'}} flagged as revoked"}
    assert control(prefix, node, 'terminate', 'SIGKILL', running) == {
        'ok': f'terminate: {running}'}
    res = celery_app.AsyncResult(running)
    with pytest.raises(Exception) as e:
        res.get(timeout=10)
    assert type(e.value).__name__ == 'TaskRevokedError'
    assert res.state == 'REVOKED'
    assert set(inspect(prefix, node, 'revoked')) >= {later, running}


def test_celery_control_every_command(prefix, celery_app, start_hlbot_worker, hlbot, redis_client):
    start_hlbot_worker(queues=('default',), concurrency=2)
    node = hlbot_node(celery_app)
    assert control(prefix, node, 'pool_grow', '2') == {'ok': 'pool will grow'}
    assert inspect(prefix, node, 'stats')['pool']['max-concurrency'] == 4
    assert control(prefix, node, 'pool_shrink', '1') == {'ok': 'pool will shrink'}
    assert inspect(prefix, node, 'stats')['pool']['max-concurrency'] == 3
    assert control(prefix, node, 'autoscale', '5', '1') == {'ok': 'autoscale now max=5 min=1'}
    assert inspect(prefix, node, 'stats')['pool']['max-concurrency'] == 5
    assert control(prefix, node, 'rate_limit', 'hlbot.debug.echo', '10/m') == {
        'ok': 'new rate limit set successfully'}
    assert control(prefix, node, 'rate_limit', 'nosuch.task', '10/m') == {'error': 'unknown task'}
    assert control(prefix, node, 'time_limit', 'hlbot.debug.echo', '60', '90') == {
        'ok': 'time limits set successfully'}
    assert control(prefix, node, 'add_consumer', 'extra') == {'ok': 'add consumer extra'}
    assert [q['name'] for q in inspect(prefix, node, 'active_queues')] == ['default', 'extra']
    r = celery_app.send_task('hlbot.debug.echo', args=['via extra'], queue='extra')
    assert r.get(timeout=10) == {'args': ['via extra'], 'kwargs': {}}
    assert control(prefix, node, 'cancel_consumer', 'extra') == {
        'ok': 'no longer consuming from extra'}
    assert [q['name'] for q in inspect(prefix, node, 'active_queues')] == ['default']
    assert control(prefix, node, 'enable_events') == {'ok': 'task events enabled'}
    assert control(prefix, node, 'enable_events') == {'ok': 'task events already enabled'}
    assert control(prefix, node, 'disable_events') == {'ok': 'task events disabled'}
    # heartbeat: a reply of null and an immediate worker-heartbeat event with freq 5.
    ps = redis_client.pubsub()
    ps.psubscribe(f'{prefix}/0.celeryev/worker.heartbeat')
    ps.get_message(timeout=1)
    assert control(prefix, node, 'heartbeat') is None
    freqs = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and 5 not in freqs:
        m = ps.get_message(timeout=0.5)
        if m and m['type'] == 'pmessage':
            import base64
            env = json.loads(m['data'])
            freqs.append(json.loads(base64.b64decode(env['body']))['freq'])
    ps.close()
    assert 5 in freqs
    # shutdown: no reply (the CLI says so), and the worker goes away.
    code, out = celery_cli(prefix, 'control', 'shutdown', '-d', node)
    assert 'No nodes replied' in str(out)
    deadline = time.monotonic() + 15
    while celery_app.control.inspect(timeout=0.5).ping():
        assert time.monotonic() < deadline, 'worker still answers after shutdown'


def test_mixed_fleet_one_broadcast(prefix, celery_app, start_worker, start_hlbot_worker, hlbot):
    py = start_worker()
    start_hlbot_worker()
    nodes = wait_nodes(celery_app, 2)
    assert py.node in nodes
    code, out = celery_cli(prefix, 'inspect', 'ping')
    assert code == 0 and out == {n: {'ok': 'pong'} for n in nodes}, out
    code, out = celery_cli(prefix, 'inspect', 'stats')
    assert set(out) == set(nodes) and all('total' in v and 'broker' in v for v in out.values())
    # hlbot's own CLI reads both as well.
    p = hlbot('inspect', 'ping', '-j', check=True)
    assert json.loads(p.stdout) == {n: {'ok': 'pong'} for n in nodes}
    p = hlbot('inspect', 'registered', '-d', py.node, check=True)
    assert 'compat.add' in p.stdout and '1 node online.' in p.stdout
    p = hlbot('control', 'rate_limit', 'compat.add', '5/s', '-d', py.node, '-j', check=True)
    assert json.loads(p.stdout) == {py.node: {'ok': 'new rate limit set successfully'}}


def test_hlbot_cli_against_python_worker(prefix, celery_app, worker, hlbot):
    wait_nodes(celery_app)
    p = hlbot('inspect', 'ping', check=True)
    assert f'->  {worker.node}: OK' in p.stdout and 'pong' in p.stdout
    r = celery_app.send_task('compat.add', args=[1, 2], countdown=60)
    deadline = time.monotonic() + 10
    while True:
        p = hlbot('inspect', 'scheduled', '-j', check=True)
        if json.loads(p.stdout)[worker.node]:
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert json.loads(p.stdout)[worker.node][0]['request']['id'] == r.id
    p = hlbot('control', 'revoke', r.id, '-j', check=True)
    assert json.loads(p.stdout) == {worker.node: {'ok': f"tasks {{'{r.id}'}} flagged as revoked"}}
    p = hlbot('inspect', 'nosuch', '-d', 'nobody@nowhere', '-t', '0.3')
    assert p.returncode == 1 and 'No nodes replied' in p.stderr


def test_revoke_while_no_worker_runs(prefix, celery_app, start_hlbot_worker, hlbot, redis_client):
    tid = send(hlbot, 'hlbot.debug.echo', '-a', '["never"]', '-Q', 'default')
    p = hlbot('control', 'revoke', tid, '-t', '0.3')
    assert p.returncode == 1 and 'No nodes replied' in p.stderr
    assert redis_client.zscore(f'{prefix}hlbot.revoked', tid) is not None
    start_hlbot_worker()
    res = celery_app.AsyncResult(tid)
    with pytest.raises(Exception) as e:
        res.get(timeout=15)
    assert type(e.value).__name__ == 'TaskRevokedError'
    ok = celery_app.send_task('hlbot.debug.echo', args=['runs'], queue='default')
    assert ok.get(timeout=15) == {'args': ['runs'], 'kwargs': {}}
