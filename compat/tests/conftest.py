"""Fixtures for the interop suite: Redis, a private key prefix per test (cleaned up afterwards),
Celery client apps on that prefix, Python Celery workers, and the hlbot binary.

Every test gets its own prefix, so the suite can run twice at once against one Redis.
"""

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compat import app as compat_app  # noqa: E402
from compat.tests.support import REDIS_URL, scan_prefix  # noqa: E402

WORKER_READY_TIMEOUT = 60.0
WORKER_STOP_TIMEOUT = 20.0
HLBOT_TIMEOUT = 60.0

# Environment variables the hlbot CLI reads; tests pass everything as flags instead.
_HLBOT_ENV = ('REDIS_URL', 'HLBOT_RESULT_BACKEND', 'HLBOT_KEY_PREFIX', 'HLBOT_CONFIG',
              'DATABASE_URL')

# hlbot keeps a research library and task history (SQLite in its data directory by default):
# the suite's processes write to a temporary one, never the user's.
os.environ['HLBOT_DATA_DIR'] = tempfile.mkdtemp(prefix='hlbot-compat-data-')
atexit.register(shutil.rmtree, os.environ['HLBOT_DATA_DIR'], True)


# Workers a test started (Python or hlbot), so a failing test's report can show their logs.
_WORKERS_KEY = pytest.StashKey[list]()


# --- Redis and key prefixes --------------------------------------------------------------------

@pytest.fixture(scope='session')
def redis_client():
    """A redis-py client on the test Redis (no prefix: tests see the raw key names)."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as e:
        pytest.fail(f'Redis at {REDIS_URL} is not answering ({e}); start it '
                    '(scripts/test.sh does) or set HLBOT_COMPAT_BROKER')
    yield client
    client.close()


def new_prefix(sep=':'):
    """A key prefix no other test (or concurrent run) uses."""
    return f'hlbot-compat{sep}{uuid.uuid4().hex[:12]}{sep}'


@pytest.fixture
def prefix(redis_client):
    """This test's private key prefix (ends with ``:``); every ``prefix*`` key is deleted after."""
    p = new_prefix()
    yield p
    cleanup_prefix(redis_client, p)


@pytest.fixture
def make_prefix(redis_client):
    """``make_prefix(sep=':')`` → another private prefix, cleaned up like ``prefix``."""
    made = []

    def make(sep=':'):
        made.append(new_prefix(sep))
        return made[-1]

    yield make
    for p in made:
        cleanup_prefix(redis_client, p)


def cleanup_prefix(client, p):
    keys = scan_prefix(client, p)
    if keys:
        client.delete(*keys)


def need(what, why):
    """A missing tool or service: skip with the reason, or fail under ``CI=true``."""
    if os.environ.get('CI') == 'true':
        pytest.fail(f'{what} is missing ({why}); run scripts/setup.sh')
    pytest.skip(f'{what} is missing ({why}); run scripts/setup.sh')


def wait_for_redis(client, proc, timeout=10.0):
    """Until ``client`` gets a PONG; raises if ``proc`` (its ``redis-server``) exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.05)


class PrivateRedis:
    """A ``redis-server`` of one test's own: a free loopback port and a Unix socket."""

    def __init__(self, port, socket_path):
        self.port = port
        self.socket = socket_path
        self.url = f'redis://127.0.0.1:{port}/0'


