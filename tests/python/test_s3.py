"""Zarr input from S3-compatible object storage: a moto S3 server started here on 127.0.0.1
holds a synthetic pair; ldic reading it through s3:// gives the same table, byte for byte, as
ldic reading the same stores from the file system. An endpoint that never answers fails the
run within DVC_STREAM_S3_TIMEOUT."""
import os
import socket
import subprocess
import threading
import time

import boto3
import pytest
from moto.server import ThreadedMotoServer

from helpers import BIN, run


@pytest.fixture(scope="module")
def s3():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1",
               AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ALLOW_HTTP="true")
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    client.create_bucket(Bucket="scans")
    yield client, env
    server.stop()


def upload(client, folder, key_prefix):
    n = 0
    for root, _, files in os.walk(folder):
        for f in files:
            path = os.path.join(root, f)
            client.upload_file(path, "scans", f"{key_prefix}/{os.path.relpath(path, folder)}")
            n += 1
    return n


def test_ldic_reads_zarr_from_s3_as_from_disk(s3, tmp_path):
    client, env = s3
    d = tmp_path / "s"
    run(BIN / "dvc-stream", "synth", d, "--shape", "64", "--chunk", "16", "--speckle", "4", "--dtype", "uint16",
        "--translate", "0.4", "-1.2", "0.7", "-q")
    for name in ("im1.zarr", "im2.zarr"):
        assert upload(client, d / name, f"pair/{name}") > 10
    args = ["-hws", "6", "-ns", "8", "-pre", "r", "-q"]
    run(BIN / "dvc-stream", "ldic", d / "im1.zarr", d / "im2.zarr", *args, "-od", tmp_path / "disk")
    r = subprocess.run([str(BIN / "dvc-stream"), "ldic", "s3://scans/pair/im1.zarr", "s3://scans/pair/im2.zarr", *args,
                        "-od", str(tmp_path / "remote"), "--stats"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "MiB read" in r.stderr
    assert (tmp_path / "remote" / "r-ldic.tsv").read_bytes() == (tmp_path / "disk" / "r-ldic.tsv").read_bytes()
    # The multiscale pyramid is read from the bucket too (stats on a coarse level).
    r = subprocess.run([str(BIN / "dvc-stream"), "stats", "s3://scans/pair/im1.zarr", "--bin", "2", "-q"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "32" in r.stdout, r.stderr + r.stdout


def test_missing_store_or_bucket_is_one_line_error(s3, tmp_path):
    _, env = s3
    for url, says in (("s3://scans/nothing.zarr", "s3://scans/nothing.zarr"), ("s3://no-such-bucket/a.zarr", "s3://no-such-bucket/a.zarr")):
        r = subprocess.run([str(BIN / "dvc-stream"), "ldic", url, url, "-hws", "6", "-ns", "8", "-od", str(tmp_path / "x"), "-q"],
                           capture_output=True, text=True, env=env)
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and says in r.stderr, r.stderr
    r = subprocess.run([str(BIN / "dvc-stream"), "ldic", "s3://scans/pair/im1.zarr", "s3://scans/pair/im2.zarr", "-hws", "6", "-ns", "8", "-q"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "--out-dir" in r.stderr, r.stderr


def test_endpoint_that_never_answers_fails_within_the_timeout(tmp_path):
    """A server that accepts connections and never answers: one line naming the store and the
    timeout, exit 2, after about DVC_STREAM_S3_TIMEOUT seconds (not object_store's 3 minutes
    of retries)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    accepted, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except socket.timeout:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1",
               AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ALLOW_HTTP="true", DVC_STREAM_S3_TIMEOUT="2")
    try:
        t0 = time.monotonic()
        r = subprocess.run([str(BIN / "dvc-stream"), "stats", "s3://scans/silent/im1.zarr"],
                           capture_output=True, text=True, env=env, timeout=120)
        took = time.monotonic() - t0
        bad = subprocess.run([str(BIN / "dvc-stream"), "stats", "s3://scans/silent/im1.zarr"],
                             capture_output=True, text=True, env=dict(env, DVC_STREAM_S3_TIMEOUT="soon"), timeout=120)
    finally:
        stop.set()
        thread.join()
        for c in accepted:
            c.close()
        listener.close()
    assert accepted, "dvc-stream connected to the silent endpoint"
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "s3://scans/silent/im1.zarr" in r.stderr and "timed out" in r.stderr and "DVC_STREAM_S3_TIMEOUT" in r.stderr, r.stderr
    assert 1.5 < took < 4.5, f"failed after {took:.1f} s with a 2 s timeout"
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "DVC_STREAM_S3_TIMEOUT" in bad.stderr, bad.stderr
