"""Fixtures for the interop suite: Redis, a private key prefix per test (cleaned up afterwards),
Celery client apps on that prefix, Python Celery workers, and the hlbot binary.

Every test gets its own prefix, so the suite can run twice at once against one Redis.
"""

import os
import re
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

REDIS_URL = os.environ.get('HLBOT_COMPAT_BROKER', compat_app.DEFAULT_BROKER)
WORKER_READY_TIMEOUT = 60.0
WORKER_STOP_TIMEOUT = 20.0
HLBOT_TIMEOUT = 60.0

# Environment variables the hlbot CLI reads; tests pass everything as flags instead.
_HLBOT_ENV = ('REDIS_URL', 'HLBOT_RESULT_BACKEND', 'HLBOT_KEY_PREFIX', 'HLBOT_CONFIG')


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


def _glob_escape(s):
    return re.sub(r'([\\*?\[\]])', r'\\\1', s)


def scan_prefix(client, prefix):
    """Every key whose name starts with ``prefix``."""
    return sorted(client.scan_iter(match=_glob_escape(prefix) + '*', count=1000))


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

class CeleryWorker:
    """``celery -A compat.app worker --pool solo`` on one key prefix, as a subprocess."""

    def __init__(self, prefix, queues):
        self.prefix = prefix
        self.queues = list(queues)
        self.node = f'compat-{uuid.uuid4().hex[:8]}@localhost'
        self.log = tempfile.NamedTemporaryFile(prefix='hlbot-compat-worker-', suffix='.log',
                                               delete=False)
        self.proc = None

    def start(self):
        env = dict(os.environ)
        env.update(HLBOT_COMPAT_BROKER=REDIS_URL, HLBOT_COMPAT_PREFIX=self.prefix,
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get('PYTHONPATH')])),
                   PYTHONUNBUFFERED='1')
        cmd = [sys.executable, '-m', 'celery', '-A', 'compat.app', 'worker',
               '--pool', 'solo', '-c', '1', '-Q', ','.join(self.queues), '-n', self.node,
               '--without-gossip', '--without-mingle', '--without-heartbeat', '-l', 'INFO']
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


@pytest.fixture
def start_worker(request, prefix):
    """``start_worker(queues=..., prefix=...)`` → a running :class:`CeleryWorker`; stopped after
    the test. Its log is attached to the report when the test fails."""
    workers = []
    request.node.stash[_WORKERS_KEY] = workers

    def start(queues=compat_app.QUEUES, worker_prefix=None):
        w = CeleryWorker(worker_prefix or prefix, queues)
        workers.append(w)
        return w.start()

    yield start
    for w in workers:
        w.stop()
    for w in workers:
        w.close()


@pytest.fixture
def worker(start_worker):
    """A Python Celery worker on this test's prefix consuming every seed queue."""
    return start_worker()


_WORKERS_KEY = pytest.StashKey[list]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.failed and rep.when in ('call', 'setup'):
        for w in item.stash.get(_WORKERS_KEY, []):
            rep.sections.append((f'celery worker {w.node} (prefix {w.prefix})', w.output()))
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


@pytest.fixture
def hlbot(hlbot_bin, prefix):
    """``hlbot(*args, check=False, timeout=...)`` runs the CLI on this test's prefix."""
    def run(*args, **kw):
        kw.setdefault('prefix', prefix)
        return hlbot_bin.run(*args, **kw)
    return run