@pytest.fixture
def private_redis():
    """For clients that cannot take a key prefix (celery-node) or a test of the socket forms."""
    import socket as socketlib
    exe = shutil.which('redis-server')
    if not exe:
        need('redis-server', 'a private Redis for this test')
    with socketlib.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    d = tempfile.mkdtemp(prefix='hlbot-compat-redis-')
    server = PrivateRedis(port, f'{d}/redis.sock')
    proc = subprocess.Popen([exe, '--port', str(port), '--bind', '127.0.0.1', '--save', '',
                             '--appendonly', 'no', '--dir', d, '--unixsocket', server.socket],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis.from_url(server.url)
    wait_for_redis(client, proc)
    yield server
    client.close()
    proc.kill()
    proc.wait()
    shutil.rmtree(d, ignore_errors=True)


# --- Celery client apps ------------------------------------------------------------------------

@pytest.fixture
def make_celery():
    """``make_celery(prefix)`` → a Celery client app on that prefix; closed after the test."""
    apps = []

    def make(p):
        a = compat_app.make_app(broker=REDIS_URL, prefix=p)
        apps.append(a)
        return a

    yield make
    for a in apps:
        a.close()


@pytest.fixture
def celery_app(make_celery, prefix):
    """A Celery client app on this test's prefix."""
    return make_celery(prefix)


# --- Python Celery worker ----------------------------------------------------------------------

class _Background:
    """A subprocess in its own process group with its output in a temp file."""

    proc = None
    log = None

    def output(self):
        try:
            return Path(self.log.name).read_text(errors='replace')
        except OSError:
            return ''

    def stop(self):
        """Warm shutdown (SIGTERM), then SIGKILL of its whole process group if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(WORKER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def close(self):
        self.stop()
        self.log.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass

    def launch_celery(self, cmd, **env_extra):
        """Start a Python Celery worker (``cmd``, run from the repo root with it importable) and
        wait until it logs `` ready.``; raises with its output if it exits or never gets ready."""
        env = dict(os.environ)
        env.update(env_extra,
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get('PYTHONPATH')])),
                   PYTHONUNBUFFERED='1')
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        while time.monotonic() < deadline:
            if ' ready.' in self.output():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f'celery worker exited with {self.proc.returncode}:\n'
                                   f'{self.output()}')
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f'celery worker not ready after {WORKER_READY_TIMEOUT}s:\n'
                           f'{self.output()}')


class CeleryWorker(_Background):
    """``celery -A compat.app worker --pool solo`` on one key prefix, as a subprocess."""

    def __init__(self, prefix, queues):
        self.prefix = prefix
        self.queues = list(queues)
        self.node = f'compat-{uuid.uuid4().hex[:8]}@localhost'
        self.log = tempfile.NamedTemporaryFile(prefix='hlbot-compat-worker-', suffix='.log',
                                               delete=False)
        self.proc = None

    def start(self):
        cmd = [sys.executable, '-m', 'celery', '-A', 'compat.app', 'worker',
               '--pool', 'solo', '-c', '1', '-Q', ','.join(self.queues), '-n', self.node,
               '--without-gossip', '--without-mingle', '--without-heartbeat', '-l', 'INFO']
        return self.launch_celery(cmd, HLBOT_COMPAT_BROKER=REDIS_URL,
                                  HLBOT_COMPAT_PREFIX=self.prefix)


@pytest.fixture
def start_worker(request, prefix):
    """``start_worker(queues=..., worker_prefix=None)`` → a running :class:`CeleryWorker`,
    stopped after the test. Its log is attached to the report when the test fails."""
    workers = request.node.stash.setdefault(_WORKERS_KEY, [])
    started = []

    def start(queues=compat_app.QUEUES, worker_prefix=None):
        w = CeleryWorker(worker_prefix or prefix, queues)
        workers.append(w)
        started.append(w)
        return w.start()

    yield start
    for w in started:
        w.stop()
    for w in started:
        w.close()


@pytest.fixture
def worker(start_worker):
    """A Python Celery worker on this test's prefix consuming every seed queue."""
    return start_worker()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.failed and rep.when in ('call', 'setup'):
        for w in item.stash.get(_WORKERS_KEY, []):
            rep.sections.append((f'worker {w.node} (prefix {w.prefix})', w.output()))
    return rep


# --- hlbot binary ------------------------------------------------------------------------------

class Hlbot:
    """Runs the hlbot CLI against the test Redis with a key prefix."""

    def __init__(self, binary):
        self.binary = binary

    def run(self, *args, prefix, timeout=HLBOT_TIMEOUT, check=False):
        env = {k: v for k, v in os.environ.items() if k not in _HLBOT_ENV}
        cmd = [str(self.binary), '--broker', REDIS_URL, '--key-prefix', prefix, *map(str, args)]
        try:
            p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f'hlbot timed out after {timeout}s: {cmd}\nstdout: {e.stdout}\n'
                        f'stderr: {e.stderr}')
        if check and p.returncode != 0:
            pytest.fail(f'hlbot failed with exit {p.returncode}: {cmd}\nstdout: {p.stdout}\n'
                        f'stderr: {p.stderr}')
        return p

    def help(self):
        p = subprocess.run([str(self.binary), '--help'], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=HLBOT_TIMEOUT)
        return p.stdout

    def has_command(self, name):
        return re.search(rf'^\s+{re.escape(name)}\s', self.help(), re.M) is not None


