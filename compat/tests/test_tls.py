"""TLS to Redis as a Celery app writes it: ``rediss://…?ssl_cert_reqs=required&ssl_ca_certs=CA``
(Celery requires ``ssl_cert_reqs`` on a ``rediss://`` backend URL). A private ``redis-server``
with TLS only, a CA and a server certificate made here with ``openssl``; the Python app and an
hlbot worker use the same URL: the task runs, the result comes back, ``celery inspect ping`` gets
the pong, and ``hlbot result`` reads it with ``ssl_cert_reqs=none``. Without the CA, hlbot says the
certificate is not trusted (exit 1) instead of connecting.

Before, every ``rediss://`` connection made the hlbot binary panic (rustls could not choose between
the two crypto providers compiled in), and the ``ssl_*`` parameters were not understood.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import redis
from celery import Celery

from compat.tests.conftest import _HLBOT_ENV, need, wait_for_redis


@pytest.fixture
def tls_redis():
    for tool in ('redis-server', 'openssl'):
        if not shutil.which(tool):
            need(tool, 'a private TLS Redis and its certificates')
    d = tempfile.mkdtemp(prefix='hlbot-compat-tls-')
    sh = lambda *a: subprocess.run(a, cwd=d, check=True, capture_output=True)  # noqa: E731
    sh('openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out',
       'ca.pem', '-days', '2', '-subj', '/CN=hlbot compat CA')
    sh('openssl', 'req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out',
       'server.csr', '-subj', '/CN=localhost')
    with open(f'{d}/ext.cnf', 'w') as f:
        f.write('subjectAltName=DNS:localhost,IP:127.0.0.1\n')
    sh('openssl', 'x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key',
       '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'ext.cnf')
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(['redis-server', '--port', '0', '--tls-port', str(port), '--bind',
                             '127.0.0.1', '--tls-cert-file', 'server.pem', '--tls-key-file',
                             'server.key', '--tls-ca-cert-file', 'ca.pem', '--tls-auth-clients',
                             'no', '--save', '', '--appendonly', 'no', '--dir', d], cwd=d,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host='127.0.0.1', port=port, ssl=True, ssl_ca_certs=f'{d}/ca.pem')
    wait_for_redis(client, proc)
    yield port, f'{d}/ca.pem'
    client.close()
    proc.kill()
    proc.wait()
    shutil.rmtree(d, ignore_errors=True)


def test_rediss_urls_in_celerys_form(tls_redis, hlbot_bin):
    port, ca = tls_redis
    url = f'rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}'
    env = {k: v for k, v in os.environ.items() if k not in _HLBOT_ENV}
    hlbot = lambda *a: subprocess.run([str(hlbot_bin.binary), *a], env=env,  # noqa: E731
                                      capture_output=True, text=True, timeout=60)
    worker = subprocess.Popen([str(hlbot_bin.binary), '--broker', url, 'worker', '-Q', 'celery'],
                              env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    app = Celery('tls', broker=url, backend=url, set_as_current=False)
    try:
        r = app.send_task('hlbot.debug.echo', args=['over TLS'])
        assert r.get(timeout=30) == {'args': ['over TLS'], 'kwargs': {}}
        pong = None
        deadline = time.monotonic() + 20
        while not pong and time.monotonic() < deadline:
            pong = app.control.inspect(timeout=1).ping()
        assert pong and list(pong.values()) == [{'ok': 'pong'}], pong
        shown = hlbot('--broker', f'rediss://localhost:{port}/0?ssl_cert_reqs=CERT_NONE',
                      'result', r.id)
        assert shown.returncode == 0 and 'over TLS' in shown.stdout, shown.stderr
        untrusted = hlbot('--broker', f'rediss://localhost:{port}/0?ssl_cert_reqs=required',
                          'result', r.id)
        assert untrusted.returncode == 1, untrusted.stdout + untrusted.stderr
        assert 'certificate' in untrusted.stderr and 'panicked' not in untrusted.stderr
    finally:
        app.close()
        worker.terminate()
        out, _ = worker.communicate(timeout=20)
    assert 'panicked' not in out, out
