"""moto's S3 server on 127.0.0.1 standing in for R2/S3, with real IAM keys so credentials can be checked."""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager

import boto3
import requests
from botocore.config import Config
from moto.server import ThreadedMotoServer

from tests.helpers import free_port

ADMIN_REGION = "us-east-1"


class MotoS3:
    """A moto server with one IAM user whose key may do anything.

    moto accepts any key until told otherwise: `with server.checking_credentials():` makes it verify
    every signature against its IAM users (unknown key -> InvalidAccessKeyId, wrong secret ->
    SignatureDoesNotMatch), like a real store.
    """

    def __init__(self):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def start(self) -> MotoS3:
        self.server.start()
        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name=ADMIN_REGION,
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        # moto's backends are shared by every server in this process: one user per server
        user = f"studio-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="all", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]
        return self

    def stop(self) -> None:
        self._set_auth("inf")
        self.server.stop()

    def _set_auth(self, count: str) -> None:
        requests.post(f"{self.endpoint}/moto-api/reset-auth", data=count.encode(), timeout=10).raise_for_status()

    @contextmanager
    def checking_credentials(self):
        self._set_auth("0")
        try:
            yield
        finally:
            self._set_auth("inf")

    def env(self, **extra) -> dict:
        env = {"S3_ENDPOINT_URL": self.endpoint, "S3_ACCESS_KEY_ID": self.access_key,
               "S3_SECRET_ACCESS_KEY": self.secret_key}
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=ADMIN_REGION,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                            config=Config(s3={"addressing_style": "path"}))

    def make_bucket(self, name: str, objects: dict[str, bytes] | None = None) -> None:
        client = self.client()
        client.create_bucket(Bucket=name)
        for key, body in (objects or {}).items():
            client.put_object(Bucket=name, Key=key, Body=body)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))
