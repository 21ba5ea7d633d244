"""``hlbot beat`` processes on the test prefix: ticks from the config file run on a Python
worker; two beats with the leader SIGKILLed → the standby takes over within the lease and every
tick is sent exactly once (checked against the stored last-run time and idempotency keys).
"""

import os
import signal
import subprocess
import tempfile
import time

import pytest

from compat.tests.conftest import _HLBOT_ENV
from compat.tests.support import REDIS_URL


def beat_config(tmp_path, interval, task, queue, lease=1.5, args='[]'):
    p = tmp_path / 'beat.toml'
    p.write_text(f'''
[beat]
lease = {lease}

[[beat.entries]]
name = "tick"
task = "{task}"
interval = {interval}
args = {args}
queue = "{queue}"
''')
    return p


class Beat:
    def __init__(self, hlbot_bin, prefix, config):
        env = {k: v for k, v in os.environ.items() if k not in _HLBOT_ENV}
        self.log = tempfile.NamedTemporaryFile(prefix='hlbot-compat-beat-', delete=False)
        self.proc = subprocess.Popen(
            [str(hlbot_bin.binary), '--broker', REDIS_URL, '--key-prefix', prefix,
             '--config', str(config), '-l', 'INFO', 'beat'],
            env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(15)

    def close(self):
        self.stop()
        self.log.close()
        os.unlink(self.log.name)


@pytest.fixture
def beats(hlbot_bin, prefix):
    if not hlbot_bin.has_command('beat'):
        pytest.skip('needs hlbot beat')
    started = []

    def start(config):
        started.append(Beat(hlbot_bin, prefix, config))
        return started[-1]

    yield start
    for b in started:
        b.close()


def wait(fn, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            pytest.fail(f'timed out waiting for {what}')
        time.sleep(0.05)


def test_beat_ticks_run_on_python_worker(tmp_path, prefix, redis_client, worker, beats):
    cfg = beat_config(tmp_path, 0.5, 'compat.add', 'default', args='[2, 3]')
    beats(cfg)
    results = lambda: redis_client.keys(f'{prefix}celery-task-meta-*')  # noqa: E731
    wait(lambda: len(results()) >= 3, 'three beat ticks run by the Python worker')
    import json
    metas = [json.loads(redis_client.get(k)) for k in results()]
    assert all(m['status'] == 'SUCCESS' and m['result'] == 5 for m in metas), metas


def test_two_beats_leader_killed_exactly_once(tmp_path, prefix, redis_client, beats):
    period_ms = 250
    anchor = int(time.time() * 1000)
    redis_client.set(f'{prefix}hlbot.beat.last.tick', anchor)
    cfg = beat_config(tmp_path, period_ms / 1000, 'compat.add', 'beatq', lease=1.5, args='[1, 1]')
    lease_key = f'{prefix}hlbot.beat.lease'
    a = beats(cfg)
    wait(lambda: redis_client.get(lease_key), 'a leader')
    b = beats(cfg)
    time.sleep(1.0)
    first = redis_client.get(lease_key).decode()
    leader, standby = (a, b) if f'beat-{a.proc.pid}@' in first else (b, a)
    assert f'beat-{leader.proc.pid}@' in first
    leader.stop(signal.SIGKILL)
    killed = time.monotonic()
    wait(lambda: (redis_client.get(lease_key) or b'').decode() not in ('', first),
         'the standby taking the lease', timeout=5)
    handover = time.monotonic() - killed
    print(f'handover after {handover * 1000:.0f} ms (lease 1500 ms)')
    assert handover < 1.5 + 0.6
    now_owner = redis_client.get(lease_key).decode()
    assert f'beat-{standby.proc.pid}@' in now_owner
    assert int(now_owner.rsplit(' ', 1)[1]) > int(first.rsplit(' ', 1)[1])
    time.sleep(1.0)
    standby.stop()
    last = int(redis_client.get(f'{prefix}hlbot.beat.last.tick'))
    assert (last - anchor) % period_ms == 0
    ticks = (last - anchor) // period_ms
    assert ticks >= 10
    assert redis_client.llen(f'{prefix}beatq') == ticks, 'a tick lost or doubled'
    assert len(redis_client.keys(f'{prefix}hlbot.beat.sent.tick.*')) == ticks
