"""Start LocalStack once after installing it, so the tests' servers start in about 1.5 s.

The first start on a new FILESYSTEM_ROOT builds S3's service catalogue (seconds of CPU and about
350 MB); tests/common/localstack.rs copies the cached catalogue from VENV/wormfs-catalogue-cache/
into each server's root. This also compiles what LocalStack imports. Usage: python warm.py VENV
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

venv = sys.argv[1]
keep = os.path.join(venv, "wormfs-catalogue-cache")
with tempfile.TemporaryDirectory(prefix="wormfs-localstack-warm-") as root:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OVERRIDE_IN_DOCKER="0", FILESYSTEM_ROOT=root, GATEWAY_LISTEN=f"127.0.0.1:{port}",
               GATEWAY_SERVER="hypercorn", SERVICES="s3", EAGER_SERVICE_LOADING="1", DNS_ADDRESS="0",
               SKIP_SSL_CERT_DOWNLOAD="1", DISABLE_EVENTS="1", XDG_CACHE_HOME=os.path.join(root, "xdg"))
    env.pop("LOCALSTACK_CLI", None)
    log = open(os.path.join(root, "log"), "wb")
    server = subprocess.Popen([os.path.join(venv, "bin", "python"), "-m", "localstack.runtime.main"], env=env,
                              stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_localstack/health", timeout=2) as r:
                    if r.status == 200 and b'"s3"' in r.read():
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.close()
                sys.exit("LocalStack did not start:\n" + open(os.path.join(root, "log")).read())
            time.sleep(0.2)
        cache = os.path.join(root, "var", "lib", "localstack", "cache")
        os.makedirs(keep, exist_ok=True)
        for name in os.listdir(cache):
            shutil.copy(os.path.join(cache, name), keep)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            # Its hypercorn server sometimes never finishes a SIGTERM shutdown.
            os.killpg(server.pid, 9)
            server.wait()
