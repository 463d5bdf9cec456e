"""REST catalog and object-store settings, the object-store read cache, and `k2 stack up --with` (pure logic)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from k2cli.cli.app import app
from k2cli.errors import ConfigError
from k2cli.lake.catalog import catalog_properties, is_rest
from k2cli.lake.objectcache import cached_name, prune
from k2cli.settings import Settings, load_settings
from k2cli.stack.lake_services import RestCatalog, optional_services
from k2cli.stack.paths import StackPaths


def test_an_http_catalog_uri_is_a_rest_catalog_with_its_credentials_as_pyiceberg_names_them():
    s = Settings(iceberg_catalog_uri="https://cat.example/api", iceberg_catalog_credential="id:secret",
                 iceberg_catalog_token="tok", s3_endpoint="http://s3:7070", s3_access_key="a", s3_secret_key="b",
                 s3_path_style=False)
    props = catalog_properties(s)
    assert is_rest(s.catalog_uri) and "warehouse" not in props  # the server names the warehouse unless we do
    assert (props["credential"], props["token"], props["s3.path-style-access"]) == ("id:secret", "tok", "false")
    assert "scope" not in props  # unset: pyiceberg's default


def test_a_sql_catalog_keeps_its_warehouse_and_takes_no_rest_credentials(tmp_path):
    props = catalog_properties(Settings(data_dir=tmp_path, iceberg_catalog_token="tok"))
    assert props["uri"].startswith("sqlite:///") and props["warehouse"] == f"file://{tmp_path / 'warehouse'}"
    assert "token" not in props and "s3.endpoint" not in props


@pytest.mark.parametrize("uri", ["http://localhost:8181", "https://x/api/catalog", "sqlite:///x.db"])
def test_rest_and_sql_catalog_uris_are_accepted(settings_env, uri):
    assert load_settings(iceberg_catalog_uri=uri).catalog_uri == uri


def test_other_catalog_uris_name_the_setting(settings_env):
    with pytest.raises(ConfigError, match="K2_ICEBERG_CATALOG_URI.*http"):
        load_settings(iceberg_catalog_uri="thrift://hive:9083")


def test_cache_names_are_stable_and_keep_the_extension():
    a = cached_name("s3://b/w/t/data/x.parquet")
    assert a == cached_name("s3://b/w/t/data/x.parquet") and a.endswith(".parquet")
    assert a != cached_name("s3://b/w/u/data/x.parquet")


def test_prune_drops_the_least_recently_used_beyond_the_limit_never_a_kept_one(tmp_path):
    for age, name in enumerate(["new", "mid", "old", "kept"]):
        path = tmp_path / name
        path.write_bytes(b"x" * 100)
        os.utime(path, (1000 - age, 1000 - age))  # "kept" is the oldest
    assert prune(tmp_path, keep={"kept"}, max_bytes=250) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept", "new"]


def test_the_rest_catalog_binds_loopback_and_keeps_its_keys_from_other_users(tmp_path):
    from k2cli.stack.config import StackConfig

    svc = RestCatalog(StackConfig(home=tmp_path), StackPaths.for_home(tmp_path, tmp_path / "cache"))
    svc.prepare()
    props = Path(svc.dir / "catalog.properties")
    assert "k2.host=127.0.0.1\n" in props.read_text() and props.stat().st_mode & 0o077 == 0
    assert list(optional_services()) == ["s3", "rest-catalog"]  # S3 first: the catalog writes to it


def test_stack_up_with_an_unknown_service_is_a_usage_error(settings_env):
    result = CliRunner().invoke(app, ["stack", "up", "--with", "rest-catalog,minio"])
    assert result.exit_code == 2 and "minio" in result.stderr and "Traceback" not in result.stderr
