"""Where a relayer keeps its artifacts: the settings shared by the relayer and its API.

    <PREFIX>ARTIFACTS_URL     empty: the filesystem under the artifact root (the default);
                              s3://BUCKET or s3://BUCKET/PREFIX: an S3-compatible object store
    <PREFIX>S3_ENDPOINT_URL   the S3 API's base URL, e.g. http://minio.internal:9000
                              (https://s3.amazonaws.com when empty)
    <PREFIX>S3_REGION         the bucket's region (us-east-1 when empty)
    <PREFIX>S3_ACCESS_KEY     access key id, with
    <PREFIX>S3_SECRET_KEY     its secret

PREFIX is DEPIN_RELAYER_ for `depin relayer run` and DEPIN_API_ for the API on its own. Both
classes take these fields from `ArtifactBackendSettings`; the store itself is
marketplace.api.artifacts (filesystem) and marketplace.api.artifacts_s3 (S3).
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

from pydantic import SecretStr, field_validator, model_validator

from marketplace.protocol.settings import DepinSettings

__all__ = ["ArtifactBackendSettings", "S3Location", "parse_s3_url"]

# S3's bucket naming rules (3..63 of lowercase letters, digits, dots and hyphens).
_BUCKET: Final = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


class S3Location:
    """A bucket and a key prefix ("" or ending without a slash)."""

    __slots__ = ("bucket", "prefix")

    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = prefix

    def key(self, name: str) -> str:
        """The object key of `name` under the prefix."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def parse_s3_url(url: str) -> S3Location:
    """`s3://bucket[/prefix]` as a location; ValueError saying what is wrong otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise ValueError(
            f"artifacts_url {url!r} is not an s3:// URL; give s3://BUCKET or s3://BUCKET/PREFIX, "
            "or leave it empty for the filesystem store"
        )
    if not _BUCKET.fullmatch(parts.netloc):
        raise ValueError(
            f"artifacts_url {url!r} names no valid bucket: a bucket is 3 to 63 lowercase "
            "letters, digits, dots and hyphens (s3://BUCKET/PREFIX)"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"artifacts_url {url!r} has a query or fragment; remove it")
    return S3Location(parts.netloc, parts.path.strip("/"))


class ArtifactBackendSettings(DepinSettings):
    """The artifact store's backend fields; mixed into the relayer's and the API's settings,
    whose `env_prefix` names the variables."""

    #: Empty: the filesystem store under the artifact root; s3://BUCKET[/PREFIX]: S3.
    artifacts_url: str = ""
    #: Base URL of the S3 API (http:// or https://); empty: AWS S3.
    s3_endpoint_url: str = ""
    #: Region of the bucket; empty: us-east-1.
    s3_region: str = ""
    #: Access key id for the S3 API.
    s3_access_key: str | None = None
    #: Secret of `s3_access_key`.
    s3_secret_key: SecretStr | None = None

    @field_validator("artifacts_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip()
        if value:
            parse_s3_url(value)
        return value

    @field_validator("s3_endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(
                    f"s3_endpoint_url {value!r} must be http://HOST[:PORT] or https://HOST[:PORT]"
                )
            if parts.path:
                raise ValueError(
                    f"s3_endpoint_url {value!r} has a path; give only the scheme, host and port "
                    "(the bucket goes in artifacts_url)"
                )
        return value

    @model_validator(mode="after")
    def _keys_with_s3(self) -> ArtifactBackendSettings:
        if self.artifacts_url and (self.s3_access_key is None or self.s3_secret_key is None):
            raise ValueError(
                f"artifacts_url {self.artifacts_url} needs S3 credentials: set s3_access_key and "
                "s3_secret_key (DEPIN_RELAYER_S3_ACCESS_KEY and DEPIN_RELAYER_S3_SECRET_KEY, or "
                "DEPIN_API_ for the API on its own)"
            )
        return self

    @property
    def s3_location(self) -> S3Location | None:
        """The bucket and prefix of an S3 store; None for the filesystem one."""
        return parse_s3_url(self.artifacts_url) if self.artifacts_url else None