def find_hlbot():
    b = os.environ.get('HLBOT_BIN')
    path = Path(b) if b else ROOT / 'target' / 'debug' / 'hlbot'
    return path


@pytest.fixture(scope='session')
def hlbot_bin():
    path = find_hlbot()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f'hlbot binary not found at {path}: run `cargo build -p hlbot-cli` '
                    '(or scripts/test.sh), or set HLBOT_BIN')
    return Hlbot(path)


class HlbotWorker(_Background):
    """``hlbot worker`` on one key prefix, as a subprocess in its own process group."""

    def __init__(self, hlbot_bin, prefix, queues, concurrency):
        self.hlbot_bin = hlbot_bin
        self.prefix = prefix
        self.queues = list(queues)
        self.concurrency = concurrency
        self.node = f'hlbot-worker (prefix {prefix})'
        self.log = tempfile.NamedTemporaryFile(prefix='hlbot-compat-hlbot-worker-',
                                               suffix='.log', delete=False)
        self.proc = None

    def start(self, redis_client):
        env = {k: v for k, v in os.environ.items() if k not in _HLBOT_ENV}
        cmd = [str(self.hlbot_bin.binary), '--broker', REDIS_URL, '--key-prefix', self.prefix,
               '-l', 'INFO', 'worker', '-Q', ','.join(self.queues), '-c', str(self.concurrency)]
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        # Ready once its queues are declared (kombu binding sets); tasks sent earlier just wait
        # in their lists, so this only keeps timings honest.
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        want = [f'{self.prefix}_kombu.binding.{q}' for q in self.queues]
        while time.monotonic() < deadline and not all(redis_client.exists(k) for k in want):
            if self.proc.poll() is not None:
                raise RuntimeError(f'hlbot worker exited with {self.proc.returncode}:\n'
                                   f'{self.output()}')
            time.sleep(0.05)
        return self


@pytest.fixture
def start_hlbot_worker(request, hlbot_bin, prefix, redis_client):
    """``start_hlbot_worker(queues=..., concurrency=2, worker_prefix=None)`` → a running
    ``hlbot worker``; skips the test when this hlbot has no ``worker`` command yet."""
    if not hlbot_bin.has_command('worker'):
        pytest.skip('needs hlbot worker (issue 3): `hlbot --help` lists no `worker` command')
    workers = request.node.stash.setdefault(_WORKERS_KEY, [])
    started = []

    def start(queues=('default',), concurrency=2, worker_prefix=None):
        w = HlbotWorker(hlbot_bin, worker_prefix or prefix, queues, concurrency)
        workers.append(w)
        started.append(w)
        return w.start(redis_client)

    yield start
    for w in started:
        w.stop()
    for w in started:
        w.close()


@pytest.fixture
def hlbot_worker(start_hlbot_worker):
    """An ``hlbot worker -Q default -c 2`` on this test's prefix."""
    return start_hlbot_worker()


@pytest.fixture
def hlbot(hlbot_bin, prefix):
    """``hlbot(*args, check=False, timeout=...)`` runs the CLI on this test's prefix."""
    def run(*args, **kw):
        kw.setdefault('prefix', prefix)
        return hlbot_bin.run(*args, **kw)
    return run
