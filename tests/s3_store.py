"""A real S3-compatible server on 127.0.0.1 for tests: moto's standalone server, reached the
way a user reaches MinIO or Ceph (``AWS_ENDPOINT_URL`` and credentials in the environment)."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import boto3
from moto.server import ThreadedMotoServer

from ray_cluster import free_port

BUCKET = "paw-ray-test"


class Store:
    """A moto server that can be stopped and started again on the same port."""

    def __init__(self):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        # what a process needs in its environment to reach the store (a driver, a Ray node)
        self.env = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def create_bucket(self, name: str) -> None:
        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1").create_bucket(Bucket=name)


@contextlib.contextmanager
def running_store() -> Iterator[Store]:
    """A started store with ``BUCKET`` in it, named in this process's environment until the
    block ends (then the environment is put back and the server stopped)."""
    store = Store()
    saved = {k: os.environ.get(k) for k in store.env}
    store.start()
    os.environ.update(store.env)
    try:
        store.create_bucket(BUCKET)
        yield store
    finally:
        store.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
